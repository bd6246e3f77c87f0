"""`slimrt compress` killed with SIGKILL at each of its crash points (slimrt.crash_point): OUT_DIR
is then as it was (absent, or the directory being overwritten) or complete and verifiable; what
the killed run left behind does not stop a rerun, which removes it and verifies.

The killed process stops itself at the named point and the test sends the SIGKILL, so every run
dies at the same place, whatever the machine's speed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from slimrt.crash_point import CRASH_POINT_VARIABLE
from slimrt.verify_model import verify_model

_SHARDS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]


def _compress(source: Path, out: Path, *options: str, crash_at: str | None = None):
    command = [sys.executable, "-m", "slimrt", "compress", str(source), str(out)]
    command += ["--no-progress", "--threads", "1", *options]
    env = dict(os.environ)
    env.pop(CRASH_POINT_VARIABLE, None)
    if crash_at is not None:
        env[CRASH_POINT_VARIABLE] = crash_at
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )


def _stop_at(point: str, source: Path, out: Path, *options: str) -> subprocess.Popen:
    """Runs compress until it has stopped itself at `point` (checked)."""
    process = _compress(source, out, *options, crash_at=point)
    assert process.stderr is not None
    line = process.stderr.readline()
    if line != f"slimrt: crash point {point}\n":
        process.kill()
        process.wait()
        pytest.fail(f"compress did not reach {point}: {line}{process.stderr.read()}")
    return process


def _sigkill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    assert process.wait(60) == -signal.SIGKILL


def _rerun(source: Path, out: Path, *options: str) -> None:
    process = _compress(source, out, *options)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err


def _verifies(out: Path, source: Path) -> bool:
    report = verify_model(out, source, num_threads=1, progress=False)
    return report.ok and report.files != []


def _temp_files(temp: Path) -> set[str]:
    return {p.name for p in temp.iterdir()}


_BEFORE_RENAME = ["atomic_dir:created", "safetensors:partial", "atomic_dir:rename"]


@pytest.mark.parametrize("point", _BEFORE_RENAME)
def test_a_compress_killed_before_its_rename_leaves_no_out_dir(
    point: str, sharded_bf16: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    process = _stop_at(point, sharded_bf16, out)
    temp = tmp_path / f".out.tmp-{process.pid}"
    written = _temp_files(temp)
    sizes = {name: (temp / name).stat().st_size for name in written}
    _sigkill(process)
    assert {p.name for p in tmp_path.iterdir()} == {temp.name}  # no out, the debris only
    _rerun(sharded_bf16, out)
    assert {p.name for p in tmp_path.iterdir()} == {"out"}
    assert _verifies(out, sharded_bf16)
    # Where the kill came: nothing written yet; the first shard's own temp file part written;
    # everything written (what the rerun's out holds), only the rename left.
    expected = {
        "atomic_dir:created": set(),
        "safetensors:partial": {f".{_SHARDS[0]}.tmp-{process.pid}"},
        "atomic_dir:rename": _temp_files(out),
    }
    assert written == expected[point]
    if point == "safetensors:partial":
        assert sizes[f".{_SHARDS[0]}.tmp-{process.pid}"] < (out / _SHARDS[0]).stat().st_size


@pytest.mark.parametrize("point", [*_BEFORE_RENAME, "atomic_dir:renamed"])
def test_a_compress_killed_while_overwriting_leaves_the_old_or_the_new_out_dir(
    point: str, sharded_bf16: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("the directory being replaced")
    process = _stop_at(point, sharded_bf16, out, "--overwrite")
    _sigkill(process)
    debris = tmp_path / f".out.tmp-{process.pid}"
    assert {p.name for p in tmp_path.iterdir()} == {"out", debris.name}
    if point == "atomic_dir:renamed":
        # Swapped in one step: out is the new directory, the old one waits under the temp name.
        assert _verifies(out, sharded_bf16)
        assert _temp_files(debris) == {"old.txt"}
    else:
        assert _temp_files(out) == {"old.txt"}
        assert (out / "old.txt").read_text() == "the directory being replaced"
    _rerun(sharded_bf16, out, "--overwrite")
    assert {p.name for p in tmp_path.iterdir()} == {"out"}
    assert _verifies(out, sharded_bf16)


def test_a_temp_dir_of_a_live_process_is_left_alone(sharded_bf16: Path, tmp_path: Path) -> None:
    # Another compress of the same OUT_DIR, still running (stopped at its first point): a rerun
    # must not delete its work.
    out = tmp_path / "out"
    process = _stop_at("atomic_dir:created", sharded_bf16, out)
    try:
        _rerun(sharded_bf16, out)
        assert (tmp_path / f".out.tmp-{process.pid}").is_dir()
    finally:
        _sigkill(process)
    assert _verifies(out, sharded_bf16)
