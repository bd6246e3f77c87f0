"""Decode speed on the CPU, side by side in one run: slimrt (BF16, and DF11 with --df11) against
transformers on the same weights, and llama.cpp on the same file with --llama-cpp.

All run SmolLM2-135M-Instruct (the default model), greedy, from the same chat-templated prompt
ids, for the same number of new tokens (EOS ignored), the engines taking turns in each round.
slimrt dequantizes the GGUF's Q4_1 weights to BF16 and computes with FP32 activations (DF11:
the same BF16 values, compressed in memory and decoded as they are multiplied); transformers
runs the same weights widened to FP32 (its CPU reference mode: the tensors slimrt's model holds,
read back with matrix_bf16/vector_f32, as tests/python/reference_core.py builds it) with its
default `generate`; llama.cpp (llama-cpp-python) computes on the Q4_1 file itself, so it reads
about 4.5 bits per weight where slimrt reads 16 (BF16) or about 11 (DF11).

    python bench/compare_cpu_generate.py [--tokens 128] [--threads 2] [--reps 3] [--df11]
        [--llama-cpp] [--json out.json]

--json writes a bench/results file (bench/plot.py draws it): the means as one bar panel with
the machine, commit, date and command, and every run's figure under "samples".
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import slimrt
import torch
from cpu_model import cpu_model
from slimrt.model_source import default_model_path
from source_commit import source_commit

PROMPT = [{"role": "user", "content": "Explain what a KV cache is in two sentences."}]


def slimrt_tokens_per_s(llm: slimrt.LLM, tokens: int) -> float:
    out = llm.chat(PROMPT, slimrt.SamplingParams(max_tokens=tokens, ignore_eos=True))
    return out.decode_tokens_per_s


def transformers_tokens_per_s(model: torch.nn.Module, ids: list[int], tokens: int) -> float:
    # generate() does prefill, then tokens - 1 decode steps; time the decode part by
    # subtracting a 1-token run (prefill + first token) from the full run.
    prompt = torch.tensor([ids])
    kwargs = {"do_sample": False, "min_new_tokens": tokens, "pad_token_id": 0}
    with torch.no_grad():
        start = time.perf_counter()
        model.generate(prompt, max_new_tokens=1, **{**kwargs, "min_new_tokens": 1})
        first = time.perf_counter() - start
        start = time.perf_counter()
        model.generate(prompt, max_new_tokens=tokens, **kwargs)
        full = time.perf_counter() - start
    return (tokens - 1) / (full - first)


def llama_cpp_runner(threads: int, ids: list[int], tokens: int) -> Callable[[], float]:
    try:
        from llama_cpp import Llama
    except ImportError:
        raise SystemExit(
            "compare_cpu_generate.py: --llama-cpp needs llama-cpp-python "
            "(pip install llama-cpp-python==0.3.36, a source build of llama.cpp)"
        ) from None
    model = Llama(
        str(default_model_path()), n_threads=threads, n_ctx=len(ids) + tokens + 8, verbose=False
    )

    def run() -> float:
        # Llama.generate yields one sampled id per step and never stops by itself (no EOS
        # check): the clock starts at the first id, when the prompt has been processed.
        start = 0.0
        for made, _ in enumerate(model.generate(ids, top_k=1, temp=0.0, reset=True), 1):
            if made == 1:
                start = time.perf_counter()
            if made == tokens:
                break
        return (tokens - 1) / (time.perf_counter() - start)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="0 = all cores")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--df11", action="store_true", help="also slimrt with DF11 weights")
    parser.add_argument("--llama-cpp", action="store_true", help="also llama.cpp on the GGUF")
    parser.add_argument("--json", help="also write the results here (a bench/results file)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = args.threads or torch.get_num_threads()

    llm = slimrt.LLM(num_threads=args.threads, progress=False)
    # The ids llm.chat() sends: the template writes BOS and the turn markers itself.
    text = llm.chat_template.render(PROMPT, add_generation_prompt=True)
    ids = llm.tokenizer.encode(text, add_special_tokens=False)
    # The tests' transformers twin of a slimrt model, on llm's own loaded model.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
    from reference_core import transformers_model

    model = transformers_model(llm.model)

    engines: dict[str, Callable[[], float]] = {
        "slimrt (BF16 weights)": lambda: slimrt_tokens_per_s(llm, args.tokens)
    }
    if args.df11:
        df11_llm = slimrt.LLM(num_threads=args.threads, weights="df11", progress=False)
        engines["slimrt (DF11 weights)"] = lambda: slimrt_tokens_per_s(df11_llm, args.tokens)
    engines["transformers (FP32)"] = lambda: transformers_tokens_per_s(model, ids, args.tokens)
    if args.llama_cpp:
        engines["llama.cpp (Q4_1 file)"] = llama_cpp_runner(threads, ids, args.tokens)

    rows: dict[str, list[float]] = {name: [] for name in engines}
    load_before = os.getloadavg()[0]
    for _ in range(args.reps):
        for name, run in engines.items():
            rows[name].append(run())

    # On a shared machine the load says how far to trust the absolute figures.
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    machine = f"{cpu_model()}, {threads} threads, {load}"
    commit = source_commit()
    date = datetime.date.today().isoformat()
    print(
        f"SmolLM2-135M-Instruct, {len(ids)}-token prompt, {args.tokens} new tokens, greedy, "
        f"{machine}, slimrt {slimrt.__version__} at {commit}, torch {torch.__version__}, {date}\n"
    )
    print("| engine | decode tokens/s (mean ± stddev) | runs |")
    print("| --- | ---: | ---: |")
    for name, values in rows.items():
        mean, dev = statistics.mean(values), statistics.pstdev(values)
        print(f"| {name} | {mean:.1f} ± {dev:.1f} | {len(values)} |")
    if args.json:
        panel = {
            "title": f"decode tokens/s, {args.tokens} new tokens, mean of {args.reps} runs",
            "machine": machine,
            "commit": commit,
            "date": date,
            "source": "bench/compare_cpu_generate.py",
            "command": "python bench/compare_cpu_generate.py " + " ".join(sys.argv[1:]),
            "kind": "bar",
            "y_label": "decode tokens/s",
            "categories": list(rows),
            "series": [
                {"label": "mean", "y": [round(statistics.mean(v), 2) for v in rows.values()]}
            ],
        }
        results = {
            "title": "Decode on the CPU: SmolLM2-135M-Instruct, greedy, one run",
            "panels": [panel],
            "samples": rows,
        }
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
