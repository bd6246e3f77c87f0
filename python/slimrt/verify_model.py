"""Proves a slimrt model directory lossless against the model it was made from.

    report = verify_model("llama-df11", "llama-bf16")
    print(report.text()); exit(0 if report.ok else 1)

Every DF11 tensor is decoded and compared bit for bit with the source (with the source's BF16
cast where slimrt.json records one), its CRC-32 is recomputed, every plain tensor and every
copied file is compared byte for byte.
"""

from __future__ import annotations

import filecmp
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from slimrt import _core, df11
from slimrt.bfloat16 import round_to_bf16
from slimrt.compress_model import read_manifest
from slimrt.errors import FormatError
from slimrt.model_dir import INDEX_SUFFIX, MANIFEST_NAME, scan_model_dir
from slimrt.safetensors_file import SafetensorsFile, TensorInfo, read_safetensors

from .progress import byte_progress

__all__ = ["FileResult", "VerifyReport", "verify_model"]


@dataclass
class FileResult:
    name: str
    problems: list[str] = field(default_factory=list)
    df11_tensors: int = 0
    plain_tensors: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class VerifyReport:
    files: list[FileResult]
    identical_files: int = 0  # copied files found byte-identical

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.files)

    def text(self) -> str:
        lines = []
        for f in self.files:
            if f.ok and not f.df11_tensors + f.plain_tensors:
                lines.append(f"{f.name}: OK")
            elif f.ok:
                lines.append(
                    f"{f.name}: OK ({f.df11_tensors} DF11 tensors bit-exact, "
                    f"{f.plain_tensors} plain tensors equal)"
                )
            else:
                lines.append(f"{f.name}: FAILED")
                lines.extend(f"  {problem}" for problem in f.problems)
        lines.append(f"{self.identical_files} other files identical")
        lines.append("all tensors bit-exact" if self.ok else "verification FAILED")
        return "\n".join(lines)


def verify_model(
    out_dir: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    *,
    num_threads: int = 0,
    progress: bool = True,
) -> VerifyReport:
    """Compares out_dir (made by compress_model) with model_dir. Problems in out_dir are
    collected in the report; a missing or malformed model_dir raises."""
    out_path, source_path = Path(out_dir), Path(model_dir)
    if not out_path.is_dir():
        raise FileNotFoundError(2, "no such directory", str(out_path))
    source = scan_model_dir(source_path)
    manifest = read_manifest(out_path)
    recorded = manifest["tensors"] if manifest else {}
    cast = {name for name, record in recorded.items() if record.get("cast")}

    sources: dict[str, tuple[SafetensorsFile, TensorInfo]] = {}
    for shard in source.shards:
        file = read_safetensors(source_path / shard)
        for name, info in file.tensors.items():
            sources[name] = (file, info)

    out_shards = sorted(p.name for p in out_path.glob("*.safetensors"))
    checked: set[str] = set()  # names found in out_dir, or in a shard that could not be read
    total = sum(info.nbytes for _, info in sources.values())
    with byte_progress(total, "verify", enabled=progress) as bar:
        results = [
            _verify_shard(out_path / shard, sources, cast, checked, num_threads, bar)
            for shard in out_shards
        ]
    _report_missing(sources, checked, results, out_shards)

    identical = 0
    for relative in source.other_files:
        copy = out_path / relative
        if not copy.is_file():
            results.append(FileResult(relative, ["file is missing"]))
        elif not filecmp.cmp(source_path / relative, copy, shallow=False):
            results.append(FileResult(relative, ["differs from the source"]))
        else:
            identical += 1
    if source.index_name:
        results.append(_check_index(out_path, source.index_name, out_shards))
    return VerifyReport(results, identical)


def _verify_shard(
    path: Path,
    sources: dict[str, tuple[SafetensorsFile, TensorInfo]],
    cast: set[str],
    checked: set[str],
    num_threads: int,
    bar: tqdm,
) -> FileResult:
    result = FileResult(path.name)
    try:
        file = df11.read(path)
    except FormatError as e:
        result.problems.append(str(e))
        # Its tensors are not "missing": the file is broken, which is said once above.
        checked.update(n for n, (f, _) in sources.items() if f.path.name == path.name)
        return result
    for name, stored in file.tensors.items():
        checked.add(name)
        if name not in sources:
            result.problems.append(f"tensor {name!r} is not in the source model")
            continue
        source_file, info = sources[name]
        if source_file.path.name != path.name:
            result.problems.append(
                f"tensor {name!r} is stored in {path.name}, the source has it in "
                f"{source_file.path.name}"
            )
            continue
        problem = _compare(
            name, stored, file.dtypes[name], source_file, info, name in cast, num_threads
        )
        if problem:
            result.problems.append(problem)
        elif isinstance(stored, df11.Df11Tensor):
            result.df11_tensors += 1
        else:
            result.plain_tensors += 1
        bar.update(info.nbytes)
    return result


def _report_missing(
    sources: dict[str, tuple[SafetensorsFile, TensorInfo]],
    checked: set[str],
    results: list[FileResult],
    out_shards: list[str],
) -> None:
    by_name = {r.name: r for r in results}
    for name, (file, _) in sources.items():
        if name in checked:
            continue
        shard = file.path.name
        if shard not in by_name:
            by_name[shard] = FileResult(shard)
            results.append(by_name[shard])
        result = by_name[shard]
        if shard in out_shards:
            result.problems.append(f"tensor {name!r} of the source is missing")
        elif "file is missing" not in result.problems:
            result.problems.append("file is missing")


def _compare(
    name: str,
    stored: df11.Df11Tensor | np.ndarray,
    stored_dtype: str,
    source_file: SafetensorsFile,
    info: TensorInfo,
    cast: bool,
    num_threads: int,
) -> str | None:
    """The problem with one tensor, or None when it matches the source bit for bit."""
    source = source_file.array(name)
    if info.dtype != stored_dtype:
        if not (cast and stored_dtype == "BF16"):
            return (
                f"tensor {name!r}: stored as {stored_dtype}, source is {info.dtype} "
                f"and {MANIFEST_NAME} records no cast"
            )
        source = round_to_bf16(source)
    if isinstance(stored, df11.Df11Tensor):
        decoded = stored.decompress(verify=False, num_threads=num_threads)
        crc = _core.crc32(decoded.reshape(-1).view(np.uint8))
        if crc != stored.crc32:
            return (
                f"tensor {name!r}: decoded CRC-32 {crc:#010x} differs from the stored "
                f"{stored.crc32:#010x} (corrupt DF11 data)"
            )
        stored = decoded
    if stored.shape != source.shape:
        return f"tensor {name!r}: shape {list(stored.shape)}, source has {list(source.shape)}"
    a, b = _bits(stored), _bits(source)
    differs = np.flatnonzero(a != b)
    if differs.size:
        first = int(differs[0])
        width = 2 * a.dtype.itemsize
        return (
            f"tensor {name!r}: {differs.size} of {a.size} values differ (first at flat index "
            f"{first}: {int(a[first]):#0{width + 2}x}, source {int(b[first]):#0{width + 2}x})"
        )
    return None


def _bits(array: np.ndarray) -> np.ndarray:
    # Compares bit patterns, not values: NaN == NaN and -0 != +0 here.
    return array.reshape(-1).view(f"<u{array.dtype.itemsize}")


def _check_index(out_path: Path, index_name: str, out_shards: list[str]) -> FileResult:
    """The rewritten index must map every stored tensor to the shard holding it."""
    result = FileResult(index_name)
    path = out_path / index_name
    if not index_name.endswith(INDEX_SUFFIX) or not path.is_file():
        result.problems.append("file is missing")
        return result
    try:
        weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
    except (ValueError, KeyError, TypeError) as e:
        result.problems.append(f"not a valid index ({e})")
        return result
    actual = {}
    for shard in out_shards:
        try:
            actual.update(dict.fromkeys(read_safetensors(out_path / shard).tensors, shard))
        except FormatError:
            continue  # reported with the shard itself
    if weight_map != actual:
        wrong = sorted(set(weight_map.items()) ^ set(actual.items()))[:3]
        result.problems.append(f"weight_map disagrees with the shards, e.g. {wrong}")
    return result
