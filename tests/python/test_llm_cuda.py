"""slimrt.LLM on the CUDA backend against the CPU backend (skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
from slimrt import LLM, SamplingParams, _core

pytestmark = pytest.mark.skipif(
    not _core.cuda_available(), reason="needs slimrt built with CUDA and a GPU"
)

PROMPTS = ["The quick brown fox", "Paged attention lets a server", "1 2 3"]


def last_logits(llm: LLM, ids: list[int]) -> np.ndarray:
    seq = llm.engine.add_sequence()
    try:
        return np.array(llm.engine.step([seq], ids, [len(ids)])[0])
    finally:
        llm.engine.release_sequence(seq)


@pytest.mark.parametrize("architecture", ["llama", "llama-bias", "mistral", "qwen2"])
@pytest.mark.parametrize("weights", ["bf16", "df11"])
def test_cuda_backend_generates_what_the_cpu_backend_generates(
    tiny_model_dir, architecture: str, weights: str
) -> None:
    path = str(tiny_model_dir(architecture)[0])
    cpu = LLM(path, device="cpu", weights=weights, kv_dtype="f32", progress=False)
    gpu = LLM(path, device="cuda", weights=weights, kv_dtype="f32", progress=False)
    ids = cpu.tokenizer.encode(PROMPTS[0])
    reference = last_logits(cpu, ids)
    # Both backends compute in FP32 from the same BF16 weights; only summation order differs.
    assert np.abs(last_logits(gpu, ids) - reference).max() / np.abs(reference).max() < 1e-4
    params = SamplingParams(max_tokens=24, ignore_eos=True)
    expected = [c.token_ids for c in cpu.generate(PROMPTS, params)]
    assert [c.token_ids for c in gpu.generate(PROMPTS, params)] == expected
