"""A real `slimrt serve` process on a free loopback port, for tests that talk to it over HTTP.

    with ServeProcess(model_dir, "--max-batch", "4") as server:
        client = server.client()                 # the openai package's OpenAI client
        server.metrics()["slimrt_kv_pages_used"]
        server.requests_by_status()["499"]

The process binds port 0 and says where it listens on stderr; the test reads that line, so it
never guesses a port or waits a fixed time for the server to come up.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

STARTUP_S = 120  # loading the model included, on a busy 2-core machine
_READY = re.compile(r"^slimrt: serving (\S+) at (\S+)$")
_ANSWERED = re.compile(r'^slimrt_requests_total\{.*status="(\d+)"\} (\S+)$', re.M)


class ServeProcess:
    def __init__(self, model: Path | str | None, *args: str, env: dict[str, str] | None = None):
        command = [sys.executable, "-m", "slimrt", "serve"]
        command += [str(model)] if model is not None else []
        command += ["--port", "0", "--no-progress", "--threads", "2", *args]
        self.command = command
        self.env = {**os.environ, **(env or {})}
        self.stderr_lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.model_name = ""

    def __enter__(self) -> ServeProcess:
        self.process = subprocess.Popen(
            self.command, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=self.env
        )
        ready = threading.Event()

        def read() -> None:  # keeps the pipe drained for the process's whole life
            assert self.process is not None and self.process.stderr is not None
            for line in self.process.stderr:
                self.stderr_lines.append(line.rstrip("\n"))
                match = _READY.match(line.strip())
                if match:
                    self.model_name, self.url = match.group(1), match.group(2)
                    ready.set()
            ready.set()  # the process ended

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not ready.wait(STARTUP_S) or not self.url:
            self.stop()
            raise AssertionError("slimrt serve did not start:\n" + "\n".join(self.stderr_lines))
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then the exit code (killed if it does not end within timeout)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        self._reader.join(timeout)
        return code

    def client(self, api_key: str = "unused", **options: object):
        from openai import OpenAI

        options = {"timeout": 120, "max_retries": 0, **options}
        return OpenAI(base_url=self.url, api_key=api_key, **options)

    @property
    def root(self) -> str:
        return self.url.removesuffix("/v1")

    def http(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, bytes]:
        """A raw request (path from the root: "/v1/completions"): status and body."""
        request = urllib.request.Request(
            self.root + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def metrics(self) -> dict[str, float]:
        """The unlabelled samples of /metrics, by name."""
        text = self.http("GET", "/metrics")[1].decode()
        values = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if line and not line.startswith("#") and "{" not in name:
                values[name] = float(value)
        return values

    def requests_by_status(self) -> Counter[str]:
        """The server's own count of the requests it answered (slimrt_requests), by status."""
        counts: Counter[str] = Counter()
        text = self.http("GET", "/metrics")[1].decode()
        for match in _ANSWERED.finditer(text):
            counts[match.group(1)] += int(float(match.group(2)))
        return counts

    def wait_for_metric(self, name: str, value: float, timeout: float = 30) -> None:
        """Polls /metrics until `name` reads `value`: the server changes it on its own loop
        thread, and nothing outside the process can wait on that event."""
        deadline = time.monotonic() + timeout
        while (seen := self.metrics()[name]) != value:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} is {seen}, not {value}, after {timeout} s")
            time.sleep(0.05)
