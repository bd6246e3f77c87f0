"""Named points in slimrt's file writers where a test can SIGKILL the process, to prove that
what they write survives a crash (tests/python/test_compress_kill.py).

    crash_point("atomic_dir:rename")     # nothing happens unless a test asked for this point

With SLIMRT_CRASH_POINT=NAME in its environment, a process that reaches NAME writes
"slimrt: crash point NAME" to stderr and stops itself with SIGSTOP, so the test kills it at
exactly that point rather than after a sleep that races; nothing else reads the variable.
The points: atomic_dir:created (the temp dir exists, nothing written), safetensors:partial (a
shard's header and first tensor written, the rest not), atomic_dir:rename (all written, before
the rename), atomic_dir:renamed (after it, before an overwritten directory is removed).
"""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["CRASH_POINT_VARIABLE", "crash_point"]

CRASH_POINT_VARIABLE = "SLIMRT_CRASH_POINT"


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_POINT_VARIABLE) != name:
        return
    sys.stderr.write(f"slimrt: crash point {name}\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGSTOP)
