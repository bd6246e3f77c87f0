"""slimrt's decode speed on the CPU alone (no peer in the process), for A/B runs of two trees in
one session: the default model, a chat prompt, EOS ignored.

    python bench/measure_cpu_decode.py NAME [--weights df11] [--threads 2] [--tokens 64] [--reps 3]

Prints `NAME` and each run's decode tokens/s, then the engine's DF11 scratch and total bytes.
"""

from __future__ import annotations

import argparse

import slimrt

PROMPT = [{"role": "user", "content": "Explain what a KV cache is in two sentences."}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--weights", default="df11")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    llm = slimrt.LLM(num_threads=args.threads, weights=args.weights, progress=False)
    params = slimrt.SamplingParams(max_tokens=args.tokens, ignore_eos=True)
    runs = [llm.chat(PROMPT, params).decode_tokens_per_s for _ in range(args.reps)]
    memory = llm.memory()
    print(
        args.name,
        " ".join(f"{r:.2f}" for r in runs),
        "df11_scratch",
        memory["df11_scratch"],
        "total",
        memory["total"],
    )


if __name__ == "__main__":
    main()
