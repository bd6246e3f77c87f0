"""A table of the tensors in a safetensors file or model directory, DF11 or not.

print(format_tensor_table(inspect_path("minilm-df11")))
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from slimrt import df11
from slimrt.errors import FormatError

__all__ = ["TensorRow", "format_tensor_table", "inspect_path"]


@dataclass
class TensorRow:
    file: str
    name: str
    format: str  # "df11" or the safetensors dtype
    shape: tuple[int, ...]
    original_bytes: int  # BF16 bytes for DF11 tensors
    stored_bytes: int


def inspect_path(path: str | os.PathLike[str]) -> list[TensorRow]:
    """Rows for one .safetensors file, or for every top-level one of a directory."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise FormatError(f"{path}: no *.safetensors files")
    elif path.exists():
        files = [path]
    else:
        raise FileNotFoundError(2, "no such file or directory", str(path))
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
            row = TensorRow(file_path.name, name, kind, tuple(tensor.shape), *sizes)
            rows.append(row)
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
    widths = [max(len(cells[i]) for cells in [header, *body]) for i in range(len(header))]
    numeric = len(header) - 3  # the last three columns are right-aligned

    def line(cells: list[str]) -> str:
        return "  ".join(
            f"{cell:>{w}}" if i >= numeric else f"{cell:<{w}}"
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join(line(cells) for cells in [header, *body])


def _sizes(original: int, stored: int) -> list[str]:
    ratio = f"{stored / original:.3f}" if original else "-"
    return [f"{original:,}", f"{stored:,}", ratio]


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) or "scalar"
