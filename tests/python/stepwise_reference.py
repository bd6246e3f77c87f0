"""transformers run the way the engine runs a request: the same chunks, one forward pass each
over its KV cache. Where a model's forward pass depends on the chunking (LongRoPE picks its
frequencies from the longest position of each pass), this is the reference; elsewhere it equals
one forward pass over the whole sequence to FP32 noise.

    logits = hf_chunk_logits(model, ids, [1, 19, 1, 1])   # [chunks][vocab]
"""

from __future__ import annotations

import numpy as np
import torch


def hf_chunk_logits(model: torch.nn.Module, ids: list[int], chunks: list[int]) -> np.ndarray:
    """The logits of the last token of each chunk of `ids` (chunk sizes `chunks`)."""
    cache, rows, start = None, [], 0
    with torch.no_grad():
        for size in chunks:
            step = torch.tensor([ids[start : start + size]])
            result = model(input_ids=step, past_key_values=cache, use_cache=True)
            cache = result.past_key_values
            rows.append(result.logits[0, -1].numpy())
            start += size
    assert start == len(ids)
    return np.stack(rows)


def engine_batched_logits(
    engine, prompts: list[list[int]], follow: list[list[int]]
) -> list[np.ndarray]:
    """Every prompt prefilled in one step, then the tokens of `follow` (one list per prompt,
    equally long) decoded in steps of one token per sequence: each sequence's logits after its
    prompt and after each token, [1 + len(follow[i])][vocab]."""
    assert len({len(f) for f in follow}) == 1
    seqs = [engine.add_sequence() for _ in prompts]
    rows: list[list[np.ndarray]] = [[] for _ in prompts]
    try:
        flat = [t for p in prompts for t in p]
        for i, logits in enumerate(engine.step(seqs, flat, [len(p) for p in prompts])):
            rows[i].append(np.asarray(logits))
        for n in range(len(follow[0])):
            out = engine.step(seqs, [f[n] for f in follow], [1] * len(seqs))
            for i, logits in enumerate(out):
                rows[i].append(np.asarray(logits))
    finally:
        for seq in seqs:
            engine.release_sequence(seq)
    return [np.stack(r) for r in rows]
