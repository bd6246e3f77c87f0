"""The model config the engine takes: a Hugging Face config.json dict, checked and normalized.

    config = normalize_config(json.load(open("config.json")), where="llama/config.json")
    shapes = weight_shapes(config)      # {"model.embed_tokens.weight": (vocab, hidden), ...}
    context_length(config)              # the longest sequence the engine will run

The engine checks the config too (docs/ENGINE_API.md); checking here first lets the loaders name
the file at fault and fail before they spend time converting weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from slimrt.errors import ModelError

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "context_length",
    "normalize_config",
    "weight_shapes",
]

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM")
_REQUIRED = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "rms_norm_eps",
    "max_position_embeddings",
)
_LLAMA3_ROPE_KEYS = (
    "factor",
    "low_freq_factor",
    "high_freq_factor",
    "original_max_position_embeddings",
)


def normalize_config(raw: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """A copy of `raw` with every key the engine reads present and checked.

    Defaults are filled in explicitly (head_dim, num_key_value_heads, rope_theta,
    tie_word_embeddings, attention_bias) so the engine and the Python layer cannot disagree on
    them. transformers >= 5 writes rope settings as `rope_parameters` (rope_theta inside); they
    become the `rope_theta` and `rope_scaling` keys the engine reads. Raises ModelError naming
    `where` (the config file).
    """
    config = dict(raw)
    architectures = config.get("architectures")
    if not isinstance(architectures, list) or not architectures:
        raise ModelError(f"{where}: no 'architectures' list (which model class is this?)")
    architecture = architectures[0]
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise ModelError(
            f"{where}: unsupported architecture {architecture}; supported: "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    for key in _REQUIRED:
        if key not in config or config[key] is None:
            raise ModelError(f"{where}: config: missing required key {key!r}")
    for key in (*_REQUIRED, "num_key_value_heads", "head_dim"):
        value = config.get(key)
        if value is None:
            continue
        if key == "rms_norm_eps":
            if not _is_number(value) or not value > 0:
                raise ModelError(f"{where}: config: rms_norm_eps must be positive, got {value!r}")
        elif type(value) is not int or value <= 0:
            raise ModelError(f"{where}: config: {key} must be a positive integer, got {value!r}")

    heads = config["num_attention_heads"]
    if config.get("num_key_value_heads") is None:
        config["num_key_value_heads"] = heads
    if heads % config["num_key_value_heads"]:
        raise ModelError(
            f"{where}: config: num_attention_heads={heads} is not a multiple of "
            f"num_key_value_heads={config['num_key_value_heads']}"
        )
    if config.get("head_dim") is None:
        if config["hidden_size"] % heads:
            raise ModelError(
                f"{where}: config: hidden_size={config['hidden_size']} is not a multiple of "
                f"num_attention_heads={heads} and there is no head_dim"
            )
        config["head_dim"] = config["hidden_size"] // heads
    if config["head_dim"] % 2:
        raise ModelError(f"{where}: config: head_dim={config['head_dim']} must be even for rope")

    _normalize_rope(config, where)
    config["tie_word_embeddings"] = bool(config.get("tie_word_embeddings", False))
    if config.get("attention_bias") is None:
        config["attention_bias"] = architecture == "Qwen2ForCausalLM"
    if config.get("mlp_bias"):
        raise ModelError(f"{where}: config: mlp_bias=true is not supported")
    if architecture == "Qwen2ForCausalLM" and not config.get("use_sliding_window", False):
        # Qwen2 configs carry a sliding_window that transformers ignores unless
        # use_sliding_window is set; passing it on would make the engine refuse long sequences.
        config.pop("sliding_window", None)
    if config.get("sliding_window") is None:
        config.pop("sliding_window", None)
    elif type(config["sliding_window"]) is not int or config["sliding_window"] <= 0:
        raise ModelError(
            f"{where}: config: sliding_window must be a positive integer, "
            f"got {config['sliding_window']!r}"
        )
    return config


def _normalize_rope(config: dict[str, Any], where: str) -> None:
    parameters = config.pop("rope_parameters", None)
    scaling = config.get("rope_scaling")
    if isinstance(parameters, Mapping):
        parameters = dict(parameters)
        if config.get("rope_theta") is None and "rope_theta" in parameters:
            config["rope_theta"] = parameters.pop("rope_theta")
        parameters.pop("rope_theta", None)
        if scaling is None:
            scaling = parameters
    if config.get("rope_theta") is None:
        config["rope_theta"] = 10000.0
    if not _is_number(config["rope_theta"]) or not config["rope_theta"] > 0:
        raise ModelError(
            f"{where}: config: rope_theta must be positive, got {config['rope_theta']!r}"
        )
    config["rope_theta"] = float(config["rope_theta"])
    if scaling is not None:
        scaling = dict(scaling)
        # Old configs spell the key "type".
        rope_type = scaling.get("rope_type", scaling.get("type", "default"))
        if rope_type == "default":
            scaling = None
        elif rope_type == "llama3":
            missing = [key for key in _LLAMA3_ROPE_KEYS if scaling.get(key) is None]
            if missing:
                raise ModelError(
                    f"{where}: config: rope_scaling of type llama3 lacks {', '.join(missing)}"
                )
            scaling = {"rope_type": "llama3", **{key: scaling[key] for key in _LLAMA3_ROPE_KEYS}}
        else:
            raise ModelError(f"{where}: config: unsupported rope_scaling type {rope_type}")
    config["rope_scaling"] = scaling


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def weight_shapes(config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every tensor the engine needs for a normalized config, with its shape (ENGINE_API.md)."""
    hidden = config["hidden_size"]
    q_out = config["num_attention_heads"] * config["head_dim"]
    kv_out = config["num_key_value_heads"] * config["head_dim"]
    inter = config["intermediate_size"]
    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (config["vocab_size"], hidden)
    }
    for i in range(config["num_hidden_layers"]):
        layer = f"model.layers.{i}"
        shapes[f"{layer}.input_layernorm.weight"] = (hidden,)
        shapes[f"{layer}.self_attn.q_proj.weight"] = (q_out, hidden)
        shapes[f"{layer}.self_attn.k_proj.weight"] = (kv_out, hidden)
        shapes[f"{layer}.self_attn.v_proj.weight"] = (kv_out, hidden)
        if config["attention_bias"]:
            shapes[f"{layer}.self_attn.q_proj.bias"] = (q_out,)
            shapes[f"{layer}.self_attn.k_proj.bias"] = (kv_out,)
            shapes[f"{layer}.self_attn.v_proj.bias"] = (kv_out,)
            if config["architectures"][0] != "Qwen2ForCausalLM":
                # Hugging Face's Llama and Mistral put a bias on o_proj too; Qwen2 never does.
                shapes[f"{layer}.self_attn.o_proj.bias"] = (hidden,)
        shapes[f"{layer}.self_attn.o_proj.weight"] = (hidden, q_out)
        shapes[f"{layer}.post_attention_layernorm.weight"] = (hidden,)
        shapes[f"{layer}.mlp.gate_proj.weight"] = (inter, hidden)
        shapes[f"{layer}.mlp.up_proj.weight"] = (inter, hidden)
        shapes[f"{layer}.mlp.down_proj.weight"] = (hidden, inter)
    shapes["model.norm.weight"] = (hidden,)
    if not config["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (config["vocab_size"], hidden)
    return shapes


def context_length(config: Mapping[str, Any]) -> int:
    """The longest sequence (prompt + generated tokens) the engine runs for this model: the
    model's max_position_embeddings, or a Mistral sliding window when that is shorter (the
    engine refuses sequences longer than the window rather than run them wrong)."""
    length = config["max_position_embeddings"]
    window = config.get("sliding_window")
    return min(length, window) if window else length
