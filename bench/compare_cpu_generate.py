"""Decode speed on the CPU, side by side in one run: slimrt vs transformers on the same weights.

Both run SmolLM2-135M-Instruct (the default model: its GGUF dequantized to BF16), greedy, from
the same chat-templated prompt, for the same number of new tokens (EOS ignored). slimrt reads
BF16 weights with FP32 activations; transformers runs the same weights widened to FP32 (its CPU
reference mode: the tensors slimrt's model holds, read back with matrix_bf16/vector_f32, as
tests/python/reference_core.py builds it) with its default `generate`.

    python bench/compare_cpu_generate.py [--tokens 128] [--threads 2] [--reps 3] [--json out]
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import slimrt
import torch

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="0 = all cores")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    llm = slimrt.LLM(num_threads=args.threads, progress=False)
    # The ids llm.chat() sends: the template writes BOS and the turn markers itself.
    text = llm.chat_template.render(PROMPT, add_generation_prompt=True)
    ids = llm.tokenizer.encode(text, add_special_tokens=False)
    # The tests' transformers twin of a slimrt model, on llm's own loaded model.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))
    from reference_core import transformers_model

    model = transformers_model(llm.model)

    rows = {"slimrt (BF16 weights)": [], "transformers (FP32)": []}
    for _ in range(args.reps):
        rows["slimrt (BF16 weights)"].append(slimrt_tokens_per_s(llm, args.tokens))
        rows["transformers (FP32)"].append(transformers_tokens_per_s(model, ids, args.tokens))

    threads = args.threads or torch.get_num_threads()
    print(
        f"SmolLM2-135M-Instruct, {len(ids)}-token prompt, {args.tokens} new tokens, greedy, "
        f"{threads} threads, {platform.processor() or platform.machine()}, "
        f"slimrt {slimrt.__version__}, torch {torch.__version__}, "
        f"{datetime.date.today().isoformat()}\n"
    )
    print("| engine | decode tokens/s (mean ± stddev) | runs |")
    print("| --- | ---: | ---: |")
    report = {}
    for name, values in rows.items():
        mean, dev = statistics.mean(values), statistics.pstdev(values)
        print(f"| {name} | {mean:.1f} ± {dev:.1f} | {len(values)} |")
        report[name] = values
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"tokens": args.tokens, "threads": threads, "results": report}, f, indent=2)


if __name__ == "__main__":
    main()
