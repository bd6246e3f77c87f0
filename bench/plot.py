"""Pictures of measured results: each JSON file under bench/results/ becomes one PNG.

    python bench/plot.py bench/results/*.json --out docs/images    # needs the `bench` extra

A results file holds figures that were measured, never made up: a title and panels, each panel
with where its numbers come from and what they were measured on, printed under it:

    {"title": "...", "panels": [{
        "title": "...", "machine": "NVIDIA H200", "commit": "06f64fe", "date": "2026-12-02",
        "source": "bench/RESULTS.md, 'section'", "command": "the command that measured it",
        "kind": "line", "x_label": "batch", "y_label": "tokens/s",
        "x_scale": "log2", "y_scale": "log",                    # optional; linear by default
        "series": [{"label": "slimrt", "x": [1, 4], "y": [204.7, 808.9]}]}]}

"kind": "bar" takes "categories" instead of each series' "x". A series' "style" may be "dashed"
(a reference line) or "points" (markers only). A file that breaks these rules is refused with
its name and what is wrong (exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

PANEL_KEYS = ("title", "machine", "commit", "date", "source", "command", "kind", "y_label")
SCALES = {"linear", "log", "log2"}
STYLES = {"line", "dashed", "points"}


class ResultsError(ValueError):
    """A results file that cannot be drawn as it is."""


def _require(ok: bool, where: str, message: str) -> None:
    if not ok:
        raise ResultsError(f"{where}: {message}")


def _number_list(value: Any, where: str, name: str) -> list[float]:
    _require(isinstance(value, list) and len(value) > 0, where, f"{name} must be a non-empty list")
    for item in value:
        _require(
            isinstance(item, int | float) and not isinstance(item, bool),
            where,
            f"{name} holds {item!r}, not a number",
        )
    return value


def check_panel(panel: Any, where: str) -> None:
    """Raises ResultsError naming the first rule `panel` breaks."""
    _require(isinstance(panel, dict), where, "a panel must be an object")
    for key in PANEL_KEYS:
        _require(isinstance(panel.get(key), str) and panel[key] != "", where, f"needs {key!r}")
    _require(panel["kind"] in ("line", "bar"), where, f"kind {panel['kind']!r} is not line or bar")
    for axis in ("x_scale", "y_scale"):
        scale = panel.get(axis, "linear")
        _require(scale in SCALES, where, f"{axis} {scale!r} is not one of {sorted(SCALES)}")
    series = panel.get("series")
    _require(isinstance(series, list) and len(series) > 0, where, "needs a non-empty 'series'")
    if panel["kind"] == "bar":
        categories = panel.get("categories")
        _require(isinstance(categories, list) and categories != [], where, "needs 'categories'")
    for i, one in enumerate(series):
        at = f"{where}, series {i}"
        _require(isinstance(one, dict) and isinstance(one.get("label"), str), at, "needs a label")
        y = _number_list(one.get("y"), at, "y")
        if panel["kind"] == "bar":
            _require(len(y) == len(categories), at, f"{len(y)} values for {len(categories)} bars")
        else:
            x = _number_list(one.get("x"), at, "x")
            _require(len(x) == len(y), at, f"{len(x)} x values for {len(y)} y values")
            style = one.get("style", "line")
            _require(style in STYLES, at, f"style {style!r} is not one of {sorted(STYLES)}")


def read_results(path: Path) -> dict[str, Any]:
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultsError(f"{path}: {error}") from None
    _require(isinstance(results, dict), str(path), "must hold a JSON object")
    _require(isinstance(results.get("title"), str), str(path), "needs a 'title'")
    panels = results.get("panels")
    _require(isinstance(panels, list) and panels != [], str(path), "needs a non-empty 'panels'")
    for i, panel in enumerate(panels):
        check_panel(panel, f"{path}, panel {i}")
    return results


def _figure(value: float) -> str:
    """A bar's label: thousands separated, small values with their three significant digits."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _draw(axes: Any, panel: dict[str, Any]) -> None:
    if panel["kind"] == "bar":
        count = len(panel["series"])
        width = 0.8 / count
        for i, one in enumerate(panel["series"]):
            offsets = [c + (i - (count - 1) / 2) * width for c in range(len(panel["categories"]))]
            bars = axes.bar(offsets, one["y"], width, label=one["label"])
            axes.bar_label(bars, labels=[_figure(v) for v in one["y"]], fontsize=8)
        axes.set_xticks(range(len(panel["categories"])), panel["categories"], fontsize=8)
        if count > 1:
            axes.legend(fontsize=8)
    else:
        for one in panel["series"]:
            style = one.get("style", "line")
            line = {"line": "-o", "dashed": "--", "points": "s"}[style]
            axes.plot(one["x"], one["y"], line, label=one["label"])
        axes.set_xlabel(panel.get("x_label", ""))
        axes.legend(fontsize=8)
    for axis, setter in (("x_scale", axes.set_xscale), ("y_scale", axes.set_yscale)):
        scale = panel.get(axis, "linear")
        if scale == "log2":
            setter("log", base=2)
        elif scale == "log":
            setter("log")
    if panel.get("x_scale") == "log2":
        xs = sorted({x for one in panel["series"] for x in one["x"]})
        axes.set_xticks(xs, [f"{x:g}" for x in xs])
    axes.set_ylabel(panel["y_label"])
    axes.grid(True, alpha=0.3)
    axes.set_title(textwrap.fill(panel["title"], 60), fontsize=9)
    # The machine and the commit belong to the numbers: under every panel, not in a caption.
    footer = f"measured on {panel['machine']}, commit {panel['commit']}, {panel['date']}; "
    axes.annotate(
        textwrap.fill(footer + panel["source"], 90),
        xy=(0, 0),
        xycoords="axes fraction",
        xytext=(0, -42),
        textcoords="offset points",
        fontsize=7,
        va="top",
        annotation_clip=False,
    )


def plot(results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = results["panels"]
    figure, grid = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 5.0), squeeze=False)
    for axes, panel in zip(grid[0], panels, strict=True):
        _draw(axes, panel)
    figure.suptitle(textwrap.fill(results["title"], 100), fontsize=11)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    # bbox_inches="tight" keeps the footers below the axes inside the picture.
    figure.savefig(partial, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    partial.replace(out)  # a reader never sees half a picture


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Draw bench/results/*.json as PNG files.")
    parser.add_argument("results", nargs="+", type=Path, help="results JSON files")
    parser.add_argument("--out", type=Path, default=Path("docs/images"), help="PNG directory")
    args = parser.parse_args(argv)
    try:
        loaded = [(path, read_results(path)) for path in args.results]
    except ResultsError as error:
        print(f"plot.py: error: {error}", file=sys.stderr)
        return 2
    for path, results in loaded:
        target = args.out / (path.stem + ".png")
        plot(results, target)
        print(f"plot.py: {path} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
