"""Loading llama.cpp GGUF files (the core's Model.load, through load_model): llama.cpp names to
Hugging Face names, the rope row un-permutation, the config from metadata, dequantization, and
the errors for what slimrt does not read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from model_tensors import assert_holds, expected_weights
from reference_core import transformers_model
from slimrt import LLM
from slimrt.bfloat16 import round_to_bf16
from slimrt.errors import FormatError, InvalidArgumentError, ModelError
from slimrt.model_loader import load_model

gguf = pytest.importorskip("gguf")
Q = gguf.GGMLQuantizationType


def llama_cpp_permute(rows: np.ndarray, heads: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute, verbatim in effect."""
    return (
        rows.reshape(heads, 2, rows.shape[0] // heads // 2, *rows.shape[1:])
        .swapaxes(1, 2)
        .reshape(rows.shape)
    )


def test_unpermute_matches_transformers_reverse_permute(smollm2_gguf: Path, smollm2) -> None:
    """Every layer's q and k rows as loaded are what transformers' own GGUF loader makes of
    the file (its reverse_permute), rounded to BF16."""
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    processor = LlamaTensorProcessor(config={"num_attention_heads": 9, "num_key_value_heads": 3})
    tensors = {t.name: t for t in GGUFReader(smollm2_gguf).tensors}
    for layer in range(30):
        for gguf_part, part in [("attn_q", "q_proj"), ("attn_k", "k_proj")]:
            gguf_name = f"blk.{layer}.{gguf_part}.weight"
            raw = dequantize(tensors[gguf_name].data, tensors[gguf_name].tensor_type)
            theirs = processor.process(raw, gguf_name).weights
            assert not np.array_equal(theirs, raw)  # the file's order is not HF's
            mine = smollm2.model.matrix_bf16(f"model.layers.{layer}.self_attn.{part}.weight")
            np.testing.assert_array_equal(mine.reshape(theirs.shape), round_to_bf16(theirs))


def test_smollm2_config_comes_from_gguf_metadata(smollm2_gguf: Path, smollm2) -> None:
    config, core = smollm2.config, smollm2.model
    expected = {
        "architecture": "LlamaForCausalLM",
        "vocab_size": 49152,
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_layers": 30,
        "num_heads": 9,
        "num_kv_heads": 3,
        "head_dim": 64,
        "rope_theta": 100000.0,
        "max_position_embeddings": 8192,
        "tie_word_embeddings": True,
        "attention_bias": False,
        "o_proj_bias": False,
        "sliding_window": 0,
        "max_context": 8192,
    }
    assert {field: getattr(config, field) for field in expected} == expected
    assert config.rms_norm_eps == pytest.approx(1e-5)
    assert not config.rope_scaling.llama3
    assert (smollm2.tokenizer.bos_token_id, smollm2.tokenizer.eos_token_ids[0]) == (1, 2)
    assert (core.format, core.df11_matrices) == ("gguf", 0)
    assert smollm2.source == f"{smollm2_gguf} (GGUF Q4_1/Q8_0 dequantized to BF16; BF16 weights)"
    # The arena holds the 2 + 30 x 9 tensors of a tied Llama and nothing else (no lm_head
    # copy): BF16 matrices, float32 norms, each a multiple of the arena's 64-byte alignment.
    matrices = 49152 * 576 + 30 * (2 * 576 * 576 + 2 * 192 * 576 + 3 * 1536 * 576)
    vectors = 576 + 30 * 2 * 576
    assert core.weight_bytes == 2 * matrices + 4 * vectors
    norm = "model.layers.3.input_layernorm.weight"
    assert core.vector_f32(norm).shape == (576,)
    with pytest.raises(InvalidArgumentError, match=f"^no matrix named {norm}$"):
        core.matrix_bf16(norm)


def test_smollm2_weights_answer_a_question_in_transformers(smollm2) -> None:
    """The dequantized, un-permuted weights make a working model: transformers, given exactly
    the tensors the core holds, answers as SmolLM2 does (a wrong rope permutation gives
    gibberish)."""
    from slimrt.chat_template import ChatTemplate

    model = transformers_model(smollm2.model)
    template = ChatTemplate(smollm2.chat_template)
    prompt = template.render([{"role": "user", "content": "What is the capital of France?"}])
    ids = smollm2.tokenizer.encode(prompt, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)
    assert "Paris" in smollm2.tokenizer.decode(out[0, len(ids) :].tolist())


# -- GGUF files written here, from tiny llamas -----------------------------------------------

_TOP_LEVEL = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_IN_BLOCK = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.o_proj.bias": "attn_output.bias",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def gguf_name(name: str) -> str:
    """llama.cpp's converter's name for a Hugging Face tensor name."""
    if name in _TOP_LEVEL:
        return _TOP_LEVEL[name]
    _, _, layer, part = name.split(".", 3)
    return f"blk.{layer}.{_IN_BLOCK[part]}"


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
    tokenizer_pre: str = "default",
    block_count: int | None = None,
    rope_scaling: str | None = None,
) -> Path:
    """A GGUF file of a tiny model as llama.cpp's converter writes one: its names, q/k rows
    (and biases) permuted for "llama" (its qwen2/qwen3 converters keep HF's order), metadata
    keys, the tokenizer as tokenizer.ggml.* arrays. `types` maps GGUF names to a type (raw zero
    bytes for types gguf-py cannot quantize)."""
    config = model.config
    writer = gguf.GGUFWriter(str(path), architecture)
    if getattr(config, "head_dim", None) not in (
        None,
        config.hidden_size // config.num_attention_heads,
    ):
        writer.add_key_length(config.head_dim)
        writer.add_value_length(config.head_dim)
    writer.add_block_count(block_count or config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    if rope_scaling:
        writer.add_rope_scaling_type(gguf.RopeScalingType(rope_scaling))
    tokenizer = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer["model"]["merges"]]
    special = {t["content"] for t in tokenizer["added_tokens"] if t["special"]}
    writer.add_tokenizer_model(tokenizer_model)
    writer.add_tokenizer_pre(tokenizer_pre)
    writer.add_token_list(tokens)
    writer.add_token_merges(merges)
    writer.add_token_types([3 if t in special else 1 for t in tokens])
    writer.add_bos_token_id(vocab["<s>"])
    writer.add_eos_token_id(vocab["</s>"])
    writer.add_bool("tokenizer.ggml.add_bos_token", True)
    writer.add_chat_template("{{ messages[0]['content'] }}")
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # the converter leaves a tied output matrix out
        array = tensor.float().numpy()
        if architecture == "llama" and ".q_proj." in name:
            array = llama_cpp_permute(array, config.num_attention_heads)
        if architecture == "llama" and ".k_proj." in name:
            array = llama_cpp_permute(array, config.num_key_value_heads)
        kind = (types or {}).get(gguf_name(name), matrix_type if array.ndim == 2 else None)
        if kind is None:
            writer.add_tensor(gguf_name(name), np.ascontiguousarray(array))
            continue
        try:
            data = gguf.quants.quantize(array, kind)
        except NotImplementedError:
            block, size = gguf.GGML_QUANT_SIZES[kind]
            data = np.zeros((array.shape[0], array.shape[1] // block * size), np.uint8)
        writer.add_tensor(gguf_name(name), data, raw_dtype=kind)
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


@pytest.mark.parametrize(("weights", "how"), [("bf16", "BF16 weights"), ("df11", "DF11 weights")])
def test_f32_gguf_loads_to_the_models_own_bits(tiny_llama, tmp_path, weights, how) -> None:
    directory, model = tiny_llama
    path = write_gguf(tmp_path / "m.gguf", model, directory)
    loaded = load_model(path, weights=weights, progress=False)
    # Every tensor under its Hugging Face name, q/k rows back in Hugging Face order.
    assert_holds(loaded.model, expected_weights(model))
    assert loaded.source == f"{path} (GGUF F32 dequantized to BF16; {how})"
    assert loaded.model.df11_matrices == (16 if weights == "df11" else 0)
    config = loaded.config
    assert (config.num_kv_heads, config.head_dim, config.tie_word_embeddings) == (2, 16, False)
    assert (config.rope_theta, config.rope_scaling.llama3) == (500000.0, False)
    # The tokenizer and template came through the metadata, BOS flag included.
    hf = loaded.tokenizer
    assert hf.encode("The quick brown fox")[0] == 0
    assert hf.decode(hf.encode("Émilie 🙂")) == "Émilie 🙂"
    assert loaded.chat_template == "{{ messages[0]['content'] }}"


def test_a_qwen3_gguf_runs_as_transformers_runs_the_model(tiny_model_dir, tmp_path) -> None:
    """llama.cpp's qwen3 layout: qwen3.* keys, q/k norms, q/k rows unpermuted, head_dim as
    key_length, a tied output left out."""
    directory, model = tiny_model_dir("qwen3")
    path = write_gguf(tmp_path / "q.gguf", model, directory, architecture="qwen3")
    loaded = load_model(path, progress=False)
    assert_holds(loaded.model, expected_weights(model))
    config = loaded.config
    assert (config.architecture, config.qk_norm, config.head_dim) == ("Qwen3ForCausalLM", True, 32)
    llm = LLM(str(path), device="cpu", kv_dtype="f32", progress=False)
    ids = llm.tokenizer.encode("The quick brown fox jumps over the lazy dog")
    with torch.no_grad():
        reference = model(torch.tensor([ids])).logits[0, -1].numpy()
    seq = llm.engine.add_sequence()
    logits = llm.engine.step([seq], ids, [len(ids)])[0]
    llm.engine.release_sequence(seq)
    assert np.abs(logits - reference).max() < 1e-3 * np.abs(reference).max()


@pytest.mark.parametrize("pre", ["qwen2", "llama-bpe"])
def test_split_pre_tokenizers_match_transformers_gguf_tokenizer(tiny_model_dir, tmp_path, pre):
    """Qwen2's split (one digit a piece) and Llama 3's (up to three), as transformers builds
    them from the same GGUF."""
    from transformers import AutoTokenizer

    architecture = {"qwen2": "qwen3", "llama-bpe": "llama"}[pre]
    directory, model = tiny_model_dir("qwen3" if architecture == "qwen3" else "llama")
    path = write_gguf(
        tmp_path / "t.gguf", model, directory, architecture=architecture, tokenizer_pre=pre
    )
    tok = load_model(path, progress=False).tokenizer
    reference = AutoTokenizer.from_pretrained(tmp_path, gguf_file=path.name)
    for text in (
        "Numbers like 12345 and 67890",
        "It's 3.14159, isn't it?\n\n  x",
        "Émilie 🙂 don't",
    ):
        ids = tok.encode(text, add_special_tokens=False)
        assert ids == reference.encode(text, add_special_tokens=False), text
        assert tok.decode(ids) == text
    # The tiny vocabulary merged "12" (its corpus has 12345): only a split of up to three digits
    # lets BPE use it.
    pieces = [tok.decode([i]) for i in tok.encode("12345", add_special_tokens=False)]
    assert pieces == (list("12345") if pre == "qwen2" else ["12", "3", "4", "5"])


def test_a_directory_holding_one_gguf_loads_as_the_file(tiny_llama, tmp_path: Path) -> None:
    directory, model = tiny_llama
    (tmp_path / "download").mkdir()
    path = write_gguf(tmp_path / "download" / "m.gguf", model, directory)
    loaded = load_model(tmp_path / "download", progress=False)
    assert loaded.source.startswith(f"{path} (GGUF F32")
    assert_holds(loaded.model, expected_weights(model))


def tiny_biased_llama(vocab: int, heads: int, kv_heads: int, head_dim: int) -> torch.nn.Module:
    """A one-layer Llama with q/k/v and o_proj biases, random BF16 values everywhere."""
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=heads * head_dim,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        attention_bias=True,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
    )
    model = transformers.LlamaForCausalLM(config).float().eval()
    generator = torch.Generator().manual_seed(heads * 100 + head_dim)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator).bfloat16().float())
    return model


@pytest.mark.parametrize(
    ("heads", "kv_heads", "head_dim"), [(6, 2, 16), (4, 4, 6), (3, 1, 64), (1, 1, 2)]
)
def test_q_k_rows_and_biases_are_unpermuted_for_any_head_geometry(
    tiny_llama, tmp_path: Path, heads: int, kv_heads: int, head_dim: int
) -> None:
    directory, base = tiny_llama
    model = tiny_biased_llama(base.config.vocab_size, heads, kv_heads, head_dim)
    q = model.state_dict()["model.layers.0.self_attn.q_proj.weight"].numpy()
    # The file's order differs from Hugging Face's, except for 2-dimensional heads.
    assert (head_dim == 2) == np.array_equal(llama_cpp_permute(q, heads), q)
    loaded = load_model(write_gguf(tmp_path / "m.gguf", model, directory), progress=False)
    assert (loaded.config.attention_bias, loaded.config.o_proj_bias) == (True, True)
    assert_holds(loaded.model, expected_weights(model))


@pytest.mark.parametrize("kind", ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "F16", "BF16"])
def test_quantized_gguf_matches_gguf_dequantize(tiny_llama, tmp_path: Path, kind: str) -> None:
    """Every matrix is gguf-py's dequantization of what gguf-py quantized, rounded to BF16
    (quantization blocks run along rows, so the q/k row permutation does not change them)."""
    directory, model = tiny_llama
    qtype = Q[kind]
    path = write_gguf(tmp_path / "m.gguf", model, directory, matrix_type=qtype)
    loaded = load_model(path, progress=False)
    expected = expected_weights(model)
    for name, tensor in model.state_dict().items():
        if tensor.ndim == 2:
            quantized = gguf.quants.quantize(tensor.float().numpy(), qtype)
            expected[name] = round_to_bf16(gguf.quants.dequantize(quantized, qtype))
    assert_holds(loaded.model, expected)
    assert loaded.source == f"{path} (GGUF {kind} dequantized to BF16; BF16 weights)"


def test_unsupported_tensor_type_names_type_and_tensor(tiny_llama, tmp_path: Path) -> None:
    directory, model = tiny_llama
    path = write_gguf(tmp_path / "m.gguf", model, directory, types={"blk.1.attn_v.weight": Q.Q8_1})
    with pytest.raises(ModelError) as info:
        load_model(path, progress=False)
    assert str(info.value) == f"{path}: unsupported GGUF tensor type Q8_1 in blk.1.attn_v.weight"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"architecture": "gpt2"},
         "GGUF architecture 'gpt2' is not supported; slimrt reads 'llama' (Llama, SmolLM, "
         "TinyLlama, ...), 'qwen2' and 'qwen3' GGUF files"),
        ({"tokenizer_model": "llama"},
         "GGUF tokenizer 'llama' is not supported; slimrt reads 'gpt2' (byte-level BPE) "
         "tokenizers"),
        ({"extra_tensors": {"rope_freqs.weight": np.ones(8, np.float32)}},
         "GGUF has rope_freqs.weight (Llama 3.1 rope scaling), which slimrt does not read from "
         "GGUF yet; load the Hugging Face directory instead"),
        ({"extra_tensors": {"blk.0.attn_qkv.weight": np.ones((3, 96), np.float32)}},
         "unexpected GGUF tensor blk.0.attn_qkv.weight (not a llama tensor)"),
        ({"rope_scaling": "linear"}, "config: unsupported rope_scaling type linear"),
    ],
)  # fmt: skip
def test_gguf_files_slimrt_cannot_run_are_refused(tiny_llama, tmp_path, options, message) -> None:
    directory, model = tiny_llama
    path = write_gguf(tmp_path / "m.gguf", model, directory, **options)
    with pytest.raises(ModelError) as info:
        load_model(path, progress=False)
    assert type(info.value) is ModelError
    assert str(info.value) == f"{path}: {message}"


def test_a_block_count_of_1e8_is_refused_before_any_table_is_built(tiny_llama, tmp_path) -> None:
    directory, model = tiny_llama
    path = write_gguf(tmp_path / "m.gguf", model, directory, block_count=10**8)
    with pytest.raises(FormatError) as info:
        load_model(path, progress=False)
    assert str(info.value) == (
        f"{path}: config has 100000000 layers, which need at least 900000002 tensors; it holds 21"
    )


def test_files_that_are_not_gguf_are_format_errors(tiny_llama, tmp_path: Path) -> None:
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a gguf file at all")
    with pytest.raises(FormatError) as info:
        load_model(fake, progress=False)
    assert str(info.value) == (
        f"{fake}: not a model (pass a .gguf file or a model directory with config.json)"
    )
    # A GGUF whose last tensor lacks its last byte: the header is intact, the data is not.
    directory, model = tiny_llama
    whole = write_gguf(tmp_path / "whole.gguf", model, directory)
    reader = gguf.GGUFReader(whole)
    last = max(reader.tensors, key=lambda t: t.data_offset)
    end = last.data_offset + last.n_bytes - 1
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole.read_bytes()[:end])
    with pytest.raises(FormatError) as info:
        load_model(cut, progress=False)
    assert str(info.value) == (
        f"{cut}: truncated: tensor '{last.name}' (F32) needs {last.n_bytes} bytes at data offset "
        f"{last.data_offset - reader.data_offset}, the data section from byte "
        f"{reader.data_offset} has {end - reader.data_offset}"
    )
    # Two GGUFs in a directory: which one is the model is not for the loader to guess.
    (tmp_path / "two").mkdir()
    for name in ("a.gguf", "b.gguf"):
        shutil.copy(whole, tmp_path / "two" / name)
    with pytest.raises(FormatError) as info:
        load_model(tmp_path / "two", progress=False)
    assert str(info.value) == (
        f"{tmp_path / 'two'}: no config.json (not a Hugging Face model directory)"
    )
