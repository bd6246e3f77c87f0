"""Prefix caching through the scheduler: requests that share a prefix reuse its KV pages and
generate what they generate alone on an engine without the cache (the same ids; bit for bit,
log-probabilities included, where the engine runs steps of the same shapes: the CPU matmul sums
a step of up to 6 rows in another order than a longer one, with or without the cache), the
shared pages are never written, and a preempted request gives its references back. On a tiny
random llama (pages of 16 tokens)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from slimrt import LLM, SamplingParams
from slimrt.llm_engine import LLMEngine
from slimrt.sequence import Sequence

PAGE = 16
PARAMS = SamplingParams(max_tokens=12, ignore_eos=True, logprobs=5)


@pytest.fixture(scope="module")
def make_llm(tiny_model_dir) -> Callable[..., LLM]:
    """make_llm(**options) -> an LLM over the tiny llama, made once per options."""
    path, _ = tiny_model_dir("llama")
    made: dict[tuple, LLM] = {}

    def make(**options: object) -> LLM:
        key = tuple(sorted(options.items()))
        if key not in made:
            made[key] = LLM(str(path), progress=False, **options)
        return made[key]

    return make


def ids(count: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(3, 384) for _ in range(count)]


def run(
    llm: LLM,
    prompts: list[list[int]],
    *,
    max_step_tokens: int = 48,
    watch: Callable[[list[Sequence]], None] = lambda _: None,
) -> list[Sequence]:
    """The prompts together, admitted as the scheduler does (a small step budget staggers
    them, so later ones find the pages earlier ones computed); watch(requests) after every
    step."""
    engine = LLMEngine(llm.engine, llm.tokenizer, max_batch=8, max_step_tokens=max_step_tokens)
    requests = [engine.add_request(p, PARAMS) for p in prompts]
    while engine.has_unfinished():
        engine.step()
        watch(requests)
    assert all(r.error is None for r in requests)
    return requests


def outputs(requests: list[Sequence]) -> list[tuple]:
    return [(r.output_ids, r.logprobs) for r in requests]


def assert_same_tokens(got: list[tuple], want: list[tuple]) -> None:
    """The same ids, and log-probabilities within the rounding of other step shapes."""
    assert [ids for ids, _ in got] == [ids for ids, _ in want]
    for (_, got_logprobs), (_, want_logprobs) in zip(got, want, strict=True):
        for a, b in zip(got_logprobs, want_logprobs, strict=True):
            assert [t for t, _ in a.top] == [t for t, _ in b.top]
            assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
            assert [v for _, v in a.top] == pytest.approx([v for _, v in b.top], abs=1e-4)


def alone(llm: LLM, prompts: list[list[int]], max_step_tokens: int = 48) -> list[tuple]:
    return [outputs(run(llm, [p], max_step_tokens=max_step_tokens))[0] for p in prompts]


def shared_prefix_prompts() -> list[list[int]]:
    prefix = ids(70, 1)  # 4 full pages and 6 tokens
    return [
        prefix + ids(9, 2),
        prefix + ids(30, 3),
        prefix + ids(9, 2),  # a repeat: every full page of it is cached
        prefix[:64],  # exactly 4 pages: the last token is still computed
        ids(5, 4) + prefix,  # the same tokens after another start: no hit
        prefix + ids(1, 5),
    ]


@pytest.mark.parametrize("kv_dtype", ["f32", "bf16"])
def test_concurrent_shared_prefixes_generate_what_they_generate_without_the_cache(
    make_llm, kv_dtype: str
) -> None:
    cached = make_llm(kv_dtype=kv_dtype)
    plain = make_llm(kv_dtype=kv_dtype, enable_prefix_caching=False)
    prompts = shared_prefix_prompts()
    before = cached.engine.kv_usage()["prefix_hit_tokens"]
    requests = run(cached, prompts)
    assert_same_tokens(outputs(requests), alone(plain, prompts))
    # The first computes everything; the rest find what was cached when they were admitted
    # (whole pages, short of their last token); the one that starts differently, nothing.
    hits = [r.cached_tokens for r in requests]
    assert hits[0] == hits[4] == 0
    assert all(h % PAGE == 0 and h <= 64 for h in hits) and sum(hits) >= 3 * 48
    assert cached.engine.kv_usage()["prefix_hit_tokens"] - before == sum(hits)
    assert plain.engine.kv_usage()["prefix_hit_tokens"] == 0


@pytest.mark.parametrize(
    "options",
    [
        {"kv_dtype": "f32"},
        {"kv_dtype": "bf16"},
        # kv_window 0: a prefix of whole pages computed as one chunk is compressed right after
        # it, in the uncached run as in the run that finds it cached.
        {"kv_sparsity": 0.5, "kv_window": 0},
    ],
    ids=["f32", "bf16", "sparse"],
)
def test_a_reused_prefix_gives_bit_identical_ids_and_logprobs(make_llm, options: dict) -> None:
    # Both runs compute the 64-token prefix as one step (the first request's first chunk, or
    # the uncached second request's), then the rest of the second request in the same steps.
    options = {**options, "kv_tokens": 4096, "max_step_tokens": 64}
    cached = make_llm(**options)
    plain = make_llm(**options, enable_prefix_caching=False)
    prefix = ids(64, 31)
    first, second = prefix + ids(7, 32), prefix + ids(20, 33)
    run(cached, [first], max_step_tokens=64)
    (request,) = run(cached, [second], max_step_tokens=64)
    assert request.cached_tokens == 64
    assert outputs([request]) == alone(plain, [second], max_step_tokens=64)
    usage = cached.engine.kv_usage()
    assert usage["dense_pages_used"] == usage["compressed_pages_used"] == 0
    assert usage["prefix_cached_free_pages"] == usage["prefix_cached_pages"] >= 4


def test_pages_shared_with_a_running_request_are_never_written(make_llm) -> None:
    llm = make_llm(kv_dtype="f32", kv_tokens=4096)
    engine = LLMEngine(llm.engine, llm.tokenizer, max_batch=8, max_step_tokens=512)
    prefix = ids(100, 11)  # 6 full pages
    first = engine.add_request(prefix + ids(3, 12), PARAMS)
    engine.step()  # its whole prompt
    pages = llm.engine.sequence_pages(first.seq_id)[:6]
    checksums = [llm.engine.page_crc32(p) for p in pages]
    others = [engine.add_request(prefix + ids(n, 13 + n), PARAMS) for n in (1, 17, 40)]
    shared_seen = 0
    while engine.has_unfinished():
        engine.step()
        for request in others:
            if request.seq_id is not None:
                assert llm.engine.sequence_pages(request.seq_id)[:6] == pages
                shared_seen += 1
        assert [llm.engine.page_crc32(p) for p in pages] == checksums
    assert shared_seen > 0
    assert [r.cached_tokens for r in others] == [96, 96, 96]
    usage = llm.engine.kv_usage()
    assert usage["dense_pages_used"] == 0  # every reference back
    assert usage["prefix_cached_free_pages"] == usage["prefix_cached_pages"] > 6


def test_preempted_requests_drop_their_references_and_still_match_the_uncached_run(
    make_llm,
) -> None:
    llm = make_llm(kv_dtype="f32", kv_tokens=160)  # 10 pages: four 90-token requests outgrow it
    plain = make_llm(kv_dtype="f32", enable_prefix_caching=False)
    prefix = ids(64, 21)
    prompts = [prefix + ids(8 + i, 22 + i) for i in range(4)]
    preemptions = []
    engine = LLMEngine(llm.engine, llm.tokenizer, max_batch=8, max_step_tokens=48)
    requests = [engine.add_request(p, PARAMS) for p in prompts]
    while engine.has_unfinished():
        engine.step()
        preemptions.append(engine.scheduler.preemptions)
    assert preemptions[-1] > 0
    assert_same_tokens(outputs(requests), alone(plain, prompts))
    usage = llm.engine.kv_usage()
    assert usage["dense_pages_used"] == 0
    assert usage["prefix_cached_free_pages"] == usage["prefix_cached_pages"]
    assert llm.engine.free_pages == llm.engine.total_pages
