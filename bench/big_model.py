"""The largest model on one GPU: a Llama-3.3-70B shape built in memory from one layer.

Eighty layers of Llama-3.3-70B are 131 GiB of BF16: more than the GPU machine's disk (64 GiB)
or host memory (128 GiB) holds as files. What decode speed and KV capacity depend on is the
shapes and the weights' statistics, not their values, so this writes ONE seeded random layer
(bench/make_random_model.py's conventions and distributions, with the embeddings, final norm and
lm_head: 5.9 GB of BF16), compresses it with `slimrt compress`, and loads each directory with
the core's benchmarking option `repeat_layers` (docs/ENGINE_API.md): the layer, converted once,
is copied into each of the N layers' places in the arena, N real copies in GPU memory, so the
model's weight bytes, every engine's budget and every memory figure are those of N layers.

Per weight format of `--weights` (default df11,bf16, in that order: BF16 may not fit, and its
typed "not enough memory" error is then its rows' result) and per KV sparsity of `--kv-sparsity`
(default 0,0.7; 0 is the dense cache), after one load of that format's model:
- the longest context: compare_gpu_generate.py's budget section (the largest KV pool an engine
  of max_batch 1 accepts, found by construction, and the longest single sequence), within the
  whole GPU: the budget is the model's weights plus the GPU memory free after loading it, less
  `--margin-gib` (default 1) for what the process allocates outside slimrt's arenas (the
  device's own reserve, cuBLAS's workspace, DF11 tables, CUDA graphs). `--budget-gib X` fixes it
  instead (needed with `--device cpu`). The ratio of each row's KV capacity to the BF16 dense
  row's is the issue's target (DF11 + 70 % >= 6x);
- decode tokens/s at each of `--batches` (default 1,16): compare_gpu_generate.py's long-context
  rows, every sequence prefilled to `--context` random tokens (default 1,024, so that a sparse
  cache's compressed pages are most of what attention reads) then `--new` greedy decode steps,
  the first untimed, after a warm-up pass that records the CUDA graphs.
A row the engine refuses (a pool that does not fit) is that row's error; the run goes on.

Phases (each one's seconds are in the JSON's "phases" and printed), with what to expect on the
H200 machine from rates measured there before (bench/RESULTS.md), none of it measured at this
shape yet: writing the directory draws on the GPU (make_random_model --device cuda) and writes
5.9 GB, seconds; `slimrt compress` encodes it on 16 cores at the 0.84 GB/s `slimrt-bench df11`
measured on the H100 machine's host, about 7 s plus the file's reading and writing; each load
copies the layer N times into the GPU from the page cache (131 GiB for BF16, about 88 GiB for
DF11; the 8B model's 16 GB loaded in 2.2-3.0 s on the H200, so some 20-25 s each) and, for DF11,
decodes and checksums every copy on the GPU (0.6 s for the 8B model's 7.5 G weights, so some 6
s); each budget row constructs up to a dozen engines (the model's own probe, then refusals,
which cost nothing, and up to three fits); each decode row prefills batch x context tokens (16 k
for batch 16) plus a warm-up sequence through N layers, then `--new` steps twice. In all a few
minutes; the directories are reused when they exist (written atomically), so a second call skips
the first two phases.
bench/run_gpu.sh runs this as its `ONLY_BIG=1` section under its DEADLINE_S, and the JSON is
rewritten after every row, so a run cut short keeps what it measured.

    python bench/big_model.py [--work /tmp/llama70b] [--shape llama-3.3-70b] [--layers 80]
        [--weights df11,bf16] [--kv-sparsity 0,0.7] [--batches 1,16] [--context 1024]
        [--new 32] [--budget-gib X | --margin-gib 1] [--device cuda|cpu] [--json out.json]

On a machine without a GPU: `... --work /tmp/tiny --shape tiny-llama --layers 4 --device cpu
--budget-gib 0.05 --context 64 --new 4` checks every phase in seconds (memory columns empty).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from compare_gpu_generate import (
    GIB,
    GpuFree,
    Report,
    error_text,
    gib,
    kv_options,
    log,
    measure_budget,
    measure_long_context,
    print_budget,
    print_long_context,
    release_gpu_memory,
    split_list,
)
from make_random_model import SHAPES, write_model
from slimrt import _core
from slimrt.errors import InvalidArgumentError
from source_commit import source_commit

FORMATS = ("df11", "bf16")


def write_one_layer(shape: str, out: Path, seed: int, device: str) -> float | None:
    """Seconds to write the one-layer BF16 directory of `shape`; None when it exists (it is
    checked to be that shape's one layer, drawn with that seed)."""
    if (out / "config.json").exists():
        check_one_layer(shape, out, seed)
        log(f"{out}: exists, reused")
        return None
    start = time.perf_counter()
    write_model(shape, out, seed, 1, device)
    return time.perf_counter() - start


def check_one_layer(shape: str, out: Path, seed: int) -> None:
    config = json.loads((out / "config.json").read_text())
    want = SHAPES[shape] | {"num_hidden_layers": 1, "slimrt_random_weights_seed": seed}
    differ = [key for key, value in want.items() if config.get(key) != value]
    if differ:
        raise SystemExit(
            f"{out}: not the one-layer {shape} of seed {seed} (differs in {', '.join(differ)}); "
            "remove it or pass another --work"
        )


def compress(source: Path, out: Path) -> float | None:
    """Seconds of `slimrt compress SOURCE OUT` on every core; None when OUT exists."""
    if (out / "config.json").exists():
        log(f"{out}: exists, reused")
        return None
    start = time.perf_counter()
    command = [sys.executable, "-m", "slimrt", "compress", str(source), str(out)]
    # Its table goes to the log: stdout is the report's markdown.
    subprocess.run(
        [*command, "--threads", str(os.cpu_count()), "--no-progress"], check=True, stdout=sys.stderr
    )
    return time.perf_counter() - start


def whole_gpu_budget_gib(weight_bytes: int, margin_gib: float) -> float:
    """The model's weights (0 before it loads) plus the GPU memory free beside them, less the
    margin."""
    return (weight_bytes + torch.cuda.mem_get_info()[0]) / GIB - margin_gib


@contextmanager
def phase(report: Report, name: str) -> Iterator[None]:
    """Records the seconds of the block as the phase `name`."""
    start = time.perf_counter()
    yield
    report.add("phases", {"phase": name, "seconds": time.perf_counter() - start})


def measure_format(report: Report, fmt: str, source: Path, args: argparse.Namespace) -> None:
    """One load of `fmt`'s model with args.layers copies of its layer, then its budget and
    decode rows. A load that fails (BF16 beyond the GPU) is every row's error."""
    gpu = args.device == "cuda"
    release_gpu_memory(gpu)
    free = GpuFree(gpu)
    before = free.now()
    options = {"device": args.device, "weights": fmt, "repeat_layers": args.layers}
    log(f"loading {source} as {args.layers} layers, {fmt} weights")
    start = time.perf_counter()
    try:
        model = _core.Model.load(str(source), options)
    except Exception as e:
        traceback.print_exc()
        report.add("models", {"weights": fmt, "source": str(source), "error": error_text(e)})
        budget = args.budget_gib or whole_gpu_budget_gib(0, args.margin_gib)
        for sparsity in args.kv_sparsity:
            entry = {"weights": fmt, "kv_sparsity": sparsity, "error": error_text(e)}
            report.add("budget", entry | {"budget_gib": budget})
            for b in args.long_batches:
                report.add_long_row(entry | {"context_tokens": args.long_context, "batch": b})
        return
    load_s = time.perf_counter() - start
    report.add(
        "models",
        {
            "weights": fmt,
            "source": str(source),
            "summary": model.summary,
            "num_layers": model.config.num_layers,
            "weight_bytes": model.weight_bytes,
            "df11_matrices": model.df11_matrices,
            "load_s": load_s,
            "gpu_bytes_taken": None if before is None else before - free.now(),
            "error": None,
        },
    )
    report.add("phases", {"phase": f"load {fmt}", "seconds": load_s})
    sections = argparse.Namespace(**vars(args))
    if args.budget_gib is None:
        sections.budget_gib = whole_gpu_budget_gib(model.weight_bytes, args.margin_gib)
    with phase(report, f"longest context {fmt}"):
        measure_budget(report, fmt, sections, model)
    with phase(report, f"decode {fmt}"):
        measure_long_context(report, fmt, sections, model)
    del model
    release_gpu_memory(gpu)


def print_results(results: dict[str, Any]) -> None:
    meta = results["meta"]
    print(
        f"{meta['shape']} as {meta['layers']} copies of one seeded layer (seed {meta['seed']}); "
        f"{meta['device']}; slimrt {meta['commit']}; torch {meta['torch']}; {meta['date']}\n"
    )
    print("| phase | seconds |\n| --- | ---: |")
    for p in results["phases"]:
        print(f"| {p['phase']} | {p['seconds']:.1f} |")
    print(
        "\n| weights | layers | weights GiB | GPU GiB taken by the load | load s | note |\n"
        "| --- | ---: | ---: | ---: | ---: | --- |"
    )
    for m in results["models"]:
        if m["error"]:
            print(f"| {m['weights']} | | | | | {m['error'].replace('|', '/')} |")
            continue
        print(
            f"| {m['weights']} | {m['num_layers']} | {gib(m['weight_bytes'])} | "
            f"{gib(m['gpu_bytes_taken'])} | {m['load_s']:.1f} | |"
        )
    print_budget(results)
    print_long_context(results)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/llama70b"), help="BF16 dir")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama-3.3-70b")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, help="copies of the layer (the shape's count)")
    parser.add_argument("--weights", default="df11,bf16")
    parser.add_argument("--kv-sparsity", default="0,0.7")
    parser.add_argument("--kv-window", type=int, help="dense newest tokens (engine default)")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--context", type=int, default=1024, help="tokens per sequence")
    parser.add_argument("--new", type=int, default=32)
    parser.add_argument("--budget-gib", type=float, help="default: the whole GPU")
    parser.add_argument("--margin-gib", type=float, default=1.0)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.layers is None:
        args.layers = SHAPES[args.shape]["num_hidden_layers"]
    if args.layers < 1:
        raise SystemExit(f"--layers must be at least 1, got {args.layers}")
    args.weights = split_list(args.weights, FORMATS)
    args.kv_sparsity = [float(s) for s in split_list(args.kv_sparsity)]
    args.long_batches = [int(b) for b in split_list(args.batches)]
    args.long_context = args.context
    if not args.weights or not args.kv_sparsity or not args.long_batches:
        raise SystemExit("--weights, --kv-sparsity and --batches need at least one value each")
    if args.budget_gib is None and args.device != "cuda":
        raise SystemExit("--device cpu needs --budget-gib (the whole-GPU budget is CUDA's)")
    if args.budget_gib is not None and args.budget_gib <= 0:
        raise SystemExit(f"--budget-gib must be positive, got {args.budget_gib:g}")
    if args.new < 2:
        raise SystemExit("--new must be at least 2 (one warm-up step, then timed steps)")
    for sparsity in args.kv_sparsity:
        try:  # the core's checks, before anything is written
            _core.EngineOptions.from_dict(kv_options(sparsity, args.kv_window))
        except InvalidArgumentError as e:
            raise SystemExit(f"--kv-sparsity {sparsity:g}: {e}") from None
    return args


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    gpu = args.device == "cuda"
    GpuFree(gpu).now()  # creates torch's CUDA context now, so no later figure includes it
    report = Report(
        {
            "shape": args.shape,
            "layers": args.layers,
            "seed": args.seed,
            "work": str(args.work),
            "weights": args.weights,
            "kv_sparsity": args.kv_sparsity,
            "kv_window": args.kv_window,
            "context": args.context,
            "new": args.new,
            "batches": args.long_batches,
            "budget_gib": args.budget_gib,
            "margin_gib": None if args.budget_gib else args.margin_gib,
            "device": torch.cuda.get_device_name() if gpu else "CPU",
            "commit": source_commit(),
            "torch": torch.__version__,
            "date": datetime.date.today().isoformat(),
        },
        args.json,
    )
    report.results |= {"phases": [], "models": []}
    df11_dir = args.work.with_name(args.work.name + "-df11")
    written = write_one_layer(args.shape, args.work, args.seed, args.device)
    if written is not None:
        report.add("phases", {"phase": "write the one-layer BF16 directory", "seconds": written})
    if "df11" in args.weights:
        compressed = compress(args.work, df11_dir)
        if compressed is not None:
            report.add("phases", {"phase": "slimrt compress", "seconds": compressed})
    for fmt in args.weights:
        measure_format(report, fmt, df11_dir if fmt == "df11" else args.work, args)
    print_results(report.results)


if __name__ == "__main__":
    main()
