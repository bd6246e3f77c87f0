"""What `slimrt inspect` prints: the tensors of a safetensors file or model directory (DF11 or
not), or the metadata and tensors of a GGUF file.

print(inspect_text("minilm-df11"))                      # a table of tensors and sizes
print(inspect_text("SmolLM2-135M-Instruct.Q4_1.gguf"))  # metadata keys, then tensors
"""

from __future__ import annotations

import errno
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slimrt import df11
from slimrt.errors import FormatError
from slimrt.gguf_file import GgufFile, read_gguf

__all__ = ["TensorRow", "format_gguf", "format_tensor_table", "inspect_text", "tensor_rows"]

_GGUF_MAGIC = b"GGUF"
# Metadata values longer than this are cut; arrays longer are counted, not listed.
_SHORT_VALUE = 60
_SHORT_ARRAY = 8


@dataclass
class TensorRow:
    file: str
    name: str
    format: str  # "df11" or the safetensors dtype
    shape: tuple[int, ...]
    original_bytes: int  # BF16 bytes for DF11 tensors
    stored_bytes: int


def inspect_text(path: str | os.PathLike[str]) -> str:
    """The report on a .safetensors or .gguf file, or on a directory: its top-level
    *.safetensors files, or else its one *.gguf file. FormatError for anything else."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if files:
            return format_tensor_table(tensor_rows(files))
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return format_gguf(read_gguf(ggufs[0]))
        if ggufs:
            names = ", ".join(p.name for p in ggufs)
            raise FormatError(f"{path}: several GGUF files ({names}); inspect one of them")
        raise FormatError(f"{path}: no *.safetensors or *.gguf files")
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no such file or directory", str(path))
    if _is_gguf(path):
        return format_gguf(read_gguf(path))
    return format_tensor_table(tensor_rows([path]))


def _is_gguf(path: Path) -> bool:
    """GGUF by its magic or its name; safetensors by its name or a JSON header after the
    8-byte length. The parser of the format chosen reports what is wrong inside."""
    with open(path, "rb") as f:
        head = f.read(9)
    suffix = path.suffix.lower()
    if head.startswith(_GGUF_MAGIC) or suffix == ".gguf":
        return True
    if suffix == ".safetensors" or head[8:] == b"{":
        return False
    raise FormatError(
        f"{path}: not a safetensors or GGUF file (slimrt inspect reads those and model "
        "directories holding them)"
    )


def tensor_rows(files: list[Path]) -> list[TensorRow]:
    """One row per tensor of each safetensors file, DF11 tensors as one row each."""
    rows = []
    for file_path in files:
        file = df11.read(file_path)
        for name in sorted(file.tensors, key=_natural_key):
            tensor = file.tensors[name]
            if isinstance(tensor, df11.Df11Tensor):
                sizes = (tensor.original_nbytes, tensor.nbytes)
                kind = "df11"
            else:
                sizes = (tensor.nbytes, tensor.nbytes)
                kind = file.dtypes[name]
            rows.append(TensorRow(file_path.name, name, kind, tuple(tensor.shape), *sizes))
    return rows


def _natural_key(name: str) -> list[object]:
    # layers.10 after layers.9, as a reader expects
    parts = re.split(r"(\d+)", name)
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in parts]


def format_tensor_table(rows: list[TensorRow]) -> str:
    """Aligned text table, one row per tensor and a total row; a file column when several."""
    show_file = len({row.file for row in rows}) > 1
    header = ["tensor", "format", "shape", "original bytes", "stored bytes", "ratio"]
    body = [
        [row.name, row.format, _shape(row.shape), *_sizes(row.original_bytes, row.stored_bytes)]
        for row in rows
    ]
    original = sum(row.original_bytes for row in rows)
    stored = sum(row.stored_bytes for row in rows)
    body.append([f"total ({len(rows)} tensors)", "", "", *_sizes(original, stored)])
    if show_file:
        header.insert(0, "file")
        for cells, row in zip(body, [*rows, None], strict=True):
            cells.insert(0, row.file if row else "")
    return _table(header, body, right_aligned=3)


def format_gguf(file: GgufFile) -> str:
    """A line on the file, its metadata (key, GGUF type, value; long values cut, long arrays
    counted), then its tensors (ggml type, shape slowest-varying first as Hugging Face writes
    it, stored bytes) and a total row."""
    keys = [
        [key, file.type_name(key), _value_text(value, file.type_name(key))]
        for key, value in file.metadata.items()
    ]
    tensors = sorted(file.tensors.values(), key=lambda t: _natural_key(t.name))
    body = [[t.name, t.type_name, _shape(t.shape), f"{t.end - t.begin:,}"] for t in tensors]
    total = sum(t.end - t.begin for t in tensors)
    body.append([f"total ({len(tensors)} tensors)", "", "", f"{total:,}"])
    title = (
        f"{file.path.name}: GGUF version {file.version}, {len(keys)} metadata keys, "
        f"{len(tensors)} tensors"
    )
    return "\n\n".join(
        [
            title,
            _table(["key", "type", "value"], keys, right_aligned=0),
            _table(["tensor", "type", "shape", "bytes"], body, right_aligned=1),
        ]
    )


def _value_text(value: object, type_name: str) -> str:
    if isinstance(value, (list, np.ndarray)):
        return _array_text(value)
    if type_name == "FLOAT32":
        return str(np.float32(value))  # 1e-05, not the double 9.999999747378752e-06
    if isinstance(value, str):
        # One line: control characters escaped as JSON escapes them; quotes need no escape.
        text = json.dumps(value, ensure_ascii=False)[1:-1].replace('\\"', '"')
        if len(text) > _SHORT_VALUE:
            return f"{text[:_SHORT_VALUE]}... ({len(value):,} characters)"
        return text
    return _element_text(value)


def _array_text(values: list[object] | np.ndarray) -> str:
    if len(values) <= _SHORT_ARRAY:
        text = f"[{', '.join(_element_text(v) for v in values)}]"
        if len(text) <= _SHORT_VALUE:
            return text
    if isinstance(values, np.ndarray):
        return f"[{len(values)} {values.dtype}]"
    nested = any(isinstance(v, (list, np.ndarray)) for v in values)
    return f"[{len(values)} {'arrays' if nested else 'strings'}]"


def _element_text(value: object) -> str:
    if isinstance(value, (list, np.ndarray)):
        return _array_text(value)
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bytes):
        return f"({len(value):,} bytes, not UTF-8)"
    return str(value)  # numpy scalars print as their type: float32 1e-05


def _table(header: list[str], body: list[list[str]], *, right_aligned: int) -> str:
    """Columns as wide as their widest cell; the last `right_aligned` ones right-aligned."""
    widths = [max(len(cells[i]) for cells in [header, *body]) for i in range(len(header))]
    first_right = len(header) - right_aligned

    def line(cells: list[str]) -> str:
        return "  ".join(
            f"{cell:>{w}}" if i >= first_right else f"{cell:<{w}}"
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join(line(cells) for cells in [header, *body])


def _sizes(original: int, stored: int) -> list[str]:
    ratio = f"{stored / original:.3f}" if original else "-"
    return [f"{original:,}", f"{stored:,}", ratio]


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) or "scalar"
