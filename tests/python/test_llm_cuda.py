"""slimrt.LLM on the CUDA backend against the CPU backend (skipped without a GPU).

The CUDA backend rounds matmul inputs to BF16 (tensor cores) where the CPU keeps FP32, so the two
agree to a relative tolerance, not bit for bit; greedy tokens are compared wherever the choice
is clear (see `clear_margin`), with the CPU scoring the GPU's own continuation.
"""

from __future__ import annotations

import numpy as np
import pytest
from slimrt import LLM, SamplingParams, _core
from slimrt.errors import OutOfMemoryError
from slimrt.model_loader import load_model

pytestmark = pytest.mark.skipif(
    not _core.cuda_available(), reason="needs slimrt built with CUDA and a GPU"
)

PROMPTS = ["The quick brown fox", "Paged attention lets a server", "1 2 3"]
# Each BF16 rounding is off by up to 2^-9 relative; measured differences are ~1e-3 to 1e-2 of
# the largest logit. A wrong kernel is off by O(1).
TOLERANCE = 3e-2
SPARSE_TOLERANCE = 0.1


def last_logits(llm: LLM, ids: list[int]) -> np.ndarray:
    seq = llm.engine.add_sequence()
    try:
        return np.array(llm.engine.step([seq], ids, [len(ids)])[0])
    finally:
        llm.engine.release_sequence(seq)


def clear_margin(logits: np.ndarray) -> bool:
    """The top logit leads the runner-up by more than both backends can disagree."""
    top2 = np.sort(logits)[-2:]
    return top2[1] - top2[0] > 2 * TOLERANCE * np.abs(logits).max()


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
    assert np.abs(last_logits(gpu, ids) - reference).max() / np.abs(reference).max() < TOLERANCE
    params = SamplingParams(max_tokens=24, ignore_eos=True)
    compared = 0
    for prompt, completion in zip(PROMPTS, gpu.generate(PROMPTS, params), strict=True):
        context = cpu.tokenizer.encode(prompt)
        assert len(completion.token_ids) == 24
        for token in completion.token_ids:
            logits = last_logits(cpu, context)
            if clear_margin(logits):
                assert token == int(np.argmax(logits)), (prompt, len(context))
                compared += 1
            context.append(token)
    assert compared >= 24  # most choices of a random model are clear


def step_logits(llm: LLM, chunks: list[list[int]]) -> list[np.ndarray]:
    """The last logits of each step of one sequence fed `chunks` in turn."""
    seq = llm.engine.add_sequence()
    try:
        return [np.array(llm.engine.step([seq], ids, [len(ids)])[0]) for ids in chunks]
    finally:
        llm.engine.release_sequence(seq)


@pytest.mark.parametrize("weights", ["bf16", "df11"])
def test_sparse_kv_on_cuda_matches_the_cpu_step_by_step(tiny_model_dir, weights: str) -> None:
    # A window of 16 tokens in pages of 16: pages are compressed after every chunk and every
    # 16 decode steps, on the GPU by its own kernel; the second chunk is a prefill over
    # compressed pages, the single tokens decode over them.
    path = str(tiny_model_dir("llama-d64")[0])
    options = {
        "weights": weights,
        "max_batch": 1,
        "max_step_tokens": 128,
        "kv_sparsity": 0.7,
        "kv_window": 16,
        "progress": False,
    }
    cpu = LLM(path, device="cpu", **options)
    gpu = LLM(path, device="cuda", **options)
    rng = np.random.default_rng(7)
    ids = rng.integers(4, cpu.engine.vocab_size, size=150).tolist()
    chunks = [ids[:70], ids[70:120], *([i] for i in ids[120:])]
    # Pruning keeps the largest |x| as each backend computed them: values within BF16 rounding
    # of each other may be kept on one and dropped on the other, which moves the logits more
    # than rounding alone does, and more with every step (measured on an H200: below 0.1 of
    # the largest logit for the two chunks and four decodes compared here, 0.19 at the eighth
    # step; a wrong kernel is off by O(1)).
    compared = 6
    for step, (got, want) in enumerate(
        zip(step_logits(gpu, chunks)[:compared], step_logits(cpu, chunks)[:compared], strict=True)
    ):
        difference = np.abs(got - want).max() / np.abs(want).max()
        assert difference < SPARSE_TOLERANCE, (step, difference)
    usage = gpu.engine.kv_usage()
    assert usage["peak_compressed_pages_used"] >= 8  # 150 tokens, 16 of them dense at a time
    assert usage["compressed_pages_used"] == 0 and usage["dense_pages_used"] == 0


def test_a_budget_that_does_not_fit_is_refused_with_torch_loaded(tiny_model_dir) -> None:
    # In a process that had loaded torch, formatting this message once crashed (H100, 2026-11-23).
    torch = pytest.importorskip("torch")
    torch.zeros(1, device="cuda")
    model = load_model(str(tiny_model_dir("llama")[0]), device="cuda", progress=False).model
    assert model.device == "cuda"
    options = {"kv_tokens": 4096, "memory_limit_bytes": 1 << 20}
    with pytest.raises(OutOfMemoryError, match=r"^not enough memory: weights \d+\.\d+ GiB \+"):
        _core.Engine(model, options)


def test_a_corrupt_df11_directory_is_refused_by_the_gpus_own_check(
    tiny_model_dir, tmp_path
) -> None:
    """DF11 weights kept compressed on the GPU are decoded there by the GPU decoder and their
    CRC-32 summed there (ops::crc32): a corrupt file fails to load on CUDA as on the CPU."""
    from model_tensors import xor_tensor_bytes
    from slimrt.compress_model import compress_model
    from slimrt.errors import FormatError

    compress_model(tiny_model_dir("llama")[0], tmp_path / "df11", progress=False)
    good = load_model(tmp_path / "df11", device="cuda", weights="df11", progress=False)
    assert good.model.df11_matrices > 0
    file = tmp_path / "df11" / "model.safetensors"
    xor_tensor_bytes(file, "lm_head.weight.df11.signmant", 0x80)
    for weights in ("df11", "bf16"):
        with pytest.raises(FormatError, match=r"tensor lm_head\.weight: CRC-32 mismatch"):
            load_model(tmp_path / "df11", device="cuda", weights=weights, progress=False)
    unchecked = load_model(
        tmp_path / "df11", device="cuda", weights="df11", verify=False, progress=False
    )
    assert unchecked.model.df11_matrices == good.model.df11_matrices
