"""A stand-in for the parts of slimrt._core the Python layer drives (docs/ENGINE_API.md):
Engine, EngineOptions and SamplingParams, the engine computed by transformers in FP32 from the
tensors a real `_core.Model` holds.

It exists to cross-check the Python decoding loop (batching, chunked prefill, stop rules,
streaming, page accounting) against an engine that shares no code with the C++ one. The model
is loaded by the core (`_core.Model.load`: the loader is not what is tested here); the options
are the core's own (`_core.EngineOptions`, `_core.SamplingParams`); the step checks and their
messages and exception classes are the C++ engine's. It is slow (no arenas, a DynamicCache per
sequence) and is no reference for speed or memory: it checks no memory budget.

    monkeypatch.setattr(slimrt.llm, "_core", reference_core)
    monkeypatch.setattr(slimrt.llm_engine, "_core", reference_core)

    model = reference_core.transformers_model(core_model)   # transformers holding its weights
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from slimrt import _core
from slimrt.bfloat16 import widen_bf16
from slimrt.errors import InvalidArgumentError, ModelError, OutOfMemoryError

# The core's own option structs and their checks: what is cross-checked is the engine.
EngineOptions = _core.EngineOptions
SamplingParams = _core.SamplingParams

_DEFAULT_KV_TOKENS_CAP = 32768  # engine.cpp's kDefaultKvTokensCap


def transformers_config(config: Any) -> Any:
    """The transformers config of a `_core.ModelConfig` (the normalised config.json)."""
    import transformers

    fields: dict[str, Any] = {
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim,
        "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": config.rope_theta,
        "max_position_embeddings": config.max_position_embeddings,
        "tie_word_embeddings": config.tie_word_embeddings,
    }
    scaling = config.rope_scaling
    if scaling.llama3:
        fields["rope_scaling"] = {
            "rope_type": "llama3",
            "factor": scaling.factor,
            "low_freq_factor": scaling.low_freq_factor,
            "high_freq_factor": scaling.high_freq_factor,
            "original_max_position_embeddings": scaling.original_max_position_embeddings,
        }
    window = config.sliding_window or None
    architecture = config.architecture
    # Which biases each transformers class can hold: Llama's attention_bias puts them on
    # q/k/v and o_proj; Qwen2 always has q/k/v biases; Mistral never has any.
    if architecture == "LlamaForCausalLM":
        fields["attention_bias"] = config.attention_bias
        expressible = config.o_proj_bias == config.attention_bias
    elif architecture == "Qwen2ForCausalLM":
        fields |= {"use_sliding_window": window is not None, "sliding_window": window}
        expressible = config.attention_bias and not config.o_proj_bias
    else:
        fields["sliding_window"] = window
        expressible = not (config.attention_bias or config.o_proj_bias)
    if not expressible:
        raise ModelError(
            f"reference_core: {architecture} with attention_bias={config.attention_bias}, "
            f"o_proj_bias={config.o_proj_bias} has no transformers equivalent"
        )
    return getattr(transformers, architecture).config_class(**fields)


def transformers_model(model: Any) -> torch.nn.Module:
    """transformers' model of a `_core.Model`'s architecture, in FP32, holding exactly the
    tensors the core holds (matrix_bf16 widened, vector_f32): every tensor transformers has
    is read from the core, so one the core lacks raises its error here."""
    import transformers

    config = model.config
    reference = getattr(transformers, config.architecture)(transformers_config(config))
    state = {}
    for name, parameter in reference.state_dict().items():
        if name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # the embedding, tied below
        if parameter.ndim == 2:
            values = widen_bf16(model.matrix_bf16(name)).reshape(tuple(parameter.shape))
        else:
            values = model.vector_f32(name)
        state[name] = torch.from_numpy(values)
    reference.load_state_dict(state, strict=False)
    reference.tie_weights()
    return reference.float().eval()


def _pages(tokens: int, page_size: int) -> int:
    return -(-tokens // page_size)


class Engine:
    """_core.Engine's interface over transformers_model(model), one DynamicCache a sequence."""

    def __init__(self, model: Any, options: Any = None) -> None:
        if options is None:
            options = EngineOptions()
        elif isinstance(options, dict):
            options = EngineOptions.from_dict(options)
        options.validate()
        config = model.config
        self.config = config
        self.model = model
        self.reference = transformers_model(model)
        self.vocab_size = config.vocab_size
        self.max_position_embeddings = config.max_position_embeddings
        self.max_batch = options.max_batch
        self.max_step_tokens = options.max_step_tokens
        self.page_size = options.page_size
        kv_tokens = options.kv_tokens or min(self.max_position_embeddings, _DEFAULT_KV_TOKENS_CAP)
        self.total_pages = _pages(kv_tokens, self.page_size)
        self.kv_tokens = self.total_pages * self.page_size
        self._next_id = 0
        self._tokens: dict[int, list[int]] = {}
        self._caches: dict[int, object] = {}
        self.steps: list[tuple[list[int], list[int]]] = []  # (seq_ids, counts) per step, for tests

    @property
    def free_pages(self) -> int:
        used = sum(_pages(len(t), self.page_size) for t in self._tokens.values())
        return self.total_pages - used

    def add_sequence(self) -> int:
        self._next_id += 1
        self._tokens[self._next_id] = []
        self._caches[self._next_id] = None
        return self._next_id

    def _known(self, seq_id: int, prefix: str = "") -> None:
        if seq_id not in self._tokens:
            raise InvalidArgumentError(f"{prefix}unknown sequence id {seq_id}")

    def release_sequence(self, seq_id: int) -> None:
        self._known(seq_id)
        del self._tokens[seq_id], self._caches[seq_id]

    def sequence_length(self, seq_id: int) -> int:
        self._known(seq_id)
        return len(self._tokens[seq_id])

    def pages_needed(self, seq_id: int, new_tokens: int) -> int:
        if new_tokens < 0:
            raise InvalidArgumentError(f"pages_needed: new_tokens must be >= 0, got {new_tokens}")
        self._known(seq_id)
        held = len(self._tokens[seq_id])
        return _pages(held + new_tokens, self.page_size) - _pages(held, self.page_size)

    def reuse_prefix(self, seq_id: int, tokens) -> int:
        """No prefix cache (as the core with enable_prefix_caching off): every token computed."""
        self._known(seq_id)
        return 0

    def memory(self) -> dict[str, int]:
        weights = self.model.weight_bytes
        return {
            "weights": weights,
            "df11_scratch": 0,
            "kv_pool": 0,
            "activations": 0,
            "total": weights,
        }

    def kv_usage(self) -> dict[str, int]:
        # The reference keeps no pages: it reports the dense pages its sequences would hold.
        used = self.total_pages - self.free_pages
        tokens = sum(len(t) for t in self._tokens.values())
        return {
            "page_size": self.page_size,
            "dense_pages": self.total_pages,
            "dense_pages_used": used,
            "compressed_pages": 0,
            "compressed_pages_used": 0,
            "dense_page_bytes": 0,
            "compressed_page_bytes": 0,
            "tokens": tokens,
            "peak_dense_pages_used": used,
            "peak_compressed_pages_used": 0,
            "peak_tokens": tokens,
            "prefix_cached_pages": 0,
            "prefix_cached_free_pages": 0,
            "prefix_evicted_pages": 0,
            "prefix_query_tokens": 0,
            "prefix_hit_tokens": 0,
        }

    def step(self, seq_ids, tokens, counts, sampling=None):
        seq_ids, tokens, counts = (np.asarray(a).tolist() for a in (seq_ids, tokens, counts))
        self._check(seq_ids, tokens, counts, sampling)
        self.steps.append((seq_ids, counts))
        rows, start = [], 0
        with torch.no_grad():
            for seq_id, count in zip(seq_ids, counts, strict=True):
                new = tokens[start : start + count]
                start += count
                out = self.reference(
                    input_ids=torch.tensor([new]),
                    past_key_values=self._caches[seq_id],
                    use_cache=True,
                )
                self._caches[seq_id] = out.past_key_values
                self._tokens[seq_id].extend(new)
                rows.append(out.logits[0, -1].float().numpy())
        logits = np.stack(rows)
        if sampling is None:
            return logits
        return np.array(
            [
                _sample(row, p, len(self._tokens[s]))
                for row, p, s in zip(logits, sampling, seq_ids, strict=True)
            ],
            dtype=np.int32,
        )

    def _check(self, seq_ids, tokens, counts, sampling) -> None:
        """engine_bindings.cpp's and Engine::Impl::check_step's checks, in their order."""

        def check(ok: bool, message: str) -> None:
            if not ok:
                raise InvalidArgumentError(message)

        batch, total, given = len(seq_ids), len(tokens), sum(counts)
        check(len(counts) == batch, f"step: counts has {len(counts)} entries, seq_ids has {batch}")
        if sampling is not None:
            wrong = f"step: sampling has {len(sampling)} entries, expected {batch}"
            check(len(sampling) == batch, wrong)
        check(batch >= 1, "step: no sequences given")
        check(batch <= self.max_batch, f"step: {batch} sequences exceed max_batch={self.max_batch}")
        check(
            total <= self.max_step_tokens,
            f"step: {total} tokens exceed max_step_tokens={self.max_step_tokens}",
        )
        for b, count in enumerate(counts):
            short = f"step: counts[{b}] is {count}; every sequence needs at least 1 token"
            check(count >= 1, short)
        check(given == total, f"step: counts sum to {given} but {total} tokens were given")
        need = 0
        for b, (s, count) in enumerate(zip(seq_ids, counts, strict=True)):
            self._known(s, "step: ")
            check(s not in seq_ids[:b], f"step: sequence id {s} appears twice")
            held = len(self._tokens[s])
            n = held + count
            check(
                n <= self.max_position_embeddings,
                f"context length {n} exceeds the model's maximum of {self.max_position_embeddings}",
            )
            window = self.config.sliding_window
            check(
                window == 0 or n <= window,
                f"context length {n} exceeds the sliding window of {window} tokens "
                "(sliding-window attention is not implemented)",
            )
            need += _pages(n, self.page_size) - _pages(held, self.page_size)
        for i, t in enumerate(tokens):
            check(
                0 <= t < self.vocab_size,
                f"step: token id {t} (tokens[{i}]) is outside [0, {self.vocab_size})",
            )
        if need > self.free_pages:
            raise OutOfMemoryError(
                f"KV cache out of pages: this step needs {need} more pages, {self.free_pages} are "
                f"free (kv_tokens={self.kv_tokens}, page_size={self.page_size})"
            )


def _sample(logits: np.ndarray, p: SamplingParams, position: int) -> int:
    """Greedy at temperature 0; otherwise a draw seeded by (seed, position), as the contract
    says, after top_k, top_p and min_p."""
    if p.temperature == 0:
        return int(np.argmax(logits))
    scaled = logits.astype(np.float64) / p.temperature
    order = np.argsort(-scaled, kind="stable")
    if p.top_k:
        order = order[: p.top_k]
    probs = np.exp(scaled[order] - scaled[order[0]])
    probs /= probs.sum()
    if p.top_p < 1:
        keep = np.searchsorted(np.cumsum(probs), p.top_p) + 1
        order, probs = order[:keep], probs[:keep]
    if p.min_p > 0:
        keep = probs >= p.min_p * probs[0]
        order, probs = order[keep], probs[keep]
    probs /= probs.sum()
    rng = np.random.default_rng([p.seed, position])
    return int(order[rng.choice(len(order), p=probs)])
