"""Running the CLI in-process from tests, and reading its one-line errors."""

from __future__ import annotations

import pytest
from slimrt.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("slimrt: error: "), err
    return lines[0]
