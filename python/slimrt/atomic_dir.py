"""Directories that appear complete or not at all: build in a temp dir, then rename.

with build_dir_atomically(Path("minilm-df11"), overwrite=False) as temp:
    write_files_into(temp)
# minilm-df11 now exists; had anything raised, neither it nor the temp dir would.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from slimrt.errors import ConversionError

__all__ = ["build_dir_atomically", "check_output_dir"]


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
    temp = parent / f".{out_dir.name}.tmp-{os.getpid()}"
    if temp.exists():  # left by a killed run that had our pid
        shutil.rmtree(temp)
    temp.mkdir()
    try:
        yield temp
        if os.path.lexists(out_dir):
            if not overwrite:
                raise ConversionError(f"{out_dir}: appeared while it was being written")
            old = parent / f".{out_dir.name}.old-{os.getpid()}"
            os.rename(out_dir, old)
            os.rename(temp, out_dir)
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink()
        else:
            os.rename(temp, out_dir)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
