"""Loads a llama.cpp GGUF file (architecture "llama") into the engine's weights dict.

    model = load_gguf("SmolLM2-135M-Instruct.Q4_1.gguf")

Quantized tensors (Q4_0, Q4_1, Q8_0) and F16 ones are dequantized and rounded to BF16 — the
model slimrt runs is the quantized model's values in BF16, not the original checkpoint. Names
map to Hugging Face names, and attn_q/attn_k rows are put back in Hugging Face order: llama.cpp's
converter permutes them so that rope can rotate adjacent pairs (GPT-J style), while Hugging Face
(and the engine) rotate pairs (i, i + head_dim/2).
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from slimrt.engine_weights import bf16_matrix, check_weight_format, f32_vector, to_format
from slimrt.errors import FormatError, ModelError
from slimrt.loaded_model import LoadedModel
from slimrt.model_config import normalize_config, weight_shapes
from slimrt.progress import byte_progress

__all__ = ["hf_name", "load_gguf", "unpermute_rope_rows"]

log = logging.getLogger(__name__)

# Types gguf.quants.dequantize turns into float32 that slimrt accepts. More of them would work
# mechanically; these are the ones tested against transformers' own GGUF loading.
_SUPPORTED_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1")

_TOP_LEVEL = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_IN_BLOCK = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_BLOCK = re.compile(r"blk\.(\d+)\.(.+)")


def hf_name(gguf_name: str) -> str | None:
    """The Hugging Face name of a llama.cpp tensor name; None for names it has no match for."""
    if gguf_name in _TOP_LEVEL:
        return _TOP_LEVEL[gguf_name]
    match = _BLOCK.fullmatch(gguf_name)
    if match and match.group(2) in _IN_BLOCK:
        return f"model.layers.{int(match.group(1))}.{_IN_BLOCK[match.group(2)]}"
    return None


def unpermute_rope_rows(rows: np.ndarray, heads: int) -> np.ndarray:
    """Undoes convert_hf_to_gguf's permute() of q/k projection rows (or biases).

    Per head, the converter interleaves the two halves of the head's rows (row i of the first
    half and row i of the second become rows 2i, 2i+1). Reading the rows as [heads, half, 2]
    and swapping the last two axes puts them back (transformers' reverse_permute).
    """
    half = rows.shape[0] // heads // 2
    return rows.reshape(heads, half, 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape).copy()


def load_gguf(
    path: str | os.PathLike[str],
    *,
    weights: str = "bf16",
    progress: bool = True,
    num_threads: int = 0,
) -> LoadedModel:
    """Config, engine weights, tokenizer and chat template of a GGUF file."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    from slimrt.gguf_tokenizer import gguf_tokenizer

    check_weight_format(weights)
    path = Path(path)
    try:
        reader = GGUFReader(path)
    except (ValueError, OSError) as e:
        raise FormatError(f"{path}: not a readable GGUF file ({e})") from e
    metadata = _metadata(reader)
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    config = _config(path, metadata, tensors)
    shapes = weight_shapes(config)

    plan: list[tuple[str, Any]] = []  # (hf name, gguf tensor), in engine order
    by_hf_name = {}
    for name, tensor in tensors.items():
        target = hf_name(name)
        if target is None:
            raise ModelError(f"{path}: unexpected GGUF tensor {name} (not a llama tensor)")
        by_hf_name[target] = tensor
    for name, shape in shapes.items():
        tensor = by_hf_name.get(name)
        if tensor is None:
            raise ModelError(f"{path}: missing tensor {name} (GGUF {_gguf_name(name)})")
        kind = tensor.tensor_type.name
        if kind not in _SUPPORTED_TYPES:
            raise ModelError(f"{path}: unsupported GGUF tensor type {kind} in {tensor.name}")
        # GGUF lists dimensions fastest-first; Hugging Face slowest-first.
        actual = tuple(int(d) for d in reversed(tensor.shape.tolist()))
        if actual != shape:
            raise ModelError(
                f"{path}: tensor {tensor.name} has shape {list(actual)}, config expects "
                f"{list(shape)}"
            )
        plan.append((name, tensor))

    heads = {"q": config["num_attention_heads"], "k": config["num_key_value_heads"]}
    engine_weights: dict[str, Any] = {}
    converted: Counter[str] = Counter()
    total = sum(int(tensor.n_bytes) for _, tensor in plan)
    desc = "load" if weights == "bf16" else "load + DF11"
    with byte_progress(total, desc, enabled=progress) as bar:
        for name, tensor in plan:
            kind = tensor.tensor_type.name
            values = dequantize(tensor.data, tensor.tensor_type).reshape(shapes[name])
            where = f"{path}: tensor {tensor.name}"
            if values.ndim == 1:
                value: Any = f32_vector(values, "F32", where=where)
            else:
                value, _ = bf16_matrix(values, "F32", where=where)
                converted[kind] += 1
            projection = re.search(r"self_attn\.([qk])_proj\.", name)
            if projection:
                value = unpermute_rope_rows(value, heads[projection.group(1)])
            if value.ndim == 2:
                value = to_format(value, weights, num_threads=num_threads)
            engine_weights[name] = value
            bar.update(int(tensor.n_bytes))

    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(converted.items()))
    log.info("%s: dequantized %s matrices to BF16", path.name, counts)
    tokenizer = gguf_tokenizer(metadata, where=str(path))
    template = metadata.get("tokenizer.chat_template")
    types = "/".join(sorted(converted))
    source = f"{path} (GGUF {types} dequantized to BF16, {weights.upper()} weights)"
    return LoadedModel(config, engine_weights, tokenizer, template, source)


def _gguf_name(hf: str) -> str:
    for gguf_name, name in _TOP_LEVEL.items():
        if name == hf:
            return gguf_name
    match = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", hf)
    if match:
        for gguf_part, part in _IN_BLOCK.items():
            if part == match.group(2):
                return f"blk.{match.group(1)}.{gguf_part}"
    return hf


def _metadata(reader: Any) -> dict[str, Any]:
    """Field name -> Python value (str, int, float, bool or list of them)."""
    metadata = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        try:
            metadata[name] = field.contents()
        except (ValueError, UnicodeDecodeError):  # a value slimrt has no use for
            continue
    return metadata


def _config(path: Path, metadata: dict[str, Any], tensors: dict[str, Any]) -> dict[str, Any]:
    """A Hugging Face config.json dict from llama.* metadata, checked like any config."""
    architecture = metadata.get("general.architecture")
    if architecture != "llama":
        raise ModelError(
            f"{path}: GGUF architecture {architecture!r} is not supported; slimrt reads 'llama' "
            "GGUF files (Llama, SmolLM, TinyLlama, ...)"
        )

    def need(key: str) -> Any:
        value = metadata.get(f"llama.{key}")
        if value is None:
            raise ModelError(f"{path}: GGUF metadata lacks llama.{key}")
        return value

    if "rope_freqs.weight" in tensors:
        raise ModelError(
            f"{path}: GGUF has rope_freqs.weight (Llama 3.1 rope scaling), which slimrt does not "
            "read from GGUF yet; load the Hugging Face directory instead"
        )
    scaling = metadata.get("llama.rope.scaling.type", "none")
    if scaling != "none":
        raise ModelError(f"{path}: config: unsupported rope_scaling type {scaling}")
    heads = need("attention.head_count")
    hidden = need("embedding_length")
    head_dim = metadata.get("llama.attention.key_length", hidden // heads if heads else 0)
    if metadata.get("llama.attention.value_length", head_dim) != head_dim:
        raise ModelError(f"{path}: GGUF key_length and value_length differ; not supported")
    rope_dims = metadata.get("llama.rope.dimension_count", head_dim)
    if rope_dims != head_dim:
        raise ModelError(
            f"{path}: rope covers {rope_dims} of {head_dim} head dimensions; partial rope is not "
            "supported"
        )
    tokens = metadata.get("tokenizer.ggml.tokens") or []
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": metadata.get("llama.vocab_size", len(tokens)),
        "hidden_size": hidden,
        "intermediate_size": need("feed_forward_length"),
        "num_hidden_layers": need("block_count"),
        "num_attention_heads": heads,
        "num_key_value_heads": metadata.get("llama.attention.head_count_kv", heads),
        "head_dim": head_dim,
        "rms_norm_eps": need("attention.layer_norm_rms_epsilon"),
        "rope_theta": metadata.get("llama.rope.freq_base", 10000.0),
        "rope_scaling": None,
        "max_position_embeddings": need("context_length"),
        # llama.cpp's converter leaves the output matrix out when it is the embedding.
        "tie_word_embeddings": "output.weight" not in tensors,
        "attention_bias": "blk.0.attn_q.bias" in tensors,
        "bos_token_id": metadata.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": metadata.get("tokenizer.ggml.eos_token_id"),
        "torch_dtype": "bfloat16",
    }
    return normalize_config(config, where=f"{path} (GGUF metadata)")
