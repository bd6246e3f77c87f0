"""Progress bars for long work (conversion, verification, loading): one style everywhere."""

from __future__ import annotations

from types import TracebackType

from tqdm import tqdm


def byte_progress(total: int, desc: str, *, enabled: bool = True) -> tqdm:
    """A tqdm bar counting bytes; tqdm hides it by itself when stderr is not a terminal."""
    return tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=desc,
        disable=None if enabled else True,
    )


class StageProgress:
    """One byte bar per stage of the core's progress reports (ModelOptions.progress: an object
    with .stage, .done and .total): "load", then "compress" or "decode", then "verify"."""

    def __init__(self, *, enabled: bool = True) -> None:
        self._enabled = enabled
        self._stage: str | None = None
        self._bar: tqdm | None = None

    def update(self, report: object) -> None:
        stage, done, total = report.stage, report.done, report.total  # type: ignore[attr-defined]
        if stage != self._stage:
            self.close()
            self._stage = stage
            self._bar = byte_progress(total, stage, enabled=self._enabled)
        assert self._bar is not None
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> StageProgress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
