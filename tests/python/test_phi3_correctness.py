"""Phi-3 (fused qkv_proj and gate_up_proj, LongRoPE) against transformers' FP32 forward, as
test_engine_correctness.py does for the other architectures.

LongRoPE's frequencies depend on how a sequence is cut into forward passes (transformers uses
the long factors for a whole pass once it reaches past original_max_position_embeddings), so
the reference runs the engine's chunks (stepwise_reference.py). The tiny longrope model's
original context is 16 tokens: prompts, batches and generations cross it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from slimrt import LLM
from slimrt.errors import FormatError, ModelError
from slimrt.model_loader import load_model
from stepwise_reference import hf_chunk_logits
from test_engine_correctness import (
    F32_KV_TOLERANCE,
    PROMPT,
    bf16_and_df11_logits,
    check_batch_and_greedy,
    engine_logits,
    mixed_chunks,
    relative_error,
)


@pytest.mark.parametrize("architecture", ["phi3", "phi3-longrope"])
def test_phi3_matches_transformers_fp32(tiny_model_dir, architecture: str) -> None:
    path, model = tiny_model_dir(architecture)
    llm = LLM(str(path), device="cpu", kv_dtype="f32", progress=False)
    ids = llm.tokenizer.encode(PROMPT)
    assert len(ids) > 20
    for chunks in ([1] * len(ids), mixed_chunks(len(ids)), [len(ids)]):
        reference = hf_chunk_logits(model, ids, chunks)
        assert relative_error(engine_logits(llm.engine, ids, chunks), reference) < (
            F32_KV_TOLERANCE
        ), chunks

    # Batched: prompts on either side of the original context in one step, then decoding.
    check_batch_and_greedy(llm, model, [ids[:20], ids[:9]], [ids[20:28], ids[9:17]])


def test_phi3_config_reads_fused_projections_and_longrope(tiny_model_dir) -> None:
    path, model = tiny_model_dir("phi3-longrope")
    config = load_model(path, progress=False).model.config
    assert config.architecture == "Phi3ForCausalLM" and config.fused_projections
    s = config.rope_scaling
    assert s.longrope and not s.llama3 and s.original_max_position_embeddings == 16
    # transformers' attention_scaling: sqrt(1 + ln(256 / 16) / ln(16)).
    assert s.attention_factor == pytest.approx(model.model.rotary_emb.attention_scaling, rel=1e-15)
    assert s.short_factor == pytest.approx(model.config.rope_parameters["short_factor"])
    # The window slides in every layer; sequences run past it, up to the position limit.
    assert config.sliding_window == 200 and config.layer_windows == [200] * config.num_layers
    assert config.max_context == config.max_position_embeddings


def test_longrope_is_applied_not_ignored(tiny_model_dir) -> None:
    """The comparisons above would catch an engine that ignored LongRoPE's long factors or its
    attention factor: each changes the logits far beyond the tolerance."""
    _, model = tiny_model_dir("phi3-longrope")
    ids = list(range(5, 35))
    with torch.no_grad():
        long = model(torch.tensor([ids])).logits[0].numpy()
        short = hf_chunk_logits(model, ids, [1] * len(ids))
    assert relative_error(short[-1:], long[-1:]) > 100 * F32_KV_TOLERANCE


def test_phi3_df11_weights_give_bit_identical_logits(tiny_model_dir) -> None:
    path, _ = tiny_model_dir("phi3-longrope")
    runs, model, _ = bf16_and_df11_logits(path)
    assert model.df11_matrices == 2 + 2 * 4  # embedding, lm_head; qkv, o, gate_up, down
    np.testing.assert_array_equal(runs[0], runs[1])


def test_phi3_refuses_another_rope_type_naming_it(tmp_path, tiny_model_dir) -> None:
    import json
    import shutil

    path, _ = tiny_model_dir("phi3")
    copy = tmp_path / "phi3-dynamic"
    shutil.copytree(path, copy)
    config = json.loads((copy / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0}
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="unsupported rope_scaling type dynamic"):
        load_model(copy, progress=False)


def test_longrope_factors_must_cover_half_the_head(tmp_path, tiny_model_dir) -> None:
    import json
    import shutil

    path, _ = tiny_model_dir("phi3-longrope")
    copy = tmp_path / "phi3-short"
    shutil.copytree(path, copy)
    config = json.loads((copy / "config.json").read_text())
    config["rope_parameters"]["short_factor"] = config["rope_parameters"]["short_factor"][:15]
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(FormatError) as info:
        load_model(copy, progress=False)
    assert str(info.value).endswith(
        "config: rope_scaling.short_factor and long_factor need head_dim / 2 = 16 values each, "
        "got 15 and 16"
    )
