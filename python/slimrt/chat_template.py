"""A model's chat template: the Jinja program that turns messages into the prompt text the
model was trained on.

    template = ChatTemplate(source, bos_token="<s>", eos_token="</s>")
    prompt = template.render([{"role": "user", "content": "Hi"}])   # ends with the assistant cue

Rendering follows transformers' `apply_chat_template` (same Jinja settings, the same helpers
`raise_exception`, `tojson`, `strftime_now`), so a template renders here as it does there.
The environment is sandboxed (slimrt.template_sandbox): a template comes with a downloaded
model and must not reach Python objects, build unbounded text or run forever.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from slimrt.errors import ModelError, RequestError
from slimrt.input_limits import MAX_TEMPLATE_CHARS, MAX_TEMPLATE_SECONDS
from slimrt.tokenizer import check_text, read_json_object, read_text_file

__all__ = ["ROLES", "ChatTemplate", "read_chat_template"]

# The roles a message may have.
ROLES = ("system", "user", "assistant", "tool")


class ChatTemplate:
    def __init__(
        self,
        source: str,
        *,
        bos_token: str | None = None,
        eos_token: str | None = None,
        max_chars: int = MAX_TEMPLATE_CHARS,
        max_seconds: float = MAX_TEMPLATE_SECONDS,
    ) -> None:
        import jinja2
        from jinja2.ext import loopcontrols

        from slimrt.template_sandbox import BoundedSandbox

        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        env = BoundedSandbox(
            max_chars=max_chars,
            max_seconds=max_seconds,
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[loopcontrols],
        )
        self._env = env
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateSyntaxError as e:
            raise ModelError(
                f"chat template does not compile: {e.message} (line {e.lineno})"
            ) from e
        except RecursionError as e:  # Jinja's parser recurses once per level of nesting
            raise ModelError("chat template does not compile: it nests too deeply") from e

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = True,
        **variables: Any,
    ) -> str:
        """The prompt text for `messages` ({"role": ..., "content": ...} dicts, each role one of
        ROLES, each content a string of valid text; RequestError names the first message that
        is not). With add_generation_prompt the text ends where the assistant's reply begins.
        Extra variables (tools=..., documents=...) are passed to the template."""
        import jinja2

        _check_messages(messages)
        try:
            return self._env.render(
                self._template,
                messages=[dict(m) for m in messages],
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token or "",
                eos_token=self.eos_token or "",
                **variables,
            )
        except jinja2.TemplateError as e:
            # raise_exception() in the template (the model refuses these messages), or a bound
            # of the sandbox passed.
            raise RequestError(f"chat template: {e.message or e}") from e
        except RecursionError as e:
            raise RequestError("chat template failed: it recursed too deeply") from e
        except Exception as e:
            # The template is a program that came with the model; any error it runs into on
            # these messages (1 + 'a', a missing key of a dict) is its own, not slimrt's.
            raise RequestError(f"chat template failed: {type(e).__name__}: {e}") from e


def _check_messages(messages: object) -> None:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise RequestError("messages must be a list of {'role': ..., 'content': ...} dicts")
    if not messages:
        raise RequestError("messages is empty")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise RequestError(f"message {i} is a {type(message).__name__}, not a dict")
        role = message.get("role")
        if not isinstance(role, str):
            raise RequestError(f"message {i} has no 'role' string")
        # A template renders a role it does not expect as it pleases (often as nothing at all),
        # so only the roles chat models are trained on get through.
        if role not in ROLES:
            raise RequestError(
                f"message {i} has the unknown role {role!r}; roles are {', '.join(ROLES)}"
            )
        content = message.get("content")
        if not isinstance(content, str):
            raise RequestError(f"message {i} ({role}) has no 'content' string")
        check_text(content, f"message {i} ({role}) content")


def _raise_exception(message: str) -> None:
    import jinja2

    raise jinja2.TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's own tojson escapes HTML characters, which templates do not expect.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


def read_chat_template(path: Path, tokenizer_config: Mapping[str, Any]) -> str | None:
    """The template source of a Hugging Face directory, where transformers would find it:
    chat_template.jinja, then chat_template.json, then tokenizer_config.json (a string, or a
    list of named templates of which "default" is used). None when the model has none."""
    jinja_file = path / "chat_template.jinja"
    if jinja_file.is_file():
        return read_text_file(jinja_file)
    template = read_json_object(path / "chat_template.json").get("chat_template")
    if isinstance(template, str):
        return template
    template = tokenizer_config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None
