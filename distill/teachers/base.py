"""The teacher protocol: every backend is one class with one required method.

`complete(messages, **params) -> Completion`. Messages are OpenAI chat format
(`[{"role": "system" | "user" | "assistant", "content": str}]`). Params every
backend understands: `max_tokens`, `temperature` (0 = greedy), `top_p`, `seed`,
`stop` (list of strings; the reply is cut before the first). A backend that can
enforce a JSON schema sets `supports_schema = True`; otherwise `schema` is used
only to parse the reply. `complete_many` answers a batch; backends that can batch
(a local model) or run concurrently (the API teachers, through
distill.teachers.engine) override it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

Message = dict[str, str]


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0  # part of input_tokens the provider served from its cache


@dataclass
class Completion:
    text: str
    parsed: Any = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    latency_s: float = 0.0
    finish_reason: str = "stop"  # "stop" (ended or hit a stop string) | "length" (token cap)
    error: Any = None  # a TeacherError when this request failed; failures are never cached
    attempts: int = 1  # HTTP requests it took (retries and a schema repair included)
    cached: bool = False  # served from the request cache (paid for in an earlier run)
    raw: Any = None


def cut_at_stop(text: str, stop: list[str] | None) -> str:
    """Cut `text` before the earliest stop string."""
    if not stop:
        return text
    ends = [i for s in stop if s and (i := text.find(s)) >= 0]
    return text[: min(ends)] if ends else text


def parse_json(text: str) -> Any:
    """Parse the first JSON object in `text`, or return None."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError:
        return None
    return obj


def api_key(spec: str, env: str) -> str:
    """The API key from environment variable `env`, or a one-line error naming it."""
    import os

    from distill.errors import UserError

    key = os.environ.get(env)
    if not key:
        raise UserError(
            f"teacher {spec} needs an API key in ${env}; set it "
            "(any non-empty value for a local server that checks none)"
        )
    return key


class Teacher:
    """Base class of teacher backends. Subclasses implement `complete`."""

    supports_schema: ClassVar[bool] = False
    supports_batching: ClassVar[bool] = False
    # True when complete_many should get a whole step at once (the API teachers keep
    # their own concurrency); False: callers send batches of a few prompts (local).
    sends_all_at_once: ClassVar[bool] = False
    # Backend settings from the recipe's `teacher_options`, validated strictly.
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, spec: str, model: str, options: Any = None) -> None:
        self.spec = spec  # "provider:model", as the recipe wrote it
        self.model = model
        self.options = options

    def complete(
        self, messages: list[Message], *, schema: dict[str, Any] | None = None, **params: Any
    ) -> Completion:
        raise NotImplementedError

    def complete_many(
        self,
        batch: list[list[Message]],
        *,
        schema: dict[str, Any] | None = None,
        on_done: Callable[[int, Completion], None] | None = None,
        **params: Any,
    ) -> list[Completion]:
        """Answer every chat of `batch`, in order; `on_done(i, completion)` is called as
        each one finishes (the cache commits there). A failed request ends as a
        Completion with `error` set, not as an exception."""
        from distill.errors import TeacherError

        out = []
        for i, messages in enumerate(batch):
            t0 = time.perf_counter()
            try:
                c = self.complete(messages, schema=schema, **params)
            except TeacherError as e:
                c = Completion(text="", error=e)
            c.latency_s = c.latency_s or time.perf_counter() - t0
            out.append(c)
            if on_done is not None:
                on_done(i, c)
        return out


class BatchFirstTeacher(Teacher):
    """A teacher whose natural unit is a batch: `complete` is a batch of one, and a
    failed request raises its TeacherError."""

    def complete(
        self, messages: list[Message], *, schema: dict[str, Any] | None = None, **params: Any
    ) -> Completion:
        c = self.complete_many([messages], schema=schema, **params)[0]
        if c.error is not None:
            raise c.error
        return c
