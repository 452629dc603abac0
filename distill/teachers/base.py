"""The teacher protocol: every backend is one class with one required method.

`complete(messages, **params) -> Completion`. Messages are OpenAI chat format
(`[{"role": "system" | "user" | "assistant", "content": str}]`). Params every
backend understands: `max_tokens`, `temperature` (0 = greedy), `top_p`, `seed`,
`stop` (list of strings; the reply is cut before the first). A backend that can
enforce a JSON schema sets `supports_schema = True`; otherwise `schema` is used
only to parse the reply. `complete_many` answers a batch; backends that can batch
(a local model) or run concurrently override it.
"""

from __future__ import annotations

import json
import time
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


@dataclass
class Completion:
    text: str
    parsed: Any = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    latency_s: float = 0.0
    finish_reason: str = "stop"  # "stop" (ended or hit a stop string) | "length" (token cap)
    error: Any = None  # a TeacherError when this request failed; failures are never cached
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


def call_sdk(spec: str, sdk: Any, timeout_s: float, fn: Any, **body: Any) -> Any:
    """Call an OpenAI/Anthropic SDK method, turning its errors into TeacherError.

    Both SDKs share the error classes used here (APIStatusError, APITimeoutError,
    APIConnectionError); the message never includes the request's headers or key.
    """
    from distill.errors import TeacherError

    try:
        return fn(**body)
    except sdk.APIStatusError as e:
        raise TeacherError(
            f"{spec}: HTTP {e.status_code}", status=e.status_code, body=str(e.body)[:2000]
        ) from e
    except sdk.APITimeoutError as e:
        raise TeacherError(f"{spec}: timed out after {timeout_s} s") from e
    except sdk.APIConnectionError as e:
        raise TeacherError(f"{spec}: cannot connect ({e.__cause__ or e})") from e


def complete_concurrently(
    teacher: Teacher, batch: list[list[Message]], workers: int, **kwargs: Any
) -> list[Completion]:
    """Run `teacher.complete` over a batch on threads; a failed request keeps its error."""
    from concurrent.futures import ThreadPoolExecutor

    from distill.errors import TeacherError

    def one(messages: list[Message]) -> Completion:
        try:
            return teacher.complete(messages, **kwargs)
        except TeacherError as e:
            return Completion(text="", error=e)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(batch)))) as pool:
        return list(pool.map(one, batch))


class Teacher:
    """Base class of teacher backends. Subclasses implement `complete`."""

    supports_schema: ClassVar[bool] = False
    supports_batching: ClassVar[bool] = False
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
        **params: Any,
    ) -> list[Completion]:
        out = []
        for messages in batch:
            t0 = time.perf_counter()
            c = self.complete(messages, schema=schema, **params)
            c.latency_s = c.latency_s or time.perf_counter() - t0
            out.append(c)
        return out
