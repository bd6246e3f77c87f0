"""Perplexity of the default model (SmolLM2-135M-Instruct) on a real English text with the
bitmap-sparse KV cache, scored decode-style: windows of --window tokens, every window a
sequence of one batch, one token per sequence per engine step, so that each token is scored
after the ones before it went through the cache (pruned once they left the kv_window).

    python bench/sparse_perplexity.py [--text /usr/share/common-licenses/GPL-3] [--window 1024]

Prints a markdown table: K and V sparsity, KV bytes per token (compressed pages, all layers),
tokens scored, perplexity.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import slimrt

# (label, LLM options): dense first, then compression at s = 0 (which must equal it), then
# the sparsities and K/V splits of issue 9.
SETTINGS = [
    ("dense", {}),
    ("0 / 0", {"kv_sparsity": 0.0}),
    ("0.3 / 0.3", {"kv_sparsity": 0.3}),
    ("0.5 / 0.5", {"kv_sparsity": 0.5}),
    ("0.7 / 0.7", {"kv_sparsity": 0.7}),
    ("0.5 / 0.7", {"k_sparsity": 0.5, "v_sparsity": 0.7}),
    ("0.7 / 0.5", {"k_sparsity": 0.7, "v_sparsity": 0.5}),
]


def score(llm: slimrt.LLM, windows: list[list[int]]) -> tuple[float, int]:
    """Sum of -log p(next token) over every window, and the tokens scored."""
    engine = llm.engine
    seq_ids = np.array([engine.add_sequence() for _ in windows], dtype=np.int64)
    counts = np.ones(len(windows), dtype=np.int32)
    nll = 0.0
    scored = 0
    for t in range(len(windows[0]) - 1):
        tokens = np.array([w[t] for w in windows], dtype=np.int32)
        logits = np.asarray(engine.step(seq_ids, tokens, counts), dtype=np.float64)
        top = logits.max(axis=1, keepdims=True)
        log_z = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
        targets = np.array([w[t + 1] for w in windows])
        nll += float((log_z - logits[np.arange(len(windows)), targets]).sum())
        scored += len(windows)
    for s in seq_ids:
        engine.release_sequence(int(s))
    return nll, scored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", default="/usr/share/common-licenses/GPL-3")
    parser.add_argument("--window", type=int, default=1024)
    parser.add_argument("--kv-window", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with open(args.text, encoding="utf-8") as f:
        text = f.read()
    rows = []
    for label, options in SETTINGS:
        llm = slimrt.LLM(
            weights="bf16",
            num_threads=args.threads,
            progress=False,
            kv_window=args.kv_window,
            # Room for every window at once, also at s = 0 (records larger than dense rows).
            kv_tokens=2 * 8 * args.window,
            **options,
        )
        ids = llm.tokenizer.encode(text)
        windows = [
            ids[i : i + args.window] for i in range(0, len(ids) - args.window + 1, args.window)
        ]
        windows = windows[: llm.max_batch]
        start = time.perf_counter()
        nll, scored = score(llm, windows)
        seconds = time.perf_counter() - start
        memory = llm.memory()
        per_token = memory["kv_compressed_bytes_per_token"] or memory["kv_dense_bytes_per_token"]
        rows.append((label, per_token, memory["kv_dense_bytes_per_token"], scored, nll, seconds))
        print(f"{label}: ppl {math.exp(nll / scored):.4f} ({seconds:.0f} s)", flush=True)
    print(f"\n{len(ids)} tokens of {args.text}; {len(windows)} windows of {args.window}")
    print("\n| K / V sparsity | KV bytes/token | % of dense | tokens scored | perplexity |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, per_token, dense, scored, nll, _ in rows:
        print(
            f"| {label} | {per_token:.0f} | {100 * per_token / dense:.1f} | {scored} | "
            f"{math.exp(nll / scored):.4f} |"
        )


if __name__ == "__main__":
    main()
