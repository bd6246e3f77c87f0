"""The bitmap-sparse KV cache end to end on the CPU with the default model (SmolLM2-135M):
the longest context one sequence reaches in a fixed KV budget, and decode speed at a long
context, dense against sparse.

    python bench/sparse_long_context.py [--budget-mib 64] [--context 8000] [--threads 2]

Capacity: each setting's engine gets kv_tokens = the budget in dense tokens (so the same bytes);
one sequence is prefilled in chunks until the engine refuses a chunk for want of pages, and the
tokens it then holds are reported with the pool's bytes. Speed: a sequence is prefilled to
--context tokens, then 32 greedy decode steps are timed (tokens/s over them).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import slimrt
from slimrt.errors import OutOfMemoryError

SETTINGS = [("dense", {}), ("0.5 / 0.5", {"kv_sparsity": 0.5}), ("0.7 / 0.7", {"kv_sparsity": 0.7})]


def text_ids(llm: slimrt.LLM, n: int) -> list[int]:
    with open("/usr/share/common-licenses/GPL-3", encoding="utf-8") as f:
        ids = llm.tokenizer.encode(f.read())
    return (ids * (n // len(ids) + 1))[:n]


def prefill(engine, seq: int, ids: list[int], chunk: int) -> int:
    """Feeds ids in chunks; returns how many went in before the pool refused one (all: len)."""
    done = 0
    while done < len(ids):
        part = ids[done : done + chunk]
        try:
            engine.step(
                np.array([seq], dtype=np.int64),
                np.array(part, dtype=np.int32),
                np.array([len(part)], dtype=np.int32),
            )
        except OutOfMemoryError:
            return done
        done += len(part)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-mib", type=int, default=64)
    parser.add_argument("--context", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print("| K / V sparsity | KV pool MiB | tokens held at the budget | decode tokens/s at", end="")
    print(f" {args.context} tokens |\n| --- | ---: | ---: | ---: |")
    for label, options in SETTINGS:
        probe = slimrt.LLM(weights="bf16", num_threads=args.threads, progress=False, max_batch=1)
        per_token = probe.memory()["kv_dense_bytes_per_token"]
        kv_tokens = int(args.budget_mib * 2**20 // per_token)
        llm = slimrt.LLM(
            weights="bf16",
            num_threads=args.threads,
            progress=False,
            max_batch=1,
            kv_tokens=kv_tokens,
            **options,
        )
        engine = llm.engine
        limit = min(engine.kv_tokens, llm.config.max_position_embeddings)
        seq = engine.add_sequence()
        # Chunks of 16 tokens: a refusal then comes within one page of the capacity.
        feed = min(limit + 16, llm.config.max_position_embeddings)
        held = prefill(engine, seq, text_ids(llm, feed), 16)
        engine.release_sequence(seq)
        pool_mib = llm.memory()["kv_pool"] / 2**20

        fast = slimrt.LLM(
            weights="bf16",
            num_threads=args.threads,
            progress=False,
            max_batch=1,
            kv_tokens=2 * args.context,
            **options,
        )
        engine = fast.engine
        seq = engine.add_sequence()
        ids = text_ids(fast, args.context)
        assert prefill(engine, seq, ids, 512) == len(ids)
        token = ids[-1]
        start = time.perf_counter()
        for _ in range(32):
            logits = engine.step(
                np.array([seq], dtype=np.int64),
                np.array([token], dtype=np.int32),
                np.array([1], dtype=np.int32),
            )
            token = int(np.argmax(logits[0]))
        rate = 32 / (time.perf_counter() - start)
        engine.release_sequence(seq)
        capped = " (the model's maximum)" if held == llm.config.max_position_embeddings else ""
        print(f"| {label} | {pool_mib:.1f} | {held}{capped} | {rate:.2f} |", flush=True)


if __name__ == "__main__":
    main()
