"""The caps slimrt's Python layer puts on sizes and times that come from files and requests
(docs/SECURITY.md lists them with the C++ core's, cpp/src/input_limits.h). Anything a model
directory or a request says is checked against one of these before it is used."""

from __future__ import annotations

__all__ = [
    "MAX_JSON_FILE_BYTES",
    "MAX_STOP_STRINGS",
    "MAX_STOP_TOKEN_IDS",
    "MAX_TEMPLATE_CHARS",
    "MAX_TEMPLATE_SECONDS",
]

# tokenizer_config.json, generation_config.json, chat_template.json: a few kilobytes, or a few
# hundred with a long chat template; a far larger file is not one (the C++ core's cap on
# config.json is the same).
MAX_JSON_FILE_BYTES = 16 << 20
# A request's stop strings and stop token ids: each generated token is checked against every
# one, so their number bounds the work a request adds to every engine step (OpenAI allows 4
# stop strings; these leave room for tool-calling clients).
MAX_STOP_STRINGS = 64
MAX_STOP_TOKEN_IDS = 1024
# The longest text a chat template may build: its output and every string made on the way. A
# prompt is the request's messages (at most the server's 4 MiB body) plus the template's markup.
MAX_TEMPLATE_CHARS = 16_000_000
# Rendering a chat template takes about a millisecond; a template still running after this many
# seconds is looping.
MAX_TEMPLATE_SECONDS = 5.0
