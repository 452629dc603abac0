"""The HTTP side of `distill serve`: OpenAI's `POST /v1/chat/completions` (whole, or
streamed as server-sent events ending with `data: [DONE]`) and `GET /v1/models`, on
Starlette and uvicorn (the `serve` extra).

A request's body is refused unread when its Content-Length is over MAX_BODY (413), then
checked (distill.serve.wire.parse: 4xx with OpenAI's error object, one line). Its
question is retrieved and its prompt counted in a worker thread, so requests retrieve in
parallel; a prompt and token cap over the student's context is a 400
(context_length_exceeded). Then the student answers: through a model loaded here, one
request at a time in arrival order (distill.serve.students). A streamed reply whose
client goes away stops being decoded at its next token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from distill.errors import MissingExtraError, UserError
from distill.serve import wire
from distill.serve.assistant import Assistant, Grounded
from distill.serve.students import Reply, RequestError

# The largest request body read: a question and its settings are a few kilobytes.
MAX_BODY = 1 << 20
INSTALL = "'distill[serve]' (starlette and uvicorn)"


def require() -> None:
    """A one-line error naming the install when starlette or uvicorn is missing."""
    import importlib.util

    if not all(importlib.util.find_spec(m) for m in ("starlette", "uvicorn")):
        raise MissingExtraError("starlette and uvicorn (for distill serve)", INSTALL)


def _error(e: RequestError) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(wire.error_body(e), status_code=e.status)


async def _read_json(request: Any) -> Any:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        raise RequestError(
            413,
            f"the request body is {length} bytes; this server reads at most {MAX_BODY:,}",
            code="request_too_large",
        )
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > MAX_BODY:
            raise RequestError(
                413, f"the request body is over {MAX_BODY:,} bytes", "request_too_large"
            )
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RequestError(400, f"the request body is not JSON: {e}") from e


def _grounded(assistant: Assistant, req: wire.ChatRequest) -> Grounded:
    """Retrieval and the prompt; a 400 when the prompt and the token cap do not fit."""
    grounded = assistant.ground(req.question)
    student = assistant.student
    n = student.prompt_tokens(grounded.messages)
    cap = req.params["max_tokens"]
    if n is not None and student.n_ctx is not None and n + cap > student.n_ctx:
        raise RequestError(
            400,
            f"this request needs {n} prompt tokens (the question and {len(grounded.sources)} "
            f"retrieved chunks) plus max_tokens {cap}, over the student's context of "
            f"{student.n_ctx} tokens; shorten the question or lower max_tokens",
            code="context_length_exceeded",
            param="messages",
        )
    return grounded


def _failure(e: BaseException) -> RequestError:
    if isinstance(e, RequestError):
        return e
    return RequestError(500, f"the student failed: {type(e).__name__}: {e}", kind="server_error")


async def _events(
    assistant: Assistant, req: wire.ChatRequest, grounded: Grounded
) -> AsyncIterator[bytes]:
    """The reply as server-sent events: the role, each piece, the finish (with the
    citations), the usage when asked, `[DONE]`."""
    name = assistant.name
    pieces: asyncio.Queue[str | None] = asyncio.Queue()
    cancelled = threading.Event()
    task = asyncio.ensure_future(
        assistant.student.generate(grounded.messages, req.params, pieces.put_nowait, cancelled)
    )
    # After every piece: the worker's pieces and its result reach the loop in order.
    task.add_done_callback(lambda t: pieces.put_nowait(None))
    try:
        yield wire.event(wire.chunk(req, name, {"role": "assistant", "content": ""}))
        while (piece := await pieces.get()) is not None:
            yield wire.event(wire.chunk(req, name, {"content": piece}))
        try:
            reply: Reply = task.result()
        except Exception as e:  # sent to the client as an error event
            yield wire.event(wire.error_body(_failure(e)))
            return
        extra = grounded.extra(reply.text)
        yield wire.event(wire.chunk(req, name, {}, wire.finish_reason(reply), distill=extra))
        if req.include_usage:
            yield wire.event(wire.chunk(req, name, None, usage=wire.usage(reply)))
        yield wire.event("[DONE]")
    finally:
        cancelled.set()  # the client went away, or the reply is done
        task.add_done_callback(lambda t: t.cancelled() or t.exception())


def create_app(assistant: Assistant) -> Any:
    """The Starlette app answering as `assistant.name`."""
    require()
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    started = int(time.time())

    async def models(request: Request) -> Response:
        model = {"id": assistant.name, "object": "model", "created": started, "owned_by": "distill"}
        return JSONResponse({"object": "list", "data": [model]})

    async def chat(request: Request) -> Response:
        try:
            req = wire.parse(await _read_json(request), assistant.name, assistant.defaults)
            grounded = await asyncio.to_thread(_grounded, assistant, req)
        except RequestError as e:
            return _error(e)
        if req.stream:
            return StreamingResponse(
                _events(assistant, req, grounded),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        try:
            reply = await assistant.student.generate(
                grounded.messages, req.params, lambda piece: None, threading.Event()
            )
        except Exception as e:  # the client gets OpenAI's error object
            return _error(_failure(e))
        body = wire.completion(req, assistant.name, reply, grounded.extra(reply.text))
        return JSONResponse(body)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        what = f"{request.method} {request.url.path}"
        code = "not_found" if exc.status_code == 404 else "method_not_allowed"
        return _error(RequestError(exc.status_code, f"{what}: {exc.detail}", code))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await assistant.student.aclose()

    return Starlette(
        lifespan=lifespan,
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
        ],
        exception_handlers={HTTPException: http_error},
    )


def check_port(host: str, port: int) -> None:
    """A one-line error when `host:port` cannot be listened on."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise UserError(
                f"cannot listen on {host}:{port} ({e.strerror}); choose another with --port"
            ) from e


def _server(app: Any, host: str, port: int) -> Any:
    import uvicorn

    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=5
    )
    return uvicorn.Server(config)


def serve(app: Any, host: str, port: int) -> None:
    """Serve until interrupted."""
    check_port(host, port)
    _server(app, host, port).run()


@contextlib.contextmanager
def running(app: Any, host: str, port: int) -> Iterator[str]:
    """The app served from a thread of this process (tests, the load test); yields its
    /v1 URL once it listens, and stops it after."""
    check_port(host, port)
    server = _server(app, host, port)
    thread = threading.Thread(target=server.run, name="distill-serve", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise UserError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
