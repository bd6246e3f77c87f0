"""BF16 test data shared by the test modules (uint16 bit patterns)."""

from __future__ import annotations

import numpy as np
from slimrt.bfloat16 import round_to_bf16

# Bit patterns a codec gets wrong first: zeros, subnormals, infinities, NaN payloads, extremes.
SPECIAL_BF16 = np.array(
    [
        0x0000, 0x8000,  # +0, -0
        0x0001, 0x8001, 0x007F, 0x807F, 0x0040,  # subnormals
        0x0080, 0x8080,  # smallest normals
        0x7F7F, 0xFF7F,  # largest finite
        0x7F80, 0xFF80,  # +inf, -inf
        0x7FC0, 0xFFC0, 0x7F81, 0xFF81, 0x7FFF, 0xFFFF, 0x7FA5,  # NaNs, quiet and signalling
        0x3F80, 0xBF80,  # +-1
    ],
    dtype=np.uint16,
)  # fmt: skip


def gaussian_bf16(shape: tuple[int, ...], std: float = 0.02, seed: int = 0) -> np.ndarray:
    """LLM-like weights: N(0, std) rounded to BF16, as uint16 bits."""
    rng = np.random.default_rng(seed)
    return round_to_bf16(rng.standard_normal(shape, dtype=np.float32) * np.float32(std))
