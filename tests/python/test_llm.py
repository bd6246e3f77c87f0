"""slimrt.LLM's decoding loop: batching, chunked prefill, page budgets, stop rules, streaming,
sampling, request errors, and callers in several threads sharing the engine's steps.

Every test runs twice: on the real engine (slimrt._core.Engine) and on reference_core
(transformers computing from the tensors of the same loaded _core.Model), so the loop is
checked against an engine that shares no code with the C++ one, and the C++ engine is held to
the loop's expectations.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import reference_core
import slimrt.llm
import slimrt.llm_engine
from slimrt import LLM, RequestError, SamplingParams
from slimrt.errors import InvalidArgumentError, OutOfMemoryError

ENGINES = ["slimrt", "reference"]
PROMPTS = [
    "The quick brown fox",
    "Once upon a time, in a land far away, there lived a small model with a big vocabulary.",
    "A",
]
GREEDY = SamplingParams(max_tokens=24, ignore_eos=True)


@pytest.fixture(scope="module", params=ENGINES)
def make_llm(request: pytest.FixtureRequest, tiny_model_dir) -> Callable[..., LLM]:
    """make_llm(**options) -> an LLM over the tiny llama on this module's engine."""
    path, _ = tiny_model_dir("llama")
    made: dict[tuple, LLM] = {}
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "reference":
            patch.setattr(slimrt.llm, "_core", reference_core)
            patch.setattr(slimrt.llm_engine, "_core", reference_core)

        def make(**options: object) -> LLM:
            key = tuple(sorted(options.items()))
            if key not in made:
                options.setdefault("kv_dtype", "f32")
                # The reference runs transformers on the CPU: the real engine does too, also on
                # a machine with a GPU ("auto" would pick CUDA, whose BF16 GEMMs round more).
                options.setdefault("device", "cpu")
                made[key] = LLM(options.pop("model", str(path)), progress=False, **options)
            return made[key]

        yield make


@pytest.fixture(scope="module")
def alone(make_llm) -> list[list[int]]:
    """Greedy tokens of each prompt run by itself."""
    llm = make_llm()
    return [llm.generate(p, GREEDY)[0].token_ids for p in PROMPTS]


def test_a_batch_gives_each_prompt_the_tokens_it_gets_alone(make_llm, alone) -> None:
    llm = make_llm()
    completions = llm.generate(PROMPTS, GREEDY)
    assert [c.token_ids for c in completions] == alone
    assert all(c.finish_reason == "length" and len(c.token_ids) == 24 for c in completions)
    assert [c.prompt_tokens for c in completions] == [len(llm.tokenizer.encode(p)) for p in PROMPTS]
    assert llm.engine.free_pages == llm.engine.total_pages  # every sequence was released


def test_chunked_prefill_gives_the_same_tokens(make_llm, alone) -> None:
    llm = make_llm(max_step_tokens=7)
    assert [c.token_ids for c in llm.generate(PROMPTS, GREEDY)] == alone
    if isinstance(llm.engine, reference_core.Engine):
        steps = llm.engine.steps
        assert max(sum(counts) for _, counts in steps) <= 7
        # Some step mixes decode tokens (count 1) of one sequence with a prefill chunk of another.
        assert any(1 in counts and max(counts) > 1 for _, counts in steps)


def test_more_prompts_than_max_batch_wait_their_turn(make_llm, alone) -> None:
    llm = make_llm(max_batch=2)
    completions = llm.generate(PROMPTS + PROMPTS[:2], GREEDY)
    assert [c.token_ids for c in completions] == alone + alone[:2]
    if isinstance(llm.engine, reference_core.Engine):
        assert max(len(ids) for ids, _ in llm.engine.steps) == 2


def test_a_small_kv_cache_admits_requests_as_pages_free_up(make_llm, alone) -> None:
    # 5 pages of 16 tokens: the long prompt + 24 tokens needs 3, so not all three fit at once.
    llm = make_llm(kv_tokens=80)
    assert llm.engine.total_pages == 5
    assert [c.token_ids for c in llm.generate(PROMPTS, GREEDY)] == alone
    assert llm.engine.free_pages == 5


def test_a_request_too_long_for_the_whole_kv_cache_names_its_capacity(make_llm) -> None:
    llm = make_llm(kv_tokens=80)
    with pytest.raises(RequestError) as info:
        llm.generate("Hello", SamplingParams(max_tokens=100, ignore_eos=True))
    n = len(llm.tokenizer.encode("Hello"))
    # It runs until it holds all 80 tokens of the cache and refuses the 81st.
    assert str(info.value) == (
        f"prompt of {n} tokens + max_tokens=100 does not fit the KV cache: at 81 tokens it "
        "needs more than the 5 pages of 16 tokens the cache has, with no other request holding "
        "any; raise kv_tokens or lower max_tokens"
    )
    assert llm.engine.free_pages == llm.engine.total_pages


def test_max_tokens_ends_with_length_and_eos_ends_with_stop(make_llm, alone) -> None:
    llm = make_llm()
    first = llm.generate(PROMPTS[0], SamplingParams(max_tokens=5, ignore_eos=True))[0]
    assert first.token_ids == alone[0][:5] and first.finish_reason == "length"
    eos = alone[0][3]
    original = llm.tokenizer.eos_token_ids
    llm.tokenizer.eos_token_ids = (eos,)
    try:
        stopped = llm.generate(PROMPTS[0], SamplingParams(max_tokens=24))[0]
        ignored = llm.generate(PROMPTS[0], SamplingParams(max_tokens=24, ignore_eos=True))[0]
    finally:
        llm.tokenizer.eos_token_ids = original
    cut = alone[0].index(eos) + 1
    assert stopped.token_ids == alone[0][:cut] and stopped.finish_reason == "stop"
    assert stopped.text == llm.tokenizer.decode(alone[0][: cut - 1])  # EOS itself is not text
    assert ignored.token_ids == alone[0]


def test_stop_token_ids_end_the_generation(make_llm, alone) -> None:
    llm = make_llm()
    stop = alone[1][6]
    c = llm.generate(PROMPTS[1], SamplingParams(max_tokens=24, stop_token_ids=[stop]))[0]
    assert c.token_ids == alone[1][: alone[1].index(stop) + 1] and c.finish_reason == "stop"


def test_stop_strings_cut_the_text_and_never_reach_a_stream(make_llm, alone) -> None:
    llm = make_llm()
    full = llm.generate(PROMPTS[1], GREEDY)[0].text
    # A stop string from the middle of the text, spanning more than one token.
    stop = full[len(full) // 3 : len(full) // 3 + 3]
    params = SamplingParams(max_tokens=24, stop=["never there", stop], ignore_eos=True)
    c = llm.generate(PROMPTS[1], params)[0]
    assert c.finish_reason == "stop"
    assert c.text == full[: full.index(stop)]
    assert len(c.token_ids) < 24
    pieces = list(llm.stream(PROMPTS[1], params))
    assert "".join(pieces) == c.text


def test_stream_yields_the_generated_text_and_then_its_completion(make_llm) -> None:
    llm = make_llm()
    params = SamplingParams(max_tokens=16, ignore_eos=True)
    stream = llm.stream(PROMPTS[0], params)
    pieces = list(stream)
    completion = llm.generate(PROMPTS[0], params)[0]
    assert len(pieces) > 1 and "".join(pieces) == completion.text
    assert stream.completion is not None
    assert stream.completion.token_ids == completion.token_ids
    assert stream.completion.prefill_s > 0 and stream.completion.decode_tokens_per_s > 0


def test_closing_a_stream_early_releases_its_sequence(make_llm) -> None:
    llm = make_llm()
    stream = llm.stream(PROMPTS[1], SamplingParams(max_tokens=50, ignore_eos=True))
    next(stream)
    assert llm.engine.free_pages < llm.engine.total_pages
    stream.close()
    assert llm.engine.free_pages == llm.engine.total_pages


def test_seeded_sampling_repeats_in_and_out_of_a_batch(make_llm) -> None:
    llm = make_llm()
    params = SamplingParams(temperature=1.0, seed=1234, max_tokens=16, ignore_eos=True)
    alone = llm.generate(PROMPTS[0], params)[0].token_ids
    batched = llm.generate([PROMPTS[1], PROMPTS[0]], params)[1].token_ids
    assert batched == alone
    other = llm.generate(PROMPTS[0], SamplingParams(temperature=1.0, seed=99, max_tokens=16))
    assert other[0].token_ids != alone
    greedy = llm.generate(PROMPTS[0], SamplingParams(max_tokens=16, ignore_eos=True))[0]
    assert greedy.token_ids != alone  # temperature 1 on a random model rarely agrees


def test_chat_renders_the_template_and_writes_bos_once(make_llm) -> None:
    llm = make_llm()
    messages = [{"role": "user", "content": "Hi"}]
    completion = llm.chat(messages, SamplingParams(max_tokens=4, ignore_eos=True))
    text = llm.chat_template.render(messages)
    assert text.startswith("<s><|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    ids = llm.tokenizer.encode(text, add_special_tokens=False)
    assert ids.count(llm.tokenizer.bos_token_id) == 1
    assert completion.prompt_tokens == len(ids)
    streamed = "".join(llm.chat_stream(messages, SamplingParams(max_tokens=4, ignore_eos=True)))
    assert streamed == completion.text


@pytest.mark.parametrize(
    ("prompts", "params", "message"),
    [
        ("", None, "prompt is empty"),
        (["fine", ""], SamplingParams(max_tokens=8), "prompt 1 is empty"),
        ([b"bytes"], None, "prompt is a bytes, not a string"),
        (["a", "b"], [SamplingParams()], "1 SamplingParams given for 2 prompts"),
        (
            "Hello",
            SamplingParams(max_tokens=255),
            "prompt of {n} tokens + max_tokens=255 exceeds the model's context of 256 tokens; "
            "lower max_tokens to at most {room}",
        ),
        (
            "The quick brown fox " * 60,
            SamplingParams(max_tokens=1),
            "prompt of {n} tokens is longer than the model's context of 256 tokens",
        ),
    ],
)
def test_bad_requests_are_refused_before_any_work(make_llm, prompts, params, message) -> None:
    llm = make_llm()
    with pytest.raises(RequestError) as info:
        llm.generate(prompts, params)
    n = len(llm.tokenizer.encode(prompts)) if isinstance(prompts, str) and prompts else 0
    assert str(info.value) == message.format(n=n, room=256 - n)
    assert llm.engine.free_pages == llm.engine.total_pages


def test_chat_needs_a_chat_template(make_llm, tiny_model_dir, tmp_path: Path) -> None:
    path = Path(shutil.copytree(tiny_model_dir("llama")[0], tmp_path / "plain"))
    settings = json.loads((path / "tokenizer_config.json").read_text())
    del settings["chat_template"]
    (path / "tokenizer_config.json").write_text(json.dumps(settings))
    llm = make_llm(model=str(path))
    with pytest.raises(RequestError, match="the model has no chat template; use generate"):
        llm.chat([{"role": "user", "content": "Hi"}])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_batch": 0}, "options: max_batch must be >= 1, got 0"),
        ({"kv_tokens": -5}, "options: kv_tokens must be >= 0, got -5"),
        ({"max_step_tokens": 0}, "options: max_step_tokens must be >= 1, got 0"),
        ({"kv_dtype": "fp8"}, 'options: kv_dtype must be "bf16" or "f32", got "fp8"'),
        ({"max_batch": True}, "options: max_batch must be int, got bool"),
    ],
)
def test_bad_engine_options_are_refused_before_the_model_loads(
    monkeypatch: pytest.MonkeyPatch, options: dict, message: str
) -> None:
    loads: list[object] = []
    monkeypatch.setattr(slimrt.llm, "load_model", lambda *args, **kwargs: loads.append(args))
    with pytest.raises(InvalidArgumentError) as info:
        LLM("/nonexistent", **options)
    assert type(info.value) is InvalidArgumentError  # the core's, not a RequestError
    assert str(info.value) == message
    assert loads == []  # checked before load_model was called at all


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"device": "tpu"}, r'options: unknown device "tpu"; supported: cpu(, cuda)?'),
        ({"weights": "int4"}, r'options: weights must be "bf16", "df11" or "stored", got "int4"'),
        ({"num_threads": -1}, r"options: num_threads must be >= 0, got -1"),
    ],
)
def test_bad_model_options_are_refused_before_the_path_is_read(options: dict, message: str) -> None:
    # Reading the path would fail first, as "/nonexistent: no such file or directory".
    with pytest.raises(InvalidArgumentError) as info:
        LLM("/nonexistent", **options)
    assert type(info.value) is InvalidArgumentError
    assert re.fullmatch(message, str(info.value)), str(info.value)


def test_bad_steps_are_refused_with_the_cores_messages_and_change_nothing(make_llm) -> None:
    """Both engines refuse the same bad steps with the same classes and messages (the C++
    engine's), before any work: what the loop sees of an engine error does not depend on
    which engine it drives."""
    engine = make_llm(kv_tokens=32).engine
    seq = engine.add_sequence()
    others = [engine.add_sequence() for _ in range(8)]
    vocab = engine.vocab_size
    bad = InvalidArgumentError
    cases = [
        (([999], [1], [1]), bad, "step: unknown sequence id 999"),
        (([seq], [1, 2], [1]), bad, "step: counts sum to 1 but 2 tokens were given"),
        (([seq], [1], [1, 1]), bad, "step: counts has 2 entries, seq_ids has 1"),
        (([seq], [], [0]), bad, "step: counts[0] is 0; every sequence needs at least 1 token"),
        (([seq, seq], [1, 2], [1, 1]), bad, f"step: sequence id {seq} appears twice"),
        (([seq, *others], [1] * 9, [1] * 9), bad, "step: 9 sequences exceed max_batch=8"),
        (
            ([seq], [7, vocab], [2]),
            bad,
            f"step: token id {vocab} (tokens[1]) is outside [0, {vocab})",
        ),
        (([seq], [5] * 257, [257]), bad, "context length 257 exceeds the model's maximum of 256"),
        (
            ([seq], [5] * 40, [40]),
            OutOfMemoryError,
            "KV cache out of pages: this step needs 3 more pages, 2 are free (kv_tokens=32, "
            "page_size=16)",
        ),
    ]
    try:
        for args, error, message in cases:
            with pytest.raises(error) as info:
                engine.step(*args)
            assert (type(info.value), str(info.value)) == (error, message)
            assert engine.sequence_length(seq) == 0 and engine.free_pages == engine.total_pages
        with pytest.raises(InvalidArgumentError, match=r"^unknown sequence id 999$"):
            engine.release_sequence(999)
        with pytest.raises(InvalidArgumentError, match=r"^pages_needed: new_tokens must be >= 0"):
            engine.pages_needed(seq, -1)
        assert engine.pages_needed(seq, 17) == 2
    finally:
        for s in [seq, *others]:
            engine.release_sequence(s)


def test_memory_reports_the_engine_arenas_and_peak_rss(make_llm) -> None:
    memory = make_llm().memory()
    assert {"weights", "df11_scratch", "kv_pool", "activations", "total", "peak_rss"} <= set(memory)
    assert memory["weights"] > 0 and memory["peak_rss"] > memory["weights"]


def counting_steps(llm: LLM, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Wraps llm's LLMEngine.step for this test; returns the list of the batch size (requests
    the step served) of every step from now on."""
    sizes: list[int] = []
    step = llm.llm_engine.step

    def counted() -> list:
        outputs = step()
        sizes.append(len(outputs))
        return outputs

    monkeypatch.setattr(llm.llm_engine, "step", counted)
    return sizes


def in_threads(calls: list[Callable[[], object]], timeout: float = 120) -> list[object]:
    """Runs each call in its own thread, all released at once; their results in order. A
    thread still running after `timeout` seconds (a deadlock) fails the test."""
    start = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except BaseException as error:  # re-raised in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a caller never returned"
    if errors:
        raise errors[0]
    return results


def test_concurrent_callers_share_steps_and_get_the_tokens_of_sequential_calls(
    make_llm, monkeypatch
) -> None:
    llm = make_llm()
    seeded = SamplingParams(temperature=1.0, seed=7, max_tokens=24, ignore_eos=True)
    asked = [(PROMPTS[0], GREEDY), (PROMPTS[1], seeded), (PROMPTS[2], GREEDY), (PROMPTS[1], GREEDY)]
    sequential = [llm.generate(prompt, params)[0].token_ids for prompt, params in asked]
    # No step runs until every caller has submitted (or 10 s have passed): on a busy machine
    # one caller could otherwise finish before the next one starts.
    submitted: list[None] = []
    add_request, step = llm.llm_engine.add_request, llm.llm_engine.step
    deadline = time.monotonic() + 10
    sizes: list[int] = []

    def counted_add(*args: object) -> object:
        submitted.append(None)
        return add_request(*args)

    def gated_step() -> list:
        if len(submitted) < len(asked) and time.monotonic() < deadline:
            time.sleep(0.001)
            return []
        outputs = step()
        sizes.append(len(outputs))
        return outputs

    monkeypatch.setattr(llm.llm_engine, "add_request", counted_add)
    monkeypatch.setattr(llm.llm_engine, "step", gated_step)

    def generate(prompt: str, params: SamplingParams) -> list[int]:
        return llm.generate(prompt, params)[0].token_ids

    def stream(prompt: str, params: SamplingParams) -> list[int]:
        pieces = llm.stream(prompt, params)
        assert "".join(pieces) == llm.tokenizer.decode(pieces.completion.token_ids)
        return pieces.completion.token_ids

    calls = [generate, stream, generate, stream]
    concurrent = in_threads([lambda c=c, a=a: c(*a) for c, a in zip(calls, asked, strict=True)])
    assert concurrent == sequential
    # Each caller has one request: all four callers' requests went into the same steps, 24 of
    # them in all (a prompt chunk each, then 23 decode tokens), not 4 x 24.
    assert sizes == [4] * 24
    assert llm.engine.free_pages == llm.engine.total_pages


def test_a_short_call_returns_while_another_thread_streams_a_long_one(make_llm) -> None:
    llm = make_llm()
    long = llm.stream(PROMPTS[0], SamplingParams(max_tokens=200, ignore_eos=True))
    short_done = threading.Event()

    def short() -> None:
        llm.generate(PROMPTS[2], SamplingParams(max_tokens=4, ignore_eos=True))
        short_done.set()

    thread = threading.Thread(target=short, daemon=True)
    thread.start()
    for _ in long:
        if short_done.is_set():
            break
        time.sleep(0.001)  # a reader of the stream, printing it
    assert short_done.is_set(), "the short call waited for the whole long stream"
    long.close()
    thread.join(60)
    assert llm.engine.free_pages == llm.engine.total_pages


def test_a_stream_dropped_unfinished_is_aborted_before_the_next_step(make_llm, monkeypatch) -> None:
    llm = make_llm()
    for _ in llm.stream(PROMPTS[1], SamplingParams(max_tokens=50, ignore_eos=True)):
        break  # the stream is dropped here, neither closed nor finished
    sizes = counting_steps(llm, monkeypatch)
    llm.generate(PROMPTS[0], GREEDY)
    assert set(sizes) == {1}  # the dropped request was in none of them
    assert llm.engine.free_pages == llm.engine.total_pages


class Interrupt(Exception):
    pass


def test_an_interrupted_call_aborts_its_requests(make_llm, alone, monkeypatch) -> None:
    llm = make_llm()
    step = llm.llm_engine.step
    steps: list[None] = []

    def interrupted() -> list:
        if len(steps) == 3:
            raise Interrupt
        steps.append(None)
        return step()

    monkeypatch.setattr(llm.llm_engine, "step", interrupted)
    with pytest.raises(Interrupt):
        llm.generate(PROMPTS, GREEDY)
    assert llm.engine.free_pages == llm.engine.total_pages
    assert not llm.llm_engine.has_unfinished()
    monkeypatch.undo()
    assert [c.token_ids for c in llm.generate(PROMPTS, GREEDY)] == alone


def test_an_engine_error_in_a_step_reaches_the_caller_whose_request_was_in_it(
    make_llm, alone
) -> None:
    llm = make_llm()
    # A request no prompt can make: a token outside the vocabulary, refused by engine.step.
    bad = llm.llm_engine.add_request([llm.engine.vocab_size + 5], GREEDY)
    with pytest.raises(InvalidArgumentError, match="outside") as info:
        llm.generate(PROMPTS[0], GREEDY)
    assert info.value is bad.error
    assert llm.engine.free_pages == llm.engine.total_pages
    assert llm.generate(PROMPTS[0], GREEDY)[0].token_ids == alone[0]
