from __future__ import annotations

import numpy as np
import pytest
from slimrt.bfloat16 import round_to_bf16, widen_bf16

torch = pytest.importorskip("torch")


def torch_bf16_bits(values: np.ndarray) -> np.ndarray:
    return torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def test_round_to_bf16_matches_torch_for_every_non_nan_float32_class() -> None:
    rng = np.random.default_rng(0)
    random_bits = rng.integers(0, 1 << 32, 200_000, dtype=np.uint64).astype(np.uint32)
    # Ties (low half exactly 0x8000) are where round-half-even differs from round-half-up.
    ties = (random_bits & np.uint32(0xFFFF0000)) | np.uint32(0x8000)
    edges = np.array(
        [0, 0x80000000, 1, 0x8000, 0x18000, 0x7F7FFFFF, 0x7F7F8000, 0xFF7FFFFF, 0x7F800000,
         0xFF800000, 0x007FFFFF, 0x3F808000, 0x3F818000],
        dtype=np.uint32,
    )  # fmt: skip
    values = np.concatenate([random_bits, ties, edges]).view(np.float32)
    values = values[~np.isnan(values)]
    np.testing.assert_array_equal(round_to_bf16(values), torch_bf16_bits(values))


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_round_to_bf16_matches_torch_for_float16_and_float64(dtype: type) -> None:
    values = np.random.default_rng(1).standard_normal(10_000).astype(dtype) * dtype(100)
    values = np.concatenate([values, np.array([0, -0.0, np.inf, -np.inf, 1e-7], dtype=dtype)])
    np.testing.assert_array_equal(round_to_bf16(values), torch_bf16_bits(values))


def test_nan_stays_nan_keeping_sign_and_top_payload() -> None:
    nans = np.array([0x7FC00000, 0xFF800001, 0x7FA5A5A5], dtype=np.uint32).view(np.float32)
    bits = round_to_bf16(nans)
    assert np.isnan(widen_bf16(bits)).all()
    assert bits.tolist() == [0x7FC0, 0xFFC0, 0x7FE5]


def test_widen_is_exact_for_all_65536_patterns() -> None:
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    widened = widen_bf16(every)
    assert widened.dtype == np.float32
    np.testing.assert_array_equal(widened.view(np.uint32) >> 16, every)
    finite = ~np.isnan(widened)
    np.testing.assert_array_equal(round_to_bf16(widened)[finite], every[finite])


def test_round_to_bf16_keeps_shape_and_rejects_integers() -> None:
    assert round_to_bf16(np.zeros((3, 0, 2), np.float32)).shape == (3, 0, 2)
    with pytest.raises(TypeError, match="floating"):
        round_to_bf16(np.zeros(3, np.int32))
