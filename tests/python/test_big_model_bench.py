"""bench/big_model.py end to end on the CPU at a tiny shape (one seeded layer written, compressed,
loaded as four copies, measured), and the core option it rests on, ModelOptions.repeat_layers,
as Python sees it: an N-layer model whose figures are N layers', typed errors otherwise."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import slimrt
from slimrt import _core
from slimrt.errors import InvalidArgumentError

REPO = Path(__file__).resolve().parents[2]


def run_bench(script: str, *argv: object) -> subprocess.CompletedProcess[str]:
    """A bench script run as the lead runs it (from the repository, bench/ on its path), with
    this slimrt importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(slimrt.__file__).parents[1]), env.get("PYTHONPATH", "")]
    )
    command = [sys.executable, str(REPO / "bench" / script), *map(str, argv)]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_repeat_layers_refuses_a_model_of_several_layers_and_counts_out_of_range(
    tiny_model_dir,
) -> None:
    path, _ = tiny_model_dir("llama")
    layers = json.loads((path / "config.json").read_text())["num_hidden_layers"]
    assert layers > 1
    message = f"{path}: repeat_layers=3 needs a model with one decoder layer; it has {layers}"
    with pytest.raises(InvalidArgumentError) as error:
        _core.Model.load(str(path), {"repeat_layers": 3})
    assert str(error.value) == message
    for count in (-1, 1025):
        with pytest.raises(InvalidArgumentError) as error:
            _core.Model.load(str(path), {"repeat_layers": count})
        want = f"options: repeat_layers must be 0 (off) or 1 to 1024, got {count}"
        assert str(error.value) == want


def test_big_model_bench_measures_copies_of_one_layer_end_to_end_on_the_cpu(
    tmp_path: Path,
) -> None:
    work, out = tmp_path / "one-layer", tmp_path / "big.json"
    done = run_bench(
        "big_model.py",
        *("--work", work, "--shape", "tiny-llama", "--layers", 4, "--device", "cpu"),
        *("--budget-gib", 0.05, "--context", 64, "--new", 4, "--json", out),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert json.loads((work / "config.json").read_text())["num_hidden_layers"] == 1
    assert (work.with_name("one-layer-df11") / "slimrt.json").exists()
    phases = [p["phase"] for p in results["phases"]]
    assert phases[:2] == ["write the one-layer BF16 directory", "slimrt compress"]

    # Four layers' bytes in the arena: the BF16 model weighs what a four-layer directory of the
    # same shape does, and more than the one layer alone.
    models = {m["weights"]: m for m in results["models"]}
    assert set(models) == {"df11", "bf16"}
    four = tmp_path / "four-layers"
    made = run_bench("make_random_model.py", "tiny-llama", four, "--layers", 4)
    assert made.returncode == 0, made.stderr[-3000:]
    assert models["bf16"]["weight_bytes"] == _core.Model.load(str(four)).weight_bytes
    assert models["bf16"]["weight_bytes"] > _core.Model.load(str(work)).weight_bytes
    for m in models.values():
        assert m["error"] is None and m["num_layers"] == 4
        assert "one layer copied into 4 (repeat_layers)" in m["summary"]
    assert models["df11"]["df11_matrices"] == 4 * 7 + 2
    assert models["df11"]["weight_bytes"] < models["bf16"]["weight_bytes"]

    budget = {(b["weights"], b["kv_sparsity"]): b for b in results["budget"]}
    assert set(budget) == {("df11", 0.0), ("df11", 0.7), ("bf16", 0.0), ("bf16", 0.7)}
    for b in budget.values():
        assert "error" not in b and b["budget_gib"] == 0.05 and b["capacity_tokens"] > 0, b
    # The KV of four layers per token, and a sparse pool holding more tokens than a dense one.
    assert budget["bf16", 0.0]["kv_bytes_per_token"] == 2 * 4 * 2 * 16 * 2
    assert budget["bf16", 0.0]["capacity_vs_bf16_dense"] == 1.0
    assert (
        budget["df11", 0.7]["capacity_vs_bf16_dense"]
        > budget["df11", 0.0]["capacity_vs_bf16_dense"]
    )

    rows = results["long_context"]
    assert {(r["weights"], r["kv_sparsity"], r["batch"]) for r in rows} == {
        (w, s, b) for w in ("df11", "bf16") for s in (0.0, 0.7) for b in (1, 16)
    }
    for r in rows:
        assert r["error"] is None and r["decode_tokens_per_s"] > 0, r
        assert r["context_tokens"] == 64
    sparse = next(r for r in rows if r["kv_sparsity"] == 0.7 and r["batch"] == 16)
    assert sparse["kv_usage"]["peak_compressed_pages_used"] > 0
    for table in ("| phase | seconds |", "Longest single-sequence context", "Long context"):
        assert table in done.stdout

    # The directory is reused only if it is the one asked for.
    again = run_bench(
        "big_model.py",
        *("--work", work, "--shape", "tiny-llama", "--seed", 1, "--device", "cpu"),
        *("--budget-gib", 0.05),
    )
    assert again.returncode == 1
    assert again.stderr.strip().splitlines()[-1] == (
        f"{work}: not the one-layer tiny-llama of seed 1 (differs in slimrt_random_weights_seed); "
        "remove it or pass another --work"
    )


def test_a_model_that_does_not_load_is_every_row_s_typed_error(tiny_model_dir, capsys) -> None:
    """As BF16 will be on the GPU if its 131 GiB do not fit: here a model of several layers,
    which repeat_layers refuses; the refusal is each of the format's rows, and the run goes on."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import big_model
    finally:
        sys.path.remove(str(REPO / "bench"))
    path, _ = tiny_model_dir("llama")
    meta = {"shape": "tiny", "layers": 4, "seed": 0, "device": "CPU", "commit": "x"}
    report = big_model.Report(meta | {"torch": "x", "date": "x", "new": 4}, None)
    report.results |= {"phases": [], "models": []}
    args = argparse.Namespace(
        device="cpu",
        layers=4,
        kv_sparsity=[0.0, 0.7],
        kv_window=None,
        long_batches=[1, 16],
        long_context=64,
        new=4,
        budget_gib=0.05,
        margin_gib=1.0,
    )
    big_model.measure_format(report, "bf16", path, args)
    layers = json.loads((path / "config.json").read_text())["num_hidden_layers"]
    error = (
        f"InvalidArgumentError: {path}: repeat_layers=4 needs a model with one decoder layer; it "
        f"has {layers}"
    )
    results = report.results
    assert results["models"] == [{"weights": "bf16", "source": str(path), "error": error}]
    assert [(b["kv_sparsity"], b["error"]) for b in results["budget"]] == [
        (0.0, error),
        (0.7, error),
    ]
    assert [(r["kv_sparsity"], r["batch"], r["error"]) for r in results["long_context"]] == [
        (s, b, error) for s in (0.0, 0.7) for b in (1, 16)
    ]
    big_model.print_results(results)
    assert f"| bf16 | | | | | {error} |" in capsys.readouterr().out
