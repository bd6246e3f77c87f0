"""Progress bars for long work (conversion, verification, loading): one style everywhere."""

from __future__ import annotations

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
