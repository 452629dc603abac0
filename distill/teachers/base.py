"""The teacher protocol: every backend is one class with one required method.

`complete(messages, **params) -> Completion`. Messages are OpenAI chat format
(`[{"role": "system" | "user" | "assistant", "content": str}]`). Params every
backend understands: `max_tokens`, `temperature` (0 = greedy), `top_p`, `seed`,
`stop` (list of strings; the reply is cut before the first). A backend that can
enforce a JSON schema sets `supports_schema = True`; otherwise `schema` is used
only to parse the reply (and a judge starts the JSON reply for it:
`needs_json_prefill`).
`complete_many` answers a batch; backends that can batch
(a local model) or run concurrently (the API teachers, through
distill.teachers.engine) override it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # prices.py imports this module's Message and Usage
    from distill.teachers.prices import Budget, Price

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
    # "stop" (ended or hit a stop string) | "length" (token cap) | "loop" (cut where the
    # reply began to repeat itself verbatim: llama.cpp's `stop_loops`)
    finish_reason: str = "stop"
    error: Any = None  # a TeacherError when this request failed; failures are never cached
    attempts: int = 1  # HTTP requests it took (retries and a schema repair included)
    cached: bool = False  # served from the request cache (paid for in an earlier run)
    # Its latency is what a lone request waits: False where the engine reused another
    # prompt's start (llama.cpp's KV cache), so latency figures leave it out.
    timed: bool = True
    raw: Any = None


def cut_at_stop(text: str, stop: list[str] | None) -> str:
    """Cut `text` before the earliest stop string."""
    if not stop:
        return text
    ends = [i for s in stop if s and (i := text.find(s)) >= 0]
    return text[: min(ends)] if ends else text


def parse_json(text: str) -> Any:
    """Parse the first JSON object in `text`, or return None. A raw line break inside a
    string is accepted (strict=False): llama.cpp's grammar lets a judge write one into
    its "reason", and that says nothing about the verdict."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        obj, _ = json.JSONDecoder(strict=False).raw_decode(text[start:])
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

    # Capabilities: callers read these, never the spec. A wrapper (WrappedTeacher)
    # reports its inner teacher's.
    supports_schema: bool = False
    # True when complete_many should get a whole step at once (the API teachers keep
    # their own concurrency); False: callers send batches of a few prompts (local).
    sends_all_at_once: bool = False
    # Runs on this machine at no API cost: eval asks it again instead of caching (its
    # latency is measured), and its cost column is compute time.
    runs_locally: bool = False
    # Its replies are scripted (the fake teacher): whatever it judges is a smoke test.
    scripted: bool = False
    # Where the price of its tokens came from (set by the factory).
    price_source: str = "runs on this machine: no API cost"
    # The price of its tokens (set by the factory); None: unknown or free.
    price: Price | None = None
    # The spending cap of an API teacher; None: nothing to pay.
    budget: Budget | None = None
    # Backend settings from the recipe's `teacher.options`, validated strictly.
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, spec: str, model: str, options: Any = None) -> None:
        self.spec = spec  # "provider:model", as the recipe wrote it
        self.model = model
        self.options = options

    @property
    def needs_json_prefill(self) -> bool:
        """A judge starts the JSON reply for a backend that cannot enforce the schema
        (small local models otherwise echo the prompt)."""
        return not self.supports_schema

    @property
    def spent_usd(self) -> float:
        """What this teacher has paid in this process (replies from a cache are free)."""
        return float(self.budget.spent) if self.budget is not None else 0.0

    def stats(self) -> dict[str, Any]:
        """Counts of its own for the manifest (e.g. provider batches submitted)."""
        return {}

    def watch(self, on_status: Callable[[str, str, int, int], None]) -> None:
        """Hear of long waits: (batch id, provider state, done, total). Most never wait."""

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


class WrappedTeacher(BatchFirstTeacher):
    """A teacher in front of another (a cache, a provider batch). It reports the inner
    teacher's capabilities, spend and counts, so no caller reaches through it."""

    def __init__(self, inner: Teacher) -> None:
        super().__init__(inner.spec, inner.model, inner.options)
        self.inner = inner
        self.supports_schema = inner.supports_schema
        self.sends_all_at_once = inner.sends_all_at_once
        self.runs_locally = inner.runs_locally
        self.scripted = inner.scripted
        self.price_source = inner.price_source
        self.price = inner.price
        self.budget = inner.budget

    @property
    def needs_json_prefill(self) -> bool:
        return self.inner.needs_json_prefill

    @property
    def spent_usd(self) -> float:
        return self.inner.spent_usd

    def stats(self) -> dict[str, Any]:
        return self.inner.stats()

    def watch(self, on_status: Callable[[str, str, int, int], None]) -> None:
        self.inner.watch(on_status)
