"""The C++ GGUF parser and dequantizer (through slimrt.gguf_file) against gguf-py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from slimrt import _core
from slimrt.bfloat16 import round_to_bf16
from slimrt.errors import FormatError, ModelError
from slimrt.gguf_file import read_gguf

gguf = pytest.importorskip("gguf")

SUPPORTED = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]


def plain(value: object) -> object:
    """Our metadata value in the form gguf-py's ReaderField.contents() gives."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list) and value and isinstance(value[0], np.ndarray | list):
        return [x for row in value for x in plain(row)]  # gguf-py flattens nested arrays
    return value


def expect_same_file(path: Path) -> None:
    reader = gguf.GGUFReader(path)
    ours = read_gguf(path)
    fields = {name: f for name, f in reader.fields.items() if not name.startswith("GGUF.")}
    assert set(ours.metadata) == set(fields)
    for name, field in fields.items():
        assert plain(ours.metadata[name]) == field.contents(), name
        types = [int(t) for t in field.types]
        assert ours.types[name] == (tuple(types[:: len(types) - 1]) if len(types) > 1 else types[0])
    assert ours.alignment == reader.alignment
    assert ours.data_offset == reader.data_offset
    assert list(ours.tensors) == [t.name for t in reader.tensors]
    for t in reader.tensors:
        mine = ours.tensors[t.name]
        assert mine.type == int(t.tensor_type), t.name
        assert mine.type_name == t.tensor_type.name
        assert list(mine.dims) == t.shape.tolist()
        assert mine.numel == t.n_elements
        assert (mine.begin, mine.end - mine.begin) == (t.data_offset, t.n_bytes), t.name


def test_parser_agrees_with_gguf_py_on_the_default_model(smollm2_gguf: Path) -> None:
    expect_same_file(smollm2_gguf)


def test_dequantized_tensors_are_bit_identical_to_gguf_py(smollm2_gguf: Path) -> None:
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(smollm2_gguf)
    ours = read_gguf(smollm2_gguf)
    types = set()
    for t in reader.tensors:
        want = dequantize(t.data, t.tensor_type).reshape(ours.tensors[t.name].shape)
        got = ours.dequantize_f32(t.name)
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32), err_msg=t.name)
        np.testing.assert_array_equal(ours.dequantize_bf16(t.name), round_to_bf16(want))
        types.add(t.tensor_type.name)
    assert types == {"F32", "Q4_1", "Q8_0"}


@pytest.mark.parametrize("type_name", SUPPORTED)
def test_every_supported_type_dequantizes_like_gguf_py(type_name: str) -> None:
    from gguf.quants import dequantize

    qtype = gguf.GGMLQuantizationType[type_name]
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    rows, blocks = 7, 9
    rng = np.random.default_rng(int(qtype))
    raw = rng.integers(0, 256, (rows, blocks * size), dtype=np.uint8)
    if type_name not in ("F32", "F16", "BF16"):
        # Finite scales and minimums: NaN + NaN gives either payload, as the compiler orders them.
        scales = rng.standard_normal((rows, blocks, 2)).astype(np.float16).view(np.uint8)
        blocks_of = raw.reshape(rows, blocks, size)
        blocks_of[..., :2] = scales[..., :2]
        if type_name in ("Q4_1", "Q5_1"):
            blocks_of[..., 2:4] = (
                rng.standard_normal((rows, blocks, 1)).astype(np.float16).view(np.uint8)
            )
    want = dequantize(raw, qtype).reshape(-1)
    count = rows * blocks * block
    got = _core.gguf_dequantize_f32(int(qtype), raw, count)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    bf16 = _core.gguf_dequantize_bf16(int(qtype), raw, count)
    np.testing.assert_array_equal(bf16, round_to_bf16(want))


def test_every_ggml_type_has_gguf_py_geometry() -> None:
    for qtype, (block, size) in gguf.GGML_QUANT_SIZES.items():
        assert _core.ggml_type_info(int(qtype)) == (qtype.name, block, size)
    known = {int(t) for t in gguf.GGMLQuantizationType}
    assert all(_core.ggml_type_info(i) is None for i in range(64) if i not in known)


def test_a_gguf_py_file_with_every_value_type_and_nested_arrays(tmp_path: Path) -> None:
    path = tmp_path / "all.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_uint8("t.u8", 200)
    writer.add_int8("t.i8", -100)
    writer.add_uint16("t.u16", 60000)
    writer.add_int16("t.i16", -30000)
    writer.add_uint32("t.u32", 4_000_000_000)
    writer.add_int32("t.i32", -2_000_000_000)
    writer.add_float32("t.f32", 0.1)
    writer.add_uint64("t.u64", 2**64 - 1)
    writer.add_int64("t.i64", -(2**63))
    writer.add_float64("t.f64", 0.1)
    writer.add_bool("t.bool", True)
    writer.add_string("t.str", "héllo")
    writer.add_array("t.strings", ["a", "", "ü"])
    writer.add_array("t.ints", [1, -2, 3])
    writer.add_array("t.floats", [0.5, -1.5])
    writer.add_array("t.bools", [True, False])
    writer.add_array("t.nested", [[1, 2], [3]])
    writer.add_tensor("w", np.arange(64, dtype=np.float32).reshape(2, 32))
    writer.add_tensor("h", np.ones(32, dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    expect_same_file(path)
    ours = read_gguf(path)
    assert ours.metadata["t.nested"][1].tolist() == [3]
    np.testing.assert_array_equal(ours.dequantize_f32("w"), np.arange(64).reshape(2, 32))


@pytest.fixture
def real_bytes(smollm2_gguf: Path) -> bytes:
    with open(smollm2_gguf, "rb") as f:
        return f.read(2 << 20)  # the header, metadata and tensor infos (1.7 MB), then some data


def test_corrupt_counts_raise_format_error_with_the_message(tmp_path: Path, real_bytes) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(real_bytes[:8] + b"\xff" * 8 + real_bytes[16:])
    with pytest.raises(FormatError) as info:
        read_gguf(path)
    assert str(info.value) == (
        f"{path}: truncated at byte 16: tensor count 18446744073709551615: the tensor infos need "
        f"at least 32 bytes each, the file has {len(real_bytes)}"
    )
    path.write_bytes(real_bytes[:24])
    with pytest.raises(FormatError, match=r"truncated at byte 16: tensor count 272"):
        read_gguf(path)


def test_a_file_cut_short_names_the_tensor_it_lacks(tmp_path: Path, real_bytes) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(real_bytes)
    with pytest.raises(FormatError) as info:
        read_gguf(path)
    assert str(info.value) == (
        f"{path}: truncated: tensor 'token_embd.weight' (Q8_0) needs 30081024 bytes at data "
        f"offset 0, the data section from byte 1785664 has {len(real_bytes) - 1785664}"
    )


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (lambda b: b"GGML" + b[4:], FormatError, "not a GGUF file (magic 'GGML', expected 'GGUF')"),
        (
            lambda b: b[:2],
            FormatError,
            "truncated at byte 0: the magic needs 4 bytes, the file has 2",
        ),
        (
            lambda b: b[:4] + (1).to_bytes(4, "little") + b[8:],
            ModelError,
            "GGUF version 1 is not supported (slimrt reads versions 2 and 3)",
        ),
        (
            lambda b: b"",
            FormatError,
            "truncated at byte 0: the magic needs 4 bytes, the file has 0",
        ),
    ],
    ids=["magic", "short", "version-1", "empty"],
)
def test_malformed_headers_raise_slimrt_errors(tmp_path: Path, real_bytes, edit, error, message):
    path = tmp_path / "model.gguf"
    path.write_bytes(edit(real_bytes))
    with pytest.raises(error) as info:
        read_gguf(path)
    assert str(info.value) == f"{path}: {message}"


def test_unsupported_dequantization_is_a_model_error(tmp_path: Path) -> None:
    path = tmp_path / "q6.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tensor("w", np.zeros((1, 210), np.uint8), raw_dtype=gguf.GGMLQuantizationType.Q6_K)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    file = read_gguf(path)
    assert file.tensors["w"].type_name == "Q6_K"
    with pytest.raises(ModelError, match=r"^dequantizing GGUF tensor type Q6_K is not supported"):
        file.dequantize_bf16("w")
