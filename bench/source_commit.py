"""The commit a benchmark measured: SLIMRT_GIT_COMMIT when set (the GPU machine's copy of the
tree has no usable .git), else `git rev-parse` of this checkout, "-dirty" when tracked files
differ from it, "unknown" without git."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def source_commit() -> str:
    if os.environ.get("SLIMRT_GIT_COMMIT"):
        return os.environ["SLIMRT_GIT_COMMIT"]
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        changes = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if changes else "")
