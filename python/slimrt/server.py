"""`slimrt serve`: an OpenAI-compatible HTTP server over one model (FastAPI + uvicorn).

    llm = LLM("SmolLM2-135M-Instruct.Q4_1.gguf")
    serve(llm, ServerOptions(port=8000))       # until SIGTERM / Ctrl-C

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    client.chat.completions.create(model="SmolLM2-135M-Instruct.Q4_1", messages=[...])

Routes: POST /v1/completions and /v1/chat/completions (JSON, or SSE with "stream": true),
GET /v1/models, /health, /metrics (Prometheus). Every request runs in one EngineLoop, batched
with the others. Errors are OpenAI's error objects (slimrt.openai_protocol) with their status:
400 bad JSON or parameters, 401 a missing or wrong API key, 404 an unknown model or route, 413
a body over the cap, 429 the waiting queue full, 503 shutting down. A client that disconnects
cancels its request (its KV pages go back at once; /metrics counts an unstreamed one as 499,
client closed request). SIGTERM or Ctrl-C: no new connections, 503 for new requests, running
ones finish within shutdown_timeout, then the rest are cancelled.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse
from sse_starlette.sse import AppStatus
from starlette.exceptions import HTTPException

from slimrt.completion import TokenLogprob
from slimrt.engine_loop import (
    CancelledRequestError,
    EngineLoop,
    LoopRequest,
    QueueFullError,
    ShuttingDownError,
)
from slimrt.errors import RequestError
from slimrt.llm import LLM
from slimrt.openai_protocol import (
    ApiError,
    ParsedRequest,
    chat_chunk,
    chat_logprobs,
    chat_response,
    completion_chunk,
    completion_logprobs,
    completion_response,
    new_id,
    parse_chat,
    parse_completion,
    usage,
)
from slimrt.server_metrics import ServerMetrics
from slimrt.server_options import ServerOptions

__all__ = ["create_app", "serve"]


def create_app(llm: LLM, loop: EngineLoop, options: ServerOptions, model_name: str) -> Any:
    """The FastAPI application; the loop must be started (serve() does both)."""
    metrics = ServerMetrics(loop)
    api_key = options.api_key.encode() if options.api_key else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # uvicorn has drained the connections (or given up on them): end the loop.
        loop.shutdown(0)
        await asyncio.to_thread(loop.join)

    app = FastAPI(title="slimrt", lifespan=lifespan, docs_url=None, redoc_url=None)

    def error_reply(error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, error: ApiError) -> JSONResponse:
        metrics.requests.labels(endpoint=request.url.path, status=str(error.status)).inc()
        return error_reply(error)

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, error: HTTPException) -> JSONResponse:
        kind = "not_found" if error.status_code == 404 else "invalid_request_error"
        return error_reply(ApiError(error.status_code, str(error.detail), type=kind))

    @app.exception_handler(Exception)
    async def on_bug(request: Request, error: Exception) -> JSONResponse:
        # A bug, not the client's fault: still an error body a client can read.
        metrics.requests.labels(endpoint=request.url.path, status="500").inc()
        return error_reply(ApiError(500, f"internal error: {error}", type="internal_error"))

    @app.middleware("http")
    async def check_key(request: Request, call_next: Callable) -> Response:
        if api_key is not None and request.url.path.startswith("/v1/"):
            given = request.headers.get("authorization", "")
            scheme, _, token = given.partition(" ")
            # Constant time, so the key cannot be guessed a byte at a time from reply times.
            if not (scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), api_key)):
                return error_reply(
                    ApiError(
                        401,
                        "a valid API key is needed: Authorization: Bearer <key>",
                        type="authentication_error",
                        code="invalid_api_key",
                    )
                )
        return await call_next(request)

    @app.get("/health")
    async def health() -> Response:
        if not loop.accepting:
            return error_reply(_shutting_down())
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def scrape() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/v1/models")
    async def models() -> Response:
        model = {"id": model_name, "object": "model", "created": 0, "owned_by": "slimrt"}
        return JSONResponse({"object": "list", "data": [model]})

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        parsed = parse_completion(await _json_body(request, options), llm, model_name)
        return await respond(request, parsed, _CompletionShape(model_name, token_text))

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        parsed = parse_chat(await _json_body(request, options), llm, model_name)
        return await respond(request, parsed, _ChatShape(model_name, token_text))

    async def respond(request: Request, parsed: ParsedRequest, shape: _Shape) -> Response:
        run = _Run(loop, parsed, metrics)
        run.start()  # 429 / 503 here, before any reply is sent
        endpoint = request.url.path
        if parsed.stream:
            metrics.requests.labels(endpoint=endpoint, status="200").inc()
            return EventSourceResponse(_events(run, shape, parsed.include_usage), ping=15)
        watcher = asyncio.create_task(_cancel_on_disconnect(request, run))
        try:
            pieces = [piece async for piece in run.pieces()]
        finally:
            watcher.cancel()
        metrics.requests.labels(endpoint=endpoint, status="200").inc()
        text = "".join(p.text for p in pieces)
        entries = [e for p in pieces for e in p.logprobs] if run.wants_logprobs else None
        return JSONResponse(shape.response(text, run.finish_reason, run.usage(), entries))

    def token_text(token_id: int) -> str:
        return llm.tokenizer.decode([token_id], skip_special_tokens=False)

    return app


class _Piece(NamedTuple):
    """New text of a request, and the log-probabilities of the tokens generated since the last
    piece (empty unless it asked for them; held-back text can lag its tokens)."""

    text: str
    logprobs: list[TokenLogprob]


class _Run:
    """One request in the loop, seen from the event loop: its text as it comes."""

    def __init__(self, loop: EngineLoop, parsed: ParsedRequest, metrics: ServerMetrics) -> None:
        self.loop = loop
        self.parsed = parsed
        self.metrics = metrics
        self._changed = asyncio.Event()
        self._request: LoopRequest | None = None
        self._arrived = time.perf_counter()
        self._last_token = 0.0
        self._tokens = 0
        self._cached_tokens = 0
        self._logprobs_sent = 0
        self.wants_logprobs = parsed.params.logprobs is not None
        self.finish_reason = "length"

    def start(self) -> None:
        event_loop = asyncio.get_running_loop()

        def on_update(_: LoopRequest) -> None:  # called on the loop thread
            event_loop.call_soon_threadsafe(self._changed.set)

        try:
            self._request = self.loop.submit(self.parsed.prompt_ids, self.parsed.params, on_update)
        except QueueFullError as e:
            raise ApiError(
                429, str(e), type="rate_limit_error", code="rate_limit_exceeded"
            ) from None
        except ShuttingDownError:
            raise _shutting_down() from None

    def cancel(self) -> None:
        if self._request is not None and not self._request.finished:
            self.loop.cancel(self._request)

    async def pieces(self) -> AsyncIterator[_Piece]:
        """The text as it is generated; raises ApiError when the request fails. Leaving early
        (the client went away) cancels the request."""
        request = self._request
        assert request is not None
        try:
            while True:
                await self._changed.wait()
                self._changed.clear()
                if request.error is not None:
                    raise _as_api_error(request.error)
                sequence = request.sequence
                if sequence is None:
                    continue
                finished = sequence.finished  # before take_text: then its text is complete
                piece = sequence.take_text()
                self._count_tokens(len(sequence.output_ids))
                if sequence.error is not None:
                    raise _as_api_error(sequence.error)
                entries = self._new_logprobs(sequence.logprobs)
                if piece or entries:
                    yield _Piece(piece, entries)
                if finished:
                    self.finish_reason = sequence.finish_reason or "length"
                    self._cached_tokens = sequence.cached_tokens
                    self.metrics.prompt_tokens.inc(len(self.parsed.prompt_ids))
                    self.metrics.cached_prompt_tokens.inc(self._cached_tokens)
                    self.metrics.generation_tokens.inc(self._tokens)
                    return
        finally:
            self.cancel()

    def _new_logprobs(self, logprobs: list[TokenLogprob] | None) -> list[TokenLogprob]:
        # The loop thread appends while this reads: a slice is one consistent snapshot.
        new = logprobs[self._logprobs_sent :] if logprobs is not None else []
        self._logprobs_sent += len(new)
        return new

    def _count_tokens(self, total: int) -> None:
        new = total - self._tokens
        if new <= 0:
            return
        now = time.perf_counter()
        if self._tokens == 0:
            self.metrics.time_to_first_token.observe(now - self._arrived)
        else:
            # Tokens that arrived together share the time since the last one.
            for _ in range(new):
                self.metrics.inter_token_latency.observe((now - self._last_token) / new)
        self._tokens, self._last_token = total, now

    def usage(self) -> dict[str, object]:
        return usage(len(self.parsed.prompt_ids), self._tokens, self._cached_tokens)


class _Shape:
    """How one endpoint writes its replies. logprobs: the entries of the reply or chunk when the
    request asked for them, else None."""

    def __init__(self, model: str, token_text: Callable[[int], str]) -> None:
        self.model = model
        self.token_text = token_text
        self.id = new_id(self.prefix)

    prefix = ""

    def response(
        self, text: str, finish_reason: str, usage: dict, logprobs: list[TokenLogprob] | None
    ) -> dict:
        raise NotImplementedError

    def first(self) -> dict | None:
        return None

    def chunk(
        self, text: str, finish_reason: str | None, logprobs: list[TokenLogprob] | None = None
    ) -> dict:
        raise NotImplementedError


class _CompletionShape(_Shape):
    prefix = "cmpl"

    def __init__(self, model: str, token_text: Callable[[int], str]) -> None:
        super().__init__(model, token_text)
        self._offset = 0  # characters of token text the chunks so far covered

    def response(
        self, text: str, finish_reason: str, usage: dict, logprobs: list[TokenLogprob] | None
    ) -> dict:
        lp = None if logprobs is None else completion_logprobs(logprobs, self.token_text, 0)
        return completion_response(self.id, self.model, text, finish_reason, usage, lp)

    def chunk(
        self, text: str, finish_reason: str | None, logprobs: list[TokenLogprob] | None = None
    ) -> dict:
        lp = None
        if logprobs is not None:
            lp = completion_logprobs(logprobs, self.token_text, self._offset)
            self._offset += sum(len(t) for t in lp["tokens"])
        return completion_chunk(self.id, self.model, text, finish_reason, lp)


class _ChatShape(_Shape):
    prefix = "chatcmpl"

    def response(
        self, text: str, finish_reason: str, usage: dict, logprobs: list[TokenLogprob] | None
    ) -> dict:
        lp = None if logprobs is None else chat_logprobs(logprobs, self.token_text)
        return chat_response(self.id, self.model, text, finish_reason, usage, lp)

    def first(self) -> dict | None:
        return chat_chunk(self.id, self.model, {"role": "assistant", "content": ""}, None)

    def chunk(
        self, text: str, finish_reason: str | None, logprobs: list[TokenLogprob] | None = None
    ) -> dict:
        delta = {"content": text} if finish_reason is None else {}
        lp = None if logprobs is None else chat_logprobs(logprobs, self.token_text)
        return chat_chunk(self.id, self.model, delta, finish_reason, lp)


async def _events(run: _Run, shape: _Shape, include_usage: bool) -> AsyncIterator[dict]:
    """The SSE events of a streamed reply; sse-starlette cancels this generator when the
    client disconnects, and pieces() then cancels the request."""

    def event(body: dict) -> dict:
        if include_usage:
            body["usage"] = None
        return {"data": json.dumps(body)}

    first = shape.first()
    if first is not None:
        yield event(first)
    try:
        async for piece in run.pieces():
            entries = piece.logprobs if run.wants_logprobs else None
            yield event(shape.chunk(piece.text, None, entries))
    except ApiError as e:
        # The status line is gone: the error travels as an event, as OpenAI's does.
        yield {"data": json.dumps(e.body())}
        yield {"data": "[DONE]"}
        return
    yield event(shape.chunk("", run.finish_reason))
    if include_usage:
        last = {**shape.chunk("", None), "choices": [], "usage": run.usage()}
        yield {"data": json.dumps(last)}
    yield {"data": "[DONE]"}


async def _cancel_on_disconnect(request: Any, run: _Run) -> None:
    # The body has been read: the next message the server sends is the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass
    run.cancel()


async def _json_body(request: Any, options: ServerOptions) -> object:
    limit = options.max_body_bytes
    too_large = ApiError(
        413, f"the request body is larger than {limit} bytes", code="request_too_large"
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise too_large
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ApiError(400, f"the request body is not valid JSON: {e}") from None


def _shutting_down() -> ApiError:
    return ApiError(503, "the server is shutting down", type="unavailable", code="shutting_down")


def _as_api_error(error: BaseException) -> ApiError:
    if isinstance(error, RequestError):
        return ApiError(400, str(error))
    if isinstance(error, ShuttingDownError):
        return _shutting_down()
    if isinstance(error, CancelledRequestError):
        # Only a client that went away cancels, and nobody reads this reply: /metrics counts
        # it as nginx's 499 (client closed request), not as the server's failure.
        return ApiError(499, "the client closed the request", code="client_closed_request")
    return ApiError(500, f"the request failed: {error}", type="internal_error")


def serve(llm: LLM, options: ServerOptions, on_ready: Callable[[str], None] | None = None) -> None:
    """Serves until SIGTERM or SIGINT, then shuts down gracefully (module docstring).
    on_ready(url) is called once the port is bound (port 0 binds a free one)."""
    import socket

    import uvicorn

    loop = EngineLoop(llm.llm_engine, max_waiting=options.max_waiting)
    app = create_app(llm, loop, options, options.model_name)
    # Streams are ours to end (the loop's shutdown), not sse-starlette's at the first signal.
    AppStatus.disable_automatic_graceful_drain()

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:
            loop.shutdown(options.shutdown_timeout)
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        log_level="warning",
        # The loop cancels what is left at shutdown_timeout and the streams end with an error
        # event; uvicorn closes whatever connection is still open a little later.
        timeout_graceful_shutdown=math.ceil(options.shutdown_timeout) + 5,
        lifespan="on",
    )
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((options.host, options.port))
        listener.listen(2048)
    except OSError as e:
        listener.close()
        raise OSError(e.errno, f"{options.host}:{options.port}: {e.strerror}") from None
    # uvicorn raises the signal it caught again once it has stopped; these handlers take it,
    # so a shut-down server returns instead of dying of it.
    previous = {s: signal.signal(s, lambda *_: None) for s in (signal.SIGTERM, signal.SIGINT)}
    loop.start()
    try:
        host, port = listener.getsockname()[:2]
        if on_ready is not None:
            on_ready(f"http://{f'[{host}]' if family == socket.AF_INET6 else host}:{port}")
        Server(config).run(sockets=[listener])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        loop.shutdown(0)
        loop.join()
        listener.close()
