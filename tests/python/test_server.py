"""`slimrt serve` with the real openai client: every test starts a real server process on a
loopback port (serve_process.py) and talks HTTP to it.

A tiny random model where any model does (fast: the texts are gibberish, compared exactly with
the engine's); the default model (SmolLM2) for its chat template and where a request must
still be running when the test acts on it (a stream dropped half-way, a full queue, SIGTERM).
"""

from __future__ import annotations

import concurrent.futures
import json
import signal
import socket
import time
from pathlib import Path

import openai
import pytest
from cli_run import one_error_line, run
from serve_process import ServeProcess
from slimrt import LLM, SamplingParams

pytest.importorskip("fastapi", reason="pip install '.[test]'")


@pytest.fixture(scope="module")
def tiny_path(tiny_model_dir) -> Path:
    return tiny_model_dir("llama")[0]


@pytest.fixture(scope="module")
def tiny_llm(tiny_path: Path) -> LLM:
    return LLM(str(tiny_path), progress=False)


@pytest.fixture(scope="module")
def tiny_server(tiny_path: Path):
    with ServeProcess(tiny_path, "--max-batch", "16", "--max-body-bytes", "4096") as server:
        yield server


@pytest.fixture(scope="module")
def smollm2_server(smollm2_gguf: Path):
    with ServeProcess(smollm2_gguf, "--max-batch", "4") as server:
        yield server


def _complete(server: ServeProcess, prompt: str, **options: object) -> tuple[str, str, int]:
    """text, finish_reason and completion tokens of one unstreamed completion."""
    reply = server.client().completions.create(model=server.model_name, prompt=prompt, **options)
    return reply.choices[0].text, reply.choices[0].finish_reason, reply.usage.completion_tokens


def _stream(server: ServeProcess, prompt: str, **options: object) -> tuple[str, str, int]:
    """The same, streamed with include_usage."""
    chunks = list(
        server.client().completions.create(
            model=server.model_name,
            prompt=prompt,
            stream=True,
            stream_options={"include_usage": True},
            **options,
        )
    )
    *pieces, last = chunks
    assert last.choices == [] and all(c.usage is None for c in pieces)
    assert [c.choices[0].finish_reason for c in pieces[:-1]] == [None] * (len(pieces) - 1)
    text = "".join(c.choices[0].text for c in pieces)
    return text, pieces[-1].choices[0].finish_reason, last.usage.completion_tokens


# -- what a request returns -----------------------------------------------------------------


def test_a_completion_is_what_llm_generate_makes(tiny_server, tiny_llm) -> None:
    expected = tiny_llm.generate("The quick brown", SamplingParams(max_tokens=12))[0]
    text, finish, tokens = _complete(tiny_server, "The quick brown", max_tokens=12)
    assert (text, finish, tokens) == (
        expected.text,
        expected.finish_reason,
        expected.completion_tokens,
    )
    reply = tiny_server.client().completions.create(
        model=tiny_server.model_name, prompt="The quick brown", max_tokens=12
    )
    assert reply.object == "text_completion" and reply.model == tiny_server.model_name
    assert reply.usage.prompt_tokens == expected.prompt_tokens
    assert reply.usage.total_tokens == expected.prompt_tokens + expected.completion_tokens


def test_a_streamed_completion_has_the_same_text_and_usage(tiny_server) -> None:
    for options in ({"max_tokens": 20}, {"max_tokens": 9, "temperature": 0.9, "seed": 3}):
        assert _stream(tiny_server, "Once upon", **options) == _complete(
            tiny_server, "Once upon", **options
        )


def test_a_stream_without_include_usage_has_no_usage_chunk(tiny_server) -> None:
    chunks = list(
        tiny_server.client().completions.create(
            model=tiny_server.model_name, prompt="Numbers", max_tokens=5, stream=True
        )
    )
    assert all(c.usage is None and len(c.choices) == 1 for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"


def test_chat_replies_through_the_models_chat_template(tiny_server, tiny_llm) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "A memory-slim runtime"},
    ]
    expected = tiny_llm.chat(messages, SamplingParams(max_tokens=10))
    client = tiny_server.client()
    reply = client.chat.completions.create(
        model=tiny_server.model_name, messages=messages, max_completion_tokens=10
    )
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == expected.text
    assert reply.usage.prompt_tokens == expected.prompt_tokens
    chunks = list(
        client.chat.completions.create(
            model=tiny_server.model_name, messages=messages, max_tokens=10, stream=True
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected.text
    assert chunks[-1].choices[0].finish_reason == expected.finish_reason


def test_chat_content_may_be_a_list_of_text_parts(tiny_server) -> None:
    def reply(content: object) -> str:
        return (
            tiny_server.client()
            .chat.completions.create(
                model=tiny_server.model_name,
                messages=[{"role": "user", "content": content}],
                max_tokens=6,
            )
            .choices[0]
            .message.content
        )

    parts = [{"type": "text", "text": "A memory-slim "}, {"type": "text", "text": "runtime"}]
    assert reply(parts) == reply("A memory-slim runtime")


def test_the_default_model_chats_as_llm_chat_does(smollm2_server, smollm2_gguf) -> None:
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    expected = LLM(smollm2_gguf, progress=False).chat(messages, SamplingParams(max_tokens=16))
    reply = smollm2_server.client().chat.completions.create(
        model=smollm2_server.model_name, messages=messages, max_tokens=16
    )
    assert reply.choices[0].message.content == expected.text
    assert "Paris" in expected.text


def test_a_stop_string_cuts_the_text_before_it(tiny_server) -> None:
    full, _, _ = _complete(tiny_server, "def add", max_tokens=24)
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    cut = full[: full.index(stop)]
    assert _complete(tiny_server, "def add", max_tokens=24, stop=[stop])[:2] == (cut, "stop")
    assert _stream(tiny_server, "def add", max_tokens=24, stop=stop)[:2] == (cut, "stop")


def test_seeded_sampling_reproduces(tiny_server) -> None:
    options = {"max_tokens": 16, "temperature": 1.0, "top_p": 0.95, "seed": 1234}
    first = _complete(tiny_server, "Once upon a time", **options)
    assert _complete(tiny_server, "Once upon a time", **options) == first
    assert _stream(tiny_server, "Once upon a time", **options) == first


# -- many requests --------------------------------------------------------------------------


def _requests(count: int) -> list[tuple[str, dict]]:
    return [
        (
            f"Request {i}: the quick brown fox",
            {"max_tokens": 6 + i % 7, "ignore_eos": True}
            | ({"temperature": 0.8, "seed": i} if i % 2 else {}),
        )
        for i in range(count)
    ]


def test_concurrent_streams_all_complete_and_equal_the_requests_run_alone(tiny_server) -> None:
    requests = _requests(16)
    alone = [_complete(tiny_server, p, extra_body=o) for p, o in requests]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda r: _stream(tiny_server, r[0], extra_body=r[1]), requests))
    assert together == alone
    assert [tokens for _, _, tokens in together] == [o["max_tokens"] for _, o in requests]


def test_kv_exhaustion_preempts_and_still_completes_every_request(tiny_path: Path) -> None:
    # Each request grows to 80 tokens (5 pages of 16) in a cache of 8 pages: any two that
    # run together outgrow it, and the newest is preempted.
    prompt = "Request {}: The quick brown fox jumps over the lazy dog. Once upon a time"
    requests = [
        (prompt.format(i), {"max_tokens": 40, "ignore_eos": True, "temperature": 0.7, "seed": i})
        for i in range(8)
    ]
    with ServeProcess(tiny_path, "--max-batch", "8", "--kv-tokens", "128") as server:
        alone = [_complete(server, p, extra_body=o) for p, o in requests]
        assert server.metrics()["slimrt_preemptions"] == 0
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            together = list(pool.map(lambda r: _stream(server, r[0], extra_body=r[1]), requests))
        assert together == alone
        assert server.metrics()["slimrt_preemptions"] > 0
        assert server.metrics()["slimrt_kv_pages_used"] == 0


def _chat_usage(server: ServeProcess, system: str, question: str) -> object:
    reply = server.client().chat.completions.create(
        model=server.model_name,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
        max_tokens=4,
        temperature=0,
    )
    return reply.usage


def test_a_repeated_long_system_prompt_is_read_from_the_prefix_cache(smollm2_server) -> None:
    system = " ".join(f"Rule {i}: answer in one short sentence about pages." for i in range(60))
    before = smollm2_server.metrics()
    first = _chat_usage(smollm2_server, system, "What is a KV cache?")
    middle = smollm2_server.metrics()
    second = _chat_usage(smollm2_server, system, "And a page?")
    after = smollm2_server.metrics()
    assert first.prompt_tokens > 600
    assert first.prompt_tokens_details.cached_tokens == 0
    cached = second.prompt_tokens_details.cached_tokens
    # Every whole page of the system prompt (16 tokens each) came from the cache: the prefill
    # computed only the question and the page it starts in.
    assert cached % 16 == 0 and second.prompt_tokens - cached < 16 + 16
    hits = "slimrt_prefix_cache_hits"
    assert middle[hits] == before[hits]
    assert after[hits] - middle[hits] == cached
    read = "slimrt_prompt_tokens_cached_total"
    assert after[read] - middle[read] == cached
    queried = "slimrt_prefix_cache_queries"
    assert after[queried] - middle[queried] == second.prompt_tokens
    # Finished: its pages are free again, and still cached for the next request.
    assert after["slimrt_kv_pages_used"] == 0
    assert after["slimrt_kv_pages_cached"] * 16 >= cached
    assert (
        after["slimrt_kv_pages_used"]
        + after["slimrt_kv_pages_cached"]
        + after["slimrt_kv_pages_free"]
        == after["slimrt_kv_pages_total"]
    )


def test_no_prefix_caching_computes_every_prompt_in_full(tiny_path: Path) -> None:
    system = "Be brief and exact. " * 8
    with ServeProcess(tiny_path, "--no-prefix-caching") as server:
        for question in ("One?", "Two?"):
            assert _chat_usage(server, system, question).prompt_tokens_details.cached_tokens == 0
        metrics = server.metrics()
        assert metrics["slimrt_prefix_cache_hits"] == 0
        assert metrics["slimrt_kv_pages_cached"] == 0


def test_a_stream_dropped_half_way_frees_its_pages(smollm2_server) -> None:
    metrics = smollm2_server.metrics()
    generated = metrics["slimrt_generation_tokens_total"]
    assert metrics["slimrt_kv_pages_used"] == 0
    stream = smollm2_server.client().completions.create(
        model=smollm2_server.model_name,
        prompt="Once upon a time",
        max_tokens=400,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    for _, _ in zip(range(3), stream, strict=False):
        pass
    metrics = smollm2_server.metrics()
    assert metrics["slimrt_kv_pages_used"] > 0 and metrics["slimrt_requests_running"] == 1
    stream.close()
    smollm2_server.wait_for_metric("slimrt_kv_pages_used", 0)
    metrics = smollm2_server.metrics()
    assert metrics["slimrt_requests_running"] == 0
    # It was cancelled, not finished: a finished request would have counted its tokens.
    assert metrics["slimrt_generation_tokens_total"] == generated


def test_a_client_that_gives_up_on_an_unstreamed_request_cancels_it(smollm2_server) -> None:
    generated = smollm2_server.metrics()["slimrt_generation_tokens_total"]
    given_up = smollm2_server.requests_by_status()["499"]
    with pytest.raises(openai.APITimeoutError):
        smollm2_server.client(timeout=1.0).completions.create(
            model=smollm2_server.model_name,
            prompt="Once upon a time",
            max_tokens=2000,
            extra_body={"ignore_eos": True},
        )
    smollm2_server.wait_for_metric("slimrt_requests_running", 0)
    metrics = smollm2_server.metrics()
    assert metrics["slimrt_kv_pages_used"] == 0
    assert metrics["slimrt_generation_tokens_total"] == generated
    # Counted as the client's doing (499, client closed request), not the server's failure.
    deadline = time.monotonic() + 30
    while (statuses := smollm2_server.requests_by_status())["499"] == given_up:
        assert time.monotonic() < deadline, statuses
        time.sleep(0.05)
    assert statuses["499"] == given_up + 1 and not any(s.startswith("5") for s in statuses)


def test_a_full_waiting_queue_answers_429(smollm2_gguf: Path) -> None:
    with ServeProcess(smollm2_gguf, "--max-batch", "1", "--max-waiting", "1") as server:
        client = server.client()
        long = {"max_tokens": 400, "stream": True, "extra_body": {"ignore_eos": True}}
        running = client.completions.create(model=server.model_name, prompt="a", **long)
        next(iter(running))  # running: it has generated
        waiting = client.completions.create(model=server.model_name, prompt="b", **long)
        with pytest.raises(openai.RateLimitError) as refused:
            client.completions.create(model=server.model_name, prompt="c", max_tokens=2)
        assert refused.value.response.json() == {
            "error": {
                "message": "1 requests are already waiting; try again later",
                "type": "rate_limit_error",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
        running.close()
        waiting.close()


# -- bad requests ---------------------------------------------------------------------------


def _error(message: str, param: str | None, code: str | None = None, kind=None) -> dict:
    return {
        "error": {
            "message": message,
            "type": kind or "invalid_request_error",
            "param": param,
            "code": code,
        }
    }


# -- log-probabilities ---------------------------------------------------------------------


def _token_text(llm: LLM, token_id: int) -> str:
    return llm.tokenizer.decode([token_id], skip_special_tokens=False)


def test_completion_logprobs_streamed_and_not(tiny_server, tiny_llm) -> None:
    prompt = "The quick brown"
    expected = tiny_llm.generate(prompt, SamplingParams(max_tokens=8, logprobs=3))[0]
    tokens = [_token_text(tiny_llm, e.token_id) for e in expected.logprobs]
    client = tiny_server.client()
    reply = client.completions.create(
        model=tiny_server.model_name, prompt=prompt, max_tokens=8, logprobs=3
    )
    lp = reply.choices[0].logprobs
    assert lp.tokens == tokens
    assert lp.token_logprobs == pytest.approx([e.logprob for e in expected.logprobs], abs=1e-5)
    assert lp.text_offset == [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    for top, entry in zip(lp.top_logprobs, expected.logprobs, strict=True):
        want = {_token_text(tiny_llm, i): v for i, v in entry.top}
        assert top.keys() == want.keys()
        assert list(top.values()) == pytest.approx(list(want.values()), abs=1e-5)
        # Greedy: the drawn token is the most likely one.
        assert entry.top[0] == (entry.token_id, entry.logprob)

    chunks = list(
        client.completions.create(
            model=tiny_server.model_name, prompt=prompt, max_tokens=8, logprobs=3, stream=True
        )
    )
    streamed = [c.choices[0].logprobs for c in chunks if c.choices[0].logprobs is not None]
    assert [t for s in streamed for t in s.tokens] == tokens
    assert [o for s in streamed for o in s.text_offset] == lp.text_offset
    assert [v for s in streamed for v in s.token_logprobs] == pytest.approx(lp.token_logprobs)

    plain = client.completions.create(model=tiny_server.model_name, prompt=prompt, max_tokens=2)
    assert plain.choices[0].logprobs is None
    none_top = client.completions.create(
        model=tiny_server.model_name, prompt=prompt, max_tokens=2, logprobs=0
    )
    assert none_top.choices[0].logprobs.top_logprobs == [{}, {}]


def test_chat_logprobs_streamed_and_not(tiny_server, tiny_llm) -> None:
    messages = [{"role": "user", "content": "Once upon a time"}]
    expected = tiny_llm.chat(messages, SamplingParams(max_tokens=6, logprobs=4))
    client = tiny_server.client()
    options = {"model": tiny_server.model_name, "messages": messages, "max_tokens": 6}
    reply = client.chat.completions.create(**options, logprobs=True, top_logprobs=4)
    content = reply.choices[0].logprobs.content
    assert len(content) == len(expected.logprobs)
    for got, entry in zip(content, expected.logprobs, strict=True):
        text = _token_text(tiny_llm, entry.token_id)
        assert (got.token, got.bytes) == (text, list(text.encode()))
        assert got.logprob == pytest.approx(entry.logprob, abs=1e-5)
        assert [t.token for t in got.top_logprobs] == [
            _token_text(tiny_llm, i) for i, _ in entry.top
        ]
        assert [t.logprob for t in got.top_logprobs] == pytest.approx(
            [v for _, v in entry.top], abs=1e-5
        )
        values = [t.logprob for t in got.top_logprobs]
        assert values == sorted(values, reverse=True)

    chunks = list(client.chat.completions.create(**options, logprobs=True, stream=True))
    streamed = [
        e
        for c in chunks
        if c.choices and c.choices[0].logprobs
        for e in c.choices[0].logprobs.content
    ]
    assert [e.token for e in streamed] == [e.token for e in content]
    assert [e.logprob for e in streamed] == pytest.approx([e.logprob for e in content])
    assert all(e.top_logprobs == [] for e in streamed)

    plain = client.chat.completions.create(**options)
    assert plain.choices[0].logprobs is None


@pytest.mark.parametrize(
    ("options", "status", "body"),
    [
        (
            {"model": "gpt-4"},
            404,
            _error(
                "the model 'gpt-4' does not exist; this server has 'llama'",
                "model",
                "model_not_found",
            ),
        ),
        (
            {"temperature": -1},
            400,
            _error("sampling: temperature must be >= 0, got -1", "temperature"),
        ),
        ({"top_p": 1.5}, 400, _error("sampling: top_p must be in (0, 1], got 1.5", "top_p")),
        ({"max_tokens": 0}, 400, _error("max_tokens must be >= 1, got 0", "max_tokens")),
        (
            {"max_tokens": 1000},
            400,
            _error(
                "prompt of 5 tokens + max_tokens=1000 exceeds the model's context of 256 "
                "tokens; lower max_tokens to at most 251",
                "max_tokens",
                "context_length_exceeded",
            ),
        ),
        ({"n": 2}, 400, _error("only n = 1 is supported: send one request per choice", "n")),
        (
            {"logprobs": 6},
            400,
            _error("logprobs must be an integer in [0, 5], got 6", "logprobs"),
        ),
        (
            {"logprobs": True},
            400,
            _error("logprobs must be an integer in [0, 5], got True", "logprobs"),
        ),
        ({"prompt": ""}, 400, _error("prompt is empty", "prompt")),
        (
            {"prompt": ["one", "two"]},
            400,
            _error("prompt must be one string (one prompt per request)", "prompt"),
        ),
        (
            {"presence_penalty": 0.5},
            400,
            _error("presence_penalty is not supported", "presence_penalty"),
        ),
        (
            {"extra_body": {"beam_width": 4}},
            400,
            _error("unknown parameter 'beam_width'", "beam_width"),
        ),
    ],
)  # fmt: skip
def test_a_bad_completion_gets_its_status_and_error_body(tiny_server, options, status, body):
    request = {"model": tiny_server.model_name, "prompt": "The quick", "max_tokens": 4} | options
    with pytest.raises(openai.APIStatusError) as refused:
        tiny_server.client().completions.create(**request)
    assert refused.value.status_code == status
    assert refused.value.response.json() == body


def test_a_bad_chat_gets_its_status_and_error_body(tiny_server) -> None:
    client = tiny_server.client()
    cases = [
        (
            [{"role": "robot", "content": "hi"}],
            "message 0 has the unknown role 'robot'; roles are system, user, assistant, tool",
        ),
        ([], "messages must be a non-empty list"),
        (["hi"], "each message must be an object"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            "a message's content must be a string or a list of text parts",
        ),
    ]
    for messages, message in cases:
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(
                model=tiny_server.model_name, messages=messages, max_tokens=2
            )
        error = refused.value.response.json()["error"]
        assert (error["param"], error["type"]) == ("messages", "invalid_request_error")
        assert error["message"] == message
    logprob_cases = [
        (
            {"logprobs": True, "top_logprobs": 21},
            "top_logprobs must be an integer in [0, 20], got 21",
        ),
        (
            {"logprobs": True, "top_logprobs": -1},
            "top_logprobs must be an integer in [0, 20], got -1",
        ),
        ({"top_logprobs": 2}, "top_logprobs needs logprobs: true"),
        ({"logprobs": False, "top_logprobs": 2}, "top_logprobs needs logprobs: true"),
        ({"logprobs": 3}, "logprobs must be true or false, got 3"),
    ]
    for options, message in logprob_cases:
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(
                model=tiny_server.model_name,
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=2,
                **options,
            )
        param = "logprobs" if message.startswith("logprobs") else "top_logprobs"
        assert refused.value.response.json() == _error(message, param)


def test_bad_bodies_and_routes_get_openai_error_bodies(tiny_server) -> None:
    def post(body: bytes) -> tuple[int, dict]:
        status, reply = tiny_server.http(
            "POST", "/v1/completions", body, {"content-type": "application/json"}
        )
        return status, json.loads(reply)

    status, reply = post(b"{not json")
    assert status == 400
    assert reply["error"]["message"].startswith("the request body is not valid JSON")
    assert post(json.dumps({"prompt": "x" * 5000}).encode()) == (
        413,
        _error("the request body is larger than 4096 bytes", None, "request_too_large"),
    )
    assert post(b"[1, 2]") == (400, _error("the request body must be a JSON object", None))
    status, reply = tiny_server.http("GET", "/v1/engines")
    assert (status, json.loads(reply)) == (404, _error("Not Found", None, kind="not_found"))


def test_models_and_health(tiny_server) -> None:
    models = tiny_server.client().models.list()
    assert [m.id for m in models.data] == [tiny_server.model_name] == ["llama"]
    assert tiny_server.http("GET", "/health") == (200, b'{"status":"ok"}')


def test_an_api_key_is_required_when_set(tiny_path: Path) -> None:
    with ServeProcess(tiny_path, env={"SLIMRT_API_KEY": "s3cret"}) as server:
        for key in ("wrong", "s3cre", "s3crett"):
            with pytest.raises(openai.AuthenticationError) as refused:
                server.client(api_key=key).models.list()
            assert refused.value.response.json() == _error(
                "a valid API key is needed: Authorization: Bearer <key>",
                None,
                "invalid_api_key",
                kind="authentication_error",
            )
        assert server.http("POST", "/v1/completions", b"{}")[0] == 401
        assert [m.id for m in server.client(api_key="s3cret").models.list().data] == ["llama"]
        assert server.http("GET", "/health")[0] == 200


# -- shutting down --------------------------------------------------------------------------


def test_sigterm_lets_a_running_stream_finish_then_exits(smollm2_gguf: Path) -> None:
    with ServeProcess(smollm2_gguf, "--shutdown-timeout", "60") as server:
        stream = server.client().completions.create(
            model=server.model_name,
            prompt="Once upon a time",
            max_tokens=40,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        chunks = iter(stream)
        next(chunks)
        server.process.send_signal(signal.SIGTERM)
        *_, last = chunks
        assert last.usage.completion_tokens == 40
        assert server.stop() == 0
        with pytest.raises(openai.APIConnectionError):
            server.client().models.list()


def test_sigterm_cancels_what_is_still_running_after_the_shutdown_timeout(
    smollm2_gguf: Path,
) -> None:
    with ServeProcess(smollm2_gguf, "--shutdown-timeout", "0.5") as server:
        stream = server.client().completions.create(
            model=server.model_name,
            prompt="Once upon a time",
            max_tokens=2000,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        chunks = iter(stream)
        next(chunks)
        server.process.send_signal(signal.SIGTERM)
        with pytest.raises(openai.APIError, match="shutting down"):
            for _ in chunks:
                pass
        assert server.stop(timeout=30) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "70000"], "slimrt: error: --port must be in [0, 65535], got 70000"),
        (["--max-waiting", "0"], "slimrt: error: --max-waiting must be >= 1"),
        (["--shutdown-timeout", "-1"], "slimrt: error: --shutdown-timeout must be >= 0"),
        (["a.gguf", "--model", "b"], "slimrt: error: give the model as MODEL or --model, not both"),
    ],
)  # fmt: skip
def test_bad_serve_options_are_one_line_errors(capsys, argv: list[str], message: str) -> None:
    code, out, err = run(capsys, "serve", *argv)
    assert (code, out, one_error_line(err)) == (2, "", message)


def test_a_request_that_arrives_during_shutdown_gets_503(tiny_path: Path) -> None:
    with ServeProcess(tiny_path) as server:
        body = json.dumps({"model": "llama", "prompt": "The quick", "max_tokens": 2}).encode()
        host, port = server.root.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=60) as connection:
            # The handler starts before the signal and gets the body after it: "100 Continue"
            # says it is reading the body.
            connection.sendall(
                b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                b"\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            replies = connection.makefile("rb")
            assert replies.readline().startswith(b"HTTP/1.1 100 ")
            assert replies.readline() == b"\r\n"
            server.process.send_signal(signal.SIGTERM)
            _wait_until_refused(host, int(port))
            connection.sendall(body)
            reply = replies.read()
        head, _, payload = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ")
        assert json.loads(payload) == _error(
            "the server is shutting down", None, "shutting_down", kind="unavailable"
        )
        assert server.stop() == 0


def _wait_until_refused(host: str, port: int) -> None:
    """Until the server has closed its listening socket: the sign it took the signal."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=5).close()
        except ConnectionRefusedError:
            return
        time.sleep(0.05)
    raise AssertionError("the server kept accepting connections after SIGTERM")


def test_a_port_in_use_is_a_one_line_error(capsys, tiny_server, tiny_path: Path) -> None:
    port = tiny_server.root.rsplit(":", 1)[1]
    code, out, err = run(capsys, "serve", tiny_path, "--port", port, "--no-progress")
    assert (code, out) == (2, "")
    assert one_error_line(err) == f"slimrt: error: 127.0.0.1:{port}: Address already in use"
