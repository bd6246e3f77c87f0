"""Our own safetensors reader and writer: strict on read, atomic and aligned on write.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON header, then the
data section. The header maps each tensor name to {"dtype", "shape", "data_offsets"} (offsets
relative to the data section) plus an optional "__metadata__" map of strings.

    f = read_safetensors("model.safetensors")      # validates the whole header
    w = f.array("lm_head.weight")                  # zero-copy, read-only view of the mmap
    write_safetensors("out.safetensors", {"w": bits}, {"k": "v"}, dtypes={"w": "BF16"})

We do not depend on the `safetensors` package: the reader must turn every malformed file into a
FormatError that names the file and the problem (the C++ core parses the header: slimrt has one
parser), and the writer must control tensor order and header padding (docs/FORMAT.md relies on
both for alignment).
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slimrt import _core
from slimrt.crash_point import crash_point

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
        buffer: mmap.mmap | bytes,
    ) -> None:
        self.path = path
        self.tensors = tensors  # in data order
        self.metadata = metadata
        self.data_start = data_start
        self._buffer = buffer

    @property
    def buffer(self) -> mmap.mmap | bytes:
        """The whole file's bytes (the read-only mapping)."""
        return self._buffer

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
    """Opens and validates a safetensors file; every defect raises FormatError naming the file.

    The rules (and their messages) live in the C++ core (cpp/src/safetensors.cpp): sizes checked
    against the file, duplicate keys refused, the tensors tiling the data section exactly as the
    official reader demands.
    """
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    data_start, entries, metadata = _core.parse_safetensors_header(buffer, str(path))
    tensors = {
        name: TensorInfo(name, dtype, shape, begin - data_start, end - data_start)
        for name, dtype, shape, begin, end in entries
    }
    return SafetensorsFile(path, tensors, metadata, data_start, buffer)


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
            for index, (_, _, array) in enumerate(entries):
                if array.nbytes:
                    f.write(memoryview(array.reshape(-1).view(np.uint8)))
                if index == 0:
                    crash_point("safetensors:partial")
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
