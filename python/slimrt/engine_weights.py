"""Tensors in the forms the engine takes (docs/ENGINE_API.md): matrices as BF16 bits (numpy
uint16) or `_core.Df11Weight`, vectors (norms, biases) as float32.

    bits, cast = bf16_matrix(array, "F32")     # rounds to nearest even; cast=True says it did
    vector = f32_vector(array, "BF16")         # exact
    weight = df11_weight(df11.compress(bits))  # what the engine decodes per layer

Both loaders (HF directory, GGUF) go through these, so the engine sees one set of rules.
"""

from __future__ import annotations

import numpy as np

from slimrt import _core, df11
from slimrt.bfloat16 import round_to_bf16, widen_bf16
from slimrt.errors import ModelError

__all__ = [
    "WEIGHT_FORMATS",
    "bf16_matrix",
    "check_weight_format",
    "df11_weight",
    "f32_vector",
    "to_format",
]

WEIGHT_FORMATS = ("bf16", "df11")


def check_weight_format(weights: object, error: type[Exception] = ValueError) -> None:
    """Raises `error` unless `weights` names one of WEIGHT_FORMATS."""
    if weights not in WEIGHT_FORMATS:
        raise error(f"weights must be one of {', '.join(WEIGHT_FORMATS)}, got {weights!r}")


_FLOATING = ("F16", "F32", "F64")


def bf16_matrix(array: np.ndarray, dtype: str, *, where: str) -> tuple[np.ndarray, bool]:
    """(BF16 bits, whether a lossy cast happened) for a matrix stored as safetensors `dtype`.

    BF16 passes through without a copy (a view of the file's mmap: the engine copies what it
    keeps). F16/F32/F64 round to nearest even, as torch's `.to(torch.bfloat16)` does.
    """
    if dtype == "BF16":
        return array, False
    if dtype in _FLOATING:
        return round_to_bf16(array), True
    raise ModelError(f"{where} is {dtype}; slimrt takes BF16, F16 or F32 weights")


def f32_vector(array: np.ndarray, dtype: str, *, where: str) -> np.ndarray:
    """A norm weight or bias as float32 (exact from BF16 and F16)."""
    if dtype == "BF16":
        return widen_bf16(array)
    if dtype in _FLOATING:
        return np.asarray(array, dtype=np.float32)
    raise ModelError(f"{where} is {dtype}; slimrt takes BF16, F16 or F32 weights")


def df11_weight(tensor: df11.Df11Tensor) -> object:
    """The engine's handle on a DF11 matrix; the arrays are validated by the engine."""
    return _core.Df11Weight(
        tensor.lengths, tensor.bitstream, tensor.index, tensor.signmant, list(tensor.shape)
    )


def to_format(bits: np.ndarray, weights: str, *, num_threads: int = 0) -> object:
    """A BF16 matrix in the requested weight format: itself for "bf16"; for "df11" its DF11
    form, unless that would be larger (tiny matrices: DF11 has ~0.5 KB of fixed arrays)."""
    if weights == "bf16":
        return bits
    compressed = df11.compress(bits, num_threads=num_threads)
    if compressed.nbytes >= bits.nbytes:
        return bits
    return df11_weight(compressed)
