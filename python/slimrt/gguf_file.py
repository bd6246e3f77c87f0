"""GGUF files read by the C++ core's parser: validated metadata and tensor infos, and tensor
data dequantized in C++ (bit-identical to gguf-py's gguf.quants.dequantize).

    f = read_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")   # FormatError naming the file if malformed
    f.metadata["llama.block_count"]                     # 30
    f.metadata["tokenizer.ggml.tokens"]                 # a list of str
    f.type_name("llama.block_count")                    # "UINT32"
    t = f.tensors["blk.0.attn_q.weight"]                # GgufTensor: type, dims, byte range
    w = f.dequantize_bf16(t.name)                       # numpy uint16 BF16 bits, shape t.shape
"""

from __future__ import annotations

import itertools
import mmap
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slimrt import _core
from slimrt.errors import FormatError

__all__ = ["GgufFile", "GgufTensor", "read_gguf"]


@dataclass(frozen=True)
class GgufTensor:
    """One tensor info. `dims` are in GGUF order (fastest-varying first); `begin`/`end` are
    absolute byte offsets of its data in the file."""

    name: str
    type: int  # ggml type id
    dims: tuple[int, ...]
    begin: int
    end: int

    @property
    def type_name(self) -> str:
        return _core.ggml_type_name(self.type)

    @property
    def shape(self) -> tuple[int, ...]:
        """Slowest-varying first, as numpy and Hugging Face write shapes."""
        return self.dims[::-1]

    @property
    def numel(self) -> int:
        return int(np.prod(self.dims, dtype=np.int64))


@dataclass
class GgufFile:
    path: Path
    version: int
    alignment: int
    data_offset: int
    metadata: dict[str, Any]  # numeric arrays as numpy arrays, string arrays as lists of str
    types: dict[str, int | tuple[int, int]]  # GGUF value type id; (9, element type) for arrays
    tensors: dict[str, GgufTensor]  # in file order
    _buffer: mmap.mmap | bytes

    def type_name(self, key: str) -> str:
        """The GGUF value type of a metadata key: "UINT32", "STRING", "ARRAY[STRING]",
        "ARRAY[ARRAY[INT32]]"."""
        kind = self.types[key]
        if not isinstance(kind, tuple):
            return _core.gguf_value_type_name(kind)
        element = _core.gguf_value_type_name(kind[1])
        value = self.metadata[key]
        # An array of arrays is typed by its inner arrays' elements.
        if isinstance(value, list) and value and isinstance(value[0], (list, np.ndarray)):
            element = f"ARRAY[{element}]"
        return f"ARRAY[{element}]"

    def data(self, name: str) -> np.ndarray:
        """The tensor's stored bytes: a read-only uint8 view of the mapping."""
        t = self.tensors[name]
        return np.frombuffer(self._buffer, dtype=np.uint8, count=t.end - t.begin, offset=t.begin)

    def dequantize_f32(self, name: str) -> np.ndarray:
        return self._dequantize(name, _core.gguf_dequantize_f32)

    def dequantize_bf16(self, name: str) -> np.ndarray:
        """The tensor's values rounded to BF16 (nearest even), as uint16 bit patterns."""
        return self._dequantize(name, _core.gguf_dequantize_bf16)

    def _dequantize(self, name: str, convert: Any) -> np.ndarray:
        t = self.tensors[name]
        return convert(t.type, self.data(name), t.numel).reshape(t.shape)


def read_gguf(path: str | os.PathLike[str]) -> GgufFile:
    """Maps and validates a GGUF file; every defect raises FormatError naming the file (an
    unsupported version, ModelError)."""
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    parsed = _core.parse_gguf(buffer, str(path))
    metadata = parsed["metadata"]
    for key, value in metadata.items():
        if isinstance(value, tuple):  # the core's (blob, offsets) form of a vocabulary
            metadata[key] = _decode_strings(path, key, *value)
    tensors = {
        name: GgufTensor(name, type_id, dims, begin, end)
        for name, dims, type_id, begin, end in parsed["tensors"]
    }
    return GgufFile(
        path,
        parsed["version"],
        parsed["alignment"],
        parsed["data_offset"],
        metadata,
        parsed["types"],
        tensors,
        buffer,
    )


def _decode_strings(path: Path, key: str, blob: bytes, offsets: np.ndarray) -> list[str]:
    bounds = offsets.tolist()
    try:
        return [blob[a:b].decode("utf-8") for a, b in itertools.pairwise(bounds)]
    except UnicodeDecodeError as e:
        raise FormatError(f"{path}: key {key!r}: a string is not UTF-8 ({e.reason})") from None
