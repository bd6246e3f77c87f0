"""Serving throughput and latency of slimrt serve and llama-cpp-python's server, side by side.

    python bench/serve_bench.py                         # SmolLM2 GGUF, concurrency 1 4 16
    python bench/serve_bench.py --servers slimrt --concurrency 1 16 --max-tokens 32
    python bench/serve_bench.py --concurrency --rates 2 8     # open loop only

Each server is started on the same GGUF file with the same thread count, then driven closed
loop: C clients, each sending its requests one after the other (chat, streamed, temperature
0), for C in --concurrency; then open loop: requests arriving at each of --rates per second.
The prompts and arrival times come from a fixed seed, so every server and every run gets the
same ones. Reported per server and load: output tokens per second over the wall time, time to
first token and inter-token latency (p50, p99), as a markdown table with the machine, the date
and the commit. Both servers stop at EOS; tokens are counted from the usage they report.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import itertools
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cpu_model import cpu_model
from source_commit import source_commit

_WORDS = [
    "the", "a", "model", "runtime", "memory", "page", "cache", "token", "weight", "stream",
    "river", "mountain", "city", "story", "small", "large", "quick", "slow", "bright", "dark",
    "ancient", "modern", "music", "light", "garden", "window", "letter", "morning", "evening",
    "winter", "summer", "friend", "teacher", "question", "answer",
]  # fmt: skip


@dataclass
class Sample:
    ttft: float
    gaps: list[float]
    tokens: int


@dataclass
class Level:
    load: str  # "C" clients closed loop, or "R/s" open loop
    wall_s: float
    samples: list[Sample] = field(default_factory=list)

    def row(self, server: str) -> str:
        tokens = sum(s.tokens for s in self.samples)
        ttft = sorted(s.ttft for s in self.samples)
        gaps = sorted(g for s in self.samples for g in s.gaps)
        return (
            f"| {server} | {self.load} | {len(self.samples)} | {tokens} "
            f"| {tokens / self.wall_s:.1f} | {_pct(ttft, 50):.3f} | {_pct(ttft, 99):.3f} "
            f"| {1000 * _pct(gaps, 50):.1f} | {1000 * _pct(gaps, 99):.1f} |"
        )


def _pct(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


def prompts(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return [
        "Write a short story about " + " ".join(rng.choices(_WORDS, k=rng.randint(8, 40))) + "."
        for _ in range(count)
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process on a loopback port, started and waited for."""

    def __init__(self, name: str, command: list[str], port: int, model: str) -> None:
        self.name, self.command, self.port, self.model = name, command, port, model

    def __enter__(self) -> Server:
        self.process = subprocess.Popen(
            self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 300
        while True:  # neither server says when it is up in a way both share: ask it
            try:
                with urllib.request.urlopen(self.url + "/models", timeout=5):
                    return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not start: {self.command}") from None
                time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def slimrt_server(model: Path, threads: int, max_batch: int) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "slimrt", "serve", str(model), "--port", str(port)]
    command += ["--threads", str(threads), "--max-batch", str(max_batch), "--no-progress"]
    return Server("slimrt", command, port, model.stem)


def llama_cpp_python_server(model: Path, threads: int, context: int) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model)]
    command += ["--port", str(port), "--n_threads", str(threads), "--n_ctx", str(context)]
    # By default a new request interrupts the running one, which then ends with no text: the
    # requests are queued instead, so that every one completes as on slimrt.
    command += ["--interrupt_requests", "False"]
    return Server("llama-cpp-python", command, port, str(model))


def one_request(client: object, model: str, prompt: str, max_tokens: int) -> Sample:
    start = time.perf_counter()
    stream = client.chat.completions.create(  # type: ignore[attr-defined]
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    arrivals, usage = [], None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter())
    if not arrivals:
        raise RuntimeError(f"{model}: no text for {prompt!r}")
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    return Sample(arrivals[0] - start, gaps, usage if usage is not None else len(arrivals))


def run_level(server: Server, concurrency: int, per_client: int, args: argparse.Namespace):
    from openai import OpenAI

    texts = prompts(args.seed, concurrency * per_client)
    client = OpenAI(base_url=server.url, api_key="bench", max_retries=0, timeout=600)
    barrier = threading.Barrier(concurrency)  # every client starts at once

    def client_loop(index: int) -> list[Sample]:
        barrier.wait()
        mine = texts[index * per_client : (index + 1) * per_client]
        return [one_request(client, server.model, p, args.max_tokens) for p in mine]

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(client_loop, range(concurrency)))
    level = Level(str(concurrency), time.perf_counter() - start)
    level.samples = [s for r in results for s in r]
    return level


def run_open_loop(server: Server, rate: float, count: int, args: argparse.Namespace) -> Level:
    """`count` requests arriving at `rate` per second on average (Poisson, seeded), each sent
    when due whatever is still running."""
    from openai import OpenAI

    texts = prompts(args.seed, count)
    rng = random.Random(args.seed)
    due = list(itertools.accumulate(rng.expovariate(rate) for _ in range(count)))
    client = OpenAI(base_url=server.url, api_key="bench", max_retries=0, timeout=600)
    start = time.perf_counter()

    def send(index: int) -> Sample:
        time.sleep(max(0.0, start + due[index] - time.perf_counter()))  # the arrival schedule
        return one_request(client, server.model, texts[index], args.max_tokens)

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        samples = list(pool.map(send, range(count)))
    return Level(f"{rate:g}/s", time.perf_counter() - start, samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="a GGUF file (default: SmolLM2-135M Q4_1)")
    parser.add_argument(
        "--servers", nargs="+", default=["slimrt", "llama-cpp-python"],
        choices=["slimrt", "llama-cpp-python"],
    )  # fmt: skip
    parser.add_argument("--concurrency", nargs="*", type=int, default=[1, 4, 16])
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument(
        "--rates", nargs="*", type=float, default=[], help="open loop: requests per second"
    )
    parser.add_argument("--open-requests", type=int, default=32, help="per open-loop rate")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.model is None:
        from slimrt.model_source import default_model_path

        args.model = default_model_path()
    max_batch = max([*args.concurrency, 16])
    makers = {
        "slimrt": lambda: slimrt_server(args.model, args.threads, max_batch),
        # One context of 2048 tokens, as a new user starts it (the server's default).
        "llama-cpp-python": lambda: llama_cpp_python_server(args.model, args.threads, 2048),
    }
    # The header first and each row as its level ends: a run stopped early keeps what it did.
    load = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    print(
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_model()}, "
        f"slimrt {source_commit()}, {args.model.name}, {args.threads} threads, "
        f"max_tokens {args.max_tokens}, temperature 0, {args.requests_per_client} requests "
        f"per client, {args.open_requests} per open-loop rate, load average before: {load}\n"
    )
    print("| server | clients or rate | requests | output tokens | output tok/s | TTFT p50 s "
          "| TTFT p99 s | ITL p50 ms | ITL p99 ms |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    for name in args.servers:
        with makers[name]() as server:
            # A first request's costs (allocations, thread start) are not serving.
            run_level(server, 1, 1, argparse.Namespace(seed=args.seed + 1, max_tokens=4))
            for concurrency in args.concurrency:
                level = run_level(server, concurrency, args.requests_per_client, args)
                print(level.row(name), flush=True)
            for rate in args.rates:
                print(run_open_loop(server, rate, args.open_requests, args).row(name), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
