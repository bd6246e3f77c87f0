from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from slimrt.errors import FormatError
from slimrt.safetensors_file import DTYPES, read_safetensors, write_safetensors


def raw_file(
    path: Path, header: dict | bytes, data: bytes = b"", length: int | None = None
) -> Path:
    """A safetensors file made by hand, so it can be wrong in exactly one way."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    size = len(text) if length is None else length
    path.write_bytes(size.to_bytes(8, "little") + text + data)
    return path


def one_tensor_file(path: Path) -> Path:
    return raw_file(path, {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(8))


def test_round_trip_keeps_every_dtype_shape_and_value(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    tensors = {
        "f64": rng.standard_normal((3, 2)),
        "f32": rng.standard_normal((5,), dtype=np.float32),
        "f16": rng.standard_normal((2, 2)).astype(np.float16),
        "bf16": rng.integers(0, 1 << 16, (7,), dtype=np.uint16),
        "u16": rng.integers(0, 1 << 16, (3,), dtype=np.uint16),
        "i64": rng.integers(-(1 << 62), 1 << 62, (2, 2)),
        "i32": rng.integers(-100, 100, (4,), dtype=np.int32),
        "u32": rng.integers(0, 1 << 32, (4,), dtype=np.uint32),
        "u64": rng.integers(0, 1 << 63, (1,), dtype=np.uint64),
        "i16": rng.integers(-100, 100, (3,), dtype=np.int16),
        "i8": rng.integers(-100, 100, (3,), dtype=np.int8),
        "u8": rng.integers(0, 255, (9,), dtype=np.uint8),
        "bool": np.array([True, False, True]),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }
    path = tmp_path / "t.safetensors"
    write_safetensors(path, tensors, {"format": "pt"}, dtypes={"bf16": "BF16"})
    file = read_safetensors(path)
    assert file.metadata == {"format": "pt"}
    assert file.tensors["bf16"].dtype == "BF16"
    assert file.tensors["u16"].dtype == "U16"
    for name, array in tensors.items():
        got = file.array(name)
        assert got.shape == array.shape and got.dtype == array.dtype.newbyteorder("<")
        assert got.tobytes() == array.tobytes(), name


def test_tensors_are_aligned_and_sorted_by_decreasing_element_size(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    write_safetensors(
        path,
        {"u8": np.arange(3, dtype=np.uint8), "f64": np.ones(3), "f16": np.ones(5, np.float16)},
        {"k": "v" * 5},
    )
    file = read_safetensors(path)
    assert file.data_start % 8 == 0
    assert list(file.tensors) == ["f64", "f16", "u8"]
    for name, info in file.tensors.items():
        assert (file.data_start + info.begin) % DTYPES[info.dtype].itemsize == 0, name


def test_arrays_are_read_only_views_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    write_safetensors(path, {"w": np.arange(1000, dtype=np.float32)})
    array = read_safetensors(path).array("w")
    assert not array.flags.writeable
    assert not array.flags.owndata
    with pytest.raises(ValueError):
        array[0] = 1


def test_write_is_atomic_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    write_safetensors(path, {"w": np.ones(4, np.float32)})
    with pytest.raises(TypeError):
        write_safetensors(path, {"w": np.ones(4, np.float32), "bad": [1, 2]})  # type: ignore[dict-item]
    assert read_safetensors(path).array("w").tolist() == [1, 1, 1, 1]
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]


def test_writer_rejects_dtype_of_the_wrong_size(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="BF16 has 2-byte elements, the array has 4-byte float32"):
        write_safetensors(
            tmp_path / "t.safetensors", {"w": np.ones(2, np.float32)}, dtypes={"w": "BF16"}
        )


def test_official_safetensors_reads_our_files(tmp_path: Path) -> None:
    safetensors = pytest.importorskip("safetensors")
    path = tmp_path / "t.safetensors"
    tensors = {"a": np.arange(6, dtype=np.uint32).reshape(2, 3), "b": np.arange(5, dtype=np.uint8)}
    write_safetensors(path, tensors, {"note": "hi"})
    with safetensors.safe_open(path, "numpy") as f:
        assert f.metadata() == {"note": "hi"}
        for name, array in tensors.items():
            np.testing.assert_array_equal(f.get_tensor(name), array)


def test_we_read_files_of_the_official_writer(tmp_path: Path) -> None:
    numpy_io = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "t.safetensors"
    tensors = {"x": np.linspace(0, 1, 11, dtype=np.float32), "y": np.arange(3, dtype=np.int64)}
    numpy_io.save_file(tensors, path, metadata={"format": "np"})
    file = read_safetensors(path)
    assert file.metadata == {"format": "np"}
    for name, array in tensors.items():
        np.testing.assert_array_equal(file.array(name), array)


# Each malformed file must give a FormatError that names the file and the problem.
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda p: p.write_bytes(b"\x01\x02"),
            "truncated: file is 2 bytes, too short for the 8-byte header length",
        ),
        (
            lambda p: raw_file(p, {}, length=4096),
            "truncated: header length is 4096 bytes but only 2 bytes follow it",
        ),
        (lambda p: raw_file(p, b"x" * 8, length=1 << 40), "exceeds the 100000000-byte limit"),
        (lambda p: raw_file(p, b'{"a": '), "header is not valid JSON"),
        (lambda p: raw_file(p, b"\xff\xfe  "), "header is not UTF-8 text"),
        (lambda p: raw_file(p, b"[1, 2]  "), "header is not a JSON object"),
        (
            lambda p: raw_file(
                p, {"a": {"dtype": "F32", "shape": [203], "data_offsets": [0, 812]}}, bytes(400)
            ),
            "truncated: header says 812 bytes of data, file has 400",
        ),
        (
            lambda p: raw_file(
                p, {"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8)
            ),
            "tensor 'a': shape [3] of F32 needs 12 bytes but data_offsets [0, 8] span 8",
        ),
        (
            lambda p: raw_file(
                p, {"a": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 2]}}, bytes(2)
            ),
            "tensor 'a': unknown dtype 'Q4'",
        ),
        (
            lambda p: raw_file(p, {"a": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 0]}}),
            "tensor 'a': shape [-1] is not a list of non-negative integers",
        ),
        (
            lambda p: raw_file(
                p, {"a": {"dtype": "U8", "shape": [2], "data_offsets": [2, 0]}}, bytes(2)
            ),
            "tensor 'a': data_offsets [2, 0] are not [begin, end]",
        ),
        (
            lambda p: raw_file(p, {"a": {"dtype": "U8", "shape": [2]}}),
            "tensor 'a': entry lacks data_offsets",
        ),
        (
            lambda p: raw_file(
                p,
                {
                    "a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
                    "b": {"dtype": "U8", "shape": [4], "data_offsets": [2, 6]},
                },
                bytes(6),
            ),
            "tensor 'b' (bytes 2..6) overlaps tensor 'a' (bytes 0..4)",
        ),
        (
            lambda p: raw_file(p, {"__metadata__": {"k": 1}}),
            "__metadata__ must map strings to strings; 'k' maps to int",
        ),
        (lambda p: raw_file(p, {"__metadata__": ["k"]}), "__metadata__ is not a JSON object"),
        (
            lambda p: raw_file(
                p,
                b'{"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},'
                b'"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}',
            ),
            "header lists 'a' twice",
        ),
        (
            lambda p: raw_file(
                p, {"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}, bytes(3)
            ),
            "1 trailing bytes after the last tensor's data: the data section has 3 bytes",
        ),
        (
            lambda p: raw_file(
                p, {"a": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]}}, bytes(3)
            ),
            "1 unused bytes before tensor 'a' (bytes 1..3)",
        ),
    ],
    ids=[
        "shorter-than-length-field",
        "header-longer-than-file",
        "absurd-header-length",
        "bad-json",
        "not-utf8",
        "not-object",
        "truncated-data",
        "shape-vs-offsets",
        "unknown-dtype",
        "negative-dim",
        "backwards-offsets",
        "missing-key",
        "overlap",
        "metadata-not-str",
        "metadata-not-object",
        "duplicate-name",
        "trailing-bytes",
        "gap",
    ],
)
def test_malformed_file_raises_format_error_naming_file_and_problem(
    tmp_path: Path, make, message: str
) -> None:
    path = tmp_path / "model.safetensors"
    make(path)
    with pytest.raises(FormatError) as info:
        read_safetensors(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
    assert not str(info.value).endswith("]")  # the C++ core's " [function, file:line]" is off


@pytest.mark.parametrize(
    ("data_offsets", "data"), [([0, 2], 3), ([1, 3], 3)], ids=["trailing-bytes", "gap"]
)
def test_official_reader_refuses_the_uncovered_bytes_we_refuse(
    tmp_path: Path, data_offsets: list[int], data: int
) -> None:
    numpy_io = pytest.importorskip("safetensors.numpy")
    header = {"a": {"dtype": "U8", "shape": [2], "data_offsets": data_offsets}}
    path = raw_file(tmp_path / "model.safetensors", header, bytes(data))
    with pytest.raises(Exception, match=r"not fully covered|invalid offset"):
        numpy_io.load_file(path)
    with pytest.raises(FormatError):
        read_safetensors(path)


def test_file_cut_short_by_one_byte_is_truncated(tmp_path: Path) -> None:
    path = one_tensor_file(tmp_path / "model.safetensors")
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(FormatError, match="truncated: header says 8 bytes of data, file has 7"):
        read_safetensors(path)


def test_format_error_is_a_value_error(tmp_path: Path) -> None:
    path = raw_file(tmp_path / "x.safetensors", b"{")
    with pytest.raises(ValueError):
        read_safetensors(path)


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_safetensors(tmp_path / "absent.safetensors")
