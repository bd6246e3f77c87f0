from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable
from pathlib import Path

import df11_reference as ref
import numpy as np
import pytest
from bf16_data import SPECIAL_BF16, gaussian_bf16
from hypothesis import given, settings
from hypothesis import strategies as st
from slimrt import _core, df11
from slimrt.errors import ChecksumError, FormatError
from slimrt.safetensors_file import read_safetensors, write_safetensors


def round_trip(bits: np.ndarray, **options: int) -> df11.Df11Tensor:
    tensor = df11.compress(bits, **options)
    back = tensor.decompress()
    assert back.dtype == np.uint16 and back.shape == bits.shape
    np.testing.assert_array_equal(back, bits)
    assert tensor.crc32 == zlib.crc32(bits.tobytes())
    return tensor


def make_bits(kind: str, n: int, seed: int) -> np.ndarray:
    """Test tensors of the kinds that stress different parts of the codec."""
    rng = np.random.default_rng(seed)
    if kind == "uniform":  # every exponent, flat histogram
        return rng.integers(0, 1 << 16, n, dtype=np.uint32).astype(np.uint16)
    if kind == "gaussian":  # LLM weights: a peaked histogram, long codes for rare exponents
        return gaussian_bf16((n,), std=float(10 ** rng.uniform(-4, 1)), seed=seed)
    if kind == "special":
        return rng.choice(SPECIAL_BF16, n)
    if kind == "one-exponent":  # a single symbol: length-1 code
        exponent = np.uint16(rng.integers(0, 256)) << np.uint16(7)
        return exponent | rng.integers(0, 1 << 16, n, dtype=np.uint32).astype(np.uint16) & 0x807F
    if kind == "two-exponents":
        exponents = rng.choice(np.array([0x3F00, 0x0080], dtype=np.uint16), n, p=[0.999, 0.001])
        return exponents | rng.integers(0, 0x80, n, dtype=np.uint16)
    # skewed: exponents with geometric frequencies, so unlimited Huffman would exceed 12 bits
    exponents = np.minimum(rng.geometric(0.5, n), 255).astype(np.uint16)
    return exponents << np.uint16(7) | rng.integers(0, 1 << 16, n, dtype=np.uint32).astype(
        np.uint16
    ) & np.uint16(0x807F)


KINDS = ["uniform", "gaussian", "special", "one-exponent", "two-exponents", "skewed"]


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    n=st.one_of(
        st.integers(0, 20_000),
        st.sampled_from([0, 1, 7, 8, 255, 256, 4095, 4096, 4097, 8192, 12_289]),
    ),
    seed=st.integers(0, 2**32 - 1),
    max_code_length=st.sampled_from([12, 12, 11, 9, 8, 4, 1]),
)
def test_round_trip_is_bit_exact(kind: str, n: int, seed: int, max_code_length: int) -> None:
    bits = make_bits(kind, n, seed)
    tensor = round_trip(bits, max_code_length=max_code_length)
    # A shorter cap is honoured unless no complete code that short exists.
    distinct = len(np.unique(ref.exponents(bits)))
    cap = max(max_code_length, math.ceil(math.log2(distinct)) if distinct > 1 else 1)
    assert tensor.lengths.max(initial=0) <= cap


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(KINDS), n=st.integers(1, 9000), seed=st.integers(0, 2**32 - 1))
def test_core_output_follows_format_md_exactly(kind: str, n: int, seed: int) -> None:
    bits = make_bits(kind, n, seed)
    tensor = df11.compress(bits)
    expected = ref.encode(bits, tensor.lengths)
    np.testing.assert_array_equal(tensor.signmant, expected["signmant"])
    np.testing.assert_array_equal(tensor.index, expected["index"])
    np.testing.assert_array_equal(tensor.bitstream, expected["bitstream"])
    assert tensor.bitstream.size >= ref.required_bitstream_words(tensor.index)
    # The code: complete (or a lone length-1 code), capped, and optimal under the cap.
    present = np.unique(ref.exponents(bits))
    assert set(np.flatnonzero(tensor.lengths)) == set(present.tolist())
    assert ref.kraft_sum(tensor.lengths) == (0.5 if present.size == 1 else 1.0)
    counts = np.bincount(ref.exponents(bits), minlength=256)
    used = int((counts * tensor.lengths.astype(np.int64)).sum())
    assert used == ref.optimal_code_bits(counts, ref.MAX_CODE_LENGTH)


def test_all_65536_bit_patterns_round_trip_in_order_and_shuffled() -> None:
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    round_trip(every)
    round_trip(np.random.default_rng(3).permutation(every).reshape(256, 256))


@pytest.mark.parametrize("max_code_length", range(1, 13))
def test_every_code_length_cap_round_trips(max_code_length: int) -> None:
    bits = np.concatenate([gaussian_bf16((20_000,), seed=max_code_length), SPECIAL_BF16])
    round_trip(bits, max_code_length=max_code_length)


@pytest.mark.parametrize("shape", [(), (1,), (0,), (0, 5), (4097,), (3, 4096), (5, 7, 9)])
def test_shapes_including_empty_scalar_and_partial_groups_round_trip(shape: tuple) -> None:
    bits = gaussian_bf16(shape, seed=len(shape))
    tensor = round_trip(bits)
    assert tensor.shape == shape
    assert tensor.index.shape == (math.ceil(tensor.numel / 4096), 17)


def test_empty_tensor_has_no_codes_and_only_tail_padding() -> None:
    tensor = round_trip(np.zeros((0, 3), np.uint16))
    assert not tensor.lengths.any()
    assert tensor.bitstream.tolist() == [0] * ref.TAIL_PAD_WORDS
    assert tensor.ratio == math.inf


def test_special_values_round_trip_in_every_lane_position() -> None:
    # 4096 + 100 elements: every special value at each of a group's lanes and in a tail group.
    bits = np.resize(SPECIAL_BF16, 4196).reshape(4196)
    round_trip(bits)
    round_trip(np.roll(bits, 1))


def test_non_contiguous_and_big_endian_input_is_accepted() -> None:
    bits = gaussian_bf16((64, 64), seed=5)
    np.testing.assert_array_equal(df11.compress(bits[:, ::2]).decompress(), bits[:, ::2])
    big = bits.astype(">u2")
    np.testing.assert_array_equal(df11.compress(big).decompress(), bits)


def test_torch_bfloat16_input_equals_its_bits() -> None:
    torch = pytest.importorskip("torch")
    weight = (torch.randn(300, 257) * 0.02).to(torch.bfloat16).requires_grad_()
    tensor = df11.compress(weight.t())  # non-contiguous, needs grad
    expected = weight.detach().t().contiguous().view(torch.int16).numpy().view(np.uint16)
    assert tensor.shape == (257, 300)
    np.testing.assert_array_equal(tensor.decompress(), expected)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda torch: torch.zeros(3),
            "float32 tensor given; DF11 compresses bfloat16 — cast with .to(torch.bfloat16) "
            "(lossy) first",
        ),
        (lambda torch: torch.zeros(3, dtype=torch.float16), "float16 tensor given"),
        (
            lambda torch: np.zeros(3, np.float32),
            "float32 array given; DF11 compresses BF16 bit "
            "patterns held in a uint16 array — convert with slimrt.bfloat16.round_to_bf16(array)",
        ),
        (lambda torch: np.zeros(3, np.int16), "int16 array given"),
        (lambda torch: [1, 2], "list given"),
    ],
)
def test_wrong_input_type_says_how_to_cast(make: Callable, message: str) -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError) as info:
        df11.compress(make(torch))
    assert message in str(info.value)


@pytest.mark.parametrize("cap", [0, 13, 2.0])
def test_invalid_code_length_cap_is_refused(cap: object) -> None:
    with pytest.raises(ValueError, match="max_code_length must be an int in"):
        df11.compress(np.zeros(4, np.uint16), max_code_length=cap)  # type: ignore[arg-type]


def test_sizes_ratio_and_description() -> None:
    bits = gaussian_bf16((512, 384), seed=9)
    tensor = df11.compress(bits)
    assert tensor.numel == bits.size
    assert tensor.original_nbytes == bits.nbytes
    parts = (tensor.lengths, tensor.bitstream, tensor.index, tensor.signmant)
    assert tensor.nbytes == sum(a.nbytes for a in parts)
    assert tensor.ratio == tensor.nbytes / bits.nbytes
    assert 0.6 < tensor.ratio < 0.72  # N(0, 0.02) weights: ~2.6-bit exponents
    assert tensor.description() == {
        "format": "slimrt-df11",
        "version": 1,
        "dtype": "bfloat16",
        "shape": [512, 384],
        "lanes": 32,
        "lane_elements": 128,
        "crc32": zlib.crc32(bits.tobytes()),
    }


def test_decompress_rejects_unknown_device() -> None:
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        df11.compress(np.zeros(4, np.uint16)).decompress("tpu")


@pytest.mark.skipif(_core.cuda_available(), reason="checks the message when CUDA is missing")
def test_decompress_on_cuda_without_cuda_says_so() -> None:
    pytest.importorskip("torch")
    with pytest.raises(RuntimeError, match=r"without CUDA|no CUDA device|no usable GPU"):
        df11.compress(np.zeros(4, np.uint16)).decompress("cuda")


# --- the safetensors container ------------------------------------------------------------


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    df11.save(
        path,
        {
            "w": df11.compress(gaussian_bf16((100, 96), seed=1)),
            "bias": np.arange(4, dtype=np.float32),
        },
        {"format": "pt"},
    )
    return path


def test_save_load_round_trip_keeps_tensors_dtypes_and_metadata(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    w = gaussian_bf16((64, 48), seed=2)
    norm = torch.linspace(-1, 1, 5).to(torch.bfloat16)
    path = tmp_path / "m.safetensors"
    df11.save(
        path,
        {"w": df11.compress(w), "norm": norm, "ids": np.arange(3), "empty": df11.compress(w[:0])},
        {"format": "pt"},
    )
    file = df11.read(path)
    assert file.metadata == {"format": "pt"}
    assert file.dtypes == {"w": "BF16", "norm": "BF16", "ids": "I64", "empty": "BF16"}
    assert set(file.tensors) == {"w", "norm", "ids", "empty"}
    np.testing.assert_array_equal(file.tensors["w"].decompress(), w)
    assert file.tensors["empty"].decompress().shape == (0, 48)
    np.testing.assert_array_equal(
        file.tensors["norm"], norm.view(torch.int16).numpy().view(np.uint16)
    )
    assert df11.load(path).keys() == file.tensors.keys()


def test_official_safetensors_opens_df11_files(saved: Path) -> None:
    safetensors = pytest.importorskip("safetensors")
    tensor = df11.load(saved)["w"]
    with safetensors.safe_open(saved, "numpy") as f:
        assert set(f.keys()) == {
            "bias", "w.df11.lengths", "w.df11.bitstream", "w.df11.index", "w.df11.signmant",
        }  # fmt: skip
        for suffix in ("lengths", "bitstream", "index", "signmant"):
            stored = f.get_tensor(f"w.df11.{suffix}")
            np.testing.assert_array_equal(stored, getattr(tensor, suffix))
        assert f.get_tensor("w.df11.lengths").dtype == np.uint8
        assert f.get_tensor("w.df11.bitstream").dtype == np.uint32
        metadata = f.metadata()
    assert metadata["format"] == "pt"
    assert json.loads(metadata["slimrt.df11:w"]) == tensor.description()


def test_save_refuses_names_that_would_read_back_as_df11(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="would read back as a DF11 array"):
        df11.save(tmp_path / "x.safetensors", {"a.df11.index": np.zeros(1, np.uint32)})
    with pytest.raises(ValueError, match="reserved for DF11 descriptions"):
        df11.save(tmp_path / "x.safetensors", {}, {"slimrt.df11:a": "{}"})


def rewrite(path: Path, edit: Callable[[dict, dict, dict], None]) -> None:
    """Rewrites a saved file after `edit(arrays, dtypes, metadata)` changed its parts."""
    file = read_safetensors(path)
    arrays = {name: np.array(file.array(name)) for name in file.tensors}
    dtypes = {name: info.dtype for name, info in file.tensors.items()}
    metadata = dict(file.metadata)
    del file
    edit(arrays, dtypes, metadata)
    write_safetensors(path, arrays, metadata, dtypes=dtypes)


def edit_description(**changes: object) -> Callable[[dict, dict, dict], None]:
    def edit(arrays: dict, dtypes: dict, metadata: dict) -> None:
        description = json.loads(metadata["slimrt.df11:w"])
        description.update(changes)
        metadata["slimrt.df11:w"] = json.dumps(description)

    return edit


def drop(name: str) -> Callable[[dict, dict, dict], None]:
    def edit(arrays: dict, dtypes: dict, metadata: dict) -> None:
        del arrays[name], dtypes[name]

    return edit


def add(name: str, array: np.ndarray) -> Callable[[dict, dict, dict], None]:
    def edit(arrays: dict, dtypes: dict, metadata: dict) -> None:
        arrays[name] = array
        dtypes[name] = "U8"

    return edit


def set_metadata(value: str) -> Callable[[dict, dict, dict], None]:
    def edit(arrays: dict, dtypes: dict, metadata: dict) -> None:
        metadata["slimrt.df11:w"] = value

    return edit


def patch_array(name: str, change: Callable[[np.ndarray], None]) -> Callable:
    def edit(arrays: dict, dtypes: dict, metadata: dict) -> None:
        change(arrays[name])

    return edit


def reversed_lanes(index: np.ndarray) -> None:
    index[0, 2] = 0  # lanes 2 and 3 now start at 0, before lane 1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            edit_description(version=2),
            "tensor 'w': DF11 version 2 is not supported (this slimrt reads version 1)",
        ),
        (edit_description(version="1"), "tensor 'w': DF11 version '1' is not an integer"),
        (
            edit_description(format="other"),
            "tensor 'w': unknown format 'other' (expected 'slimrt-df11')",
        ),
        (edit_description(dtype="float16"), "tensor 'w': DF11 dtype 'float16' is not supported"),
        (
            edit_description(lanes=64),
            "tensor 'w': DF11 layout lanes=64, this reader knows lanes=32",
        ),
        (edit_description(lane_elements=256), "DF11 layout lane_elements=256"),
        (
            edit_description(shape=[96, 101]),
            "tensor 'w': DF11 array signmant has shape [9600], expected [9696] for shape [96, 101]",
        ),
        (
            edit_description(shape=[3, -1]),
            "tensor 'w': DF11 shape [3, -1] is not a list of non-negative",
        ),
        (edit_description(crc32=-5), "tensor 'w': DF11 crc32 -5 is not a 32-bit unsigned integer"),
        (set_metadata("{not json"), "tensor 'w': DF11 description is not valid JSON"),
        (set_metadata("[1]"), "tensor 'w': DF11 description is not a JSON object"),
        (drop("w.df11.bitstream"), "tensor 'w': missing DF11 array 'w.df11.bitstream'"),
        (
            add("w.df11.extra", np.zeros(2, np.uint8)),
            "tensor 'w': unexpected DF11 array 'w.df11.extra'",
        ),
        (
            add("v.df11.lengths", np.zeros(256, np.uint8)),
            "DF11 array 'v.df11.lengths' has no description "
            "(no __metadata__ entry 'slimrt.df11:v')",
        ),
        (add("w", np.zeros(2, np.uint8)), "tensor 'w' is stored both plain and as DF11"),
        (
            patch_array("w.df11.lengths", lambda a: a.__setitem__(slice(None), 0)),
            "tensor 'w': DF11: code lengths do not form a complete prefix code",
        ),
        (
            patch_array("w.df11.lengths", lambda a: a.__setitem__(np.argmax(a), 13)),
            "tensor 'w': DF11: code length 13 of exponent",
        ),
        (
            patch_array("w.df11.index", reversed_lanes),
            "tensor 'w': DF11: group 0 lane 2 offset runs backwards",
        ),
    ],
    ids=[
        "version",
        "version-type",
        "format",
        "dtype",
        "lanes",
        "lane-elements",
        "shape",
        "negative-shape",
        "crc",
        "bad-json",
        "not-object",
        "missing-array",
        "extra-array",
        "orphan-array",
        "plain-and-df11",
        "incomplete-code",
        "code-too-long",
        "lanes-backwards",
    ],
)
def test_bad_df11_data_raises_format_error_naming_file_and_tensor(
    saved: Path, edit: Callable, message: str
) -> None:
    rewrite(saved, edit)
    with pytest.raises(FormatError) as info:
        df11.load(saved)
    assert str(info.value).startswith(f"{saved}: ")
    assert message in str(info.value)


def test_wrong_array_dtype_is_named(saved: Path) -> None:
    def as_u16(arrays: dict, dtypes: dict, metadata: dict) -> None:
        arrays["w.df11.signmant"] = arrays["w.df11.signmant"].astype(np.uint16)
        dtypes["w.df11.signmant"] = "U16"

    rewrite(saved, as_u16)
    with pytest.raises(FormatError, match=r"DF11 array 'w\.df11\.signmant' is U16, expected U8"):
        df11.load(saved)


def test_short_bitstream_is_refused_before_decoding(saved: Path) -> None:
    def shorten(arrays: dict, dtypes: dict, metadata: dict) -> None:
        arrays["w.df11.bitstream"] = arrays["w.df11.bitstream"][:-10]

    rewrite(saved, shorten)
    with pytest.raises(FormatError, match=r"tensor 'w': DF11: bitstream of \d+ words is too short"):
        df11.load(saved)


def flip_byte(path: Path, tensor: str, position: float) -> None:
    """Flips one byte of a stored tensor, in place on disk, at a relative position."""
    file = read_safetensors(path)
    info = file.tensors[tensor]
    offset = file.data_start + info.begin + int(info.nbytes * position)
    del file
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("array", ["bitstream", "signmant"])
def test_flipped_byte_is_caught_by_the_checksum(saved: Path, array: str) -> None:
    flip_byte(saved, f"w.df11.{array}", 0.2)
    tensor = df11.load(saved)["w"]
    with pytest.raises(ChecksumError, match="the DF11 data is corrupt"):
        tensor.decompress()
    assert tensor.decompress(verify=False).shape == (100, 96)  # decodes, wrongly, when asked


def test_wrong_stored_crc_is_a_checksum_error(saved: Path) -> None:
    rewrite(saved, edit_description(crc32=12345))
    with pytest.raises(ChecksumError, match="description says 0x00003039"):
        df11.load(saved)["w"].decompress()


def test_checksum_error_is_a_format_error() -> None:
    assert issubclass(ChecksumError, FormatError) and issubclass(FormatError, ValueError)


def test_validate_enforces_the_format_md_bitstream_length() -> None:
    # One full group whose last lane starts off a word boundary, so the two rules differ.
    bits = gaussian_bf16((4096,), seed=11)
    tensor = df11.compress(bits)
    required = ref.required_bitstream_words(tensor.index)
    last_offset = int(tensor.index[-1, 16] >> 16)
    assert last_offset % 32 != 0 and tensor.bitstream.size >= required
    short = np.ascontiguousarray(tensor.bitstream[: required - 1])
    with pytest.raises(FormatError) as info:
        _core.df11_validate(tensor.lengths, short, tensor.index, tensor.signmant, tensor.numel)
    assert str(info.value) == (
        f"DF11: bitstream of {required - 1} words is too short for group 0 (needs {required})"
    )
    _core.df11_validate(
        tensor.lengths, tensor.bitstream[:required], tensor.index, tensor.signmant, tensor.numel
    )
