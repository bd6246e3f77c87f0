"""Directories that appear complete or not at all: build in a temp dir, then rename.

with build_dir_atomically(Path("minilm-df11"), overwrite=False) as temp:
    write_files_into(temp)
# minilm-df11 now exists; had anything raised, neither it nor the temp dir would.

A process killed at any point (SIGKILL, power aside) leaves out_dir as it was or complete: an
existing out_dir is swapped with the new one in a single renameat2(RENAME_EXCHANGE) on Linux.
What a killed run leaves, its `.NAME.tmp-<pid>` dir, the next run removes.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from slimrt.crash_point import crash_point
from slimrt.errors import ConversionError

__all__ = ["build_dir_atomically", "check_output_dir"]

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # linux/fs.h


def check_output_dir(out_dir: Path, *, overwrite: bool) -> None:
    """Fails early, before any work, when out_dir may not be written."""
    if os.path.lexists(out_dir) and not overwrite:
        raise ConversionError(f"{out_dir}: already exists (pass --overwrite to replace it)")
    if not out_dir.absolute().parent.is_dir():
        raise FileNotFoundError(2, "parent directory does not exist", str(out_dir.parent))


@contextmanager
def build_dir_atomically(out_dir: Path, *, overwrite: bool) -> Iterator[Path]:
    """Yields `.NAME.tmp-<pid>` next to out_dir; renames it to out_dir when the block succeeds.

    An existing out_dir is an error unless overwrite, and is replaced only after success. The
    temp dir sits next to out_dir so the final rename stays on one file system.
    """
    out_dir = Path(out_dir)
    check_output_dir(out_dir, overwrite=overwrite)
    parent = out_dir.absolute().parent
    _remove_left_by_killed_runs(parent, out_dir.name)
    temp = parent / f".{out_dir.name}.tmp-{os.getpid()}"
    temp.mkdir()
    crash_point("atomic_dir:created")
    try:
        yield temp
        crash_point("atomic_dir:rename")
        if os.path.lexists(out_dir):
            if not overwrite:
                raise ConversionError(f"{out_dir}: appeared while it was being written")
            _replace(out_dir, temp, parent / f".{out_dir.name}.old-{os.getpid()}")
        else:
            os.rename(temp, out_dir)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _replace(out_dir: Path, temp: Path, old: Path) -> None:
    """Puts temp in out_dir's place and removes what was there."""
    if _exchange(temp, out_dir):
        old = temp  # the old directory now has the temp name
    else:  # no atomic swap here: a crash between the renames leaves out_dir absent, old kept
        os.rename(out_dir, old)
        os.rename(temp, out_dir)
    crash_point("atomic_dir:renamed")
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old)
    else:
        old.unlink()


def _exchange(a: Path, b: Path) -> bool:
    """Swaps two paths in one step (Linux renameat2); False where the system has no such call."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False  # a file system without RENAME_EXCHANGE
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def _remove_left_by_killed_runs(parent: Path, name: str) -> None:
    # A temp dir whose process is gone (or has our pid, reused) is a killed run's; a live
    # process's may be another compress writing the same name, and stays.
    pattern = re.compile(rf"\.{re.escape(name)}\.tmp-(\d+)")
    for entry in parent.iterdir():
        match = pattern.fullmatch(entry.name)
        if match and not _alive_other_process(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


def _alive_other_process(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's
        return True
    return True
