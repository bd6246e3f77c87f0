"""How `slimrt serve` runs: its address, key, queue and limits; and what it needs installed.

    options = ServerOptions(port=8000, api_key="secret", model_name="smollm2")

Kept apart from slimrt.server so that the command line can offer these options (and say what
is missing) without importing FastAPI.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

__all__ = ["ServerOptions", "missing_packages"]

# What the server runs on, beyond slimrt's own dependencies (the `serve` extra).
_PACKAGES = {
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "sse_starlette": "sse-starlette",
    "prometheus_client": "prometheus-client",
}


def missing_packages() -> list[str]:
    """The packages of the `serve` extra that are not installed."""
    return [name for module, name in _PACKAGES.items() if importlib.util.find_spec(module) is None]


@dataclass(frozen=True)
class ServerOptions:
    """host: the address to bind (loopback unless told otherwise).
    api_key: when set, /v1/ routes need "Authorization: Bearer <api_key>".
    model_name: the id clients name in "model".
    max_waiting: requests waiting for a slot before new ones get 429.
    shutdown_timeout: seconds running requests get to finish after SIGTERM.
    max_body_bytes: the largest request body accepted (413 beyond).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    model_name: str = "slimrt"
    max_waiting: int = 256
    shutdown_timeout: float = 30.0
    max_body_bytes: int = 4 * 1024 * 1024
