"""The CUDA decoder against the CPU one, on the same DF11 tensors (skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
from bf16_data import SPECIAL_BF16, gaussian_bf16
from slimrt import _core, df11
from slimrt.errors import ChecksumError

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(
    not (_core.cuda_available() and torch.cuda.is_available()),
    reason="needs slimrt built with CUDA, a CUDA build of torch and a GPU",
)


def cuda_bits(tensor: df11.Df11Tensor, **options: object) -> np.ndarray:
    out = tensor.decompress("cuda", **options)
    assert out.dtype == torch.bfloat16 and out.is_cuda and tuple(out.shape) == tensor.shape
    return out.view(torch.int16).cpu().numpy().view(np.uint16)


def test_cuda_decode_of_a_large_llm_matrix_is_bit_exact() -> None:
    bits = gaussian_bf16((8192, 4096), std=0.02, seed=0)
    tensor = df11.compress(bits)
    np.testing.assert_array_equal(cuda_bits(tensor), bits)
    np.testing.assert_array_equal(cuda_bits(tensor), tensor.decompress())


def test_cuda_decode_of_every_minilm_matrix_is_bit_exact(
    minilm_matrices: dict[str, np.ndarray],
) -> None:
    assert len(minilm_matrices) >= 20
    for name, bits in minilm_matrices.items():
        np.testing.assert_array_equal(cuda_bits(df11.compress(bits)), bits, err_msg=name)


@pytest.mark.parametrize(
    "bits",
    [
        np.arange(1 << 16, dtype=np.uint32).astype(np.uint16),
        np.resize(SPECIAL_BF16, 4097),
        gaussian_bf16((1,)),
        gaussian_bf16(()),
        gaussian_bf16((0, 7)),
        gaussian_bf16((3, 4095), seed=3),
        np.full(10_000, 0x3F80, dtype=np.uint16),
    ],
    ids=["all-patterns", "specials", "one", "scalar", "empty", "partial-groups", "one-exponent"],
)
def test_cuda_decode_matches_cpu_on_edge_cases(bits: np.ndarray) -> None:
    tensor = df11.compress(bits)
    np.testing.assert_array_equal(cuda_bits(tensor, verify=True), tensor.decompress())


@pytest.mark.parametrize("max_code_length", [1, 4, 8, 12])
def test_cuda_decode_honours_every_code_length_cap(max_code_length: int) -> None:
    bits = gaussian_bf16((1000, 257), seed=max_code_length)
    tensor = df11.compress(bits, max_code_length=max_code_length)
    np.testing.assert_array_equal(cuda_bits(tensor), bits)


def test_cuda_decode_on_a_side_stream_and_explicit_device() -> None:
    bits = gaussian_bf16((2048, 1024), seed=4)
    tensor = df11.compress(bits)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        out = tensor.decompress("cuda:0")
        result = out.view(torch.int16).cpu().numpy().view(np.uint16)
    np.testing.assert_array_equal(result, bits)


def test_cuda_verify_catches_a_corrupt_stream() -> None:
    bits = gaussian_bf16((300, 300), seed=5)
    good = df11.compress(bits)
    signmant = good.signmant.copy()
    signmant[123] ^= 0x01
    bad = df11.Df11Tensor(
        good.shape, good.lengths, good.bitstream, good.index, signmant, good.crc32
    )
    cuda_bits(bad)  # verify is off by default on CUDA
    with pytest.raises(ChecksumError):
        bad.decompress("cuda", verify=True)


def test_uploaded_tensor_decodes_repeatedly_into_caller_memory() -> None:
    bits = gaussian_bf16((512, 512), seed=6)
    tensor = df11.compress(bits)
    on_device = tensor.upload()
    assert on_device.numel == bits.size and on_device.device_bytes >= tensor.nbytes - 256
    out = torch.empty(bits.shape, dtype=torch.bfloat16, device="cuda")
    for _ in range(3):
        out.zero_()
        on_device.decode_into(out, torch.cuda.current_stream().cuda_stream)
        torch.cuda.current_stream().synchronize()
        np.testing.assert_array_equal(out.view(torch.int16).cpu().numpy().view(np.uint16), bits)
