"""A stand-in for the parts of slimrt._core the Python layer drives (docs/ENGINE_API.md):
Engine, SamplingParams, Df11Weight, Error, cuda_available — computed by transformers in FP32.

It exists to test the Python decoding loop (batching, chunked prefill, stop rules, streaming,
page accounting) on any machine, and to pin down what the contract means where the C++ engine
is not there yet. It follows the contract's checks and messages; it is slow (no arenas, a
DynamicCache per sequence) and is no reference for speed or memory.

    monkeypatch.setattr(slimrt.llm, "_core", reference_core)
    monkeypatch.setattr(slimrt.llm_engine, "_core", reference_core)
"""

from __future__ import annotations

import numpy as np
import torch
from slimrt import df11
from slimrt.bfloat16 import widen_bf16


class Error(RuntimeError):
    pass


def cuda_available() -> bool:
    return False


class SamplingParams:
    def __init__(
        self,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        min_p: float = 0.0,
        seed: int = 0,
    ) -> None:
        if temperature < 0:
            raise Error(f"temperature must be >= 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise Error(f"top_p must be in (0, 1], got {top_p}")
        if not 0 <= min_p <= 1:
            raise Error(f"min_p must be in [0, 1], got {min_p}")
        if top_k < 0:
            raise Error(f"top_k must be >= 0, got {top_k}")
        self.temperature, self.top_k, self.top_p, self.min_p, self.seed = (
            temperature,
            top_k,
            top_p,
            min_p,
            seed,
        )


class Df11Weight:
    def __init__(self, lengths, bitstream, index, signmant, shape) -> None:
        self.tensor = df11.Df11Tensor(tuple(shape), lengths, bitstream, index, signmant, 0)
        self.tensor.validate()

    def bf16_bits(self) -> np.ndarray:
        return self.tensor.decompress(verify=False)


_MODEL_CLASSES = {
    "LlamaForCausalLM": "LlamaForCausalLM",
    "MistralForCausalLM": "MistralForCausalLM",
    "Qwen2ForCausalLM": "Qwen2ForCausalLM",
}


def build_model(config: dict, weights: dict) -> torch.nn.Module:
    """A transformers model in FP32 holding `weights` (the engine's weights dict)."""
    import transformers

    architecture = config["architectures"][0]
    if architecture not in _MODEL_CLASSES:
        raise Error(
            f"unsupported architecture {architecture}; supported: "
            "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"
        )
    model_class = getattr(transformers, _MODEL_CLASSES[architecture])
    config_class = model_class.config_class
    hf_config = config_class(**{k: v for k, v in config.items() if k != "architectures"})
    model = model_class(hf_config)
    state = {}
    for name, value in weights.items():
        if isinstance(value, Df11Weight):
            value = value.bf16_bits()
        array = widen_bf16(value) if value.dtype == np.uint16 else np.asarray(value, np.float32)
        state[name] = torch.from_numpy(np.array(array, dtype=np.float32))
    expected = set(model.state_dict())
    if config.get("tie_word_embeddings"):
        expected.discard("lm_head.weight")
    missing = sorted(expected - set(state))
    if missing:
        raise Error(f"missing tensor {missing[0]}")
    model.load_state_dict(state, strict=False)
    return model.float().eval()


class Engine:
    def __init__(self, config: dict, weights: dict, options: dict) -> None:
        if options.get("device", "cpu") != "cpu":
            raise Error("the CUDA backend is not built yet; use device='cpu'")
        self.model = build_model(config, weights)
        self.vocab_size = config["vocab_size"]
        self.max_position_embeddings = config["max_position_embeddings"]
        self.max_batch = options.get("max_batch", 8)
        self.max_step_tokens = options.get("max_step_tokens", 512)
        self.page_size = options.get("page_size", 16)
        kv_tokens = options.get("kv_tokens", min(self.max_position_embeddings, 32768))
        self.total_pages = -(-kv_tokens // self.page_size)
        self._next_id = 0
        self._tokens: dict[int, list[int]] = {}
        self._caches: dict[int, object] = {}
        self.steps: list[tuple[list[int], list[int]]] = []  # (seq_ids, counts) per step, for tests

    @property
    def free_pages(self) -> int:
        used = sum(-(-len(t) // self.page_size) for t in self._tokens.values())
        return self.total_pages - used

    def add_sequence(self) -> int:
        self._next_id += 1
        self._tokens[self._next_id] = []
        self._caches[self._next_id] = None
        return self._next_id

    def release_sequence(self, seq_id: int) -> None:
        if seq_id not in self._tokens:
            raise Error(f"unknown sequence id {seq_id}")
        del self._tokens[seq_id], self._caches[seq_id]

    def sequence_length(self, seq_id: int) -> int:
        return len(self._tokens[seq_id])

    def pages_needed(self, seq_id: int, new_tokens: int) -> int:
        if new_tokens < 0:
            raise Error(f"pages_needed: new_tokens must be >= 0, got {new_tokens}")
        if seq_id not in self._tokens:
            raise Error(f"unknown sequence id {seq_id}")
        held = len(self._tokens[seq_id])
        return -(-(held + new_tokens) // self.page_size) - -(-held // self.page_size)

    def memory(self) -> dict[str, int]:
        weights = sum(p.numel() * 2 for p in self.model.parameters())
        return {
            "weights": weights,
            "df11_scratch": 0,
            "kv_pool": 0,
            "activations": 0,
            "total": weights,
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
                out = self.model(
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
        if len(set(seq_ids)) != len(seq_ids):
            raise Error("repeated sequence id")
        for s in seq_ids:
            if s not in self._tokens:
                raise Error(f"unknown sequence id {s}")
        if len(seq_ids) > self.max_batch:
            raise Error(f"batch of {len(seq_ids)} exceeds max_batch={self.max_batch}")
        if len(tokens) > self.max_step_tokens:
            raise Error(f"{len(tokens)} tokens exceed max_step_tokens={self.max_step_tokens}")
        if len(counts) != len(seq_ids) or sum(counts) != len(tokens) or min(counts) < 1:
            raise Error("counts do not match tokens")
        if sampling is not None and len(sampling) != len(seq_ids):
            raise Error("one SamplingParams per sequence")
        if any(not 0 <= t < self.vocab_size for t in tokens):
            raise Error("token id outside the vocabulary")
        need = 0
        for s, c in zip(seq_ids, counts, strict=True):
            n = len(self._tokens[s]) + c
            if n > self.max_position_embeddings:
                raise Error(
                    f"context length {n} exceeds the model's maximum of "
                    f"{self.max_position_embeddings}"
                )
            need += -(-n // self.page_size) - -(-len(self._tokens[s]) // self.page_size)
        if need > self.free_pages:
            raise Error(
                f"KV cache out of pages: this step needs {need} more pages, {self.free_pages} "
                f"are free"
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
