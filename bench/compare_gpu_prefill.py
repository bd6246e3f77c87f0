"""Prefill time of one long prompt on the GPU: slimrt (BF16, DF11) vs transformers' forward.

For each prompt length L in `--lengths`, one sequence of L random tokens is prefilled:
- slimrt: one engine step over the whole prompt (max_step_tokens = the longest L), returning
  the last token's logits to the host, so the step is complete when it returns;
- transformers (BF16, its default SDPA attention): `model(ids, logits_to_keep=1)`, the forward
  that `generate` runs first, then a synchronisation.
Each is run once untimed, then `--reps` times; the table gives the median, and prefill tokens/s
= L / median. Same model as bench/compare_gpu_generate.py (e.g. `bench/make_random_model.py
llama-3.1-8b DIR --device cuda`):

    python bench/compare_gpu_prefill.py MODEL_DIR [--df11-model DIR] [--weights bf16]
        [--lengths 512,4096,16384] [--reps 3] [--transformers] [--json out.json]

The markdown table goes to stdout at the end; each result is logged to stderr as it is measured
and `--json` is rewritten after each one.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import statistics
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from compare_gpu_generate import (
    WEIGHT_FORMATS,
    error_text,
    load_weights,
    log,
    release_gpu_memory,
    split_list,
)
from slimrt import _core
from source_commit import source_commit


def median_seconds(run: Callable[[], None], reps: int) -> float:
    run()  # untimed: first-use costs
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def slimrt_rows(
    fmt: str, args: argparse.Namespace, lengths: list[int], add: Callable[[dict[str, Any]], None]
) -> None:
    model, _ = load_weights(fmt, args.model, args.df11_model, "cuda")
    longest = max(lengths)
    engine = _core.Engine(
        model, {"max_batch": 1, "kv_tokens": longest + 16, "max_step_tokens": longest}
    )
    vocab = model.config.vocab_size
    for length in lengths:
        prompt = np.random.default_rng(length).integers(0, vocab, length).astype(np.int32)
        seconds = median_seconds(functools.partial(slimrt_prefill, engine, prompt), args.reps)
        add({"engine": "slimrt", "weights": fmt, "length": length, "seconds": seconds})
    engine = model = None
    release_gpu_memory(True)


def slimrt_prefill(engine: Any, prompt: np.ndarray) -> None:
    seq = engine.add_sequence()
    try:
        engine.step([seq], prompt, [len(prompt)])
    finally:
        engine.release_sequence(seq)


def transformers_prefill(model: Any, ids: torch.Tensor) -> None:
    with torch.no_grad():
        model(ids, logits_to_keep=1)
    torch.cuda.synchronize()


def transformers_rows(
    args: argparse.Namespace, lengths: list[int], add: Callable[[dict[str, Any]], None]
) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16)
    model = model.to("cuda").eval()
    for length in lengths:
        generator = torch.Generator(device="cpu").manual_seed(length)
        ids = torch.randint(0, model.config.vocab_size, (1, length), generator=generator)
        ids = ids.to("cuda")
        seconds = median_seconds(functools.partial(transformers_prefill, model, ids), args.reps)
        add({"engine": "transformers", "weights": "bf16", "length": length, "seconds": seconds})
        release_gpu_memory(True)
    model = None
    release_gpu_memory(True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="Hugging Face model directory (BF16)")
    parser.add_argument("--df11-model", help="its DF11 directory (slimrt compress)")
    parser.add_argument("--weights", default="bf16", help="slimrt weight formats")
    parser.add_argument("--lengths", default="512,4096,16384")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--transformers", action="store_true", help="also run transformers")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    lengths = [int(n) for n in split_list(args.lengths)]
    import transformers

    meta = {
        "model": args.model,
        "device": torch.cuda.get_device_name(),
        "commit": source_commit(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "date": datetime.date.today().isoformat(),
        "reps": args.reps,
    }
    rows: list[dict[str, Any]] = []

    def add(row: dict[str, Any]) -> None:
        rows.append(row)
        if "error" in row:
            log(f"{row['engine']} {row['weights']}: {row['error']}")
        else:
            log(f"{row['engine']} {row['weights']} prefill {row['length']}: {row['seconds']:.4f} s")
        if args.json:
            args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")

    for fmt in split_list(args.weights, WEIGHT_FORMATS):
        try:
            slimrt_rows(fmt, args, lengths, add)
        except Exception as e:  # one failing engine must not lose the other results
            traceback.print_exc()
            add({"engine": "slimrt", "weights": fmt, "error": error_text(e)})
    if args.transformers:
        try:
            transformers_rows(args, lengths, add)
        except Exception as e:
            traceback.print_exc()
            add({"engine": "transformers", "weights": "bf16", "error": error_text(e)})

    print(
        f"{meta['model']}: prefill of one prompt; {meta['device']}; slimrt {meta['commit']}; "
        f"torch {meta['torch']}; transformers {meta['transformers']}; median of {args.reps}; "
        f"{meta['date']}\n"
    )
    print("| engine | weights | prompt tokens | prefill ms | prefill tokens/s | note |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for r in rows:
        if "error" in r:
            print(f"| {r['engine']} | {r['weights']} | | | | {r['error'][:120]} |")
            continue
        ms = r["seconds"] * 1e3
        print(
            f"| {r['engine']} | {r['weights']} | {r['length']} | {ms:.1f} | "
            f"{r['length'] / r['seconds']:,.0f} | |"
        )


if __name__ == "__main__":
    main()
