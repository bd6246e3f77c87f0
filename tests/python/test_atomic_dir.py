"""build_dir_atomically replacing an existing directory: in one renameat2 swap where the file
system has it, by two renames where it has not (killed between them, OUT_DIR would be absent;
tests/python/test_compress_kill.py kills the swap), and leaving nothing else behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import slimrt.atomic_dir
from slimrt.atomic_dir import build_dir_atomically


def _replace(out: Path) -> None:
    out.mkdir()
    (out / "old.txt").write_text("old")
    with build_dir_atomically(out, overwrite=True) as temp:
        (temp / "new.txt").write_text("new")


def test_an_existing_directory_is_swapped_for_the_new_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    swapped = []
    exchange = slimrt.atomic_dir._exchange
    monkeypatch.setattr(
        slimrt.atomic_dir, "_exchange", lambda a, b: swapped.append(exchange(a, b)) or swapped[-1]
    )
    _replace(tmp_path / "out")
    assert swapped == [True]  # Linux on ext4, tmpfs, xfs, btrfs: one atomic step
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["new.txt"]


def test_without_an_atomic_swap_two_renames_replace_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    swaps = []
    monkeypatch.setattr(slimrt.atomic_dir, "_exchange", lambda a, b: swaps.append(a) or False)
    _replace(tmp_path / "out")
    assert len(swaps) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["new.txt"]


def test_a_symlinked_out_dir_is_replaced_by_a_directory(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "out").symlink_to(target)
    with build_dir_atomically(tmp_path / "out", overwrite=True) as temp:
        (temp / "new.txt").write_text("new")
    out = tmp_path / "out"
    assert out.is_dir() and not out.is_symlink() and target.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere", "out"]
