"""The soak's options, and the helpers it shares with tests/python (a real server process, the
tiny models)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak-seconds",
        type=float,
        default=60.0,
        help="seconds of concurrent load, warm-up included (default: 60, CI's)",
    )
