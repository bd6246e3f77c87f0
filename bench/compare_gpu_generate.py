"""Decode tokens/s on the GPU, side by side in one run: slimrt's CUDA engine vs transformers.

Both run the same model directory (e.g. `bench/make_random_model.py llama-3.1-8b`), BF16
weights, greedy, `--prompt` random prompt tokens then `--new` generated tokens per sequence, at
each batch size. slimrt is driven one engine step at a time (what slimrt.LLM does, minus
tokenization); transformers runs its default `generate` (dynamic cache, no compilation).

    python bench/compare_gpu_generate.py MODEL_DIR [--batches 1,16] [--prompt 128] [--new 128]
        [--weights bf16|df11] [--skip-transformers] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import time

import numpy as np
import torch
from slimrt import _core
from slimrt.model_loader import load_model


def slimrt_decode(engine, batch: int, prompt: int, new: int, vocab: int) -> float:
    """Decode tokens/s over `new` steps of `batch` sequences after prefilling each."""
    rng = np.random.default_rng(batch)
    seqs = [engine.add_sequence() for _ in range(batch)]
    greedy = [_core.SamplingParams(temperature=0.0) for _ in range(batch)]
    try:
        last = []
        for seq in seqs:
            ids = rng.integers(0, vocab, prompt).astype(np.int32)
            last.append(int(engine.step([seq], ids, [prompt], [greedy[0]])[0]))
        ones = [1] * batch
        engine.step(seqs, np.array(last, np.int32), ones, greedy)  # warm-up step
        start = time.perf_counter()
        tokens = np.array(last, np.int32)
        for _ in range(new - 1):
            tokens = engine.step(seqs, tokens, ones, greedy)  # ids come back: synchronous
        return batch * (new - 1) / (time.perf_counter() - start)
    finally:
        for seq in seqs:
            engine.release_sequence(seq)


def transformers_decode(model, batch: int, prompt: int, new: int, vocab: int) -> float:
    ids = torch.randint(0, vocab, (batch, prompt), device="cuda")
    kwargs = {"do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        model.generate(ids, max_new_tokens=2, min_new_tokens=2, **kwargs)  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kwargs)
        torch.cuda.synchronize()
        first = time.perf_counter() - start
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=new, min_new_tokens=new, **kwargs)
        torch.cuda.synchronize()
        full = time.perf_counter() - start
    return batch * (new - 1) / (full - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--weights", choices=["bf16", "df11"], default="bf16")
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--device", default="cuda", help="cpu: check the script without a GPU")
    parser.add_argument("--json")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    loaded = load_model(args.model, weights=args.weights, progress=False)
    vocab = loaded.config["vocab_size"]
    gpu = args.device == "cuda"
    free_before = torch.cuda.mem_get_info()[0] if gpu else 0
    engine = _core.Engine(
        loaded.config,
        loaded.weights,
        {
            "device": args.device,
            "max_batch": max(batches),
            "kv_tokens": max(batches) * (args.prompt + args.new + 16),
            "max_step_tokens": args.prompt,
        },
    )
    del loaded
    used = free_before - torch.cuda.mem_get_info()[0] if gpu else 0
    memory = engine.memory()
    rows = []
    for b in batches:
        rows.append(
            ("slimrt", args.weights, b, slimrt_decode(engine, b, args.prompt, args.new, vocab))
        )
    del engine
    if not args.skip_transformers:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.bfloat16).cuda()
        model.eval()
        for b in batches:
            rows.append(
                (
                    "transformers generate",
                    "bf16",
                    b,
                    transformers_decode(model, b, args.prompt, args.new, vocab),
                )
            )

    name = torch.cuda.get_device_name() if gpu else "CPU"
    print(
        f"{args.model}: prompt {args.prompt}, {args.new} new tokens, greedy; {name}; "
        f"torch {torch.__version__}; {datetime.date.today().isoformat()}"
    )
    print(
        f"slimrt engine memory: {memory['total'] / 2**30:.2f} GiB "
        f"(weights {memory['weights'] / 2**30:.2f}, KV {memory['kv_pool'] / 2**30:.2f}, "
        f"activations {memory['activations'] / 2**30:.2f}, DF11 scratch "
        f"{memory['df11_scratch'] / 2**30:.2f}); GPU memory taken: {used / 2**30:.2f} GiB\n"
    )
    print("| engine | weights | batch | decode tokens/s |")
    print("| --- | --- | ---: | ---: |")
    for engine_name, weights, b, tps in rows:
        print(f"| {engine_name} | {weights} | {b} | {tps:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "memory": memory, "gpu_bytes_taken": used}, f, indent=2)


if __name__ == "__main__":
    main()
