"""Passkey retrieval with the bitmap-sparse KV cache and the default model (SmolLM2-135M-Instruct):
a 5-digit number hidden at --depths depths in filler text of each --lengths token length, asked
for at the end; greedy, success = the 5 digits appear in the output.

    python bench/passkey.py [--lengths 1024,2048,4096,6144] [--depths 10] [--threads 2]

The prompt is plain completion (LLM.generate; no chat template: at 1k tokens the model answers
a completion prompt and misses the chat-template one), the filler the usual passkey sentences
repeated, the needle "The pass key is NNNNN. Remember it. NNNNN is the pass key." put at
depth (i + 0.5) / depths of the filler (5 %..95 % for 10 depths), then "What is the pass key?
The pass key is". The passkeys come from --seed, the same for every setting. Each (setting,
length) runs its depths as one batch (LLM.generate with a list of prompts). Prints a line per
(setting, length) as it finishes, then a markdown table: success per length and overall.
"""

from __future__ import annotations

import argparse
import random
import time

import slimrt
from slimrt import SamplingParams
from source_commit import source_commit

# (label, LLM options), as in sparse_perplexity.py.
SETTINGS = [
    ("dense", {}),
    ("0.5 / 0.5", {"kv_sparsity": 0.5}),
    ("0.7 / 0.7", {"kv_sparsity": 0.7}),
    ("0.5 / 0.7", {"k_sparsity": 0.5, "v_sparsity": 0.7}),
]

FILLER = [
    "The grass is green.",
    "The sky is blue.",
    "The sun is yellow.",
    "Here we go.",
    "There and back again.",
]
NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = "What is the pass key? The pass key is"


def prompt(llm: slimrt.LLM, length: int, depth: float, key: int) -> str:
    """Filler sentences around the needle at `depth`, then the question: about `length` tokens
    in all (whole filler sentences, so within a sentence of it)."""
    sentence_tokens = len(llm.tokenizer.encode(" ".join(FILLER))) / len(FILLER)
    fixed = len(llm.tokenizer.encode(NEEDLE.format(key=key) + " " + QUESTION))
    count = max(1, round((length - fixed) / sentence_tokens))
    filler = [FILLER[i % len(FILLER)] for i in range(count)]
    at = round(depth * count)
    parts = [*filler[:at], NEEDLE.format(key=key), *filler[at:], QUESTION]
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="1024,2048,4096,6144")
    parser.add_argument("--depths", type=int, default=10)
    parser.add_argument("--settings", default=",".join(label for label, _ in SETTINGS))
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    lengths = [int(n) for n in args.lengths.split(",")]
    depths = [(i + 0.5) / args.depths for i in range(args.depths)]
    chosen = [s.strip() for s in args.settings.split(",")]
    settings = [(label, options) for label, options in SETTINGS if label in chosen]
    rng = random.Random(args.seed)
    keys = {(n, d): rng.randint(10000, 99999) for n in lengths for d in depths}
    params = SamplingParams(max_tokens=8)
    results: dict[tuple[str, int], list[bool]] = {}
    tokens: dict[int, list[int]] = {}
    for label, options in settings:
        llm = slimrt.LLM(
            weights="bf16",
            num_threads=args.threads,
            progress=False,
            max_batch=len(depths),
            kv_tokens=len(depths) * (max(lengths) + 256),
            **options,
        )
        for n in lengths:
            prompts = [prompt(llm, n, d, keys[(n, d)]) for d in depths]
            tokens[n] = [len(llm.prompt_ids(p)) for p in prompts]
            start = time.perf_counter()
            outputs = llm.generate(prompts, params)
            seconds = time.perf_counter() - start
            hits = [str(keys[(n, d)]) in out.text for d, out in zip(depths, outputs, strict=True)]
            results[(label, n)] = hits
            shown = " ".join(
                f"{100 * d:.0f}%:{o.text!r}" for d, o in zip(depths, outputs, strict=True)
            )
            print(f"{label} {n}: {sum(hits)}/{len(hits)} ({seconds:.0f} s) {shown}", flush=True)
        del llm

    print(f"\ncommit {source_commit()}; seed {args.seed}; depths", end="")
    print(" " + ", ".join(f"{100 * d:.0f} %" for d in depths))
    print("prompt tokens per length: ", end="")
    print(", ".join(f"{n}: {min(tokens[n])}-{max(tokens[n])}" for n in lengths))
    print("\n| K / V sparsity | " + " | ".join(f"{n} tokens" for n in lengths) + " | overall |")
    print("| --- |" + " ---: |" * (len(lengths) + 1))
    for label, _ in settings:
        cells = [f"{sum(results[(label, n)])}/{args.depths}" for n in lengths]
        hits = sum(sum(results[(label, n)]) for n in lengths)
        total = args.depths * len(lengths)
        overall = f"{hits}/{total} ({100 * hits / total:.0f} %)"
        print(f"| {label} | " + " | ".join(cells) + f" | {overall} |")


if __name__ == "__main__":
    main()
