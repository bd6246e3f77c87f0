"""What a finished request returns: its text, tokens, why it stopped and how fast it ran."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Completion", "TokenLogprob"]


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token's log-probability and the most likely tokens at its position, of the
    model's raw distribution: log_softmax of the logits before temperature, top-k, top-p and
    min-p (a NaN logit counts as -inf). top: (token id, log-probability) pairs, the most likely
    first, ties to the lower id; as many as SamplingParams.logprobs asked for."""

    token_id: int
    logprob: float
    top: list[tuple[int, float]]


@dataclass(frozen=True)
class Completion:
    """text: the generated text, without the EOS / stop token and cut before a stop string.
    token_ids: every generated token, a final EOS or stop token included.
    finish_reason: "stop" (EOS, a stop token or a stop string) or "length" (max_tokens).
    prompt_tokens: tokens of the prompt (after the chat template and BOS).
    logprobs: one TokenLogprob per token of token_ids when SamplingParams.logprobs was set,
    else None.
    prefill_s: from the request's first prefill chunk to its first generated token.
    decode_s: from its first generated token to its last.
    In a batch, the engine's steps serve every sequence at once, so the times of one request
    include the work done for the others in the same steps.
    """

    text: str
    token_ids: list[int]
    finish_reason: str
    prompt_tokens: int
    prefill_s: float
    decode_s: float
    logprobs: list[TokenLogprob] | None = None

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def prefill_tokens_per_s(self) -> float:
        return self.prompt_tokens / self.prefill_s if self.prefill_s > 0 else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens after the first (which prefill produced) per second of decoding."""
        decoded = len(self.token_ids) - 1
        return decoded / self.decode_s if decoded > 0 and self.decode_s > 0 else 0.0
