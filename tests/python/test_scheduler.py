"""slimrt.scheduler and slimrt.llm_engine on the real engine over a tiny llama: admission by the
pool's free pages, max_batch, preemption by recompute, abort, refusal of a request that cannot
fit alone, and an engine error inside a step.

Each test drives an LLMEngine step by step and looks at its queues in between; the tokens of
every request are compared with the same request run alone on a roomy engine.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from slimrt import LLM, RequestError, SamplingParams
from slimrt.errors import InvalidArgumentError
from slimrt.llm_engine import LLMEngine, StepOutput
from slimrt.sequence import Sequence

PROMPTS = [
    "The quick brown fox",
    "Once upon a time, in a land far away",  # 17 tokens with BOS: 2 pages of 16
    "A",
    "Numbers like 12345",
]
GREEDY = SamplingParams(max_tokens=10, ignore_eos=True)
LONG_GREEDY = SamplingParams(max_tokens=40, ignore_eos=True)
LONG_SEEDED = SamplingParams(temperature=1.0, seed=42, max_tokens=40, ignore_eos=True)


@pytest.fixture(scope="module")
def make_llm(tiny_model_dir) -> Callable[..., LLM]:
    """make_llm(**options) -> an LLM over the tiny llama (f32 KV), made once per options."""
    path, _ = tiny_model_dir("llama")
    made: dict[tuple, LLM] = {}

    def make(**options: object) -> LLM:
        key = tuple(sorted(options.items()))
        if key not in made:
            made[key] = LLM(str(path), progress=False, kv_dtype="f32", **options)
        return made[key]

    return make


@pytest.fixture(scope="module")
def alone(make_llm) -> Callable[[str, SamplingParams], list[int]]:
    """alone(prompt, params) -> the tokens of the request run by itself on a roomy engine."""
    llm = make_llm()
    return lambda prompt, params: llm.generate(prompt, params)[0].token_ids


def engine_for(llm: LLM, max_batch: int = 8, max_step_tokens: int = 512) -> LLMEngine:
    return LLMEngine(
        llm.engine, llm.tokenizer, max_batch=max_batch, max_step_tokens=max_step_tokens
    )


def submit(llm: LLM, engine: LLMEngine, requests: list[tuple[str, SamplingParams]]) -> list:
    return [engine.add_request(llm.tokenizer.encode(p), params) for p, params in requests]


def run(engine: LLMEngine, watch: Callable[[list[StepOutput]], None] = lambda _: None) -> None:
    """Steps until nothing is left; watch(outputs) after every step."""
    while engine.has_unfinished():
        watch(engine.step())


@pytest.mark.parametrize(("pages", "together"), [(3, 1), (4, 2)])
def test_a_request_waits_until_the_free_pages_cover_its_first_chunk(
    make_llm, alone, pages: int, together: int
) -> None:
    # Each request holds 17 + 10 tokens, 2 pages: 3 pages run one at a time, 4 run two (without
    # the prefix cache, through which the same prompts would share their first page).
    llm = make_llm(kv_tokens=16 * pages, enable_prefix_caching=False)
    engine = engine_for(llm)
    requests = submit(llm, engine, [(PROMPTS[1], GREEDY)] * 3)
    running: list[int] = []
    run(engine, lambda _: running.append(len(engine.scheduler.running)))
    assert max(running) == together
    assert engine.scheduler.preemptions == 0
    assert [r.output_ids for r in requests] == [alone(PROMPTS[1], GREEDY)] * 3
    assert llm.engine.free_pages == llm.engine.total_pages


def test_more_requests_than_max_batch_are_all_served_and_a_free_slot_is_refilled_at_once(
    make_llm, alone
) -> None:
    llm = make_llm()
    engine = engine_for(llm, max_batch=2)
    asked = [
        (PROMPTS[i % 4], SamplingParams(max_tokens=3 + 2 * i, ignore_eos=True)) for i in range(5)
    ]
    requests = submit(llm, engine, asked)
    batches: list[tuple[int, int]] = []  # (requests unfinished before the step, batch size)
    unfinished = len(requests)
    while engine.has_unfinished():
        outputs = engine.step()
        batches.append((unfinished, len(outputs)))
        unfinished -= sum(o.finished for o in outputs)
    # Every prompt fits one chunk, so each step holds every running request: two as long as two
    # are left, the slot of a finished one refilled in the very next step.
    assert all(size == min(2, left) for left, size in batches)
    assert [r.output_ids for r in requests] == [alone(p, params) for p, params in asked]
    assert llm.engine.free_pages == llm.engine.total_pages


@pytest.mark.parametrize("params", [LONG_GREEDY, LONG_SEEDED], ids=["greedy", "seeded"])
def test_preempted_requests_give_the_tokens_of_an_uninterrupted_run(
    make_llm, alone, params
) -> None:
    llm = make_llm(kv_tokens=96)  # 6 pages; the four requests grow to 11 together
    engine = engine_for(llm)
    requests = submit(llm, engine, [(p, params) for p in PROMPTS])
    resumed: set[int] = set()  # requests preempted after they had generated tokens

    def watch(_: list[StepOutput]) -> None:
        resumed.update(id(r) for r in engine.scheduler.waiting if r.output_ids)

    run(engine, watch)
    assert engine.scheduler.preemptions > 0 and resumed
    assert [r.output_ids for r in requests] == [alone(p, params) for p in PROMPTS]
    assert llm.engine.free_pages == llm.engine.total_pages


def test_abort_frees_the_pages_at_once_and_hands_the_slot_on(make_llm, alone) -> None:
    llm = make_llm()
    engine = engine_for(llm, max_batch=1)
    first, second, third = submit(llm, engine, [(PROMPTS[1], GREEDY)] * 3)
    engine.step()
    engine.step()
    assert engine.scheduler.running == [first] and llm.engine.free_pages < llm.engine.total_pages
    engine.abort(first)
    assert not engine.scheduler.running
    assert llm.engine.free_pages == llm.engine.total_pages
    engine.abort(third)  # still waiting
    assert list(engine.scheduler.waiting) == [second]
    (output,) = engine.step()
    assert output.request is second and engine.scheduler.running == [second]
    run(engine)
    assert second.output_ids == alone(PROMPTS[1], GREEDY)
    assert first.output_ids == second.output_ids[:2] and not third.output_ids
    assert llm.engine.free_pages == llm.engine.total_pages


def test_a_request_that_cannot_fit_alone_fails_and_only_it(make_llm, alone) -> None:
    llm = make_llm(kv_tokens=80)  # 5 pages of 16 tokens
    engine = engine_for(llm)
    huge = SamplingParams(max_tokens=100, ignore_eos=True)
    # The huge one is older: the small one is preempted for it, then it is refused alone.
    doomed, fine = submit(llm, engine, [(PROMPTS[0], huge), (PROMPTS[2], LONG_GREEDY)])
    refused: list[Sequence] = []
    run(engine, lambda outputs: refused.extend(o.request for o in outputs if o.request.error))
    assert refused == [doomed] and engine.scheduler.preemptions > 0
    assert isinstance(doomed.error, RequestError)
    n = len(doomed.prompt_ids)
    assert str(doomed.error) == (
        f"prompt of {n} tokens + max_tokens=100 does not fit the KV cache: at 81 tokens it "
        "needs more than the 5 pages of 16 tokens the cache has, with no other request holding "
        "any; raise kv_tokens or lower max_tokens"
    )
    assert len(doomed.output_ids) == 80 - n + 1  # it held 80 tokens, the newest not fed yet
    assert fine.error is None and fine.output_ids == alone(PROMPTS[2], LONG_GREEDY)
    assert llm.engine.free_pages == llm.engine.total_pages


def test_an_engine_error_fails_the_requests_of_its_step_and_the_rest_carry_on(
    make_llm, alone
) -> None:
    llm = make_llm()
    engine = engine_for(llm, max_batch=2)
    bad = engine.add_request([llm.engine.vocab_size + 5], GREEDY)
    neighbour, waiting = submit(llm, engine, [(PROMPTS[0], GREEDY), (PROMPTS[1], GREEDY)])
    outputs = engine.step()
    assert [(o.request, o.finished, o.token_ids) for o in outputs] == [
        (bad, True, []),
        (neighbour, True, []),
    ]
    vocab = llm.engine.vocab_size
    assert type(bad.error) is InvalidArgumentError
    assert str(bad.error) == f"step: token id {vocab + 5} (tokens[0]) is outside [0, {vocab})"
    assert neighbour.error is bad.error
    assert llm.engine.free_pages == llm.engine.total_pages
    run(engine)
    assert waiting.error is None and waiting.output_ids == alone(PROMPTS[1], GREEDY)
    assert llm.engine.free_pages == llm.engine.total_pages
