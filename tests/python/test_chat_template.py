from __future__ import annotations

import json
from pathlib import Path

import pytest
from slimrt.chat_template import ROLES, ChatTemplate, read_chat_template
from slimrt.errors import ModelError, RequestError
from tiny_models import CHATML_TEMPLATE, write_tokenizer

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi!"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "Où est Zürich?"},
]


def test_smollm2_template_renders_chatml_with_its_default_system_prompt(smollm2) -> None:
    template = ChatTemplate(smollm2.chat_template, bos_token="<|im_start|>")
    text = template.render([{"role": "user", "content": "What is 2+2?"}])
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        "Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    )
    without_cue = template.render([{"role": "user", "content": "x"}], add_generation_prompt=False)
    assert not without_cue.endswith("assistant\n")


def test_rendering_matches_transformers_apply_chat_template(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    write_tokenizer(tmp_path)
    reference = AutoTokenizer.from_pretrained(tmp_path)
    expected = reference.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    template = ChatTemplate(CHATML_TEMPLATE, bos_token="<s>", eos_token="</s>")
    assert template.render(MESSAGES) == expected
    assert expected.startswith("<s><|im_start|>system\nBe brief.<|im_end|>\n")


def test_raise_exception_in_a_template_becomes_a_request_error() -> None:
    source = (
        "{% if messages[0]['role'] != 'user' %}"
        "{{ raise_exception('first must be user') }}{% endif %}"
    )
    with pytest.raises(RequestError, match=r"^chat template: first must be user$"):
        ChatTemplate(source).render(MESSAGES)


def test_tojson_keeps_non_ascii_text_as_transformers_does() -> None:
    template = ChatTemplate("{{ messages[0]['content'] | tojson }}")
    assert template.render([{"role": "user", "content": "Zürich <b>"}]) == '"Zürich <b>"'


def test_the_sandbox_keeps_templates_away_from_python_internals() -> None:
    template = ChatTemplate("{{ messages.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(RequestError, match="chat template: "):
        template.render(MESSAGES)


def test_a_template_that_does_not_compile_is_a_model_error() -> None:
    with pytest.raises(ModelError, match=r"chat template does not compile: .*\(line 1\)"):
        ChatTemplate("{% for m in messages %}")


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ("hello", "messages must be a list of {'role': ..., 'content': ...} dicts"),
        ([], "messages is empty"),
        ([("user", "hi")], "message 0 is a tuple, not a dict"),
        ([{"role": "user"}], "message 0 (user) has no 'content' string"),
        ([{"role": "user", "content": "a"}, {"content": "b"}], "message 1 has no 'role' string"),
        ([{"role": 3, "content": "a"}], "message 0 has no 'role' string"),
        (
            [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}],
            "message 1 has the unknown role 'robot'; roles are system, user, assistant, tool",
        ),
        ([{"role": "User", "content": "a"}], "message 0 has the unknown role 'User'; roles are "),
        (
            [{"role": "user", "content": [{"type": "text", "text": "a"}]}],
            "message 0 (user) has no 'content' string",
        ),
        ([{"role": "system", "content": None}], "message 0 (system) has no 'content' string"),
        (
            [{"role": "user", "content": "ok"}, {"role": "assistant", "content": "h\u00e9\udcff"}],
            "message 1 (assistant) content is not valid UTF-8 text (byte 0xff at offset 3)",
        ),
        (
            [{"role": "tool", "content": "a\ud800"}],
            "message 0 (tool) content is not valid Unicode text (lone surrogate U+D800 at "
            "character 1)",
        ),
    ],
)
def test_malformed_messages_are_refused(messages: object, message: str) -> None:
    with pytest.raises(RequestError) as info:
        ChatTemplate(CHATML_TEMPLATE).render(messages)
    assert str(info.value).startswith(message)


def test_every_known_role_is_rendered() -> None:
    messages = [{"role": role, "content": role.upper()} for role in ROLES]
    text = ChatTemplate(CHATML_TEMPLATE).render(messages, add_generation_prompt=False)
    assert text == "".join(f"<|im_start|>{r}\n{r.upper()}<|im_end|>\n" for r in ROLES)


def test_template_files_are_found_where_transformers_looks(tmp_path: Path) -> None:
    assert read_chat_template(tmp_path, {}) is None
    assert read_chat_template(tmp_path, {"chat_template": "A"}) == "A"
    named = [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]
    assert read_chat_template(tmp_path, {"chat_template": named}) == "D"
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": "J"}))
    assert read_chat_template(tmp_path, {"chat_template": "A"}) == "J"
    (tmp_path / "chat_template.jinja").write_text("F")
    assert read_chat_template(tmp_path, {"chat_template": "A"}) == "F"
