"""Load time of the default model on the CPU, side by side in one run: slimrt vs llama.cpp
(llama-cpp-python, installed by the `default-model` extra) on the same GGUF file, and the wall
time of `slimrt generate "hi" --max-tokens 1` as a new user runs it (a fresh process: imports,
load, one token).

    python bench/compare_cpu_load.py [--reps 5] [--json out]

slimrt's load is `load_model(None)`: the C++ core maps and parses the GGUF, dequantizes every
tensor to BF16 into its arena, and Python builds the tokenizer from the metadata. llama.cpp's is
`Llama(path)` with a 512-token context and mmap (its default): it reads the header and maps the
quantized tensors, which it computes on directly.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

from slimrt.model_loader import load_model
from slimrt.model_source import default_model_path


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def generate_once() -> float:
    # The same interpreter and environment (PYTHONPATH included) as this script's.
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "slimrt", "generate", "hi", "--max-tokens", "1", "--no-progress"],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    from llama_cpp import Llama

    path = str(default_model_path())
    rows: dict[str, list[float]] = {"slimrt load_model": [], "llama.cpp Llama()": []}
    rows["slimrt generate hi --max-tokens 1 (process)"] = []
    for _ in range(args.reps):
        rows["slimrt load_model"].append(seconds(lambda: load_model(None, progress=False)))
        rows["llama.cpp Llama()"].append(seconds(lambda: Llama(path, n_ctx=512, verbose=False)))
        rows["slimrt generate hi --max-tokens 1 (process)"].append(generate_once())

    print(
        f"SmolLM2-135M-Instruct Q4_1 GGUF, {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, {datetime.date.today().isoformat()}\n"
    )
    print("| what | seconds (median) | min | max | runs |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, values in rows.items():
        print(
            f"| {name} | {statistics.median(values):.3f} | {min(values):.3f} | "
            f"{max(values):.3f} | {len(values)} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
