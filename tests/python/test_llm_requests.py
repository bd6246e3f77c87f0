"""What LLM refuses before a request runs: prompts that are not text, messages a chat template
cannot take. Each refusal is a RequestError naming the prompt or message at fault."""

from __future__ import annotations

from pathlib import Path

import pytest
from slimrt import LLM, RequestError, SamplingParams


@pytest.fixture(scope="module")
def llm(tiny_model_dir) -> LLM:
    path: Path = tiny_model_dir("qwen2")[0]
    return LLM(str(path), progress=False)


SHORT = SamplingParams(max_tokens=2)


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        (["abc\udcff"], "prompt is not valid UTF-8 text (byte 0xff at offset 3)"),
        ("\udcc3", "prompt is not valid UTF-8 text (byte 0xc3 at offset 0)"),
        (
            ["fine", "x\ud800y"],
            "prompt 1 is not valid Unicode text (lone surrogate U+D800 at character 1)",
        ),
    ],
)
def test_generate_refuses_a_prompt_that_is_not_text(
    llm: LLM, prompts: str | list[str], message: str
) -> None:
    with pytest.raises(RequestError) as info:
        llm.generate(prompts, SHORT)
    assert str(info.value) == message


def test_stream_refuses_a_prompt_that_is_not_text(llm: LLM) -> None:
    with pytest.raises(RequestError, match=r"^prompt is not valid UTF-8 text \(byte 0xfe"):
        llm.stream("\udcfe", SHORT)


@pytest.mark.parametrize("method", ["chat", "chat_stream"])
@pytest.mark.parametrize(
    ("messages", "message"),
    [
        (
            [{"role": "user", "content": "Hi"}, {"role": "narrator", "content": "x"}],
            "message 1 has the unknown role 'narrator'; roles are system, user, assistant, tool",
        ),
        ([{"content": "Hi"}], "message 0 has no 'role' string"),
        ([{"role": "user"}], "message 0 (user) has no 'content' string"),
        ([{"role": "user", "content": 42}], "message 0 (user) has no 'content' string"),
        (
            [{"role": "user", "content": "caf\udce9"}],
            "message 0 (user) content is not valid UTF-8 text (byte 0xe9 at offset 3)",
        ),
    ],
)
def test_chat_refuses_messages_the_template_cannot_take(
    llm: LLM, method: str, messages: list[dict[str, object]], message: str
) -> None:
    with pytest.raises(RequestError) as info:
        getattr(llm, method)(messages, SHORT)
    assert str(info.value) == message


def test_a_refused_request_leaves_the_llm_serving(llm: LLM) -> None:
    with pytest.raises(RequestError):
        llm.generate(["ok", "\udcff"], SHORT)
    assert llm.llm_engine.has_unfinished() is False
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    reply = llm.chat(messages, SHORT)
    assert reply.completion_tokens >= 1
