"""Small seeded random models of each supported architecture, saved as Hugging Face
directories the way transformers saves them, with a small byte-level BPE tokenizer.

    path, model = write_tiny_model(tmp_path / "llama", "llama")   # model: FP32, BF16 values

The weights are rounded to BF16 before saving, so the FP32 transformers model and the BF16 files
hold the same values: any difference in logits comes from the computation, not the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

SPECIAL_TOKENS = ["<s>", "</s>", "<|im_start|>", "<|im_end|>"]
CHATML_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A memory-slim runtime keeps weights compressed and decodes them just before use.",
    "Once upon a time, in a land far away, there lived a small model with a big vocabulary.",
    "Numbers like 12345 and 67890 are split into digits; punctuation stays: ,.;:!?",
    "Émilie a mangé une crème brûlée à Paris. 東京は日本の首都です。 🙂🚀",
    "def add(a, b):\n    return a + b\n",
]

ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3", "phi3", "mixtral", "qwen3-moe")


def write_tokenizer(path: Path, vocab_size: int = 384) -> int:
    """Trains a byte-level BPE tokenizer into path (tokenizer.json, tokenizer_config.json);
    returns its vocabulary size. BOS <s> is added to plain prompts; turns end with <|im_end|>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS * 20, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tokenizer.token_to_id("<s>"))]
    )
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path / "tokenizer.json"))
    settings = {"bos_token": "<s>", "eos_token": "</s>", "chat_template": CHATML_TEMPLATE}
    (path / "tokenizer_config.json").write_text(json.dumps(settings, indent=2))
    return tokenizer.get_vocab_size()


def tiny_config(architecture: str, vocab_size: int, seed: int = 0) -> object:
    """A transformers config of `architecture` with a few layers and a small hidden size."""
    import transformers

    common = {
        "vocab_size": vocab_size,
        "num_hidden_layers": 2 + seed % 2,
        "rms_norm_eps": 1e-5,
        "max_position_embeddings": 256,
        "bos_token_id": 0,
        "eos_token_id": [1, 3],
        # Large enough weights that every layer moves the residual stream (a tied model would
        # otherwise repeat its input token) and the top logits stand apart.
        "initializer_range": 0.2,
    }
    if architecture in ("llama", "llama-bias"):
        # Llama 3.1's rope scaling, with a short original context so that the scaling bends
        # the frequencies of this small model's head_dim.
        return transformers.LlamaConfig(
            hidden_size=96,
            intermediate_size=192,
            num_attention_heads=6,
            num_key_value_heads=2,
            rope_theta=500000.0,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
            # Hugging Face's Llama with attention_bias has q/k/v and o_proj biases.
            attention_bias=architecture == "llama-bias",
            **common,
        )
    if architecture == "llama-d64":
        # Heads of 64, a size the CUDA kernels over compressed KV pages take (GQA group 2).
        return transformers.LlamaConfig(
            hidden_size=256,
            intermediate_size=256,
            num_attention_heads=4,
            num_key_value_heads=2,
            rope_theta=10000.0,
            **common,
        )
    if architecture == "mistral":
        return transformers.MistralConfig(
            hidden_size=64,
            intermediate_size=160,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=32,  # not hidden/heads: exercises an explicit head_dim
            rope_theta=10000.0,
            sliding_window=None,
            tie_word_embeddings=True,
            **common,
        )
    if architecture == "qwen2":
        return transformers.Qwen2Config(
            hidden_size=128,
            intermediate_size=256,
            num_attention_heads=4,
            num_key_value_heads=4,
            rope_theta=1000000.0,
            **common,
        )
    if architecture == "qwen3":
        # Per-head q/k norms, no biases, an explicit head_dim (Qwen3's 128 is not hidden/heads).
        return transformers.Qwen3Config(
            hidden_size=64,
            intermediate_size=160,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=32,
            rope_theta=1000000.0,
            tie_word_embeddings=True,
            **common,
        )
    if architecture in ("phi3", "phi3-longrope"):
        # Fused qkv_proj and gate_up_proj. The longrope variant has a short original context,
        # so that prompts and generations cross it, and a sliding window longer than any test
        # sequence (Phi-3-mini sets one).
        rope: dict = {"rope_type": "default", "rope_theta": 10000.0}
        if architecture == "phi3-longrope":
            factors = torch.Generator().manual_seed(seed + 7)
            rope = {
                "rope_type": "longrope",
                "rope_theta": 10000.0,
                "short_factor": (1 + 0.5 * torch.rand(16, generator=factors)).tolist(),
                "long_factor": (1 + 3 * torch.rand(16, generator=factors)).tolist(),
            }
        return transformers.Phi3Config(
            hidden_size=128,
            intermediate_size=192,
            num_attention_heads=4,
            num_key_value_heads=2,
            rope_parameters=rope,
            original_max_position_embeddings=16 if architecture == "phi3-longrope" else 256,
            sliding_window=200 if architecture == "phi3-longrope" else None,
            pad_token_id=None,
            **common,
        )
    if architecture == "mixtral":
        return transformers.MixtralConfig(
            hidden_size=64,
            intermediate_size=96,
            num_attention_heads=4,
            num_key_value_heads=2,
            num_local_experts=4,
            num_experts_per_tok=2,
            rope_theta=1000000.0,
            sliding_window=None,
            **common,
        )
    if architecture in ("qwen3-moe", "qwen3-moe-sparse-step"):
        # qwen3-moe: renormalised top 3 of 8 in 3 layers, the middle one dense
        # (mlp_only_layers). The other: not renormalised (Qwen3MoeConfig's default), every second
        # of 4 layers sparse (decoder_sparse_step).
        step = architecture == "qwen3-moe-sparse-step"
        layers = {**common, "num_hidden_layers": 4 if step else 3}
        return transformers.Qwen3MoeConfig(
            hidden_size=64,
            intermediate_size=160,
            moe_intermediate_size=48,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=32,
            num_experts=8,
            num_experts_per_tok=3,
            norm_topk_prob=not step,
            decoder_sparse_step=2 if step else 1,
            mlp_only_layers=[] if step else [1],
            rope_theta=1000000.0,
            **layers,
        )
    raise ValueError(architecture)


def tiny_model(architecture: str, vocab_size: int, seed: int = 0) -> torch.nn.Module:
    """The FP32 transformers model, its weights rounded to BF16 values; norms and biases
    random too (not ones and zeros) so that every tensor matters, and an lm_head that spreads
    the logits (greedy choices then rarely hinge on a near tie)."""
    import transformers

    config = tiny_config(architecture, vocab_size, seed)
    model_class = {
        "llama": transformers.LlamaForCausalLM,
        "llama-bias": transformers.LlamaForCausalLM,
        "llama-d64": transformers.LlamaForCausalLM,
        "mistral": transformers.MistralForCausalLM,
        "qwen2": transformers.Qwen2ForCausalLM,
        "qwen3": transformers.Qwen3ForCausalLM,
        "phi3": transformers.Phi3ForCausalLM,
        "phi3-longrope": transformers.Phi3ForCausalLM,
        "mixtral": transformers.MixtralForCausalLM,
        "qwen3-moe": transformers.Qwen3MoeForCausalLM,
        "qwen3-moe-sparse-step": transformers.Qwen3MoeForCausalLM,
    }[architecture]
    torch.manual_seed(seed)
    model = model_class(config).float().eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.copy_(1 + 0.2 * torch.randn(parameter.shape, generator=generator))
            elif name.endswith(".bias"):
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
            elif name.endswith("embed_tokens.weight"):
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
            elif name.endswith(".gate.weight"):
                # A MoE router: decisive, so that no routing hinges on a near tie.
                parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
            elif name == "lm_head.weight" and not config.tie_word_embeddings:
                parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
            parameter.copy_(parameter.to(torch.bfloat16).float())
    return model


def write_tiny_model(
    path: Path,
    architecture: str,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.bfloat16,
    max_shard_size: str | None = None,
) -> tuple[Path, torch.nn.Module]:
    """A Hugging Face directory of a tiny model (weights in `dtype`, sharded when
    max_shard_size is given) and the FP32 transformers model with the same values."""
    vocab_size = write_tokenizer(path)
    model = tiny_model(architecture, vocab_size, seed)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    copy = tiny_model(architecture, vocab_size, seed).to(dtype)
    copy.save_pretrained(path, safe_serialization=True, **kwargs)
    return path, model
