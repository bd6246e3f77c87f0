"""One request while the engine runs it: the tokens fed so far, the text made so far and the
rules that end it.

    seq = Sequence(prompt_ids, params, tokenizer, sampling)
    chunk = seq.next_tokens(budget)        # a prefill chunk, or the last token for a decode step
    seq.advance(len(chunk), sampled_id)    # after the engine step (and its TokenLogprob)
    seq.take_text()                        # new text that no stop string can take back
    seq.rewind()                           # preempted: its KV is gone, feed everything again
    seq.reuse(engine.reuse_prefix(seq_id, seq.known_ids()))  # cached pages: fed already

A preempted request keeps its generated tokens; after rewind() its next chunks are its prompt
and those tokens again, and the step that feeds the last of them samples the token an
uninterrupted run would have sampled next (the engine draws by seed and position).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence as Ids

from slimrt.completion import Completion, TokenLogprob
from slimrt.sampling_params import SamplingParams
from slimrt.tokenizer import Tokenizer

__all__ = ["Sequence"]


class Sequence:
    """A request's state, from submission to its end; LLMEngine.add_request makes one."""

    def __init__(
        self, prompt_ids: Ids[int], params: SamplingParams, tokenizer: Tokenizer, sampling: object
    ) -> None:
        self.prompt_ids = list(prompt_ids)
        self.params = params
        self.sampling = sampling  # the engine's _core.SamplingParams for this request
        self.seq_id: int | None = None  # the engine's id while it holds the sequence
        self.fed = 0  # tokens the engine has appended to the sequence
        self.cached_tokens = 0  # prompt tokens its engine sequence took from the prefix cache
        self.output_ids: list[int] = []
        # One per output id when the request asks for them (appended before the id).
        self.logprobs: list[TokenLogprob] | None = [] if params.logprobs is not None else None
        self.text = ""
        self.finish_reason: str | None = None
        self.error: BaseException | None = None  # why it failed, for its caller to raise
        self._emitted = 0  # characters of text given out by take_text
        # The thread stepping the engine extends and cuts the text while the thread reading a
        # stream takes it: a half-made update could hand out part of a stop string.
        self._text_lock = threading.Lock()
        self._detokenizer = tokenizer.detokenizer(self.prompt_ids)
        self._stop_ids = set(params.stop_token_ids)
        if not params.ignore_eos:
            self._stop_ids.update(tokenizer.eos_token_ids)
        self._started = self._first_token = self._finished = 0.0

    @property
    def finished(self) -> bool:
        """Done: ended by its stop rules, or failed (see error)."""
        return self.finish_reason is not None or self.error is not None

    @property
    def prefilling(self) -> bool:
        """Whether the next step feeds known tokens (a prompt; after a preemption, the prompt
        and the output again) rather than one decode token, the newest sampled one."""
        return not self.output_ids or self.fed < len(self.prompt_ids) + len(self.output_ids) - 1

    def next_tokens(self, budget: int) -> list[int]:
        """What the next step appends: up to `budget` of the tokens not fed yet (prompt, then
        output); for a decoding sequence that is its last generated token."""
        if not self._started:
            self._started = time.perf_counter()
        prompt = len(self.prompt_ids)
        if self.fed >= prompt:
            return self.output_ids[self.fed - prompt : self.fed - prompt + budget]
        chunk = self.prompt_ids[self.fed : self.fed + budget]
        return chunk + self.output_ids[: budget - len(chunk)]

    def advance(self, count: int, sampled: int, logprob: TokenLogprob | None = None) -> bool:
        """Records a step that appended `count` tokens and sampled `sampled` after them (with
        its log-probabilities when the request asked); returns whether a token was generated (a
        chunk short of the known tokens' end generates none: its sample is dropped)."""
        self.fed += count
        if self.fed < len(self.prompt_ids) + len(self.output_ids):
            return False
        if self.logprobs is not None and logprob is not None:
            self.logprobs.append(logprob)
        with self._text_lock:
            self._append(int(sampled))
        return True

    def known_ids(self) -> list[int]:
        """Every token to feed from the start: the prompt, then the output (after a
        preemption)."""
        return self.prompt_ids + self.output_ids

    def reuse(self, cached: int) -> None:
        """Its new engine sequence starts with `cached` tokens from the prefix cache (fewer than
        known_ids()): the next chunk starts after them."""
        self.fed = cached
        self.cached_tokens = min(cached, len(self.prompt_ids))

    def rewind(self) -> None:
        """The engine released this sequence (preemption by recompute): none of its tokens
        are fed any more."""
        self.seq_id = None
        self.fed = 0

    def _append(self, token_id: int) -> None:
        now = time.perf_counter()
        if not self.output_ids:
            self._first_token = now
        self.output_ids.append(token_id)
        if token_id in self._stop_ids:
            self._finish("stop", now)
            return
        searched = len(self.text)
        self.text += self._detokenizer.push(token_id)
        if self._cut_at_stop_string(searched):
            self._finish("stop", now, flush=False)
        elif len(self.output_ids) >= self.params.max_tokens:
            self._finish("length", now)

    def _finish(self, reason: str, now: float, *, flush: bool = True) -> None:
        if flush:
            # A character still held back because its bytes were incomplete.
            searched = len(self.text)
            self.text += self._detokenizer.flush()
            if self._cut_at_stop_string(searched):
                reason = "stop"
        self.finish_reason = reason
        self._finished = now

    def _cut_at_stop_string(self, searched: int) -> bool:
        """Cuts the text before the first stop string in it; True when it found one. The
        first `searched` characters held none, so a match ends after them."""
        positions = [
            i
            for i in (self.text.find(s, max(0, searched - len(s) + 1)) for s in self.params.stop)
            if i >= 0
        ]
        if not positions:
            return False
        self.text = self.text[: min(positions)]
        return True

    def take_text(self) -> str:
        """Text not given out yet, less any tail that could still become a stop string. Read
        `finished` before it: text is complete once finished is true."""
        with self._text_lock:
            end = len(self.text)
            if not self.finished:
                end -= self._stop_prefix_length()
            piece = self.text[self._emitted : end]
            self._emitted = max(self._emitted, end)
            return piece

    def _stop_prefix_length(self) -> int:
        longest = 0
        for stop in self.params.stop:
            for k in range(min(len(stop) - 1, len(self.text)), longest, -1):
                if self.text.endswith(stop[:k]):
                    longest = k
                    break
        return longest

    def completion(self) -> Completion:
        return Completion(
            text=self.text,
            token_ids=list(self.output_ids),
            finish_reason=self.finish_reason or "length",
            prompt_tokens=len(self.prompt_ids),
            prefill_s=self._first_token - self._started if self._first_token else 0.0,
            decode_s=self._finished - self._first_token if self._first_token else 0.0,
            logprobs=None if self.logprobs is None else list(self.logprobs),
        )
