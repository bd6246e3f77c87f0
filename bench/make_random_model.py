"""Write a model directory with a real architecture's shapes and seeded random BF16 weights.

Benchmarks need big models (Llama-3.1-8B: 16 GB of BF16) that no package ships; what their
speed depends on is the shapes, not the values. The directory is a real Hugging Face model
directory (config.json + sharded safetensors + index), so slimrt, `slimrt compress` and
transformers all load it. It appears complete or not at all (written to a temp dir, renamed).

    python bench/make_random_model.py llama-3.1-8b OUT_DIR [--seed 0] [--layers N]
        [--device cpu|cuda]
    python bench/make_random_model.py tiny-llama OUT_DIR      # seconds, for CPU checks
    python bench/make_random_model.py llama-3.3-70b OUT_DIR --layers 1   # bench/big_model.py

Matrices are N(0, 0.02) and norms 1 + N(0, 0.05), drawn in float32 and rounded to BF16 (nearest,
ties to even). `--device cpu` (default) draws with numpy, and for the 8B shapes that drawing
and rounding is most of the run time; `--device cuda` draws with a seeded torch.Generator on
the GPU and rounds there, leaving mostly the file writes. Same distributions, different values:
each device's output is deterministic for a seed, but the two differ from each other (and the
CUDA values may also differ between torch versions and GPU models).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from slimrt.atomic_dir import build_dir_atomically
from slimrt.bfloat16 import round_to_bf16
from slimrt.progress import byte_progress
from slimrt.safetensors_file import write_safetensors

SHAPES = {
    "llama-3.1-8b": {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 128256,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        "max_position_embeddings": 131072,
        "tie_word_embeddings": False,
        "bos_token_id": 128000,
        "eos_token_id": 128001,
        "torch_dtype": "bfloat16",
    },
    # Llama-3.3-70B-Instruct's config.json. 131 GiB of BF16 as files: bench/big_model.py writes
    # one layer (--layers 1, 5.9 GB with the embeddings and lm_head) and copies it in memory.
    "llama-3.3-70b": {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 128256,
        "hidden_size": 8192,
        "intermediate_size": 28672,
        "num_hidden_layers": 80,
        "num_attention_heads": 64,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        "max_position_embeddings": 131072,
        "tie_word_embeddings": False,
        "bos_token_id": 128000,
        "eos_token_id": [128001, 128008, 128009],
        "torch_dtype": "bfloat16",
    },
    # Qwen3-30B-A3B's layers (128 experts of 768, 8 per token, per-head q/k norms); its
    # 151936-entry vocabulary cut to 32768 so that the embedding and head do not dominate a
    # model of a few layers.
    "qwen3-30b-a3b": {
        "architectures": ["Qwen3MoeForCausalLM"],
        "model_type": "qwen3_moe",
        "vocab_size": 32768,
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "moe_intermediate_size": 768,
        "num_experts": 128,
        "num_experts_per_tok": 8,
        "norm_topk_prob": True,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "num_hidden_layers": 48,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "head_dim": 128,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "max_position_embeddings": 40960,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "bfloat16",
    },
    "mixtral-8x7b": {
        "architectures": ["MixtralForCausalLM"],
        "model_type": "mixtral",
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_local_experts": 8,
        "num_experts_per_tok": 2,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "rms_norm_eps": 1e-5,
        "rope_theta": 1000000.0,
        "max_position_embeddings": 32768,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "bfloat16",
    },
    # Llama's layout at toy sizes: loads in slimrt and transformers in well under a second.
    "tiny-llama": {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 512,
        "hidden_size": 64,
        "intermediate_size": 176,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "bfloat16",
    },
}

SHARD_BYTES = 4 << 30


def tensor_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    q = config["num_attention_heads"] * config["head_dim"]
    kv = config["num_key_value_heads"] * config["head_dim"]
    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (config["vocab_size"], hidden)
    }
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (hidden,),
            p + "self_attn.q_proj.weight": (q, hidden),
            p + "self_attn.k_proj.weight": (kv, hidden),
            p + "self_attn.v_proj.weight": (kv, hidden),
            p + "self_attn.o_proj.weight": (hidden, q),
            p + "post_attention_layernorm.weight": (hidden,),
        }
        if config["model_type"] == "qwen3_moe":
            shapes |= {
                p + "self_attn.q_norm.weight": (config["head_dim"],),
                p + "self_attn.k_norm.weight": (config["head_dim"],),
            }
        experts = config.get("num_experts", config.get("num_local_experts", 0))
        if experts:
            # Hugging Face's per-expert names (Mixtral: w1 gate, w3 up, w2 down).
            mixtral = config["model_type"] == "mixtral"
            moe = p + ("block_sparse_moe." if mixtral else "mlp.")
            expert_inter = config.get("moe_intermediate_size", inter)
            shapes[moe + "gate.weight"] = (experts, hidden)
            for e in range(experts):
                x = f"{moe}experts.{e}."
                names = ("w1", "w3", "w2") if mixtral else ("gate_proj", "up_proj", "down_proj")
                shapes |= {
                    f"{x}{names[0]}.weight": (expert_inter, hidden),
                    f"{x}{names[1]}.weight": (expert_inter, hidden),
                    f"{x}{names[2]}.weight": (hidden, expert_inter),
                }
            continue
        shapes |= {
            p + "mlp.gate_proj.weight": (inter, hidden),
            p + "mlp.up_proj.weight": (inter, hidden),
            p + "mlp.down_proj.weight": (hidden, inter),
        }
    shapes["model.norm.weight"] = (hidden,)
    if not config["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (config["vocab_size"], hidden)
    return shapes


# Norms near 1, as trained models have them; matrices N(0, 0.02): the usual initialisation,
# and DF11's benchmark distribution.
NORM_MEAN, NORM_STD, MATRIX_STD = 1.0, 0.05, 0.02


class NumpyWeights:
    """Draws on the CPU with numpy; rounds to BF16 with slimrt's numpy cast."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, shape: tuple[int, ...]) -> np.ndarray:
        values = self.rng.standard_normal(shape, dtype=np.float32)
        if len(shape) == 1:
            values = NORM_MEAN + NORM_STD * values
        else:
            values *= MATRIX_STD
        return round_to_bf16(values)


class TorchWeights:
    """Draws on `device` (the GPU) with a seeded torch.Generator and rounds there (torch's
    float32 -> bfloat16 cast also rounds to nearest, ties to even); only BF16 bits come back."""

    def __init__(self, seed: int, device: str = "cuda") -> None:
        import torch

        self.torch = torch
        self.device = device
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def __call__(self, shape: tuple[int, ...]) -> np.ndarray:
        torch = self.torch
        values = torch.randn(
            shape, generator=self.generator, device=self.device, dtype=torch.float32
        )
        if len(shape) == 1:
            values = values.mul_(NORM_STD).add_(NORM_MEAN)
        else:
            values = values.mul_(MATRIX_STD)
        bits = values.to(torch.bfloat16).view(torch.int16).cpu().numpy()
        return bits.view(np.uint16)


def write_tokenizer(out: Path, vocab_size: int) -> None:
    """A placeholder tokenizer over the model's vocabulary ("t0" ... "tN", split on spaces), so
    that the directory loads wherever a tokenizer is required; benchmarks feed token ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"t{i}": i for i in range(vocab_size)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(out / "tokenizer.json"))


def write_model(
    shape_name: str, out: Path, seed: int, layers: int | None, device: str = "cpu"
) -> None:
    config = dict(SHAPES[shape_name])
    if layers is not None:
        config["num_hidden_layers"] = layers
    shapes = tensor_shapes(config)
    draw = TorchWeights(seed) if device == "cuda" else NumpyWeights(seed)
    shards: list[list[str]] = [[]]
    size = 0
    for name, shape in shapes.items():
        nbytes = int(np.prod(shape)) * 2
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    weight_map = {}
    total = sum(int(np.prod(s)) * 2 for s in shapes.values())
    out.absolute().parent.mkdir(parents=True, exist_ok=True)
    with build_dir_atomically(out, overwrite=False) as temp, byte_progress(total, "write") as bar:
        for i, names in enumerate(shards):
            file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            # One shard (at most SHARD_BYTES) is in host memory at a time; on the GPU, one
            # tensor's float32 values.
            tensors = {}
            for name in names:
                tensors[name] = draw(shapes[name])
                bar.update(tensors[name].nbytes)
            write_safetensors(
                temp / file, tensors, {"format": "pt"}, dtypes=dict.fromkeys(names, "BF16")
            )
            weight_map |= dict.fromkeys(names, file)
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (temp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        write_tokenizer(temp, config["vocab_size"])
        config["slimrt_random_weights_seed"] = seed
        config["slimrt_random_weights_device"] = device
        (temp / "config.json").write_text(json.dumps(config, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shape", choices=sorted(SHAPES))
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, help="fewer layers, same layer shapes")
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="draw with numpy on the CPU (default) or with torch on the GPU (no slow numpy "
        "draws; different values for the same seed)",
    )
    args = parser.parse_args()
    write_model(args.shape, args.out, args.seed, args.layers, args.device)


if __name__ == "__main__":
    main()
