"""Mixture-of-experts models (Mixtral, Qwen3-MoE) against transformers' FP32 forward: prefill,
decode steps, chunks, a batch, greedy ids; DF11 experts (each expert matrix compressed on its
own) give BF16's logits bit for bit. Tolerances as test_engine_correctness.py's."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from slimrt import LLM
from slimrt.errors import FormatError, ModelError
from slimrt.model_loader import load_model
from test_engine_correctness import (
    F32_KV_TOLERANCE,
    PROMPT,
    bf16_and_df11_logits,
    check_batch_and_greedy,
    chunk_ends,
    engine_logits,
    mixed_chunks,
    relative_error,
)

MOE = ["mixtral", "qwen3-moe", "qwen3-moe-sparse-step"]


@pytest.mark.parametrize("architecture", MOE)
def test_moe_models_match_transformers_fp32(tiny_model_dir, architecture: str) -> None:
    path, model = tiny_model_dir(architecture)
    llm = LLM(str(path), device="cpu", kv_dtype="f32", progress=False)
    ids = llm.tokenizer.encode(PROMPT)
    with torch.no_grad():
        reference = model(torch.tensor([ids])).logits[0].numpy()
    every = engine_logits(llm.engine, ids, [1] * len(ids))
    assert relative_error(every, reference) < F32_KV_TOLERANCE
    chunked = engine_logits(llm.engine, ids, mixed_chunks(len(ids)))
    ends = [e - 1 for e in chunk_ends(len(ids))]
    assert relative_error(chunked, reference[ends]) < F32_KV_TOLERANCE

    # A batch: two prompts prefilled in one step (their tokens share each expert's matmul),
    # then decoded together.
    check_batch_and_greedy(llm, model, [ids[:14], ids[:5]], [ids[14:22], ids[5:13]])


def test_qwen3_moe_layers_are_sparse_where_transformers_makes_them(tiny_model_dir) -> None:
    for architecture, sparse in (
        ("qwen3-moe", [True, False, True]),
        ("qwen3-moe-sparse-step", [False, True, False, True]),
    ):
        path, model = tiny_model_dir(architecture)
        config = load_model(path, progress=False).model.config
        assert [config.moe_layer(i) for i in range(config.num_layers)] == sparse
        hf = [hasattr(layer.mlp, "experts") for layer in model.model.layers]
        assert hf == sparse


@pytest.mark.parametrize("architecture", ["mixtral", "qwen3-moe"])
def test_moe_df11_weights_give_bit_identical_logits(tiny_model_dir, architecture: str) -> None:
    path, _ = tiny_model_dir(architecture)
    runs, model, _ = bf16_and_df11_logits(path)
    config = model.config
    sparse = sum(config.moe_layer(i) for i in range(config.num_layers))
    experts = sparse * config.num_experts * 3
    assert model.df11_matrices >= experts  # each expert matrix compressed alone
    assert "DF11 weights" in model.summary
    np.testing.assert_array_equal(runs[0], runs[1])


def test_moe_config_errors_name_the_key(tmp_path, tiny_model_dir) -> None:
    path, _ = tiny_model_dir("mixtral")
    copy = tmp_path / "mixtral-bad"
    shutil.copytree(path, copy)
    config = json.loads((copy / "config.json").read_text())
    config["num_experts_per_tok"] = 9
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(FormatError) as info:
        load_model(copy, progress=False)
    assert str(info.value).endswith(
        "config.json: config: num_experts_per_tok (9) exceeds the number of experts (4)"
    )
    config["num_experts_per_tok"] = 2
    config["hidden_act"] = "gelu"
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="hidden_act gelu is not supported"):
        load_model(copy, progress=False)
