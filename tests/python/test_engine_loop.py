"""EngineLoop: requests handed to one loop thread arrive and leave while others run, get the
tokens they get alone, give their pages back when cancelled, and a shutdown lets them finish
or cancels them at its deadline."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from slimrt import LLM, SamplingParams
from slimrt.engine_loop import (
    CancelledRequestError,
    EngineLoop,
    LoopRequest,
    QueueFullError,
    ShuttingDownError,
)
from slimrt.errors import InvalidArgumentError

WAIT_S = 60


@pytest.fixture(scope="module")
def llm(tiny_model_dir) -> LLM:
    path: Path = tiny_model_dir("qwen2")[0]
    return LLM(str(path), progress=False, max_batch=4)


class Updates:
    """on_update for the loop: tests wait on it for what the loop thread did."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.log: list[tuple[LoopRequest, int]] = []  # (request, tokens it had), in order

    def __call__(self, request: LoopRequest) -> None:
        with self._changed:
            self.log.append((request, _generated(request)))
            self._changed.notify_all()

    def wait_for(self, condition) -> None:
        with self._changed:
            assert self._changed.wait_for(condition, WAIT_S), "the loop did not get there"


def _generated(request: LoopRequest) -> int:
    return len(request.sequence.output_ids) if request.sequence is not None else 0


LONG = SamplingParams(max_tokens=200, ignore_eos=True)


def test_a_request_arriving_while_another_runs_gets_the_tokens_it_gets_alone(llm) -> None:
    params = [SamplingParams(max_tokens=200, ignore_eos=True), SamplingParams(max_tokens=8)]
    prompts = ["The quick brown fox", "Once upon a time"]
    alone = [llm.generate(p, s)[0].token_ids for p, s in zip(prompts, params, strict=True)]
    loop, updates = EngineLoop(llm.llm_engine, max_waiting=4), Updates()
    loop.start()
    first = loop.submit(llm.prompt_ids(prompts[0]), params[0], updates)
    updates.wait_for(lambda: _generated(first) >= 2)
    second = loop.submit(llm.prompt_ids(prompts[1]), params[1], updates)
    updates.wait_for(lambda: first.finished and second.finished)
    loop.shutdown(0)
    loop.join()
    assert [first.sequence.output_ids, second.sequence.output_ids] == alone
    # They shared steps: the second generated while the first still had tokens to go.
    second_started = next(i for i, (r, n) in enumerate(updates.log) if r is second and n)
    assert any(r is first and n < 200 for r, n in updates.log[second_started:])


def test_a_cancelled_request_gives_its_pages_back(llm) -> None:
    loop, updates = EngineLoop(llm.llm_engine, max_waiting=4), Updates()
    loop.start()
    request = loop.submit(llm.prompt_ids("Numbers like 12345"), LONG, updates)
    updates.wait_for(lambda: _generated(request) >= 1)
    loop.cancel(request)
    updates.wait_for(lambda: request.finished)
    loop.shutdown(0)
    loop.join()
    assert isinstance(request.sequence.error, CancelledRequestError)
    assert _generated(request) < LONG.max_tokens
    stats = loop.stats()
    assert (stats.running, stats.waiting, stats.free_pages) == (0, 0, stats.total_pages)
    assert llm.engine.free_pages == llm.engine.total_pages


def test_a_request_cancelled_before_the_loop_takes_it_hears_so(llm) -> None:
    # A server handler waits for on_update to end a request whose client went away; one
    # cancelled while still on its way to the loop thread was once dropped without a word.
    loop, updates = EngineLoop(llm.llm_engine, max_waiting=4), Updates()
    request = loop.submit(llm.prompt_ids("Numbers like 12345"), LONG, updates)
    loop.cancel(request)  # not started yet: the loop has not taken it
    loop.start()
    updates.wait_for(lambda: request.finished)
    loop.shutdown(0)
    loop.join()
    assert isinstance(request.error, CancelledRequestError) and request.sequence is None
    assert [r for r, _ in updates.log] == [request]
    assert llm.engine.free_pages == llm.engine.total_pages


def test_a_failed_step_fails_its_requests_and_the_loop_serves_the_next(
    llm, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    step, failures = llm.llm_engine.step, [RuntimeError("step on fire")]

    def failing_once() -> list:
        if failures:
            raise failures.pop()
        return step()

    monkeypatch.setattr(llm.llm_engine, "step", failing_once)
    loop, updates = EngineLoop(llm.llm_engine, max_waiting=4), Updates()
    loop.start()
    first = loop.submit(llm.prompt_ids("Numbers like 12345"), LONG, updates)
    updates.wait_for(lambda: first.finished)
    second = loop.submit(
        llm.prompt_ids("Numbers like 12345"), SamplingParams(max_tokens=4), updates
    )
    updates.wait_for(lambda: second.finished)
    loop.shutdown(0)
    loop.join()
    assert str(first.sequence.error) == "step on fire"
    assert (second.sequence.error, second.sequence.finish_reason) == (None, "length")
    assert "an engine step failed; every request in the loop fails with it" in caplog.text
    assert llm.engine.free_pages == llm.engine.total_pages


def test_a_full_waiting_queue_refuses_new_requests(llm) -> None:
    loop, updates = EngineLoop(llm.llm_engine, max_waiting=2), Updates()
    # Not started yet: whatever is submitted waits.
    queued = [loop.submit(llm.prompt_ids(p), SamplingParams(max_tokens=3), updates) for p in "ab"]
    with pytest.raises(QueueFullError, match="2 requests are already waiting"):
        loop.submit(llm.prompt_ids("c"), SamplingParams(max_tokens=3), updates)
    loop.start()
    updates.wait_for(lambda: all(r.finished for r in queued))
    loop.shutdown(0)
    loop.join()
    assert [r.sequence.finish_reason for r in queued] == ["length", "length"]


def test_shutdown_lets_running_requests_finish_and_refuses_new_ones(llm) -> None:
    loop, updates = EngineLoop(llm.llm_engine, max_waiting=4), Updates()
    loop.start()
    request = loop.submit(llm.prompt_ids("def add"), SamplingParams(max_tokens=40), updates)
    loop.shutdown(WAIT_S)
    with pytest.raises(ShuttingDownError):
        loop.submit(llm.prompt_ids("def add"), SamplingParams(max_tokens=4), updates)
    loop.join()
    assert request.sequence.error is None and request.sequence.finish_reason is not None


def test_shutdown_cancels_what_runs_past_its_timeout(llm) -> None:
    loop, updates = EngineLoop(llm.llm_engine, max_waiting=4), Updates()
    loop.start()
    request = loop.submit(llm.prompt_ids("Once upon"), LONG, updates)
    updates.wait_for(lambda: _generated(request) >= 1)
    loop.shutdown(0)
    loop.join()
    assert isinstance(request.sequence.error, ShuttingDownError)
    assert llm.engine.free_pages == llm.engine.total_pages


def test_max_waiting_must_be_positive(llm) -> None:
    with pytest.raises(InvalidArgumentError, match="max_waiting must be >= 1, got 0"):
        EngineLoop(llm.llm_engine, max_waiting=0)
