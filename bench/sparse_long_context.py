"""The bitmap-sparse KV cache end to end on the CPU with the default model (SmolLM2-135M):
the longest context one sequence reaches in a fixed KV budget, and decode speed at a long
context, dense against sparse.

    python bench/sparse_long_context.py [--budget-mib 64] [--context 8000] [--threads 2]

Capacity: each setting's engine gets kv_tokens = the budget in dense tokens (so the same bytes);
one sequence is prefilled in chunks until the engine refuses a chunk for want of pages, and the
tokens it then holds are reported with the pool's bytes. Speed: each setting's sequence is
prefilled to --context tokens, then --rounds rounds of 32 greedy decode steps run, the settings
in turn within each round (tokens/s of each).
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


def decode_rate(engine, seq: int, token: int, steps: int = 32) -> float:
    """tokens/s of `steps` greedy decode steps of one sequence (it grows by that many)."""
    length = engine.sequence_length(seq)
    start = time.perf_counter()
    for _ in range(steps):
        logits = engine.step(
            np.array([seq], dtype=np.int64),
            np.array([token], dtype=np.int32),
            np.array([1], dtype=np.int32),
        )
        token = int(np.argmax(logits[0]))
    rate = steps / (time.perf_counter() - start)
    assert engine.sequence_length(seq) == length + steps
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-mib", type=int, default=64)
    parser.add_argument("--context", type=int, default=8000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    base = {"weights": "bf16", "num_threads": args.threads, "progress": False, "max_batch": 1}
    held, pool_mib = {}, {}
    for label, options in SETTINGS:
        per_token = slimrt.LLM(**base).memory()["kv_dense_bytes_per_token"]
        llm = slimrt.LLM(**base, kv_tokens=int(args.budget_mib * 2**20 // per_token), **options)
        engine = llm.engine
        seq = engine.add_sequence()
        feed = min(engine.kv_tokens + 16, llm.config.max_position_embeddings)
        # Chunks of 16 tokens: a refusal then comes within one page of the capacity.
        held[label] = prefill(engine, seq, text_ids(llm, feed), 16)
        engine.release_sequence(seq)
        pool_mib[label] = llm.memory()["kv_pool"] / 2**20
        if held[label] == llm.config.max_position_embeddings:
            held[label] = f"{held[label]} (the model's maximum)"

    # Each setting's sequence prefilled to --context once; then rounds of 32 decode steps in
    # turn (continuing the same sequences), so that a busy machine slows every setting alike.
    runs = []
    for label, options in SETTINGS:
        llm = slimrt.LLM(**base, kv_tokens=2 * args.context + 2048, **options)
        seq = llm.engine.add_sequence()
        ids = text_ids(llm, args.context)
        assert prefill(llm.engine, seq, ids, 512) == len(ids)
        runs.append((label, llm, seq, ids[-1]))
    rates: dict[str, list[float]] = {label: [] for label, _ in SETTINGS}
    for _ in range(args.rounds):
        for label, llm, seq, token in runs:
            rates[label].append(decode_rate(llm.engine, seq, token))
    print(f"| K / V sparsity | KV pool MiB | tokens held in {args.budget_mib} MiB |", end="")
    print(f" decode tokens/s at {args.context}+ tokens, {args.rounds} rounds |")
    print("| --- | ---: | ---: | --- |")
    for label, _ in SETTINGS:
        shown = " / ".join(f"{r:.2f}" for r in rates[label])
        print(f"| {label} | {pool_mib[label]:.1f} | {held[label]} | {shown} |")


if __name__ == "__main__":
    main()
