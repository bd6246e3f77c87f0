"""The OpenAI API's request and response bodies, for /v1/completions and /v1/chat/completions.

    try:
        request = parse_chat(body, llm, model_name)     # ids checked, SamplingParams made
    except ApiError as e:
        return e.status, e.body()                       # {"error": {message, type, param, code}}

Every parameter the API defines that slimrt does not implement is refused by name (400), as is
any name the API does not define: a client never gets a reply computed without what it asked
for. Sampling values are checked by SamplingParams, prompts by the LLM (text, context): the
messages here are theirs. Unlike OpenAI's temperature of 1, a request without one is greedy,
as everywhere in slimrt.

Log-probabilities (completions' logprobs: n in [0, 5]; chat's logprobs: true with top_logprobs
in [0, 20]) are of the model's raw distribution, log_softmax of the logits before temperature,
top-k, top-p and min-p (as vLLM's default), one entry per generated token, a final EOS or stop
token included. A token's text is its own decoding (a token that holds part of a UTF-8
character shows U+FFFD); completions' text_offset counts from the start of the generated text.
A log-probability of -inf is sent as -9999.0 (JSON has no infinity), as OpenAI does.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slimrt.completion import TokenLogprob
from slimrt.errors import RequestError
from slimrt.sampling_params import SamplingParams

if TYPE_CHECKING:
    from slimrt.llm import LLM

__all__ = [
    "ApiError",
    "ParsedRequest",
    "chat_chunk",
    "chat_logprobs",
    "chat_response",
    "completion_chunk",
    "completion_logprobs",
    "completion_response",
    "parse_chat",
    "parse_completion",
    "usage",
]

# OpenAI's default for /v1/completions; chat completions run to the end of the context.
COMPLETION_DEFAULT_MAX_TOKENS = 16
# The most top log-probabilities per token each endpoint takes (the legacy API's 5, chat's 20).
COMPLETION_MAX_LOGPROBS = 5
CHAT_MAX_TOP_LOGPROBS = 20
# What a log-probability of -inf (or NaN) is sent as.
_LOWEST_LOGPROB = -9999.0

# top_k, min_p, stop_token_ids and ignore_eos are extensions (vLLM has them too).
_SAMPLING = {
    "temperature", "top_p", "top_k", "min_p", "seed", "stop", "stop_token_ids", "ignore_eos",
    "max_tokens",
}  # fmt: skip
_COMMON = _SAMPLING | {"model", "n", "stream", "stream_options", "user", "logprobs"}
_COMPLETION_KEYS = _COMMON | {"prompt"}
_CHAT_KEYS = _COMMON | {"messages", "max_completion_tokens", "top_logprobs"}
# Defined by the API, not implemented: refused unless absent or null (or their no-op value).
_NO_OPS: dict[str, tuple[object, ...]] = {
    "frequency_penalty": (0, 0.0),
    "presence_penalty": (0, 0.0),
    "echo": (False,),
    "best_of": (1,),
    "suffix": ("",),
    "logit_bias": ({},),
    "tools": ([],),
    "tool_choice": ("none",),
    "response_format": ({"type": "text"},),
    "parallel_tool_calls": (False,),
}


class ApiError(Exception):
    """An error reply: the HTTP status and OpenAI's error object."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


@dataclass(frozen=True)
class ParsedRequest:
    prompt_ids: list[int]
    params: SamplingParams
    stream: bool
    include_usage: bool


def parse_completion(body: object, llm: LLM, model_name: str) -> ParsedRequest:
    body = _common_checks(body, _COMPLETION_KEYS, model_name)
    if "prompt" not in body:
        raise ApiError(400, "prompt is required", param="prompt")
    prompt = body["prompt"]
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ApiError(400, "prompt must be one string (one prompt per request)", param="prompt")
    ids = _as_request(lambda: llm.prompt_ids(prompt), "prompt")
    logprobs = body.get("logprobs")
    if logprobs is not None and not _count_in(logprobs, COMPLETION_MAX_LOGPROBS):
        raise ApiError(
            400,
            f"logprobs must be an integer in [0, {COMPLETION_MAX_LOGPROBS}], got {logprobs!r}",
            param="logprobs",
        )
    max_tokens = body.get("max_tokens", COMPLETION_DEFAULT_MAX_TOKENS)
    return _finish(body, llm, ids, max_tokens, "max_tokens", logprobs)


def parse_chat(body: object, llm: LLM, model_name: str) -> ParsedRequest:
    body = _common_checks(body, _CHAT_KEYS, model_name)
    if "messages" not in body:
        raise ApiError(400, "messages is required", param="messages")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list", param="messages")
    turns = [{"role": _role(m), "content": _text_of(m)} for m in messages]
    ids = _as_request(lambda: llm.chat_ids(turns), "messages")
    wanted = body.get("logprobs", False)
    if not isinstance(wanted, bool):
        raise ApiError(400, f"logprobs must be true or false, got {wanted!r}", param="logprobs")
    top = body.get("top_logprobs")
    if top is not None and not _count_in(top, CHAT_MAX_TOP_LOGPROBS):
        raise ApiError(
            400,
            f"top_logprobs must be an integer in [0, {CHAT_MAX_TOP_LOGPROBS}], got {top!r}",
            param="top_logprobs",
        )
    if top is not None and not wanted:
        raise ApiError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
    name = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    max_tokens = body.get(name, max(1, llm.context_length - len(ids)))
    return _finish(body, llm, ids, max_tokens, name, (top or 0) if wanted else None)


def _role(message: object) -> object:
    if not isinstance(message, dict):
        raise ApiError(400, "each message must be an object", param="messages")
    return message.get("role")


def _text_of(message: dict) -> str:
    """A message's content: a string, or OpenAI's list of text parts (joined)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    ):
        return "".join(p["text"] for p in content)
    raise ApiError(
        400, "a message's content must be a string or a list of text parts", param="messages"
    )


def _common_checks(body: object, known: set[str], model_name: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    for key, value in body.items():
        if key in known:
            continue
        if key in _NO_OPS:
            if value is None or any(value == v and type(value) is type(v) for v in _NO_OPS[key]):
                continue
            raise ApiError(400, f"{key} is not supported", param=key)
        raise ApiError(400, f"unknown parameter {key!r}", param=key)
    # The OpenAI client sends null for some values left out; they mean the default.
    body = {k: v for k, v in body.items() if v is not None}
    model = body.get("model")
    if not isinstance(model, str):
        raise ApiError(400, "model is required (a string)", param="model")
    if model != model_name:
        raise ApiError(
            404,
            f"the model {model!r} does not exist; this server has {model_name!r}",
            param="model",
            code="model_not_found",
        )
    if body.get("n", 1) != 1 or isinstance(body.get("n"), bool):
        raise ApiError(400, "only n = 1 is supported: send one request per choice", param="n")
    if not isinstance(body.get("stream", False), bool):
        raise ApiError(400, "stream must be true or false", param="stream")
    options = body.get("stream_options", {})
    if not isinstance(options, Mapping) or set(options) - {"include_usage"}:
        raise ApiError(400, "stream_options takes include_usage only", param="stream_options")
    if options and not body.get("stream", False):
        raise ApiError(400, "stream_options needs stream: true", param="stream_options")
    return body


def _count_in(value: object, most: int) -> bool:
    """Whether value is an integer (not a bool) in [0, most]."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= most


def _as_request(make: Any, param: str) -> list[int]:
    try:
        return make()
    except RequestError as e:
        raise ApiError(400, str(e), param=param) from None


def _finish(
    body: dict[str, Any],
    llm: LLM,
    ids: list[int],
    max_tokens: object,
    max_name: str,
    logprobs: int | None,
) -> ParsedRequest:
    values = {k: body[k] for k in _SAMPLING - {"max_tokens"} if k in body}
    try:
        params = SamplingParams(
            max_tokens=max_tokens,  # type: ignore[arg-type]
            logprobs=logprobs,
            **values,  # type: ignore[arg-type]
        )
    except RequestError as e:
        # SamplingParams names the value at fault ("top_p must be ...").
        param = next((k for k in (*values, "max_tokens") if f"{k} must" in str(e)), None)
        param = max_name if param == "max_tokens" else param
        raise ApiError(400, str(e), param=param) from None
    try:
        llm.check_context(ids, params)
    except RequestError as e:
        raise ApiError(400, str(e), param=max_name, code="context_length_exceeded") from None
    stream = bool(body.get("stream", False))
    include_usage = bool(body.get("stream_options", {}).get("include_usage", False))
    return ParsedRequest(ids, params, stream, include_usage)


# -- responses ---------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, object]:
    """cached_tokens: prompt tokens read from the prefix cache (OpenAI's and vLLM's
    prompt_tokens_details)."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }


def completion_response(
    id: str,
    model: str,
    text: str,
    finish_reason: str,
    usage: dict[str, object],
    logprobs: dict | None = None,
) -> dict[str, Any]:
    choice = {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}
    return _envelope(id, "text_completion", model, [choice]) | {"usage": usage}


def completion_chunk(
    id: str, model: str, text: str, finish_reason: str | None, logprobs: dict | None = None
) -> dict:
    choice = {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}
    return _envelope(id, "text_completion", model, [choice])


def chat_response(
    id: str,
    model: str,
    text: str,
    finish_reason: str,
    usage: dict[str, object],
    logprobs: dict | None = None,
) -> dict[str, Any]:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "logprobs": logprobs,
        "finish_reason": finish_reason,
    }
    return _envelope(id, "chat.completion", model, [choice]) | {"usage": usage}


def chat_chunk(
    id: str,
    model: str,
    delta: dict[str, str],
    finish_reason: str | None,
    logprobs: dict | None = None,
) -> dict:
    choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
    return _envelope(id, "chat.completion.chunk", model, [choice])


def completion_logprobs(
    entries: list[TokenLogprob], token_text: Callable[[int], str], offset: int
) -> dict[str, list]:
    """The legacy logprobs object of `entries`, whose text starts `offset` characters into
    the generated text."""
    tokens = [token_text(e.token_id) for e in entries]
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token)
    return {
        "tokens": tokens,
        "token_logprobs": [_sendable(e.logprob) for e in entries],
        # Keyed by text, as the legacy API is: tokens that decode alike share an entry.
        "top_logprobs": [{token_text(i): _sendable(v) for i, v in e.top} for e in entries],
        "text_offset": offsets,
    }


def chat_logprobs(entries: list[TokenLogprob], token_text: Callable[[int], str]) -> dict:
    """Chat's logprobs object of `entries`: {"content": [...], "refusal": None}."""

    def token(token_id: int, logprob: float) -> dict[str, Any]:
        text = token_text(token_id)
        return {"token": text, "logprob": _sendable(logprob), "bytes": list(text.encode())}

    content = [
        token(e.token_id, e.logprob) | {"top_logprobs": [token(i, v) for i, v in e.top]}
        for e in entries
    ]
    return {"content": content, "refusal": None}


def _sendable(logprob: float) -> float:
    return logprob if math.isfinite(logprob) else _LOWEST_LOGPROB


def _envelope(id: str, kind: str, model: str, choices: list[dict]) -> dict[str, Any]:
    return {
        "id": id,
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }
