"""The engine against transformers: the same BF16 weights, FP32 compute on both sides.

Tolerances are relative to the largest reference logit: max |slimrt - transformers| /
max |transformers|. Measured on 2 CPU cores (x86-64, AVX2), KV cache in f32: 1.5e-6 (Llama 3.1
rope), 2.1e-6 (Mistral), 1.8e-6 (Qwen2), 2.1e-6 (SmolLM2-135M); the bound is 2e-5, ten times
that, well below what a wrong rope, norm or bias would give (1e-3 and more). With BF16 KV
entries (the default) K and V are rounded to 8 bits of mantissa: measured up to 1.3e-2; bound
5e-2.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from reference_core import transformers_model
from slimrt import LLM, SamplingParams, _core, df11
from slimrt.chat_template import ChatTemplate
from slimrt.errors import FormatError, InvalidArgumentError, ModelError, OutOfMemoryError
from slimrt.model_loader import load_model
from stepwise_reference import engine_batched_logits, hf_chunk_logits

F32_KV_TOLERANCE = 2e-5
BF16_KV_TOLERANCE = 5e-2
PROMPT = "Once upon a time, in a land far away, there lived a small model"
GREEDY_TOKENS = 32


def relative_error(mine: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(mine - reference).max() / np.abs(reference).max())


def engine_logits(engine, ids: list[int], chunks: list[int]) -> np.ndarray:
    """Logits after each chunk of `ids` (chunk sizes `chunks`), one step per chunk."""
    seq = engine.add_sequence()
    rows, start = [], 0
    try:
        for size in chunks:
            rows.append(engine.step([seq], ids[start : start + size], [size])[0])
            start += size
    finally:
        engine.release_sequence(seq)
    assert start == len(ids)
    return np.stack(rows)


def hf_greedy(model: torch.nn.Module, ids: list[int], count: int) -> list[int]:
    """transformers' greedy continuation, never stopping early (no EOS rule)."""
    out, cache, step = [], None, torch.tensor([ids])
    with torch.no_grad():
        for _ in range(count):
            result = model(input_ids=step, past_key_values=cache, use_cache=True)
            cache = result.past_key_values
            out.append(int(result.logits[0, -1].argmax()))
            step = torch.tensor([[out[-1]]])
    return out


def mixed_chunks(n: int) -> list[int]:
    """One token, a chunk that crosses a 16-token page boundary, then one token at a time."""
    return [1, 19, *[1] * (n - 20)]


def bf16_and_df11_logits(path) -> tuple[list[np.ndarray], object, object]:
    """Logits of ids 4..43 in mixed chunks with the model's BF16 and with its DF11 weights (f32
    KV); also the DF11 model and engine, for what a test checks of them."""
    ids = list(range(4, 44))
    runs = []
    for weights in ("bf16", "df11"):
        model = load_model(path, weights=weights, progress=False).model
        engine = _core.Engine(model, {"kv_dtype": "f32"})
        runs.append(engine_logits(engine, ids, mixed_chunks(len(ids))))
    return runs, model, engine


def check_batch_and_greedy(llm, model, prompts: list[list[int]], follow: list[list[int]]) -> None:
    """The prompts prefilled in one step and then decoded together match transformers' FP32
    logits; greedy ids of a short prompt match transformers' over GREEDY_TOKENS."""
    for prompt, more, got in zip(
        prompts, follow, engine_batched_logits(llm.engine, prompts, follow), strict=True
    ):
        reference = hf_chunk_logits(model, prompt + more, [len(prompt)] + [1] * len(more))
        assert relative_error(got, reference) < F32_KV_TOLERANCE
    start = llm.tokenizer.encode("Once upon a time")
    params = SamplingParams(max_tokens=GREEDY_TOKENS, ignore_eos=True)
    completion = llm.generate("Once upon a time", params)[0]
    assert completion.token_ids == hf_greedy(model, start, GREEDY_TOKENS)


def chunk_ends(n: int) -> list[int]:
    return np.cumsum(mixed_chunks(n)).tolist()


@pytest.mark.parametrize("architecture", ["llama", "llama-bias", "mistral", "qwen2", "qwen3"])
def test_tiny_models_match_transformers_fp32(tiny_model_dir, architecture: str) -> None:
    path, model = tiny_model_dir(architecture)
    llm = LLM(str(path), device="cpu", kv_dtype="f32", progress=False)
    ids = llm.tokenizer.encode(PROMPT)
    assert len(ids) > 20
    with torch.no_grad():
        reference = model(torch.tensor([ids])).logits[0].numpy()
    every = engine_logits(llm.engine, ids, [1] * len(ids))
    assert relative_error(every, reference) < F32_KV_TOLERANCE
    chunked = engine_logits(llm.engine, ids, mixed_chunks(len(ids)))
    ends = [e - 1 for e in chunk_ends(len(ids))]
    assert relative_error(chunked, reference[ends]) < F32_KV_TOLERANCE

    start = llm.tokenizer.encode("Once upon a time")
    params = SamplingParams(max_tokens=GREEDY_TOKENS, ignore_eos=True)
    completion = llm.generate("Once upon a time", params)[0]
    assert completion.token_ids == hf_greedy(model, start, GREEDY_TOKENS)


def test_llama3_rope_scaling_is_applied_not_ignored(tiny_model_dir) -> None:
    """The comparison above would catch an engine that ignores rope_scaling: the same model
    without it is far outside the tolerance."""
    import copy

    from transformers import LlamaForCausalLM

    _, model = tiny_model_dir("llama")
    config = copy.deepcopy(model.config)
    config.rope_parameters = {"rope_type": "default", "rope_theta": 500000.0}
    unscaled = LlamaForCausalLM(config).float().eval()
    unscaled.load_state_dict(model.state_dict())
    ids = list(range(5, 45))
    with torch.no_grad():
        scaled_logits = model(torch.tensor([ids])).logits[0].numpy()
        unscaled_logits = unscaled(torch.tensor([ids])).logits[0].numpy()
    assert relative_error(unscaled_logits, scaled_logits) > 100 * F32_KV_TOLERANCE


@pytest.mark.parametrize("architecture", ["llama", "qwen2"])
def test_bf16_kv_cache_stays_close_to_transformers(tiny_model_dir, architecture: str) -> None:
    path, model = tiny_model_dir(architecture)
    llm = LLM(str(path), device="cpu", kv_dtype="bf16", progress=False)
    ids = llm.tokenizer.encode(PROMPT)
    with torch.no_grad():
        reference = model(torch.tensor([ids])).logits[0].numpy()
    assert relative_error(engine_logits(llm.engine, ids, [1] * len(ids)), reference) < (
        BF16_KV_TOLERANCE
    )


@pytest.fixture(scope="module")
def smollm2_transformers(smollm2) -> torch.nn.Module:
    """transformers' LlamaForCausalLM holding exactly the weights slimrt loaded, in FP32."""
    model = transformers_model(smollm2.model)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied
    return model


def test_smollm2_matches_transformers_on_a_chat_prompt(smollm2, smollm2_transformers) -> None:
    template = ChatTemplate(smollm2.chat_template)
    text = template.render([{"role": "user", "content": "Write a haiku about the sea."}])
    ids = smollm2.tokenizer.encode(text, add_special_tokens=False)
    engine = _core.Engine(smollm2.model, {"kv_dtype": "f32", "kv_tokens": 512})
    with torch.no_grad():
        reference = smollm2_transformers(torch.tensor([ids])).logits[0].numpy()
    logits = engine_logits(engine, ids, mixed_chunks(len(ids)))
    ends = [e - 1 for e in chunk_ends(len(ids))]
    assert relative_error(logits, reference[ends]) < F32_KV_TOLERANCE

    seq = engine.add_sequence()
    greedy = _core.SamplingParams(temperature=0.0)
    tokens = [int(engine.step([seq], ids, [len(ids)], [greedy])[0])]
    while len(tokens) < GREEDY_TOKENS:
        tokens.append(int(engine.step([seq], [tokens[-1]], [1], [greedy])[0]))
    assert tokens == hf_greedy(smollm2_transformers, ids, GREEDY_TOKENS)


def test_default_model_answers_through_llm_chat(smollm2_gguf) -> None:
    llm = LLM(device="cpu", progress=False)
    reply = llm.chat([{"role": "user", "content": "What is the capital of France?"}])
    assert reply.text == "The capital of France is Paris."
    assert reply.finish_reason == "stop" and reply.token_ids[-1] == 2  # <|im_end|>


@pytest.mark.parametrize("architecture", ["llama", "mistral", "qwen2"])
def test_df11_weights_give_bit_identical_logits(tiny_model_dir, architecture: str) -> None:
    path, _ = tiny_model_dir(architecture)
    runs, model, engine = bf16_and_df11_logits(path)
    assert model.df11_matrices > 0 and engine.memory()["df11_scratch"] > 0
    np.testing.assert_array_equal(runs[0], runs[1])


def test_llm_with_df11_weights_generates_what_bf16_generates(tiny_model_dir) -> None:
    path, _ = tiny_model_dir("qwen2")
    params = SamplingParams(max_tokens=16, ignore_eos=True, temperature=0.7, seed=5)
    dense = LLM(str(path), device="cpu", weights="bf16", progress=False)
    compressed = LLM(str(path), device="cpu", weights="df11", progress=False)
    assert "DF11 weights" in compressed.source
    assert [c.token_ids for c in compressed.generate([PROMPT, "Hi"], params)] == [
        c.token_ids for c in dense.generate([PROMPT, "Hi"], params)
    ]


def test_df11_smollm2_gives_bit_identical_logits(smollm2, smollm2_transformers) -> None:
    """Every matrix compressed by slimrt.df11 in Python and handed over as Df11Weight
    (Model.from_tensors, kept as stored): the engine's DF11 decoding gives the BF16 logits."""
    core = smollm2.model
    tensors: dict[str, object] = {}
    for name, parameter in smollm2_transformers.state_dict().items():
        if name == "lm_head.weight":
            continue  # tied to the embedding
        if parameter.ndim == 1:
            tensors[name] = core.vector_f32(name)
            continue
        t = df11.compress(core.matrix_bf16(name).reshape(tuple(parameter.shape)))
        tensors[name] = _core.Df11Weight(t.lengths, t.bitstream, t.index, t.signmant, t.shape)
    compressed = _core.Model.from_tensors(core.config, tensors, {"weights": "stored"})
    assert compressed.df11_matrices == 1 + 30 * 7
    assert compressed.summary == "tensors in memory (LlamaForCausalLM; DF11 weights)"
    ids = smollm2.tokenizer.encode("The lighthouse keeper counted the waves until dawn.")
    runs = []
    for model in (core, compressed):
        engine = _core.Engine(model, {"kv_dtype": "f32", "kv_tokens": 256})
        runs.append(engine_logits(engine, ids, [len(ids) - 3, 1, 1, 1]))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert engine.memory()["weights"] == compressed.weight_bytes < 0.75 * core.weight_bytes


# -- the engine's own errors (docs/ENGINE_API.md) -------------------------------------------


@pytest.fixture(scope="module")
def tiny_llama(tiny_model_dir) -> tuple[_core.Model, dict[str, np.ndarray], dict]:
    """The tiny llama loaded, its tensors as numpy arrays (what Model.from_tensors takes) and
    its config.json."""
    path, reference = tiny_model_dir("llama")
    model = load_model(path, progress=False).model
    tensors = {}
    for name, parameter in reference.state_dict().items():
        shape = tuple(parameter.shape)
        tensors[name] = (
            model.matrix_bf16(name).reshape(shape) if len(shape) == 2 else model.vector_f32(name)
        )
    return model, tensors, json.loads((path / "config.json").read_text())


def refusal(error: type[Exception], call) -> str:
    """The message of the error of class exactly `error` that call() raises."""
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error, info.value
    return str(info.value)


def test_from_tensors_refuses_bad_configs_and_weights(tiny_llama) -> None:
    model, tensors, raw = tiny_llama
    config = model.config
    assert _core.Model.from_tensors(config, tensors).summary == (
        "tensors in memory (LlamaForCausalLM; BF16 weights)"
    )

    def from_json(**change: object) -> object:
        return _core.ModelConfig.from_json(json.dumps({**raw, **change}), "cfg")

    assert refusal(ModelError, lambda: from_json(architectures=["GPT2LMHeadModel"])) == (
        "cfg: unsupported architecture GPT2LMHeadModel; supported: LlamaForCausalLM, "
        "MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM, "
        "MixtralForCausalLM, Qwen3MoeForCausalLM"
    )
    yarn = {"rope_type": "yarn", "factor": 2.0}
    assert refusal(ModelError, lambda: from_json(rope_scaling=yarn)) == (
        "cfg: unsupported rope_scaling type yarn"
    )
    huge = from_json(num_hidden_layers=1000000)
    assert refusal(FormatError, lambda: _core.Model.from_tensors(huge, tensors)) == (
        "tensors: config has 1000000 layers, which need at least 9000002 tensors; it holds 21"
    )

    def build(name: str, value: object | None) -> str:
        changed = {k: v for k, v in tensors.items() if k != name}
        if value is not None:
            changed[name] = value
        return refusal(InvalidArgumentError, lambda: _core.Model.from_tensors(config, changed))

    up = "model.layers.0.mlp.up_proj.weight"
    assert build(up, None) == f"missing tensor {up}"
    assert build(up, tensors[up][:100]) == (
        f"tensor {up} has shape [100, 96], config expects [192, 96]"
    )
    assert build(up, np.zeros((192, 96), np.float32)) == (
        f"tensor {up}: float32 matrices are not accepted; cast to BF16 first"
    )
    assert build(up, np.zeros((192, 96), np.int32)) == (
        f"tensor {up}: unsupported dtype int32; expected uint16 (BF16 bits), float32 (1-D only) "
        "or DF11"
    )
    assert refusal(
        OutOfMemoryError,
        lambda: _core.Model.from_tensors(config, tensors, {"memory_limit_bytes": 1000}),
    ).startswith("not enough memory: weights ")


def test_engine_refuses_bad_options_and_budgets(tiny_llama) -> None:
    model = tiny_llama[0]
    known = ", ".join(_core.ENGINE_OPTIONS)
    assert known == (
        "enable_prefix_caching, k_sparsity, kv_compression, kv_dtype, kv_tokens, kv_window, "
        "max_batch, max_step_tokens, memory_limit_bytes, page_size, v_sparsity"
    )
    # device and num_threads belong to the model now: an engine refuses them by name.
    for name in ("device", "num_threads", "max_batchh"):
        assert refusal(InvalidArgumentError, lambda n=name: _core.Engine(model, {n: 1})) == (
            f"options: unknown option {name}; known: {known}"
        )
    assert refusal(InvalidArgumentError, lambda: _core.Engine(model, {"page_size": 0})) == (
        "options: page_size must be >= 1, got 0"
    )
    # The budget covers the model's weights and the engine's arenas together.
    message = refusal(OutOfMemoryError, lambda: _core.Engine(model, {"memory_limit_bytes": 1000}))
    assert message.startswith("not enough memory: weights ")
    assert message.endswith(" GiB is available")


def test_engine_refuses_bad_steps_without_changing_anything(tiny_llama) -> None:
    model = tiny_llama[0]
    engine = _core.Engine(model, {"kv_tokens": 32, "max_step_tokens": 300})
    seq = engine.add_sequence()
    assert refusal(OutOfMemoryError, lambda: engine.step([seq], list(range(40)), [40])) == (
        "KV cache out of pages: this step needs 3 more pages, 2 are free (kv_tokens=32, "
        "page_size=16)"
    )
    assert engine.sequence_length(seq) == 0 and engine.free_pages == 2
    assert refusal(InvalidArgumentError, lambda: engine.step([seq], [5000], [1])) == (
        "step: token id 5000 (tokens[0]) is outside [0, 384)"
    )
    roomy = _core.Engine(model, {"max_step_tokens": 300})
    other = roomy.add_sequence()
    assert refusal(InvalidArgumentError, lambda: roomy.step([other], [5] * 257, [257])) == (
        "context length 257 exceeds the model's maximum of 256"
    )
    assert refusal(InvalidArgumentError, lambda: _core.SamplingParams(top_p=0.0)) == (
        "sampling: top_p must be in (0, 1], got 0"
    )
