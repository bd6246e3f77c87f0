"""One thread that owns an LLMEngine and steps it while requests arrive and leave.

    loop = EngineLoop(llm.llm_engine, max_waiting=64)
    loop.start()
    request = loop.submit(prompt_ids, SamplingParams(max_tokens=32), on_update)
    ...                                  # on_update(request) after every step that touched it
    loop.cancel(request)                 # its pages go back before the next step
    loop.shutdown(timeout=30)            # lets running requests finish, cancels the rest
    loop.join()

A server's handlers must never wait for a step (an engine step takes milliseconds to seconds),
so they do not take turns on the engine as slimrt.LLM's callers do: they hand requests and
cancellations to the loop thread through a queue and get called back, from the loop thread,
with each request's progress (request.sequence is the scheduler's Sequence: take_text(),
output_ids, finish_reason, error). Between two steps the loop adds what arrived, aborts what was
cancelled and publishes a snapshot of the scheduler and the KV pool (stats()); the scheduler
does the rest: continuous batching, admission by free pages, preemption by recompute. A step
that raises fails every request in the loop (its sequence.error; logged) and the loop goes on.

While a loop runs, its LLMEngine belongs to it: the LLM it came from must not generate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from collections.abc import Sequence as Ids
from dataclasses import dataclass

from slimrt.errors import InvalidArgumentError, SlimrtError
from slimrt.llm_engine import LLMEngine
from slimrt.sampling_params import SamplingParams
from slimrt.sequence import Sequence

_log = logging.getLogger("slimrt")

__all__ = [
    "CancelledRequestError",
    "EngineLoop",
    "EngineStats",
    "LoopRequest",
    "QueueFullError",
    "ShuttingDownError",
]


class QueueFullError(SlimrtError):
    """max_waiting requests are already waiting for a slot."""


class ShuttingDownError(SlimrtError):
    """The loop no longer accepts requests; for one cancelled by shutdown, why it ended."""


class CancelledRequestError(SlimrtError):
    """Why a request cancelled by its caller ended."""


@dataclass(frozen=True)
class EngineStats:
    """The scheduler and the KV pool between two steps."""

    running: int = 0
    waiting: int = 0  # admitted by nobody yet, or preempted, or not yet handed to the scheduler
    free_pages: int = 0  # pages a sequence can take: never used, or cached_pages
    total_pages: int = 0
    preemptions: int = 0
    cached_pages: int = 0  # free pages the prefix cache still holds (evicted when needed)
    prefix_query_tokens: int = 0  # tokens looked up in the prefix cache so far
    prefix_hit_tokens: int = 0  # of them, found cached
    prefix_evicted_pages: int = 0


class LoopRequest:
    """A request handed to the loop. sequence is None until the loop thread has queued it
    (then on_update sees it set); error is set instead when queuing it failed."""

    def __init__(
        self,
        prompt_ids: Ids[int],
        params: SamplingParams,
        on_update: Callable[[LoopRequest], None],
    ) -> None:
        self.prompt_ids = list(prompt_ids)
        self.params = params
        self.on_update = on_update
        self.sequence: Sequence | None = None
        self.error: BaseException | None = None

    @property
    def finished(self) -> bool:
        return self.error is not None or (self.sequence is not None and self.sequence.finished)


class EngineLoop:
    """The loop thread over one LLMEngine (module docstring)."""

    def __init__(self, llm_engine: LLMEngine, *, max_waiting: int) -> None:
        if max_waiting < 1:
            raise InvalidArgumentError(f"max_waiting must be >= 1, got {max_waiting}")
        self.llm_engine = llm_engine
        self.max_waiting = max_waiting
        self._changed = threading.Condition()
        self._arrived: list[LoopRequest] = []
        self._in_transit = 0  # taken from _arrived, not in the snapshot's waiting yet
        self._cancelled: list[LoopRequest] = []
        self._requests: dict[Sequence, LoopRequest] = {}  # loop thread only
        self._accepting = True
        self._deadline: float | None = None  # shutdown: when the unfinished are cancelled
        self._stats = self._snapshot()
        self._thread = threading.Thread(target=self._run, name="slimrt-engine-loop", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(
        self,
        prompt_ids: Ids[int],
        params: SamplingParams,
        on_update: Callable[[LoopRequest], None],
    ) -> LoopRequest:
        """Queues a request (its ids checked against the context by the caller). Raises
        QueueFullError when max_waiting requests wait, ShuttingDownError after shutdown()."""
        request = LoopRequest(prompt_ids, params, on_update)
        with self._changed:
            if not self._accepting:
                raise ShuttingDownError("the server is shutting down")
            waiting = self._stats.waiting + self._in_transit + len(self._arrived)
            if waiting >= self.max_waiting:
                raise QueueFullError(
                    f"{self.max_waiting} requests are already waiting; try again later"
                )
            self._arrived.append(request)
            self._changed.notify()
        return request

    def cancel(self, request: LoopRequest) -> None:
        """Ends a request before its stop rules do; its KV pages go back before the next
        step. A finished one is left alone. Either way on_update hears of it from the loop
        thread, even when it was cancelled before the loop took it: a caller waits for that."""
        with self._changed:
            self._cancelled.append(request)
            self._changed.notify()

    def stats(self) -> EngineStats:
        with self._changed:
            return self._stats

    def shutdown(self, timeout: float) -> None:
        """Stops accepting requests and lets the unfinished ones run for up to `timeout`
        seconds; then the loop cancels the rest (their error: ShuttingDownError) and ends.
        Returns at once (a signal handler may call it); join() waits for the end."""
        with self._changed:
            if self._accepting:
                self._accepting = False
                self._deadline = time.monotonic() + max(0.0, timeout)
            self._changed.notify()

    def join(self) -> None:
        if self._thread.is_alive():
            self._thread.join()

    @property
    def accepting(self) -> bool:
        with self._changed:
            return self._accepting

    # -- the loop thread -----------------------------------------------------------------

    def _run(self) -> None:
        engine = self.llm_engine
        while True:
            with self._changed:
                while not (self._arrived or self._cancelled or engine.has_unfinished()):
                    if self._deadline is not None:
                        return
                    self._changed.wait()
                arrived, self._arrived = self._arrived, []
                self._in_transit = len(arrived)
                cancelled, self._cancelled = self._cancelled, []
                overdue = self._deadline is not None and time.monotonic() >= self._deadline
            for request in arrived:
                if request in cancelled:  # never queued: it fails alone, as a refused one does
                    request.error = CancelledRequestError("cancelled")
                    self._notify(request)
                else:
                    self._queue(request)
            for request in cancelled:
                self._abort(request)
            if overdue:
                for request in list(self._requests.values()):
                    self._abort(request, ShuttingDownError("cancelled by the server's shutdown"))
            # Before the step: the requests just queued count as waiting in the snapshot now.
            with self._changed:
                self._stats = self._snapshot()
                self._in_transit = 0
            try:
                touched = {out.request for out in engine.step()}
            except Exception as error:
                # A bug, not a request's fault (requests are checked as they arrive): every
                # request in the loop fails with it, and the loop goes on for the next ones
                # rather than leaving them all waiting on a dead thread.
                _log.exception("an engine step failed; every request in the loop fails with it")
                for request in list(self._requests.values()):
                    self._abort(request, error)
                touched = set()
            # Before anyone hears of the step: what they do next sees the queues after it.
            with self._changed:
                self._stats = self._snapshot()
            for sequence in touched:
                request = self._requests.get(sequence)
                if request is not None:
                    if sequence.finished:
                        del self._requests[sequence]
                    self._notify(request)

    def _queue(self, request: LoopRequest) -> None:
        try:
            request.sequence = self.llm_engine.add_request(request.prompt_ids, request.params)
        except Exception as error:  # a request the engine refuses fails alone
            request.error = error
        else:
            self._requests[request.sequence] = request
        self._notify(request)

    def _abort(self, request: LoopRequest, error: BaseException | None = None) -> None:
        sequence = request.sequence
        if sequence is None or self._requests.pop(sequence, None) is None:
            return  # finished meanwhile, or never queued
        self.llm_engine.abort(sequence)
        sequence.error = error or CancelledRequestError("cancelled")
        self._notify(request)

    @staticmethod
    def _notify(request: LoopRequest) -> None:
        # A listener that fails (its event loop closed) must not stop everyone's steps.
        try:
            request.on_update(request)
        except Exception:
            _log.exception("a request's listener failed")

    def _snapshot(self) -> EngineStats:
        scheduler = self.llm_engine.scheduler
        engine = self.llm_engine.engine
        kv = engine.kv_usage()
        return EngineStats(
            running=len(scheduler.running),
            waiting=len(scheduler.waiting),
            free_pages=int(engine.free_pages),
            total_pages=int(engine.total_pages),
            preemptions=scheduler.preemptions,
            cached_pages=int(kv["prefix_cached_free_pages"]),
            prefix_query_tokens=int(kv["prefix_query_tokens"]),
            prefix_hit_tokens=int(kv["prefix_hit_tokens"]),
            prefix_evicted_pages=int(kv["prefix_evicted_pages"]),
        )
