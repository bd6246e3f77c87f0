"""atheris target: chat-template compilation and rendering (slimrt.chat_template). The input is
a template source, a NUL byte and a message's content (UTF-8, bad bytes replaced); whatever
they hold, ChatTemplate either renders text within its bounds or raises ModelError (a template
that does not compile) or RequestError (a template that fails, or passes a bound, on these
messages). Anything else is a finding.

    python3 fuzz/python/fuzz_chat_template.py -max_total_time=30 fuzz/python/corpus/chat_template
"""

from __future__ import annotations

import sys

import atheris
from slimrt.chat_template import ChatTemplate
from slimrt.errors import ModelError, RequestError

# Coverage of Jinja and the sandbox only (slimrt's package imports torch, which atheris would
# take minutes to instrument); chat_template imports both lazily, so they load here.
with atheris.instrument_imports(include=["jinja2", "slimrt.template_sandbox"]):
    import jinja2.ext  # noqa: F401
    import slimrt.template_sandbox  # noqa: F401

MAX_CHARS = 100_000


def test_one_input(data: bytes) -> None:
    source, _, content = data.decode("utf-8", "replace").partition("\0")
    try:
        template = ChatTemplate(source, bos_token="<s>", max_chars=MAX_CHARS, max_seconds=2.0)
        text = template.render([{"role": "user", "content": content}])
    except (ModelError, RequestError):
        return
    if not isinstance(text, str) or len(text) > MAX_CHARS:
        raise AssertionError(f"rendered {type(text).__name__} of {len(text)} characters")


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
