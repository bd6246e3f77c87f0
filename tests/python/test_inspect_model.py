"""How `slimrt inspect` writes GGUF metadata values: one line each, long ones cut or counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from slimrt.gguf_file import read_gguf
from slimrt.inspect_model import format_gguf


@pytest.fixture(scope="module")
def gguf_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import gguf

    path = tmp_path_factory.mktemp("gguf") / "values.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_string("t.text", 'two\nlines, "quoted" \\ and tabbed\t')
    writer.add_string("t.long", "é" * 100)
    writer.add_array("t.ints", [1, 2, 3])
    writer.add_array("t.floats", [0.5, 1e-5])
    writer.add_array("t.bools", [True, False])
    writer.add_array("t.nested", [[1, 2], [3]])
    writer.add_array("t.many", list(range(20)))
    writer.add_array("t.names", ["a", "b", "c", "d", "e", "f", "g", "h", "i"])
    writer.add_float32("t.f32", 0.1)
    writer.add_float64("t.f64", 0.1)
    writer.add_int64("t.neg", -5)
    writer.add_bool("t.yes", True)
    writer.add_tensor("blk.10.w", np.ones((2, 3), np.float32))
    writer.add_tensor("blk.9.w", np.ones(4, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_each_metadata_value_is_one_short_line(gguf_path: Path) -> None:
    title, metadata, _ = format_gguf(read_gguf(gguf_path)).split("\n\n")
    assert title == "values.gguf: GGUF version 3, 13 metadata keys, 2 tensors"
    values = {line.split()[0]: line.split(None, 2)[1:] for line in metadata.splitlines()[1:]}
    assert values == {
        "general.architecture": ["STRING", "llama"],
        "t.text": ["STRING", 'two\\nlines, "quoted" \\\\ and tabbed\\t'],
        "t.long": ["STRING", "é" * 60 + "... (100 characters)"],
        "t.ints": ["ARRAY[INT32]", "[1, 2, 3]"],
        "t.floats": ["ARRAY[FLOAT32]", "[0.5, 1e-05]"],
        "t.bools": ["ARRAY[BOOL]", "[true, false]"],
        "t.nested": ["ARRAY[ARRAY[INT32]]", "[[1, 2], [3]]"],
        "t.many": ["ARRAY[INT32]", "[20 int32]"],
        "t.names": ["ARRAY[STRING]", "[9 strings]"],
        "t.f32": ["FLOAT32", "0.1"],
        "t.f64": ["FLOAT64", "0.1"],
        "t.neg": ["INT64", "-5"],
        "t.yes": ["BOOL", "true"],
    }


def test_tensors_are_listed_in_natural_order_with_hugging_face_shapes(gguf_path: Path) -> None:
    tensors = format_gguf(read_gguf(gguf_path)).split("\n\n")[2].splitlines()
    assert [line.split() for line in tensors] == [
        ["tensor", "type", "shape", "bytes"],
        ["blk.9.w", "F32", "4", "16"],
        ["blk.10.w", "F32", "2x3", "24"],
        ["total", "(2", "tensors)", "40"],
    ]
