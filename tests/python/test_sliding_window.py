"""Sliding-window attention against transformers, which implements the window in its masks
(masking_utils.sliding_window_overlay: position q sees kv > q - window, itself and window - 1
before it): Mistral with a window in every layer, whose pages that fall out of the window go back
to the pool, and Qwen2 with use_sliding_window and max_window_layers (a full layer below sliding
ones: nothing is freed). Sequences several windows long; prefill, chunked prefill (chunks longer
than the window) and decode steps; greedy ids through LLM.generate with a KV cache smaller than
the sequences; the sparse KV cache at sparsity 0. Tolerances are test_engine_correctness.py's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from slimrt import LLM, SamplingParams
from test_engine_correctness import (
    F32_KV_TOLERANCE,
    engine_logits,
    hf_greedy,
    relative_error,
)

# About 60 tokens: several windows of 8 and 12.
TEXT = (
    "Once upon a time, in a land far away, there lived a small model with a big vocabulary. "
    "The quick brown fox jumps over the lazy dog, again and again, until the dog wakes up."
)
WINDOWS = {"mistral-window": 8, "qwen2-window": 12}
GREEDY_TOKENS = 32


def reference_logits(model: torch.nn.Module, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


@pytest.mark.parametrize("architecture", sorted(WINDOWS))
def test_config_follows_transformers_layer_rule(tiny_model_dir, architecture: str) -> None:
    path, model = tiny_model_dir(architecture)
    llm = LLM(str(path), device="cpu", progress=False)
    window = WINDOWS[architecture]
    # MistralConfig has no layer_types: every layer slides.
    types = getattr(model.config, "layer_types", ["sliding_attention"] * 2)
    assert llm.config.layer_windows == [window if t == "sliding_attention" else 0 for t in types]
    assert llm.config.sliding_window == window
    assert llm.context_length == model.config.max_position_embeddings


@pytest.mark.parametrize("architecture", sorted(WINDOWS))
def test_sequences_past_the_window_match_transformers(tiny_model_dir, architecture: str) -> None:
    path, model = tiny_model_dir(architecture)
    llm = LLM(str(path), device="cpu", kv_dtype="f32", progress=False)
    ids = llm.tokenizer.encode(TEXT)
    window = WINDOWS[architecture]
    assert len(ids) > 4 * window
    reference = reference_logits(model, ids)
    whole = engine_logits(llm.engine, ids, [len(ids)])
    assert relative_error(whole, reference[-1:]) < F32_KV_TOLERANCE
    every = engine_logits(llm.engine, ids, [1] * len(ids))
    assert relative_error(every, reference) < F32_KV_TOLERANCE
    # Chunks shorter than, as long as and longer than the window, across page boundaries.
    chunks = [3, window, 2 * window + 5, 1, 1, window - 1]
    chunks.append(len(ids) - sum(chunks))
    chunked = engine_logits(llm.engine, ids, chunks)
    ends = np.cumsum(chunks) - 1
    assert relative_error(chunked, reference[ends]) < F32_KV_TOLERANCE


def test_a_batch_of_sequences_past_the_window_matches_transformers(tiny_model_dir) -> None:
    path, model = tiny_model_dir("mistral-window")
    llm = LLM(str(path), device="cpu", kv_dtype="f32", progress=False)
    long_ids = llm.tokenizer.encode(TEXT)
    short_ids = long_ids[5:30]
    want_long, want_short = reference_logits(model, long_ids), reference_logits(model, short_ids)
    engine = llm.engine
    a, b = engine.add_sequence(), engine.add_sequence()
    try:
        # Ragged prefill of both, then decode steps of both together, then a alone.
        rows = engine.step([a, b], long_ids[:20] + short_ids[:3], [20, 3])
        assert relative_error(rows[0], want_long[19]) < F32_KV_TOLERANCE
        assert relative_error(rows[1], want_short[2]) < F32_KV_TOLERANCE
        for i in range(20, len(long_ids)):
            j = i - 17
            if j < len(short_ids):
                rows = engine.step([a, b], [long_ids[i], short_ids[j]], [1, 1])
                assert relative_error(rows[1], want_short[j]) < F32_KV_TOLERANCE
            else:
                rows = engine.step([a], [long_ids[i]], [1])
            assert relative_error(rows[0], want_long[i]) < F32_KV_TOLERANCE
    finally:
        engine.release_sequence(a)
        engine.release_sequence(b)


def test_pages_outside_every_window_go_back_to_the_pool(tiny_model_dir) -> None:
    path, _ = tiny_model_dir("mistral-window")
    llm = LLM(str(path), device="cpu", kv_dtype="f32", progress=False)
    engine = llm.engine
    page = engine.page_size
    ids = llm.tokenizer.encode(TEXT)
    seq = engine.add_sequence()
    try:
        for length, token in enumerate(ids, start=1):
            engine.step([seq], [token], [1])
            # The next query (position `length`) sees length - 7 on: earlier whole pages go.
            freed = max(0, length - 7) // page
            assert engine.total_pages - engine.free_pages == -(-length // page) - freed
            assert engine.kv_usage()["tokens"] == length - freed * page
        assert engine.total_pages - engine.free_pages <= 2
    finally:
        engine.release_sequence(seq)
    assert engine.free_pages == engine.total_pages


def test_a_full_layer_below_the_sliding_ones_keeps_every_page(tiny_model_dir) -> None:
    path, _ = tiny_model_dir("qwen2-window")
    llm = LLM(str(path), device="cpu", progress=False)
    engine = llm.engine
    ids = llm.tokenizer.encode(TEXT)
    seq = engine.add_sequence()
    try:
        engine.step([seq], ids, [len(ids)])
        pages = -(-len(ids) // engine.page_size)
        assert engine.total_pages - engine.free_pages == pages
    finally:
        engine.release_sequence(seq)


@pytest.mark.parametrize("architecture", sorted(WINDOWS))
def test_greedy_ids_match_transformers(tiny_model_dir, architecture: str) -> None:
    path, model = tiny_model_dir(architecture)
    llm = LLM(str(path), device="cpu", kv_dtype="f32", max_step_tokens=16, progress=False)
    ids = llm.tokenizer.encode(TEXT)
    want = hf_greedy(model, ids, GREEDY_TOKENS)
    params = SamplingParams(max_tokens=GREEDY_TOKENS, ignore_eos=True)
    assert llm.generate([TEXT], params)[0].token_ids == want


def test_a_sequence_longer_than_the_kv_cache_runs_within_its_window(tiny_model_dir) -> None:
    # 4 pages of 16 tokens: the prompt and its 32 new tokens (about 90) would need 6 without
    # the pages the window frees; chunks of 16 keep a step within the pool.
    path, model = tiny_model_dir("mistral-window")
    llm = LLM(
        str(path), device="cpu", kv_dtype="f32", kv_tokens=64, max_step_tokens=16, progress=False
    )
    ids = llm.tokenizer.encode(TEXT)
    assert len(ids) + GREEDY_TOKENS > llm.engine.kv_tokens
    want = hf_greedy(model, ids, GREEDY_TOKENS)
    params = SamplingParams(max_tokens=GREEDY_TOKENS, ignore_eos=True)
    completions = llm.generate([TEXT, TEXT], params)
    assert [c.token_ids for c in completions] == [want, want]
    assert llm.engine.free_pages == llm.engine.total_pages


def test_sparse_kv_cache_frees_pages_past_the_window_too(tiny_model_dir) -> None:
    # Pages leave the dense window of 4 tokens (compressed) and, 3 tokens later, the sliding
    # window of 8 (freed, compressed or not); at sparsity 0 the tokens are the dense engine's.
    path, _ = tiny_model_dir("mistral-window")
    options = {"device": "cpu", "max_batch": 2, "max_step_tokens": 16, "progress": False}
    dense = LLM(str(path), **options)
    sparse = LLM(str(path), kv_sparsity=0.0, kv_window=4, **options)
    params = SamplingParams(max_tokens=GREEDY_TOKENS, ignore_eos=True)
    prompts = [TEXT, TEXT[:60]]
    want = [c.token_ids for c in dense.generate(prompts, params)]
    assert [c.token_ids for c in sparse.generate(prompts, params)] == want
    memory = sparse.memory()
    assert memory["kv_peak_compressed_pages_used"] > 0
    assert memory["kv_compressed_pages_used"] == memory["kv_dense_pages_used"] == 0
    engine = sparse.engine
    page = engine.page_size
    seq = engine.add_sequence()
    compressed_seen = 0
    try:
        for length, token in enumerate(sparse.tokenizer.encode(TEXT), start=1):
            engine.step([seq], [token], [1])
            left_dense = max(0, length - 4) // page  # whole pages before the dense window
            unseen = max(0, length - 7) // page  # whole pages before the sliding window
            usage = engine.kv_usage()
            assert usage["compressed_pages_used"] == max(0, left_dense - unseen)
            assert usage["dense_pages_used"] == -(-length // page) - max(left_dense, unseen)
            compressed_seen = max(compressed_seen, usage["compressed_pages_used"])
    finally:
        engine.release_sequence(seq)
    assert compressed_seen == 1
    usage = engine.kv_usage()
    assert usage["compressed_pages_used"] == usage["dense_pages_used"] == 0
