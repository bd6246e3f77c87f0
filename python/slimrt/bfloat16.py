"""BF16 in numpy, which has no bfloat16 dtype: values travel as their uint16 bit patterns.

    bits = round_to_bf16(weights_f32)   # lossy: round to nearest, ties to even
    back = widen_bf16(bits)             # exact: every BF16 value is a float32 value

The cast lives here, not in torch, so that `slimrt compress --cast-bf16` and `slimrt verify`
produce the same bits without torch installed.
"""

from __future__ import annotations

import numpy as np

__all__ = ["round_to_bf16", "widen_bf16"]

# Elements per step: bounds the float32/uint32 temporaries for multi-GB tensors.
_CHUNK = 1 << 22


def round_to_bf16(array: np.ndarray) -> np.ndarray:
    """Rounds float16/32/64 values to BF16 (nearest, ties to even); returns uint16 bit patterns.

    Matches torch's `.to(torch.bfloat16)` for every non-NaN value, including subnormals (kept,
    not flushed) and overflow to infinity. float64 goes through float32 first, as torch does, so
    a value can be rounded twice. A NaN keeps its sign and its top 7 payload bits and is made
    quiet (torch's own NaN results differ between its code paths).
    """
    if array.dtype.kind != "f":
        raise TypeError(f"round_to_bf16 takes floating arrays, got {array.dtype}")
    source = array.reshape(-1)
    out = np.empty(source.shape, dtype=np.uint16)
    for start in range(0, source.size, _CHUNK):
        x = source[start : start + _CHUNK].astype(np.float32)
        bits = x.view(np.uint32)
        # Adding 0x7FFF plus the lowest kept bit rounds half to even; only NaNs could carry
        # past the top, and they are replaced below.
        rounded = (bits + (np.uint32(0x7FFF) + ((bits >> 16) & 1))) >> 16
        quiet_nan = (bits >> 16) | np.uint32(0x0040)
        out[start : start + _CHUNK] = np.where(np.isnan(x), quiet_nan, rounded)
    return out.reshape(array.shape)


def widen_bf16(bits: np.ndarray) -> np.ndarray:
    """BF16 bit patterns (uint16) -> float32 values, exactly."""
    if bits.dtype != np.uint16:
        raise TypeError(f"widen_bf16 takes uint16 BF16 bit patterns, got {bits.dtype}")
    return (bits.astype(np.uint32) << 16).view(np.float32)
