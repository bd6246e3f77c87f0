"""MoE decode speed on the CPU, side by side in one run: slimrt vs transformers on the same
weights of a model directory (bench/make_random_model.py qwen3-30b-a3b DIR --layers 2).

slimrt reads the BF16 weights with FP32 activations (greedy, through the engine: a prompt of
`--prompt` seeded random ids, then `--tokens` one-token steps); transformers runs the same
weights widened to FP32 (its CPU reference mode, as bench/compare_cpu_generate.py), or as BF16
with `--hf-dtype bfloat16`, with its default `generate`. Then the memory of the weights, as
slimrt's loader accounts them, with `--df11` the DF11 model's too.

    python bench/compare_moe_cpu_decode.py DIR [--tokens 32] [--threads 2] [--reps 3] [--df11]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time

import numpy as np
import slimrt
import torch
from compare_cpu_generate import transformers_tokens_per_s
from slimrt import _core
from slimrt.model_loader import load_model


def slimrt_tokens_per_s(model: _core.Model, ids: list[int], tokens: int) -> float:
    engine = _core.Engine(model, {"kv_tokens": len(ids) + tokens + 16})
    greedy = _core.SamplingParams(temperature=0.0)
    seq = engine.add_sequence()
    last = int(engine.step([seq], ids, [len(ids)], [greedy])[0])
    start = time.perf_counter()
    for _ in range(tokens - 1):
        last = int(engine.step([seq], [last], [1], [greedy])[0])
    return (tokens - 1) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="0 = all cores")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--df11", action="store_true", help="also time DF11 weights")
    parser.add_argument(
        "--hf-dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="transformers' weights (float32 needs twice the memory)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    bf16 = load_model(args.path, num_threads=args.threads, progress=False).model
    config = bf16.config
    ids = np.random.default_rng(0).integers(3, config.vocab_size, args.prompt).tolist()
    models = {"slimrt (BF16 weights)": bf16}
    if args.df11:
        models["slimrt (DF11 weights)"] = load_model(
            args.path, weights="df11", num_threads=args.threads, progress=False
        ).model
    hf_dtype = getattr(torch, args.hf_dtype)
    reference = transformers.AutoModelForCausalLM.from_pretrained(args.path, dtype=hf_dtype)
    reference.eval()

    rows: dict[str, list[float]] = {name: [] for name in models}
    hf_name = f"transformers ({'FP32' if args.hf_dtype == 'float32' else 'BF16'})"
    rows[hf_name] = []
    for _ in range(args.reps):
        for name, model in models.items():
            rows[name].append(slimrt_tokens_per_s(model, ids, args.tokens))
        rows[hf_name].append(transformers_tokens_per_s(reference, ids, args.tokens))

    threads = args.threads or torch.get_num_threads()
    print(
        f"{config.architecture}, {config.num_layers} layers of hidden {config.hidden_size}, "
        f"{config.num_experts} experts of {config.moe_intermediate_size} "
        f"({config.experts_per_token} per token), vocab {config.vocab_size}; "
        f"{args.prompt}-token prompt, {args.tokens} new tokens, greedy, {threads} threads, "
        f"{platform.processor() or platform.machine()}, slimrt {slimrt.__version__}, "
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{datetime.date.today().isoformat()}\n"
    )
    print("| engine | decode tokens/s (mean ± stddev) | runs |")
    print("| --- | ---: | ---: |")
    for name, values in rows.items():
        mean, dev = statistics.mean(values), statistics.pstdev(values)
        print(f"| {name} | {mean:.2f} ± {dev:.2f} | {len(values)} |")
    print()
    for name, model in models.items():
        print(f"{name}: weights arena {model.weight_bytes} bytes; {model.summary}")


if __name__ == "__main__":
    main()
