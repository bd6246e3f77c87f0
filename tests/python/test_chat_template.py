from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from slimrt.chat_template import ROLES, ChatTemplate, read_chat_template
from slimrt.errors import FormatError, ModelError, RequestError
from slimrt.input_limits import MAX_TEMPLATE_CHARS, MAX_TEMPLATE_SECONDS
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


def test_a_template_that_loops_forever_stops_at_the_time_limit() -> None:
    # Nested loops that do nothing: no output, no call, no attribute access to check at, so the
    # watchdog stops them.
    looping = [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% set r = range(100000)|list %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}",
    ]
    for source in looping:
        start = time.monotonic()
        with pytest.raises(RequestError) as info:
            ChatTemplate(source, max_seconds=0.5).render(MESSAGES)
        assert str(info.value) == "chat template: the template ran longer than 0.5 seconds"
        assert time.monotonic() - start < 30  # 10^10 iterations would take hours
    # The template still renders afterwards: the watchdog of the stopped render is gone.
    assert ChatTemplate(CHATML_TEMPLATE, max_seconds=0.5).render(MESSAGES[:1]).startswith("<|im")


def test_the_default_bounds_are_the_documented_caps() -> None:
    template = ChatTemplate("{{ 'x' * 16000001 }}")
    with pytest.raises(
        RequestError,
        match=r"^chat template: a repeated value would be longer than 16000000 characters$",
    ):
        template.render(MESSAGES)
    assert MAX_TEMPLATE_CHARS == 16_000_000
    assert MAX_TEMPLATE_SECONDS == 5.0


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 'x' * 1001 }}", "a repeated value would be longer than 1000 characters"),
        ("{{ 1001 * ['x'] }}", "a repeated value would be longer than 1000 characters"),
        ("{{ 10 ** 1000 }}", "a power's digits would be longer than 1000 characters"),
        (
            "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
            "{% endfor %}",
            "a string would be longer than 1000 characters",
        ),
        (
            "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
            "{% endfor %}",
            "a value would be longer than 1000 characters",
        ),
        (
            "{% macro d(s, n) %}{{ d(s ~ s, n - 1) if n else s }}{% endmacro %}{{ d('x', 60) }}",
            "a string would be longer than 1000 characters",
        ),
        ("{{ 'x'|center(1001) }}", "a width or count would be longer than 1000 characters"),
        ("{{ 'x'.ljust(1001) }}", "a width or count would be longer than 1000 characters"),
        ("{{ [1]|slice(1001)|list }}", "a width or count would be longer than 1000 characters"),
        ("{{ '%1001d' % 1 }}", "a formatted width would be longer than 1000 characters"),
        ("{{ '%99999d' % 1 }}", "format string '%99999d' has a width too large"),
        ("{{ '{:>1001}'.format(1) }}", "a formatted width would be longer than 1000 characters"),
        (
            "{{ '%s'|format('x' * 900) ~ 'y' * 200 }}",
            "a string would be longer than 1000 characters",
        ),
        (
            "{% set s = 'a' * 40 %}{{ s|replace('a', s) }}",
            "a replaced string would be longer than 1000 characters",
        ),
        (
            "{% set s = 'a' * 40 %}{{ s.replace('', s) }}",
            "a replaced string would be longer than 1000 characters",
        ),
        ("{{ range(100)|join('x' * 11) }}", "a joined string would be longer than 1000 characters"),
        (
            "{{ ('x' * 11).join(range(100)|list) }}",
            "a joined string would be longer than 1000 characters",
        ),
        (
            "{{ ('a\\n' * 100)|indent('x' * 11) }}",
            "an indented string would be longer than 1000 characters",
        ),
        (
            "{{ ('\\t' * 100).expandtabs(11) }}",
            "an expanded string would be longer than 1000 characters",
        ),
        (
            "{% for i in range(101) %}{{ 'x' * 10 }}{% endfor %}",
            "its output would be longer than 1000 characters",
        ),
    ],
)
def test_templates_cannot_build_text_past_the_cap(source: str, message: str) -> None:
    with pytest.raises(RequestError) as info:
        ChatTemplate(source, max_chars=1000).render(MESSAGES)
    assert str(info.value) == f"chat template: {message}"


def test_text_up_to_the_cap_renders() -> None:
    source = (
        "{{ 'x' * 100 }}{{ 'y'|center(50) }}{{ '%5d' % 3 }}{{ '{:>4}'.format(1) }}"
        "{{ 'ab'|replace('a', 'cd') }}{{ range(3)|join(', ') }}{{ 2 ** 10 }}"
    )
    text = ChatTemplate(source, max_chars=1000).render(MESSAGES)
    assert text == "x" * 100 + "y".center(50) + "    3   1cdb0, 1, 21024"


def test_a_jinja_file_that_is_not_utf8_is_a_format_error(tmp_path: Path) -> None:
    (tmp_path / "chat_template.jinja").write_bytes(b"{{ messages }}\xff")
    with pytest.raises(FormatError) as info:
        read_chat_template(tmp_path, {})
    assert str(info.value) == (
        f"{tmp_path / 'chat_template.jinja'}: not UTF-8 text (invalid start byte at byte 14)"
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 1 + 'a' }}", "TypeError: unsupported operand type(s) for +: 'int' and 'str'"),
        ("{{ 1 / 0 }}", "ZeroDivisionError: division by zero"),
        ("{{ messages|dictsort }}", "AttributeError: 'list' object has no attribute 'items'"),
        ("{{ '%d' % 'a' }}", "TypeError: %d format: a real number is required, not str"),
        ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "it recursed too deeply"),
    ],
)
def test_a_template_that_fails_on_the_messages_is_a_request_error(
    source: str, message: str
) -> None:
    # These escaped as bare Python exceptions (found while writing fuzz_chat_template.py).
    with pytest.raises(RequestError) as info:
        ChatTemplate(source).render(MESSAGES)
    assert str(info.value) == f"chat template failed: {message}"


def test_a_template_nested_too_deeply_to_compile_is_a_model_error() -> None:
    with pytest.raises(ModelError) as info:
        ChatTemplate("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}")
    assert str(info.value) == "chat template does not compile: it nests too deeply"
