"""Converts a Hugging Face model directory into a slimrt model directory.

    report = compress_model("llama-bf16", "llama-df11")
    print(report.table())

Every BF16 2-D weight (embeddings, projections, lm_head) becomes a DF11 tensor; every other
tensor is copied as it is, and so is every other file. Shard names stay; the index json maps
the new stored tensor names. slimrt.json records what was done, for `slimrt verify`.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from slimrt import df11
from slimrt.atomic_dir import build_dir_atomically, check_output_dir
from slimrt.bfloat16 import round_to_bf16
from slimrt.errors import ConversionError, FormatError, LossyCastWarning
from slimrt.model_dir import MANIFEST_NAME, ModelDir, scan_model_dir
from slimrt.safetensors_file import SafetensorsFile, TensorInfo, read_safetensors

from .progress import byte_progress

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_VERSION",
    "CompressionReport",
    "TensorRecord",
    "compress_model",
    "read_manifest",
]

MANIFEST_FORMAT = "slimrt-model"
MANIFEST_VERSION = 1
CASTABLE_DTYPES = ("F16", "F32", "F64")


@dataclass
class TensorRecord:
    """What happened to one tensor; slimrt.json holds one per tensor."""

    file: str
    storage: str  # "df11" or "plain"
    dtype: str  # logical dtype of what is stored ("BF16" for DF11)
    source_dtype: str
    shape: list[int]
    source_bytes: int
    stored_bytes: int
    cast: bool = False  # rounded to BF16 from source_dtype
    crc32: int | None = None  # DF11 only: CRC-32 of the BF16 bytes


@dataclass
class CompressionReport:
    source: Path
    out_dir: Path
    tensors: dict[str, TensorRecord] = field(default_factory=dict)
    # file name -> (source bytes, stored bytes), for shards and copied files alike
    files: dict[str, tuple[int, int]] = field(default_factory=dict)
    shards: list[str] = field(default_factory=list)

    @property
    def cast_count(self) -> int:
        return sum(r.cast for r in self.tensors.values())

    def manifest(self) -> dict:
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "created_by": f"slimrt {_version()}",
            "source": str(self.source.resolve()),
            "cast_bf16": self.cast_count > 0,
            "df11": {"format": df11.FORMAT, "version": df11.VERSION},
            "totals": {
                "source_bytes": sum(s for s, _ in self.files.values()),
                "stored_bytes": sum(d for _, d in self.files.values()),
                "df11_tensors": sum(r.storage == "df11" for r in self.tensors.values()),
                "plain_tensors": sum(r.storage == "plain" for r in self.tensors.values()),
            },
            "files": {
                name: {"source_bytes": s, "stored_bytes": d} for name, (s, d) in self.files.items()
            },
            "tensors": {
                name: {k: v for k, v in asdict(r).items() if v is not None}
                for name, r in self.tensors.items()
            },
        }

    def table(self) -> str:
        """Size table: each shard with its DF11 and plain tensors, other files, total."""
        rows: list[tuple[str, int, int]] = []
        for shard in self.shards:
            rows.append((shard, *self.files[shard]))
            for storage, label in (("df11", "DF11"), ("plain", "plain")):
                records = [
                    r for r in self.tensors.values() if r.file == shard and r.storage == storage
                ]
                if records:
                    rows.append(
                        (
                            f"  {label} ({len(records)} tensors)",
                            sum(r.source_bytes for r in records),
                            sum(r.stored_bytes for r in records),
                        )
                    )
        others = [name for name in self.files if name not in self.shards]
        if others:
            rows.append(
                (
                    f"other files ({len(others)})",
                    sum(self.files[n][0] for n in others),
                    sum(self.files[n][1] for n in others),
                )
            )
        rows.append(
            (
                "total",
                sum(s for s, _ in self.files.values()),
                sum(d for _, d in self.files.values()),
            )
        )
        width = max(len(name) for name, _, _ in rows)
        lines = [f"{'file / group':<{width}}  {'original MB':>12}  {'stored MB':>12}  {'ratio':>6}"]
        for name, source, stored in rows:
            ratio = f"{stored / source:.3f}" if source else "-"
            sizes = f"{source / 1e6:>12.2f}  {stored / 1e6:>12.2f}"
            lines.append(f"{name:<{width}}  {sizes}  {ratio:>6}")
        if self.cast_count:
            cast = [r for r in self.tensors.values() if r.cast and r.storage == "df11"]
            bf16 = sum(2 * int(np.prod(r.shape)) for r in cast)
            stored = sum(r.stored_bytes for r in cast)
            lines.append(
                f"({self.cast_count} tensors were cast to BF16; DF11 against their BF16 bytes: "
                f"{bf16 / 1e6:.2f} MB -> {stored / 1e6:.2f} MB, ratio "
                f"{stored / bf16 if bf16 else 0:.3f})"
            )
        return "\n".join(lines)


def _version() -> str:
    from slimrt import __version__

    return __version__


def _is_weight_matrix(info: TensorInfo) -> bool:
    return len(info.shape) == 2


def compress_model(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    cast_bf16: bool = False,
    num_threads: int = 0,
    progress: bool = True,
) -> CompressionReport:
    """Writes the DF11 version of model_dir into out_dir, atomically.

    Non-BF16 floating 2-D weights are refused (ConversionError) unless cast_bf16, which rounds
    them to BF16 — a lossy step, announced with a LossyCastWarning. Tensors that are not 2-D
    are copied unchanged whatever their dtype. A 2-D weight whose DF11 form would be larger than
    its BF16 bytes (tiny matrices: DF11 carries ~0.5 KB of fixed arrays) is stored as plain BF16.
    """
    source_path = Path(model_dir)
    out_path = Path(out_dir)
    model = scan_model_dir(source_path)
    if (source_path / MANIFEST_NAME).exists():
        raise ConversionError(
            f"{source_path}: already a slimrt directory (has {MANIFEST_NAME}); compress the "
            "original model instead"
        )
    if out_path.absolute().resolve() == source_path.absolute().resolve():
        raise ConversionError(f"{out_path}: is the source directory")
    check_output_dir(out_path, overwrite=overwrite)

    files = {shard: read_safetensors(source_path / shard) for shard in model.shards}
    _check_index(model, files)
    to_cast = _plan_casts(source_path, files, cast_bf16)

    report = CompressionReport(source_path, out_path, shards=list(model.shards))
    total = sum(info.nbytes for f in files.values() for info in f.tensors.values())
    with (
        build_dir_atomically(out_path, overwrite=overwrite) as temp,
        byte_progress(total, "compress", enabled=progress) as bar,
    ):
        for shard, file in files.items():
            _compress_shard(file, temp / shard, shard, to_cast, num_threads, report, bar)
        if model.index_name:
            _write_index(model, temp / model.index_name, report)
        for relative in model.other_files:
            target = temp / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source_path / relative, target)
            size = target.stat().st_size
            report.files[relative] = (size, size)
        _write_json(temp / MANIFEST_NAME, report.manifest())
    return report


def _check_index(model: ModelDir, files: dict[str, SafetensorsFile]) -> None:
    seen: dict[str, str] = {}
    for shard, file in files.items():
        for name in file.tensors:
            if name in seen:
                raise ConversionError(
                    f"{model.path}: tensor {name!r} is in both {seen[name]} and {shard}"
                )
            seen[name] = shard
            _, sep, suffix = name.rpartition(".df11.")
            if sep and suffix in df11.ARRAYS:
                raise ConversionError(
                    f"{file.path}: tensor {name!r} has a name DF11 reserves; already compressed?"
                )
        for key in file.metadata:
            if key.startswith(df11.METADATA_PREFIX):
                raise ConversionError(
                    f"{file.path}: already holds DF11 tensors; compress the original model instead"
                )
    for name, shard in model.weight_map.items():
        if seen.get(name) != shard:
            raise ConversionError(
                f"{model.path / model.index_name}: weight_map puts {name!r} in {shard}, "
                f"which does not hold it"
            )


def _plan_casts(source: Path, files: dict[str, SafetensorsFile], cast_bf16: bool) -> set[str]:
    offending = [
        (name, info.dtype)
        for file in files.values()
        for name, info in file.tensors.items()
        if _is_weight_matrix(info) and info.dtype in CASTABLE_DTYPES
    ]
    if not offending:
        return set()
    listed = ", ".join(f"{name} {dtype}" for name, dtype in offending[:3])
    more = f", and {len(offending) - 3} more" if len(offending) > 3 else ""
    if not cast_bf16:
        raise ConversionError(
            f"{source}: {len(offending)} 2-D weights are not BF16 ({listed}{more}); DF11 "
            "compresses BF16 losslessly, so pass --cast-bf16 to round them to BF16 (LOSSY) first"
        )
    dtypes = sorted({dtype for _, dtype in offending})
    warnings.warn(
        f"casting {len(offending)} {'/'.join(dtypes)} weights to BF16: the cast is LOSSY, and "
        "`slimrt verify` will compare against the cast weights, not the originals",
        LossyCastWarning,
        stacklevel=3,
    )
    return {name for name, _ in offending}


def _compress_shard(
    file: SafetensorsFile,
    target: Path,
    shard: str,
    to_cast: set[str],
    num_threads: int,
    report: CompressionReport,
    bar: tqdm,
) -> None:
    tensors: dict[str, df11.Df11Tensor | np.ndarray] = {}
    dtypes: dict[str, str] = {}
    for name, info in file.tensors.items():
        bar.set_postfix_str(name, refresh=False)
        array = file.array(name)
        cast = name in to_cast
        record = TensorRecord(
            file=shard,
            storage="plain",
            dtype="BF16" if cast else info.dtype,
            source_dtype=info.dtype,
            shape=list(info.shape),
            source_bytes=info.nbytes,
            stored_bytes=info.nbytes,
            cast=cast,
        )
        if cast or (info.dtype == "BF16" and _is_weight_matrix(info)):
            array = round_to_bf16(array) if cast else array
            compressed = df11.compress(array, num_threads=num_threads)
            record.stored_bytes = array.nbytes
            if compressed.nbytes < array.nbytes:
                record.storage, record.stored_bytes = "df11", compressed.nbytes
                record.crc32 = compressed.crc32
        if record.storage == "df11":
            tensors[name] = compressed
        else:
            tensors[name] = array
            dtypes[name] = record.dtype
        report.tensors[name] = record
        bar.update(info.nbytes)
    df11.save(target, tensors, file.metadata, dtypes=dtypes)
    report.files[shard] = (file.path.stat().st_size, target.stat().st_size)


def _write_index(model: ModelDir, target: Path, report: CompressionReport) -> None:
    index = dict(model.index or {})
    weight_map: dict[str, str] = {}
    total = 0
    for name, record in report.tensors.items():
        total += record.stored_bytes
        if record.storage == "df11":
            for suffix in df11.ARRAYS:
                weight_map[f"{name}.df11.{suffix}"] = record.file
        else:
            weight_map[name] = record.file
    metadata = dict(index.get("metadata") or {})
    metadata["total_size"] = total
    index["metadata"] = metadata
    index["weight_map"] = dict(sorted(weight_map.items()))
    _write_json(target, index)
    report.files[model.index_name] = (
        (model.path / model.index_name).stat().st_size,
        target.stat().st_size,
    )


def _write_json(path: Path, content: dict) -> None:
    path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")


def read_manifest(out_dir: str | os.PathLike[str]) -> dict | None:
    """slimrt.json of a slimrt directory, or None when it has none."""
    path = Path(out_dir) / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise FormatError(f"{path}: not a slimrt manifest (format is not {MANIFEST_FORMAT!r})")
    if manifest.get("version") != MANIFEST_VERSION:
        raise FormatError(
            f"{path}: manifest version {manifest.get('version')!r} is not supported "
            f"(this slimrt reads version {MANIFEST_VERSION})"
        )
    if not isinstance(manifest.get("tensors"), dict):
        raise FormatError(f"{path}: manifest has no tensors map")
    return manifest
