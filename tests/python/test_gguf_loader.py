"""Loading llama.cpp GGUF files: name mapping, the rope row un-permutation, metadata config,
dequantization, and the errors for what slimrt does not read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from slimrt.bfloat16 import round_to_bf16, widen_bf16
from slimrt.errors import ModelError
from slimrt.gguf_loader import hf_name, load_gguf, unpermute_rope_rows

gguf = pytest.importorskip("gguf")
Q = gguf.GGMLQuantizationType


def llama_cpp_permute(rows: np.ndarray, heads: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute, verbatim in effect."""
    return (
        rows.reshape(heads, 2, rows.shape[0] // heads // 2, *rows.shape[1:])
        .swapaxes(1, 2)
        .reshape(rows.shape)
    )


def test_llama_cpp_names_map_to_hugging_face_names() -> None:
    assert hf_name("token_embd.weight") == "model.embed_tokens.weight"
    assert hf_name("output_norm.weight") == "model.norm.weight"
    assert hf_name("output.weight") == "lm_head.weight"
    pairs = {
        "attn_norm.weight": "input_layernorm.weight",
        "attn_q.weight": "self_attn.q_proj.weight",
        "attn_k.weight": "self_attn.k_proj.weight",
        "attn_v.weight": "self_attn.v_proj.weight",
        "attn_output.weight": "self_attn.o_proj.weight",
        "ffn_norm.weight": "post_attention_layernorm.weight",
        "ffn_gate.weight": "mlp.gate_proj.weight",
        "ffn_up.weight": "mlp.up_proj.weight",
        "ffn_down.weight": "mlp.down_proj.weight",
    }
    for gguf_part, hf_part in pairs.items():
        assert hf_name(f"blk.17.{gguf_part}") == f"model.layers.17.{hf_part}"
    assert hf_name("rope_freqs.weight") is None and hf_name("blk.0.attn_qkv.weight") is None


@pytest.mark.parametrize(("heads", "head_dim"), [(9, 64), (3, 64), (4, 6), (1, 2)])
def test_unpermute_undoes_llama_cpp_permute(heads: int, head_dim: int) -> None:
    rows = np.arange(heads * head_dim * 5, dtype=np.uint16).reshape(heads * head_dim, 5)
    permuted = llama_cpp_permute(rows, heads)
    assert not np.array_equal(permuted, rows) or (head_dim == 2 and heads == 1)
    np.testing.assert_array_equal(unpermute_rope_rows(permuted, heads), rows)
    bias = np.arange(heads * head_dim, dtype=np.float32)
    np.testing.assert_array_equal(unpermute_rope_rows(llama_cpp_permute(bias, heads), heads), bias)


def test_unpermute_matches_transformers_reverse_permute(smollm2_gguf: Path, smollm2) -> None:
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    processor = LlamaTensorProcessor(config={"num_attention_heads": 9, "num_key_value_heads": 3})
    tensors = {t.name: t for t in GGUFReader(smollm2_gguf).tensors}
    for gguf_name, name in [
        ("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight"),
        ("blk.7.attn_k.weight", "model.layers.7.self_attn.k_proj.weight"),
    ]:
        tensor = tensors[gguf_name]
        raw = dequantize(tensor.data, tensor.tensor_type)
        theirs = processor.process(raw, gguf_name).weights
        np.testing.assert_array_equal(smollm2.weights[name], round_to_bf16(theirs))


def test_smollm2_config_comes_from_gguf_metadata(smollm2) -> None:
    config = smollm2.config
    assert {k: v for k, v in config.items() if k != "rms_norm_eps"} == {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 49152,
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "head_dim": 64,
        "rope_theta": 100000.0,
        "rope_scaling": None,
        "max_position_embeddings": 8192,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "bfloat16",
    }
    assert config["rms_norm_eps"] == pytest.approx(1e-5)
    assert "lm_head.weight" not in smollm2.weights
    assert len(smollm2.weights) == 2 + 30 * 9
    assert smollm2.weights["model.embed_tokens.weight"].dtype == np.uint16
    assert smollm2.weights["model.layers.3.input_layernorm.weight"].dtype == np.float32
    assert "GGUF Q4_1/Q8_0 dequantized to BF16" in smollm2.source


def test_smollm2_weights_answer_a_question_in_transformers(smollm2) -> None:
    """The dequantized, un-permuted weights make a working model: transformers, given exactly
    these values, answers as SmolLM2 does (a wrong rope permutation gives gibberish)."""
    from slimrt.chat_template import ChatTemplate
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(**smollm2.config)).float().eval()
    state = {
        name: torch.from_numpy(widen_bf16(v) if v.dtype == np.uint16 else np.array(v))
        for name, v in smollm2.weights.items()
    }
    model.load_state_dict(state, strict=False)
    template = ChatTemplate(smollm2.chat_template)
    prompt = template.render([{"role": "user", "content": "What is the capital of France?"}])
    ids = smollm2.tokenizer.encode(prompt, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)
    assert "Paris" in smollm2.tokenizer.decode(out[0, len(ids) :].tolist())


# -- GGUF files written here, from a tiny llama --------------------------------------------


def write_gguf(
    path: Path,
    model: torch.nn.Module,
    tokenizer_dir: Path,
    *,
    architecture: str = "llama",
    matrix_type: object = None,
    types: dict[str, object] | None = None,
    extra_tensors: dict[str, np.ndarray] | None = None,
    tokenizer_model: str = "gpt2",
) -> Path:
    """A GGUF file of a tiny llama as llama.cpp's converter writes one: its names, q/k rows
    permuted, metadata keys, the tokenizer as tokenizer.ggml.* arrays."""
    config = model.config
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(500000.0)
    tokenizer = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer["model"]["merges"]]
    special = {t["content"] for t in tokenizer["added_tokens"] if t["special"]}
    writer.add_tokenizer_model(tokenizer_model)
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_merges(merges)
    writer.add_token_types([3 if t in special else 1 for t in tokens])
    writer.add_bos_token_id(vocab["<s>"])
    writer.add_eos_token_id(vocab["</s>"])
    writer.add_bool("tokenizer.ggml.add_bos_token", True)
    writer.add_chat_template("{{ messages[0]['content'] }}")
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    parts = {
        "input_layernorm.weight": "attn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.o_proj.weight": "attn_output.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    }
    for i in range(config.num_hidden_layers):
        for part, gguf_part in parts.items():
            names[f"model.layers.{i}.{part}"] = f"blk.{i}.{gguf_part}"
    for name, tensor in model.state_dict().items():
        array = tensor.float().numpy()
        if ".q_proj." in name:
            array = llama_cpp_permute(array, config.num_attention_heads)
        if ".k_proj." in name:
            array = llama_cpp_permute(array, config.num_key_value_heads)
        kind = (types or {}).get(names[name], matrix_type if array.ndim == 2 else None)
        if kind is None:
            writer.add_tensor(names[name], np.ascontiguousarray(array))
        else:
            writer.add_tensor(names[name], gguf.quants.quantize(array, kind), raw_dtype=kind)
    for name, array in (extra_tensors or {}).items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_llama(tiny_model_dir) -> tuple[Path, torch.nn.Module]:
    return tiny_model_dir("llama")


def test_f32_gguf_loads_to_the_models_own_bits(tiny_llama, tmp_path: Path) -> None:
    directory, model = tiny_llama
    loaded = load_gguf(write_gguf(tmp_path / "m.gguf", model, directory), progress=False)
    for name, tensor in model.state_dict().items():
        array = tensor.float().numpy()
        expected = round_to_bf16(array) if array.ndim == 2 else array
        np.testing.assert_array_equal(loaded.weights[name], expected, err_msg=name)
    config = loaded.config
    assert (config["num_key_value_heads"], config["head_dim"], config["tie_word_embeddings"]) == (
        2,
        16,
        False,
    )
    # The tokenizer came through the metadata, BOS flag included.
    hf = loaded.tokenizer
    assert hf.encode("The quick brown fox")[0] == 0
    assert hf.decode(hf.encode("Émilie 🙂")) == "Émilie 🙂"


@pytest.mark.parametrize("kind", ["Q8_0", "Q4_0", "Q4_1", "F16", "BF16"])
def test_quantized_gguf_matches_gguf_dequantize(tiny_llama, tmp_path: Path, kind: str) -> None:
    directory, model = tiny_llama
    qtype = Q[kind]
    loaded = load_gguf(
        write_gguf(tmp_path / "m.gguf", model, directory, matrix_type=qtype), progress=False
    )
    weight = model.state_dict()["model.layers.1.mlp.down_proj.weight"].float().numpy()
    expected = gguf.quants.dequantize(gguf.quants.quantize(weight, qtype), qtype)
    got = loaded.weights["model.layers.1.mlp.down_proj.weight"]
    np.testing.assert_array_equal(got, round_to_bf16(expected))
    assert f"GGUF {kind}" in loaded.source


def test_unsupported_tensor_type_names_type_and_tensor(tiny_llama, tmp_path: Path) -> None:
    directory, model = tiny_llama
    path = write_gguf(tmp_path / "m.gguf", model, directory, types={"blk.1.attn_v.weight": Q.Q5_0})
    with pytest.raises(ModelError) as info:
        load_gguf(path, progress=False)
    assert str(info.value) == f"{path}: unsupported GGUF tensor type Q5_0 in blk.1.attn_v.weight"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"architecture": "gpt2"}, "GGUF architecture 'gpt2' is not supported; slimrt reads"),
        ({"tokenizer_model": "llama"}, "GGUF tokenizer 'llama' is not supported"),
        (
            {"extra_tensors": {"rope_freqs.weight": np.ones(8, np.float32)}},
            "rope_freqs.weight (Llama 3.1 rope scaling)",
        ),
    ],
)  # fmt: skip
def test_gguf_files_slimrt_cannot_run_are_refused(tiny_llama, tmp_path, options, message) -> None:
    directory, model = tiny_llama
    path = write_gguf(tmp_path / "m.gguf", model, directory, **options)
    with pytest.raises(ModelError) as info:
        load_gguf(path, progress=False)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_a_file_that_is_not_gguf_is_a_format_error(tmp_path: Path) -> None:
    from slimrt.errors import FormatError

    path = tmp_path / "fake.gguf"
    path.write_bytes(b"not a gguf file at all")
    with pytest.raises(FormatError, match="not a readable GGUF file"):
        load_gguf(path, progress=False)
