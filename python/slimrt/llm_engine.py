"""The engine loop: the C++ engine, the tokenizer and the scheduler, one engine call per step.

    llm_engine = LLMEngine(engine, tokenizer, max_batch=8, max_step_tokens=512)
    request = llm_engine.add_request(prompt_ids, SamplingParams(max_tokens=32))
    while llm_engine.has_unfinished():
        for out in llm_engine.step():      # one StepOutput per request the step touched
            print(out.request.take_text(), end="")

Every step is one call of engine.step with the decode tokens and prefill chunks of a ragged
batch; sampling happens in the engine and only the sampled ids come back (with, when a request
in the step asks, their log-probabilities and the top n, n the most any of them asks for; each
request keeps its own n in request.logprobs). An error the engine
raises for a step fails the requests in that step (their .error holds it) and no others: their
engine sequences are released, so the engine and the other requests carry on. Not thread-safe:
slimrt.LLM shares one LLMEngine between threads by taking turns.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence as Ids
from typing import Any, NamedTuple

import numpy as np

from slimrt import _core
from slimrt.completion import TokenLogprob
from slimrt.sampling_params import SamplingParams
from slimrt.scheduler import Scheduler
from slimrt.sequence import Sequence
from slimrt.tokenizer import Tokenizer

__all__ = ["LLMEngine", "StepOutput"]


class StepOutput(NamedTuple):
    """What one step did for one request: token_ids holds the token it generated (none for a
    prefill chunk short of the prompt's end, or a failed request); finished says it is done
    (request.finish_reason, or request.error when it failed)."""

    request: Sequence
    token_ids: list[int]
    finished: bool


class LLMEngine:
    """Requests in, one engine step at a time (module docstring)."""

    def __init__(
        self, engine: Any, tokenizer: Tokenizer, *, max_batch: int, max_step_tokens: int
    ) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.scheduler = Scheduler(engine, max_batch, max_step_tokens)

    def add_request(self, prompt_ids: Ids[int], params: SamplingParams) -> Sequence:
        """Queues a request; it runs in the steps that follow. A temperature > 0 without a seed
        draws a fresh seed, so such requests differ from each other."""
        seed = params.seed
        if seed is None:
            seed = secrets.randbits(63) if params.temperature > 0 else 0
        sampling = _core.SamplingParams(
            temperature=params.temperature,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            seed=seed,
        )
        request = Sequence(prompt_ids, params, self.tokenizer, sampling)
        self.scheduler.add(request)
        return request

    def abort(self, request: Sequence) -> None:
        """Stops a request; its KV pages go back to the pool at once."""
        self.scheduler.abort(request)

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished()

    def step(self) -> list[StepOutput]:
        """Runs one engine step; returns an output per request in it or refused while planning
        it (empty when nothing is left to run). An error the engine raises ends the step's
        requests with it (request.error) and is not raised here; an interrupt
        (KeyboardInterrupt, SystemExit) ends them too, then propagates."""
        plan = self.scheduler.schedule()
        outputs = [StepOutput(r, [], True) for r in plan.refused]
        if not plan.chunks:
            return outputs
        # The step computes the most top log-probabilities any of its requests asks for.
        wanted = [s.params.logprobs for s, _ in plan.chunks if s.params.logprobs is not None]
        top_n = max(wanted) if wanted else None
        extra = {} if top_n is None else {"top_logprobs": top_n}
        try:
            result = self.engine.step(
                np.array([s.seq_id for s, _ in plan.chunks], dtype=np.int64),
                np.array([t for _, chunk in plan.chunks for t in chunk], dtype=np.int32),
                np.array([len(chunk) for _, chunk in plan.chunks], dtype=np.int32),
                [s.sampling for s, _ in plan.chunks],
                **extra,
            )
        except BaseException as error:
            # A contract error names one request but not which; anything else leaves their
            # engine sequences in a state nobody tracks. All of them end, released.
            for request, _ in plan.chunks:
                request.error = error
                self.scheduler.abort(request)
            if not isinstance(error, Exception):
                raise
            return outputs + [StepOutput(r, [], True) for r, _ in plan.chunks]
        logprobs: list[TokenLogprob | None] = [None] * len(plan.chunks)
        if top_n is None:
            sampled = result.tolist()
        else:
            ids, sampled_logprobs, top_ids, top_logprobs = result
            sampled = ids.tolist()
            for i, (request, _) in enumerate(plan.chunks):
                n = request.params.logprobs
                if n is not None:
                    top = list(
                        zip(top_ids[i, :n].tolist(), top_logprobs[i, :n].tolist(), strict=True)
                    )
                    logprobs[i] = TokenLogprob(sampled[i], float(sampled_logprobs[i]), top)
        for (request, chunk), token, logprob in zip(plan.chunks, sampled, logprobs, strict=True):
            generated = request.advance(len(chunk), token, logprob)
            if request.finished:
                self.scheduler.abort(request)
            outputs.append(StepOutput(request, [token] if generated else [], request.finished))
        return outputs
