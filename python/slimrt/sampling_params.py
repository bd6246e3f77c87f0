"""How to pick tokens and when to stop, for one request.

    SamplingParams()                                        # greedy, up to 256 tokens
    SamplingParams(temperature=0.7, top_p=0.9, seed=1)      # sampled, reproducible
    SamplingParams(max_tokens=64, stop=["\\n\\n"])           # stops at a blank line

Greedy is the default (temperature=0.0), unlike vLLM's 1.0: the same prompt gives the same text
on every run and every machine unless the caller asks for randomness. Values are checked when
the object is made, so a bad one fails before any model work.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

from slimrt import _core
from slimrt.errors import InvalidArgumentError, RequestError
from slimrt.input_limits import MAX_STOP_STRINGS, MAX_STOP_TOKEN_IDS

__all__ = ["MAX_LOGPROBS", "SamplingParams"]

MAX_LOGPROBS = 20  # top log-probabilities per token the engine computes (OpenAI's limit)

_SEED_LIMIT = 1 << 64  # the engine draws from (seed, position) with a 64-bit seed
_TOP_K_LIMIT = 1 << 31  # the engine's top_k is an int32


@dataclass(frozen=True)
class SamplingParams:
    """temperature: 0 picks the most likely token (greedy); > 0 samples from the softmax of
    logits / temperature, after the filters below.
    top_k: keep the k most likely tokens (0 keeps all).
    top_p: keep the smallest set of most likely tokens whose probability reaches top_p (1 keeps
    all).
    min_p: drop tokens less likely than min_p times the most likely one (0 keeps all).
    seed: makes sampling reproducible; the engine draws with (seed, position), so a request gets
    the same tokens whatever else runs in its batch. None draws a fresh seed per request.
    max_tokens: most tokens to generate (the prompt plus these must fit the model's context).
    stop: strings that end the generation; the text is cut before the first one.
    stop_token_ids: token ids that end the generation, besides the model's EOS.
    ignore_eos: keep going past EOS (benchmarks that need an exact length).
    logprobs: None, or n in [0, 20]: each generated token's log-probability and the n most
    likely tokens' at its position (Completion.logprobs), of the model's raw distribution
    (log_softmax of the logits, before temperature and the filters above), computed on the device.
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    seed: int | None = None
    max_tokens: int = 256
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    logprobs: int | None = None

    def __post_init__(self) -> None:
        # Types here; ranges by the core's rules (SamplingParams::validate), the ones every
        # engine step checks again: one place for each rule.
        temperature = _number("temperature", self.temperature)
        top_k = _integer("top_k", self.top_k)
        if not 0 <= top_k < _TOP_K_LIMIT:
            raise RequestError(f"top_k must be >= 0 (0 disables it) and < 2**31, got {top_k}")
        top_p = _number("top_p", self.top_p)
        min_p = _number("min_p", self.min_p)
        try:
            _core.SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
        except InvalidArgumentError as e:
            raise RequestError(str(e)) from None
        if self.seed is not None and not 0 <= _integer("seed", self.seed) < _SEED_LIMIT:
            raise RequestError(f"seed must be in [0, 2**64), got {self.seed}")
        if _integer("max_tokens", self.max_tokens) < 1:
            raise RequestError(f"max_tokens must be >= 1, got {self.max_tokens}")
        # A lone string is one stop string, not a list of characters.
        stop = [self.stop] if isinstance(self.stop, str) else _as_list("stop", self.stop)
        if len(stop) > MAX_STOP_STRINGS:
            raise RequestError(f"at most {MAX_STOP_STRINGS} stop strings, got {len(stop)}")
        for text in stop:
            if not isinstance(text, str) or not text:
                raise RequestError(f"stop strings must be non-empty strings, got {text!r}")
        stop_ids = _as_list("stop_token_ids", self.stop_token_ids)
        if len(stop_ids) > MAX_STOP_TOKEN_IDS:
            raise RequestError(f"at most {MAX_STOP_TOKEN_IDS} stop_token_ids, got {len(stop_ids)}")
        for token_id in stop_ids:
            if _integer("stop_token_ids entry", token_id) < 0:
                raise RequestError(f"stop_token_ids must be >= 0, got {token_id}")
        if self.logprobs is not None and not 0 <= _integer("logprobs", self.logprobs) <= (
            MAX_LOGPROBS
        ):
            raise RequestError(f"logprobs must be in [0, {MAX_LOGPROBS}], got {self.logprobs}")
        if not isinstance(self.ignore_eos, bool):
            raise RequestError(f"ignore_eos must be True or False, got {self.ignore_eos!r}")
        object.__setattr__(self, "temperature", temperature)
        object.__setattr__(self, "top_p", top_p)
        object.__setattr__(self, "min_p", min_p)
        object.__setattr__(self, "top_k", top_k)
        object.__setattr__(self, "max_tokens", int(self.max_tokens))
        object.__setattr__(self, "seed", None if self.seed is None else int(self.seed))
        logprobs = None if self.logprobs is None else int(self.logprobs)
        object.__setattr__(self, "logprobs", logprobs)
        object.__setattr__(self, "stop", stop)
        object.__setattr__(self, "stop_token_ids", [int(t) for t in stop_ids])


def _number(name: str, value: object) -> float:
    # numbers.Real admits numpy scalars; bool is an int to Python but never meant as one here.
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise RequestError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _integer(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise RequestError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _as_list(name: str, value: object) -> list:
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    raise RequestError(f"{name} must be a list, got {value!r}")
