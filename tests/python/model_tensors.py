"""What a loaded `_core.Model` holds, against a transformers model's own tensors.

assert_holds(load_model(path).model, expected_weights(transformers_model))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from slimrt.bfloat16 import round_to_bf16


def expected_weights(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The engine's view of a transformers model: matrices as BF16 bits, vectors as float32;
    a tied lm_head is the embedding, not a tensor of its own."""
    out = {}
    for name, tensor in model.state_dict().items():
        array = tensor.float().numpy()
        out[name] = round_to_bf16(array) if array.ndim == 2 else array.astype(np.float32)
    if model.config.tie_word_embeddings:
        out.pop("lm_head.weight", None)
    return out


def assert_holds(core: Any, expected: dict[str, np.ndarray]) -> None:
    """`core` holds every tensor of `expected`, bit for bit: matrices as BF16 (decoded if it
    keeps them DF11), norms and biases as float32. The names are transformers' whole state
    dict, so a tensor the engine lacks, or holds in the wrong place, fails here."""
    for name, array in expected.items():
        if array.ndim == 2:
            got = core.matrix_bf16(name).reshape(array.shape)
        else:
            got = core.vector_f32(name)
        assert got.dtype == array.dtype, name
        np.testing.assert_array_equal(got, array, err_msg=name)
    if core.config.tie_word_embeddings:  # lm_head reads the embedding, as in transformers
        np.testing.assert_array_equal(
            core.matrix_bf16("lm_head.weight"), core.matrix_bf16("model.embed_tokens.weight")
        )


def xor_tensor_bytes(path: Path, tensor: str, mask: int) -> np.ndarray:
    """XORs every byte of a stored tensor with `mask`, in place on disk; returns the bytes as
    they were."""
    from slimrt.safetensors_file import read_safetensors

    file = read_safetensors(path)
    info = file.tensors[tensor]
    start = file.data_start + info.begin
    del file
    data = bytearray(path.read_bytes())
    before = np.frombuffer(bytes(data[start : start + info.nbytes]), np.uint8)
    data[start : start + info.nbytes] = (before ^ np.uint8(mask)).tobytes()
    path.write_bytes(bytes(data))
    return before
