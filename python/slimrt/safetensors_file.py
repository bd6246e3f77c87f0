"""Our own safetensors reader and writer: strict on read, atomic and aligned on write.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON header, then the
data section. The header maps each tensor name to {"dtype", "shape", "data_offsets"} (offsets
relative to the data section) plus an optional "__metadata__" map of strings.

    f = read_safetensors("model.safetensors")      # validates the whole header
    w = f.array("lm_head.weight")                  # zero-copy, read-only view of the mmap
    write_safetensors("out.safetensors", {"w": bits}, {"k": "v"}, dtypes={"w": "BF16"})

We do not depend on the `safetensors` package: the reader must turn every malformed file into a
FormatError that names the file and the problem, and the writer must control tensor order and
header padding (docs/FORMAT.md relies on both for alignment).
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slimrt.errors import FormatError

__all__ = [
    "DTYPES",
    "SafetensorsFile",
    "TensorInfo",
    "dtype_name",
    "read_safetensors",
    "write_safetensors",
]

# safetensors dtype name -> numpy dtype used to view the bytes. Types numpy lacks (BF16, FP8)
# are viewed as unsigned integers of the same size: their bits, never converted values.
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype("u1"),
    "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F64": np.dtype("<f8"),
    "F8_E4M3": np.dtype("u1"),
    "F8_E5M2": np.dtype("u1"),
    "F8_E8M0": np.dtype("u1"),
}

# The inferred name for each numpy kind+size; BF16 and FP8 must be asked for through `dtypes`.
_NAME_OF_NUMPY = {
    ("b", 1): "BOOL",
    ("u", 1): "U8",
    ("i", 1): "I8",
    ("u", 2): "U16",
    ("i", 2): "I16",
    ("f", 2): "F16",
    ("u", 4): "U32",
    ("i", 4): "I32",
    ("f", 4): "F32",
    ("u", 8): "U64",
    ("i", 8): "I64",
    ("f", 8): "F64",
}

# The official implementation's limit; a larger length means the file is not safetensors.
MAX_HEADER_BYTES = 100_000_000


@dataclass(frozen=True)
class TensorInfo:
    """One header entry. `begin`/`end` are byte offsets relative to the data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


class SafetensorsFile:
    """A validated safetensors file, mapped read-only. Arrays are views of the mapping."""

    def __init__(
        self,
        path: Path,
        tensors: dict[str, TensorInfo],
        metadata: dict[str, str],
        data_start: int,
        buffer: mmap.mmap,
    ) -> None:
        self.path = path
        self.tensors = tensors  # in data order
        self.metadata = metadata
        self.data_start = data_start
        self._buffer = buffer

    def __contains__(self, name: object) -> bool:
        return name in self.tensors

    def array(self, name: str) -> np.ndarray:
        """The tensor's bytes as a read-only numpy array of its shape (BF16/FP8 as their bits)."""
        info = self.tensors[name]
        dtype = DTYPES[info.dtype]
        flat = np.frombuffer(
            self._buffer, dtype=dtype, count=info.numel, offset=self.data_start + info.begin
        )
        return flat.reshape(info.shape)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: self.array(name) for name in self.tensors}


def dtype_name(array: np.ndarray) -> str:
    """The safetensors dtype name numpy's dtype maps to (uint16 -> U16; BF16 is never inferred)."""
    name = _NAME_OF_NUMPY.get((array.dtype.kind, array.dtype.itemsize))
    if name is None:
        raise TypeError(f"numpy dtype {array.dtype} has no safetensors equivalent")
    return name


def read_safetensors(path: str | os.PathLike[str]) -> SafetensorsFile:
    """Opens and validates a safetensors file; every defect raises FormatError naming the file."""
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise FormatError(
                f"{path}: truncated: file is {size} bytes, too short for the 8-byte header length"
            )
        header_len = int.from_bytes(f.read(8), "little")
        if header_len > MAX_HEADER_BYTES:
            raise FormatError(
                f"{path}: header length {header_len} exceeds the {MAX_HEADER_BYTES}-byte limit "
                "(not a safetensors file?)"
            )
        if 8 + header_len > size:
            raise FormatError(
                f"{path}: truncated: header length is {header_len} bytes but only "
                f"{size - 8} bytes follow it"
            )
        raw = f.read(header_len)
        buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    data_size = size - 8 - header_len
    tensors, metadata = _parse_header(path, raw, data_size)
    return SafetensorsFile(path, tensors, metadata, 8 + header_len, buffer)


def _parse_header(
    path: Path, raw: bytes, data_size: int
) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(f"{path}: header is not UTF-8 text ({e.reason} at byte {e.start})") from e

    def reject_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        result: dict[str, object] = {}
        for key, value in pairs:
            if key in result:
                raise FormatError(f"{path}: header lists {key!r} twice")
            result[key] = value
        return result

    try:
        header = json.loads(text, object_pairs_hook=reject_duplicates)
    except json.JSONDecodeError as e:
        raise FormatError(f"{path}: header is not valid JSON: {e.msg} at byte {e.pos}") from e
    if not isinstance(header, dict):
        raise FormatError(f"{path}: header is not a JSON object")

    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict):
        raise FormatError(f"{path}: __metadata__ is not a JSON object")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise FormatError(
                f"{path}: __metadata__ must map strings to strings; {key!r} maps to "
                f"{type(value).__name__}"
            )

    infos = [_parse_entry(path, name, entry) for name, entry in header.items()]
    if infos:
        last = max(infos, key=lambda info: info.end)
        if last.end > data_size:
            raise FormatError(
                f"{path}: truncated: header says {last.end} bytes of data, file has {data_size}"
            )
    infos.sort(key=lambda info: (info.begin, info.end))
    previous: TensorInfo | None = None
    for info in infos:
        if info.nbytes == 0:
            continue
        if previous is not None and info.begin < previous.end:
            raise FormatError(
                f"{path}: tensor {info.name!r} (bytes {info.begin}..{info.end}) overlaps tensor "
                f"{previous.name!r} (bytes {previous.begin}..{previous.end})"
            )
        previous = info
    return {info.name: info for info in infos}, metadata


def _parse_entry(path: Path, name: str, entry: object) -> TensorInfo:
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict):
        raise FormatError(f"{where}: entry is not a JSON object")
    missing = [key for key in ("dtype", "shape", "data_offsets") if key not in entry]
    if missing:
        raise FormatError(f"{where}: entry lacks {', '.join(missing)}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise FormatError(f"{where}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise FormatError(f"{where}: shape {shape!r} is not a list of non-negative integers")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_count(o) for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise FormatError(
            f"{where}: data_offsets {offsets!r} are not [begin, end] with begin <= end"
        )
    numel = 1
    for d in shape:
        numel *= d
    expected = numel * DTYPES[dtype].itemsize
    if offsets[1] - offsets[0] != expected:
        raise FormatError(
            f"{where}: shape {shape} of {dtype} needs {expected} bytes but data_offsets "
            f"{offsets} span {offsets[1] - offsets[0]}"
        )
    return TensorInfo(name, dtype, tuple(shape), offsets[0], offsets[1])


def _is_count(value: object) -> bool:
    # JSON true/false arrive as bool, a subclass of int; they are no counts.
    return type(value) is int and value >= 0


def write_safetensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, np.ndarray],
    metadata: Mapping[str, str] | None = None,
    *,
    dtypes: Mapping[str, str] | None = None,
) -> None:
    """Writes `tensors` atomically: a temp file in the same directory, fsync, then rename.

    Tensors go in order of decreasing element size and the header is padded with spaces to a
    multiple of 8 bytes, so every tensor's data is aligned to its element size. `dtypes` names
    the safetensors dtype where numpy cannot say it: {"w": "BF16"} for a uint16 array of BF16
    bits. Others are inferred (uint16 -> U16).
    """
    path = Path(path)
    dtypes = dict(dtypes or {})
    unknown = set(dtypes) - set(tensors)
    if unknown:
        raise ValueError(f"dtypes names tensors that are not given: {sorted(unknown)}")
    metadata = dict(metadata or {})
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata must map str to str; {key!r} maps to {type(value).__name__}")

    entries: list[tuple[str, str, np.ndarray]] = []
    for name, array in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"invalid tensor name {name!r}")
        if not isinstance(array, np.ndarray):
            raise TypeError(f"tensor {name!r}: expected a numpy array, got {type(array).__name__}")
        name_of_dtype = dtypes.get(name) or dtype_name(array)
        if name_of_dtype not in DTYPES:
            raise ValueError(f"tensor {name!r}: unknown safetensors dtype {name_of_dtype!r}")
        if DTYPES[name_of_dtype].itemsize != array.dtype.itemsize:
            raise ValueError(
                f"tensor {name!r}: dtype {name_of_dtype} has {DTYPES[name_of_dtype].itemsize}-byte "
                f"elements, the array has {array.dtype.itemsize}-byte {array.dtype}"
            )
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        if not array.flags.c_contiguous:  # np.ascontiguousarray would make 0-d arrays 1-d
            array = array.copy(order="C")
        entries.append((name, name_of_dtype, array))
    # Stable: tensors of one element size keep the caller's order.
    entries.sort(key=lambda entry: -entry[2].dtype.itemsize)

    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, name_of_dtype, array in entries:
        header[name] = {
            "dtype": name_of_dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + array.nbytes],
        }
        offset += array.nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)

    temp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        with open(temp, "wb") as f:
            f.write(len(raw).to_bytes(8, "little"))
            f.write(raw)
            for _, _, array in entries:
                if array.nbytes:
                    f.write(memoryview(array.reshape(-1).view(np.uint8)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
