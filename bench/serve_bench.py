"""Serving throughput and latency of slimrt serve, llama-cpp-python's server and llama.cpp's
llama-server, side by side.

    python bench/serve_bench.py                         # SmolLM2 GGUF, concurrency 1 4 16
    python bench/serve_bench.py --servers slimrt --concurrency 1 16 --max-tokens 32
    python bench/serve_bench.py --concurrency --rates 2 8     # open loop only
    python bench/serve_bench.py --shared-prefix-tokens 1000   # TTFT with a prefix cache, without

llama-server is built on first use from the llama.cpp sources that llama-cpp-python's source
package vendors (pip download of llama-cpp-python==0.3.36, then CMake with -DLLAMA_CURL=OFF,
target llama-server: about 10 minutes on 2 cores) into build/llama-server, which git ignores,
and reused after; it runs with --parallel 16 -cb (continuous batching over 16 slots).

With --shared-prefix-tokens N every request starts with the same system prompt of about N
tokens (a seeded list of words; the table's note gives the prompt tokens the servers counted),
and slimrt runs twice: with its prefix cache and with --no-prefix-caching.

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
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
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
    prompt_tokens: int = 0  # as the server's usage counts them (0: it reported none)


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


def prompts(seed: int, count: int, shared_prefix_tokens: int = 0) -> list[list[dict]]:
    """`count` chat requests from `seed`; with shared_prefix_tokens, all start with the same
    system prompt of that many words (from another seed, so every level shares it)."""
    rng = random.Random(seed)
    system = []
    if shared_prefix_tokens:
        words = random.Random(-1).choices(_WORDS, k=shared_prefix_tokens)
        system = [{"role": "system", "content": " ".join(words)}]

    def request() -> list[dict]:
        words = " ".join(rng.choices(_WORDS, k=rng.randint(8, 40)))
        return [*system, {"role": "user", "content": f"Write a short story about {words}."}]

    return [request() for _ in range(count)]


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


def slimrt_server(model: Path, threads: int, max_batch: int, *, prefix_caching: bool) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "slimrt", "serve", str(model), "--port", str(port)]
    command += ["--threads", str(threads), "--max-batch", str(max_batch), "--no-progress"]
    if not prefix_caching:
        command.append("--no-prefix-caching")
    name = "slimrt" if prefix_caching else "slimrt --no-prefix-caching"
    return Server(name, command, port, model.stem)


def llama_cpp_python_server(model: Path, threads: int, context: int) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model)]
    command += ["--port", str(port), "--n_threads", str(threads), "--n_ctx", str(context)]
    # By default a new request interrupts the running one, which then ends with no text: the
    # requests are queued instead, so that every one completes as on slimrt.
    command += ["--interrupt_requests", "False"]
    return Server("llama-cpp-python", command, port, str(model))


LLAMA_CPP_PYTHON_VERSION = "0.3.36"
_LLAMA_SERVER_DIR = Path(__file__).resolve().parent.parent / "build" / "llama-server"


def _made_whole(target: Path, make: Callable[[Path], object]) -> None:
    """Runs make(folder) on a temporary folder beside target, then renames it to target: target
    exists only complete."""
    partial = Path(tempfile.mkdtemp(dir=target.parent))
    try:
        make(partial)
        os.replace(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def llama_server_binary() -> Path:
    """llama.cpp's llama-server, built the first time into build/llama-server (module
    docstring); each step's result is moved into place whole, so an interrupted build is
    redone, never half reused."""
    binary = _LLAMA_SERVER_DIR / "llama-server"
    if binary.is_file():
        return binary
    _LLAMA_SERVER_DIR.mkdir(parents=True, exist_ok=True)
    download = _LLAMA_SERVER_DIR / "download"
    if not download.is_dir():
        print(f"downloading llama-cpp-python {LLAMA_CPP_PYTHON_VERSION}'s source", file=sys.stderr)
        _made_whole(
            download,
            lambda folder: subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                 "llama-cpp-python", f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}", "-d",
                 str(folder)],
                check=True,
            ),
        )  # fmt: skip
    source = _LLAMA_SERVER_DIR / "source"
    if not source.is_dir():
        archive = next(download.glob("llama_cpp_python-*.tar.gz"))

        def extract(folder: Path) -> None:
            with tarfile.open(archive) as tar:
                tar.extractall(folder, filter="data")

        _made_whole(source, extract)
    llama_cpp = next(source.glob("*/vendor/llama.cpp"))
    build = _LLAMA_SERVER_DIR / "cmake"
    print(f"building llama-server from {llama_cpp} (about 10 minutes on 2 cores)", file=sys.stderr)
    subprocess.run(
        # Static: the one binary moved into place runs without the build folder's libraries.
        ["cmake", "-S", str(llama_cpp), "-B", str(build), "-DLLAMA_CURL=OFF",
         "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF"],
        check=True,
    )  # fmt: skip
    jobs = str(os.cpu_count() or 2)
    subprocess.run(
        ["cmake", "--build", str(build), "--target", "llama-server", "-j", jobs], check=True
    )
    partial_binary = binary.with_suffix(".partial")
    shutil.copy2(build / "bin" / "llama-server", partial_binary)
    os.replace(partial_binary, binary)
    return binary


def llama_server(model: Path, threads: int, parallel: int, slot_context: int) -> Server:
    port = free_port()
    command = [str(llama_server_binary()), "--model", str(model), "--host", "127.0.0.1"]
    command += ["--port", str(port), "-t", str(threads), "--parallel", str(parallel), "-cb"]
    # -c is the context of all slots together: each slot gets slot_context tokens.
    command += ["-c", str(parallel * slot_context)]
    return Server("llama-server", command, port, model.stem)


def one_request(client: object, model: str, messages: list[dict], max_tokens: int) -> Sample:
    start = time.perf_counter()
    stream = client.chat.completions.create(  # type: ignore[attr-defined]
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    arrivals, usage, prompt_tokens = [], None, 0
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
            prompt_tokens = chunk.usage.prompt_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter())
    if not arrivals:
        raise RuntimeError(f"{model}: no text for {messages!r}")
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    tokens = usage if usage is not None else len(arrivals)
    return Sample(arrivals[0] - start, gaps, tokens, prompt_tokens)


def run_level(server: Server, concurrency: int, per_client: int, args: argparse.Namespace):
    from openai import OpenAI

    texts = prompts(args.seed, concurrency * per_client, args.shared_prefix_tokens)
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

    texts = prompts(args.seed, count, args.shared_prefix_tokens)
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
        "--servers", nargs="+", choices=_SERVERS,
        help="(default: all; slimrt --no-prefix-caching only with --shared-prefix-tokens)",
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
    parser.add_argument(
        "--shared-prefix-tokens", type=int, default=0, metavar="N",
        help="every request starts with the same system prompt of about N tokens",
    )  # fmt: skip
    args = parser.parse_args()
    if args.shared_prefix_tokens < 0:
        parser.error("--shared-prefix-tokens must be >= 0")
    if args.servers is None:
        args.servers = [s for s in _SERVERS if args.shared_prefix_tokens or "no-prefix" not in s]
    if args.model is None:
        from slimrt.model_source import default_model_path

        args.model = default_model_path()
    max_batch = max([*args.concurrency, 16])
    # Room for the shared prefix, a request's own words and its output in every context.
    context = max(2048, args.shared_prefix_tokens + 512)
    makers = {
        "slimrt": lambda: slimrt_server(args.model, args.threads, max_batch, prefix_caching=True),
        "slimrt --no-prefix-caching": lambda: slimrt_server(
            args.model, args.threads, max_batch, prefix_caching=False
        ),
        # One context of 2048 tokens, as a new user starts it (the server's default).
        "llama-cpp-python": lambda: llama_cpp_python_server(args.model, args.threads, context),
        "llama-server": lambda: llama_server(args.model, args.threads, 16, context),
    }
    if "llama-server" in args.servers:
        llama_server_binary()  # built before anything is timed
    # The header first and each row as its level ends: a run stopped early keeps what it did.
    load = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    print(
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_model()}, "
        f"slimrt {source_commit()}, {args.model.name}, {args.threads} threads, "
        f"max_tokens {args.max_tokens}, temperature 0, {args.requests_per_client} requests "
        f"per client, {args.open_requests} per open-loop rate, shared prefix "
        f"{args.shared_prefix_tokens or 'none'}, load average before: {load}\n"
    )
    print("| server | clients or rate | requests | output tokens | output tok/s | TTFT p50 s "
          "| TTFT p99 s | ITL p50 ms | ITL p99 ms |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    ttft_p50: dict[tuple[str, str], float] = {}
    prompt_tokens: dict[str, set[int]] = {}
    for name in args.servers:
        with makers[name]() as server:
            # A first request's costs (allocations, thread start) are not serving; with a shared
            # prefix it also computes the prefix once, as a server that has been up a while has.
            warm_up = argparse.Namespace(
                seed=args.seed + 1, max_tokens=4, shared_prefix_tokens=args.shared_prefix_tokens
            )
            run_level(server, 1, 1, warm_up)
            levels = [
                run_level(server, c, args.requests_per_client, args) for c in args.concurrency
            ]
            for level in levels:
                print(level.row(name), flush=True)
            for rate in args.rates:
                levels.append(run_open_loop(server, rate, args.open_requests, args))
                print(levels[-1].row(name), flush=True)
            for level in levels:
                ttft_p50[name, level.load] = _pct(sorted(s.ttft for s in level.samples), 50)
                prompt_tokens.setdefault(name, set()).update(s.prompt_tokens for s in level.samples)
    if args.shared_prefix_tokens:
        print()
        for name, counts in prompt_tokens.items():
            print(f"- {name}: prompts of {min(counts)} to {max(counts)} tokens (its usage)")
        for (name, load), cached in ttft_p50.items():
            uncached = ttft_p50.get(("slimrt --no-prefix-caching", load))
            if name == "slimrt" and uncached:
                print(
                    f"- slimrt at {load}: TTFT p50 with the prefix cache {cached:.3f} s, without "
                    f"{uncached:.3f} s: {100 * cached / uncached:.0f} %"
                )
    return 0


_SERVERS = ["slimrt", "slimrt --no-prefix-caching", "llama-cpp-python", "llama-server"]


if __name__ == "__main__":
    sys.exit(main())
