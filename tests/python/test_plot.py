"""bench/plot.py draws results files as PNGs and refuses files that do not say where their
numbers come from; the committed pictures are the committed results'."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

pytest.importorskip("matplotlib", reason="bench/plot.py needs the bench extra")


def load_plot():
    spec = importlib.util.spec_from_file_location("plot", ROOT / "bench" / "plot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_results() -> dict:
    panel = {
        "title": "decode",
        "machine": "test machine",
        "commit": "0000000",
        "date": "2026-12-02",
        "source": "a test",
        "command": "none",
        "kind": "line",
        "x_label": "batch",
        "y_label": "tokens/s",
        "x_scale": "log2",
        "series": [{"label": "a", "x": [1, 4], "y": [10.0, 30.0]}],
    }
    bars = {
        **panel,
        "kind": "bar",
        "categories": ["p", "q"],
        "series": [{"label": "b", "y": [1, 2]}],
    }
    del bars["x_scale"]
    return {"title": "small", "panels": [panel, bars]}


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_a_small_results_file_becomes_a_png(tmp_path: Path) -> None:
    source = tmp_path / "small.json"
    source.write_text(json.dumps(small_results()))
    assert load_plot().main([str(source), "--out", str(tmp_path / "images")]) == 0
    width, height = png_size(tmp_path / "images" / "small.png")
    assert width > height > 100
    assert not list((tmp_path / "images").glob("*.partial"))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["panels"][0].pop("commit"), "panel 0: needs 'commit'"),
        (lambda r: r["panels"][0].pop("machine"), "panel 0: needs 'machine'"),
        (lambda r: r["panels"][0]["series"][0]["y"].pop(), "series 0: 2 x values for 1 y values"),
        (lambda r: r["panels"][1]["series"][0]["y"].append(3), "series 0: 3 values for 2 bars"),
        (lambda r: r["panels"][0]["series"][0]["y"].__setitem__(0, "9"), "holds '9', not a number"),
        (lambda r: r["panels"][0].__setitem__("kind", "pie"), "kind 'pie' is not line or bar"),
        (lambda r: r.__setitem__("panels", []), "needs a non-empty 'panels'"),
    ],
)
def test_a_results_file_without_its_provenance_or_shape_is_refused(
    tmp_path: Path, capsys, edit, message: str
) -> None:
    results = small_results()
    edit(results)
    source = tmp_path / "bad.json"
    source.write_text(json.dumps(results))
    assert load_plot().main([str(source), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"plot.py: error: {source}") and message in err
    assert not (tmp_path / "bad.png").exists()


def test_every_committed_results_file_draws_and_has_its_committed_picture(tmp_path: Path) -> None:
    results = sorted((ROOT / "bench" / "results").glob("*.json"))
    assert results, "bench/results/ holds no results files"
    plot = load_plot()
    assert plot.main([str(p) for p in results] + ["--out", str(tmp_path)]) == 0
    for path in results:
        assert png_size(tmp_path / f"{path.stem}.png")
        assert (ROOT / "docs" / "images" / f"{path.stem}.png").is_file(), path.stem
