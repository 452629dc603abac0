"""OpenAI's chat-completions wire format, as `distill serve` reads and writes it: the
request (its last user message is the question; the sampling settings it may change),
the reply, the streamed chunks, and the error object. The reply and the last chunk carry
one field of distill's own, `distill` (the citations and the retrieved chunks), which
the OpenAI SDK keeps as an extra attribute and otherwise ignores."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from distill.serve.students import Reply, RequestError

# At most this many stop strings of the request's own (OpenAI's limit).
MAX_STOP = 4


@dataclass
class ChatRequest:
    question: str
    params: dict[str, Any]  # max_tokens, temperature, top_p, seed, stop
    stream: bool = False
    include_usage: bool = False
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex[:24]}")
    created: int = field(default_factory=lambda: int(time.time()))


def _text(content: Any) -> str | None:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if all(isinstance(p, str) for p in parts):
            return "\n".join(parts)  # type: ignore[arg-type]
    return None


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise RequestError(400, f"{name} must be a number from {low} to {high}", param=name)
    return float(value)


def parse(body: Any, model: str, defaults: dict[str, Any]) -> ChatRequest:
    """The request in `body` (parsed JSON), checked; RequestError (4xx) says what is
    wrong. `defaults`: the sampling settings eval answers with."""
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    asked = body.get("model")
    if asked != model:
        raise RequestError(
            404,
            f"the model {asked!r} does not exist here; this server answers as {model!r}",
            code="model_not_found",
            param="model",
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "messages must be a non-empty list", param="messages")
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise RequestError(400, "messages hold no user message to answer", param="messages")
    question = _text(users[-1].get("content"))
    if question is None:
        raise RequestError(
            400, "the last user message's content must be text", param="messages.content"
        )
    if not question.strip():
        raise RequestError(400, "the last user message is empty", param="messages.content")
    if body.get("n", 1) != 1:
        raise RequestError(400, "n must be 1: this server answers once per request", param="n")
    params = dict(defaults)
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise RequestError(
                400, "max_tokens must be a whole number of at least 1", param="max_tokens"
            )
        params["max_tokens"] = max_tokens
    for name, low, high in (("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0)):
        if (value := _number(body, name, low, high)) is not None:
            params[name] = value
    seed = body.get("seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise RequestError(400, "seed must be a whole number", param="seed")
        params["seed"] = seed
    stop = body.get("stop")
    stop = [stop] if isinstance(stop, str) else stop
    if stop is not None:
        if not (isinstance(stop, list) and len(stop) <= MAX_STOP):
            raise RequestError(400, f"stop must be a string or up to {MAX_STOP}", param="stop")
        if not all(isinstance(s, str) and s for s in stop):
            raise RequestError(400, "stop strings must be non-empty strings", param="stop")
        params["stop"] = [*defaults.get("stop", []), *stop]
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise RequestError(400, "stream_options must be an object", param="stream_options")
    return ChatRequest(
        question=question.strip(),
        params=params,
        stream=bool(body.get("stream")),
        include_usage=bool(options.get("include_usage")),
    )


def usage(reply: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def finish_reason(reply: Reply) -> str:
    """OpenAI's finish reason: a reply cut where it began to repeat itself ended."""
    return "length" if reply.finish == "length" else "stop"


def completion(req: ChatRequest, model: str, reply: Reply, extra: dict[str, Any]) -> dict[str, Any]:
    """The whole reply, as `chat.completion`."""
    return {
        "id": req.id,
        "object": "chat.completion",
        "created": req.created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(reply),
            }
        ],
        "usage": usage(reply),
        "distill": extra,
    }


def chunk(
    req: ChatRequest,
    model: str,
    delta: dict[str, Any] | None,
    finish: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """One `chat.completion.chunk`: a delta, or (delta None) the usage chunk with no
    choices that `stream_options.include_usage` asks for last."""
    choices = (
        []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    )
    return {
        "id": req.id,
        "object": "chat.completion.chunk",
        "created": req.created,
        "model": model,
        "choices": choices,
        **fields,
    }


def event(payload: dict[str, Any] | str) -> bytes:
    """One server-sent event: `data: <json>` and a blank line (`data: [DONE]` last)."""
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def error_body(e: RequestError) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": e.message, "type": e.kind, "param": e.param, "code": e.code}}
