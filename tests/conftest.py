"""Command-line options of the test suites, here so that pytest knows them however it is
started (`pytest tests/soak`, `pytest tests`)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak-seconds",
        type=float,
        default=60.0,
        help="tests/soak: seconds of concurrent load, warm-up included (default: 60, CI's)",
    )
