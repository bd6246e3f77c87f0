"""What each engine step carries: which requests run, which wait, which give their pages back.

    scheduler = Scheduler(engine, max_batch=8, max_step_tokens=512)
    scheduler.add(sequence)                  # waits until the KV pool has room for it
    plan = scheduler.schedule()              # plan.chunks: [(sequence, token ids)], one step
    scheduler.abort(sequence)                # finished or cancelled: its pages back at once

The engine's KV pool is the only ledger of pages: the scheduler asks it (free_pages, and
pages_needed for a sequence to grow by n tokens) and keeps no count of its own. A step holds
one decode token for every running sequence past its prompt, then prefill chunks, oldest
request first, within max_step_tokens tokens and max_batch sequences. A waiting request is
admitted, in arrival order, when the free pages cover its first chunk. When the running
sequences cannot grow for want of pages, the newest is preempted by recompute: its engine
sequence is released and it goes back to the front of the waiting queue with its generated
tokens, which are prefilled again when it is readmitted (Sequence.rewind). A request is refused
(RequestError) only when it cannot proceed with no other request holding pages.

Prefix caching is the engine's: on admission the scheduler asks it for the cached pages of the
request's tokens (engine.reuse_prefix) and prefills from the first token they do not hold. The
cached pages it takes were free pages (cached, unreferenced), so they count against `free`.

Running requests are kept in arrival order, and every waiting request arrived after every
running one (admission takes the oldest waiting request; a preempted one, the newest running,
goes back to the front), so running[-1] is always the newest request.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from slimrt.errors import RequestError
from slimrt.sequence import Sequence

__all__ = ["Scheduler", "StepPlan"]


@dataclass
class StepPlan:
    """One engine step: the tokens each sequence appends (decode tokens first), and the
    requests refused while planning it (each with its RequestError in .error)."""

    chunks: list[tuple[Sequence, list[int]]] = field(default_factory=list)
    refused: list[Sequence] = field(default_factory=list)


class Scheduler:
    """Waiting and running requests over one engine (module docstring)."""

    def __init__(self, engine: Any, max_batch: int, max_step_tokens: int) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.max_step_tokens = max_step_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.preemptions = 0  # requests preempted so far: a sign that kv_tokens is tight

    def add(self, sequence: Sequence) -> None:
        self.waiting.append(sequence)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def abort(self, sequence: Sequence) -> None:
        """Drops a request from the queues (finished, failed or cancelled); a running one gives
        its pages back at once, and its slot goes to the next waiting request. A request in
        neither queue is left alone."""
        if sequence in self.running:
            self.running.remove(sequence)
            self._release(sequence)
        elif sequence in self.waiting:
            self.waiting.remove(sequence)

    def schedule(self) -> StepPlan:
        """The next step's plan; empty chunks when there is nothing left to run."""
        plan = StepPlan()
        while True:
            decoding, free, preempted = self._make_room_for_decoding(plan)
            self._plan_step(plan, decoding, free, admit=not preempted)
            if plan.chunks or not self.has_unfinished():
                return plan
            # Nothing fits: every running request waits for pages that only a preemption frees.
            if len(self.running) > 1:
                self._preempt(self.running[-1])
            elif self.running:
                self._refuse(self.running[0], self.max_step_tokens, plan)
            else:
                self._refuse(self.waiting[0], self.max_step_tokens, plan)

    def _make_room_for_decoding(self, plan: StepPlan) -> tuple[list[Sequence], int, bool]:
        """Preempts the newest requests until the pages the decode tokens need are free (a
        request that cannot grow on its own is refused). Returns the decoding sequences this
        step's token budget holds, the pages free after their tokens, and whether it preempted
        any."""
        preempted = False
        while True:
            decoding = [s for s in self.running if not s.prefilling][: self.max_step_tokens]
            free = self.engine.free_pages
            free -= sum(self.engine.pages_needed(s.seq_id, 1) for s in decoding)
            if free >= 0:
                return decoding, free, preempted
            if len(self.running) == 1:
                self._refuse(self.running[0], 1, plan)
            else:
                self._preempt(self.running[-1])
                preempted = True

    def _plan_step(
        self, plan: StepPlan, decoding: list[Sequence], free: int, *, admit: bool
    ) -> None:
        """Fills plan.chunks: decode tokens, prefill chunks of running requests oldest first
        (stopping at the first that does not fit, so no newer request overtakes it), then newly
        admitted requests, within `free` pages. A step that had to preempt admits none: the
        pages it freed are for the running requests to grow into."""
        plan.chunks.extend((sequence, sequence.next_tokens(1)) for sequence in decoding)
        budget = self.max_step_tokens - len(decoding)
        for sequence in self.running:
            if budget == 0:
                return
            if not sequence.prefilling:
                continue
            chunk = sequence.next_tokens(budget)
            need = self.engine.pages_needed(sequence.seq_id, len(chunk))
            if need > free:
                return
            free -= need
            budget -= len(chunk)
            plan.chunks.append((sequence, chunk))
        while admit and budget and self.waiting and len(self.running) < self.max_batch:
            sequence = self.waiting[0]
            seq_id = self.engine.add_sequence()
            free_before = self.engine.free_pages
            sequence.reuse(self.engine.reuse_prefix(seq_id, sequence.known_ids()))
            chunk = sequence.next_tokens(budget)
            need = self.engine.pages_needed(seq_id, len(chunk))
            need += free_before - self.engine.free_pages  # cached free pages it took
            if need > free:
                self.engine.release_sequence(seq_id)
                sequence.rewind()
                return
            self.waiting.popleft()
            sequence.seq_id = seq_id
            self.running.append(sequence)
            free -= need
            budget -= len(chunk)
            plan.chunks.append((sequence, chunk))

    def _preempt(self, sequence: Sequence) -> None:
        self.running.remove(sequence)
        self._release(sequence)
        sequence.rewind()
        self.waiting.appendleft(sequence)
        self.preemptions += 1

    def _refuse(self, sequence: Sequence, new_tokens: int, plan: StepPlan) -> None:
        """Fails a request that cannot take its next `new_tokens` tokens (fewer, if that many
        are more than it has left) even with the whole KV pool to itself."""
        tokens = sequence.fed + len(sequence.next_tokens(new_tokens))
        sequence.error = RequestError(
            f"prompt of {len(sequence.prompt_ids)} tokens + max_tokens="
            f"{sequence.params.max_tokens} does not fit the KV cache: at {tokens} tokens it "
            f"needs more than the {self.engine.total_pages} pages of {self.engine.page_size} "
            "tokens the cache has, with no other request holding any; raise kv_tokens or lower "
            "max_tokens"
        )
        self.abort(sequence)
        plan.refused.append(sequence)

    def _release(self, sequence: Sequence) -> None:
        self.engine.release_sequence(sequence.seq_id)
        sequence.seq_id = None
