"""The request engine behind the API teachers (`openai:`, `anthropic:`).

Over 400 lines and kept whole: the API teacher base and the engine that sends its
requests are one subject, each read with the other.

One asyncio loop per `complete_many` sends the whole batch:
- at most `concurrency` requests in flight, and `rpm` / `tpm` token buckets (a
  request counts its estimated prompt tokens plus `max_tokens`, corrected to the
  provider's usage when the reply arrives);
- retries with exponential backoff and jitter on 429, 408, 409, 5xx, timeouts and
  lost connections, honouring Retry-After; a 429 pauses every worker until the
  provider's wait is over (one shared cool-down, not 64 independent retries);
- a `Budget`: a request reserves its worst-case cost before it is sent and is not
  sent when that could pass `max_cost_usd`; it ends with reason "budget";
- structured replies are parsed and validated against the schema; an invalid one
  gets one repair request, then ends as a failure with the reason;
- each completion goes to `on_done` the moment it arrives, so the request cache
  commits it at once and a kill loses only the requests in flight.
Every request ends as a Completion: a reply, or `error` set (a TeacherError).
"""

from __future__ import annotations

import asyncio
import importlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

from pydantic import Field

from distill.config import StrictModel
from distill.errors import MissingExtraError, TeacherError
from distill.teachers.base import BatchFirstTeacher, Completion, Message, api_key
from distill.teachers.prices import Budget, Price, estimate_tokens

OnDone = Callable[[int, Completion], None]
RETRYABLE_STATUS = {408, 409, 425, 429}
MAX_BACKOFF_S = 60.0
MAX_RETRY_AFTER_S = 600.0


class EngineOptions(StrictModel):
    """Settings every API teacher shares (in the recipe's `teacher.options`)."""

    base_url: str | None = Field(None, description="Server URL; default the provider's.")
    concurrency: int = Field(16, ge=1, le=1024, description="Requests in flight at once.")
    rpm: int | None = Field(None, ge=1, description="Requests per minute allowed; null: no cap.")
    tpm: int | None = Field(
        None, ge=1, description="Tokens (prompt + max_tokens) per minute allowed; null: no cap."
    )
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(
        6, ge=0, description="Retries on 429, 408, 409, 5xx, timeouts and lost connections."
    )
    backoff_s: float = Field(
        1.0, ge=0, description="First retry delay; it doubles each retry (with jitter), max 60 s."
    )
    ramp_s: float = Field(
        0.5,
        ge=0,
        description="Spread the first requests of a batch over this many seconds (no burst "
        "of `concurrency` connections at once; later requests are not delayed).",
    )


def retry_after(headers: Any) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    if headers is None:
        return None
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(0.0, float(ms) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def sdk_error(spec: str, sdk: Any, e: Exception, timeout_s: float) -> TeacherError:
    """An OpenAI/Anthropic SDK exception as a TeacherError (never with headers or key).

    Both SDKs share these error classes (APIStatusError, APITimeoutError,
    APIConnectionError).
    """
    if isinstance(e, sdk.APIStatusError):
        status = e.status_code
        return TeacherError(
            f"{spec}: HTTP {status}",
            status=status,
            body=str(e.body)[:2000],
            retryable=status in RETRYABLE_STATUS or status >= 500,
            retry_after=retry_after(e.response.headers),
        )
    if isinstance(e, sdk.APITimeoutError):
        return TeacherError(f"{spec}: timed out after {timeout_s} s", retryable=True)
    if isinstance(e, sdk.APIConnectionError):
        return TeacherError(f"{spec}: cannot connect ({e.__cause__ or e})", retryable=True)
    raise e


def aiohttp_client(sdk: Any) -> Any:
    """The SDK's aiohttp transport when aiohttp is installed (about half the CPU time
    of its default httpx transport per request), else None: the SDK's default."""
    factory = getattr(sdk, "DefaultAioHttpClient", None)  # in SDKs from mid 2025
    if factory is None:
        return None
    try:
        return factory()
    except RuntimeError:  # the SDK's aiohttp extra (aiohttp) is not installed
        return None


def reply_json(spec: str, raw: bytes) -> dict[str, Any]:
    """A reply body as JSON; a malformed one is a retryable TeacherError."""
    import json

    try:
        data = json.loads(raw)
    except (ValueError, TypeError) as e:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        raise TeacherError(
            f"{spec}: malformed reply (not JSON)", body=text[:2000], retryable=True
        ) from e
    if not isinstance(data, dict):
        raise TeacherError(f"{spec}: malformed reply (not an object)", body=str(raw)[:2000])
    return data


def schema_problem(parsed: Any, schema: dict[str, Any]) -> str | None:
    """Why `parsed` does not satisfy `schema`, or None when it does."""
    import jsonschema

    if parsed is None:
        return "the reply is not a JSON object"
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(parsed))
    if error is None:
        return None
    where = "/".join(map(str, error.absolute_path)) or "the object"
    return f"{where}: {error.message}"[:300]


def repair_messages(messages: list[Message], reply: str, problem: str) -> list[Message]:
    """The follow-up that asks the teacher to fix an invalid structured reply."""
    return [
        *messages,
        {"role": "assistant", "content": reply},
        {
            "role": "user",
            "content": f"That reply is not valid ({problem}). Reply again with only a JSON "
            "object that matches the schema.",
        },
    ]


class TokenBucket:
    """`per_minute` units a minute, in bursts of up to one second's worth (at least one
    request's); `take` may run the level negative, which later takers wait out."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_s(self, amount: float) -> float:
        """Seconds until `amount` may be taken (0 now); a request larger than the burst
        goes once the bucket is full."""
        self._refill()
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= amount

    def give(self, amount: float) -> None:
        self.level = min(self.capacity, self.level + amount)


@dataclass
class BatchStatus:
    """Where a provider batch is: `ended` once results can be fetched."""

    ended: bool
    state: str  # the provider's word for it
    done: int
    total: int


@dataclass
class BatchItem:
    """One request of a provider batch: its custom id and request body."""

    custom_id: str
    body: dict[str, Any]


class ApiTeacher(BatchFirstTeacher):
    """Base of teachers behind an HTTP API. A subclass opens its SDK's async client
    (`open_client`) and sends one request (`send`); the engine does the rest."""

    supports_schema = True
    sends_all_at_once = True
    Options: ClassVar[type[StrictModel]] = EngineOptions
    provider: ClassVar[str] = ""

    sdk_name: ClassVar[str] = ""  # the official SDK's module: openai, anthropic
    client_class: ClassVar[str] = ""  # its async client: AsyncOpenAI, AsyncAnthropic
    error_class: ClassVar[str] = ""  # its base error: OpenAIError, AnthropicError
    chat_path: ClassVar[str] = ""  # the chat endpoint, relative to the client's base URL

    def __init__(self, spec: str, model: str, options: Any = None) -> None:
        super().__init__(spec, model, options or self.Options())
        self.options: EngineOptions
        self.price: Price | None = None  # set from the table or the recipe
        self.budget: Budget = Budget(None)
        self.requests_sent = 0  # HTTP requests, retries and repairs included
        try:
            self.sdk = importlib.import_module(self.sdk_name)
        except ImportError as e:
            what = f"the {self.sdk_name} SDK (teacher {self.provider}:)"
            raise MissingExtraError(what, self.sdk_name) from e
        self._key = api_key(spec, getattr(self.options, "api_key_env", ""))

    def open_client(self) -> Any:
        """The SDK's async client, an async context manager (created in the running loop).

        Retries are the engine's (shared cool-down, budget), so the SDK makes none."""
        return getattr(self.sdk, self.client_class)(
            api_key=self._key,
            base_url=self.options.base_url,
            timeout=self.options.timeout_s,
            max_retries=0,
            http_client=aiohttp_client(self.sdk),
        )

    def request_body(
        self, messages: list[Message], schema: dict[str, Any] | None, params: dict[str, Any]
    ) -> dict[str, Any]:
        """The provider's request body for one chat."""
        raise NotImplementedError

    async def sdk_call(self, call: Any) -> Any:
        """Await an SDK call, turning the SDK's errors into TeacherError."""
        try:
            return await call
        except getattr(self.sdk, self.error_class) as e:
            raise sdk_error(self.spec, self.sdk, e, self.options.timeout_s) from e

    async def send(
        self, client: Any, messages: list[Message], schema: dict[str, Any] | None, params: Any
    ) -> Completion:
        """One request; raises TeacherError (with `retryable` / `retry_after`) on failure.

        It takes the SDK's raw path (auth, base URL, headers, errors, HTTP) without its
        typed request and reply models, which cost ~1 ms of CPU a request; the reply is
        the provider's documented JSON, read by `completion`."""
        body = self.request_body(messages, schema, params)
        raw = await self.sdk_call(client.post(self.chat_path, body=body, cast_to=bytes))
        return self.completion(reply_json(self.spec, raw), schema, params)

    def completion(
        self, resp: dict[str, Any], schema: dict[str, Any] | None, params: dict[str, Any]
    ) -> Completion:
        """A reply (the provider's JSON) as a Completion; raises TeacherError."""
        raise NotImplementedError

    # Batch APIs (generate.mode: batch); SDK errors are raised as TeacherError.
    async def batch_submit(self, client: Any, items: list[BatchItem]) -> str:
        raise NotImplementedError(f"{self.spec}: no batch API")

    async def batch_status(self, client: Any, batch_id: str) -> BatchStatus:
        raise NotImplementedError

    async def batch_results(
        self, client: Any, batch_id: str, schema: dict[str, Any] | None, params: dict[str, Any]
    ) -> dict[str, Completion]:
        """custom id -> Completion (a failed item has `error` set, retryable if transient)."""
        raise NotImplementedError

    def complete_many(
        self,
        batch: list[list[Message]],
        *,
        schema: dict[str, Any] | None = None,
        on_done: OnDone | None = None,
        **params: Any,
    ) -> list[Completion]:
        if not batch:
            return []
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(Engine(self).run(batch, schema, params, on_done))


def loop_factory() -> Any:
    """uvloop's event loop where installed (less CPU per request), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


class Engine:
    """Runs one batch of requests for an ApiTeacher (see the module docstring)."""

    def __init__(self, teacher: ApiTeacher) -> None:
        self.t = teacher
        opts = teacher.options
        self.rpm = TokenBucket(opts.rpm) if opts.rpm else None
        self.tpm = TokenBucket(opts.tpm) if opts.tpm else None
        self.pause_until = 0.0  # shared cool-down after a 429 (monotonic seconds)

    async def run(
        self,
        batch: list[list[Message]],
        schema: dict[str, Any] | None,
        params: dict[str, Any],
        on_done: OnDone | None,
    ) -> list[Completion]:
        results: list[Completion | None] = [None] * len(batch)
        queue = list(range(len(batch) - 1, -1, -1))  # popped from the end: in order

        async with self.t.open_client() as client:
            n = min(self.t.options.concurrency, len(batch))
            spacing = self.t.options.ramp_s / self.t.options.concurrency

            async def worker(k: int) -> None:
                if k and spacing:
                    await asyncio.sleep(k * spacing)
                while queue:
                    i = queue.pop()
                    c = await self.one(client, batch[i], schema, params)
                    results[i] = c
                    if on_done is not None:
                        on_done(i, c)

            await asyncio.gather(*(worker(k) for k in range(n)))
        return [c for c in results if c is not None]

    async def one(
        self,
        client: Any,
        messages: list[Message],
        schema: dict[str, Any] | None,
        params: dict[str, Any],
    ) -> Completion:
        c = await self.attempt(client, messages, schema, params)
        if c.error is not None or schema is None:
            return c
        problem = schema_problem(c.parsed, schema)
        if problem is None:
            return c
        retry = repair_messages(messages, c.text, problem)
        fixed = await self.attempt(client, retry, schema, params)
        fixed.attempts += c.attempts
        fixed.cost_usd += c.cost_usd
        fixed.usage.input_tokens += c.usage.input_tokens
        fixed.usage.output_tokens += c.usage.output_tokens
        if fixed.error is None and (again := schema_problem(fixed.parsed, schema)) is not None:
            fixed.error = TeacherError(
                f"{self.t.spec}: invalid structured output after one repair: {again}",
                body=fixed.text[:2000],
            )
        return fixed

    async def attempt(
        self,
        client: Any,
        messages: list[Message],
        schema: dict[str, Any] | None,
        params: dict[str, Any],
    ) -> Completion:
        """Send one request within the budget; never raises TeacherError."""
        t = self.t
        prompt, max_out = estimate_tokens(messages), int(params.get("max_tokens") or 1024)
        worst = t.price.bound(prompt, max_out) if t.price else 0.0
        if not t.budget.reserve(worst):
            error = TeacherError(
                f"{t.spec}: budget: not sent, it could pass max_cost_usd {t.budget.max_usd} "
                f"(spent {t.budget.spent:.4f}, in flight {t.budget.reserved:.4f})"
            )
            return Completion(text="", error=error, attempts=0)
        c = Completion(text="")
        try:
            c = await self.send_with_retries(client, messages, schema, params, prompt + max_out)
            return c
        finally:
            t.budget.settle(worst, c.cost_usd)

    async def send_with_retries(
        self,
        client: Any,
        messages: list[Message],
        schema: dict[str, Any] | None,
        params: dict[str, Any],
        tokens: int,
    ) -> Completion:
        t = self.t
        attempts = 0
        t0 = time.perf_counter()
        while True:
            await self.admit(tokens)
            attempts += 1
            t.requests_sent += 1
            try:
                c = await t.send(client, messages, schema, params)
            except TeacherError as e:
                if self.tpm:
                    self.tpm.give(tokens)  # a refused request used no tokens
                if not e.retryable or attempts > t.options.max_retries:
                    return Completion(text="", error=e, attempts=attempts)
                delay = self.backoff(attempts, e.retry_after)
                if e.status == 429:  # everyone waits, not just this request
                    self.pause_until = max(self.pause_until, time.monotonic() + delay)
                await asyncio.sleep(delay)
                continue
            if self.tpm:  # correct the reservation to what the provider counted
                self.tpm.give(tokens - (c.usage.input_tokens + c.usage.output_tokens))
            c.attempts = attempts
            c.latency_s = time.perf_counter() - t0
            c.cost_usd = t.price.cost(c.usage) if t.price else 0.0
            return c

    async def admit(self, tokens: int) -> None:
        """Wait for the shared cool-down and the rate-limit buckets, then take from them."""
        while True:
            wait = self.pause_until - time.monotonic()
            if self.rpm:
                wait = max(wait, self.rpm.wait_s(1))
            if self.tpm:
                wait = max(wait, self.tpm.wait_s(tokens))
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        if self.rpm:
            self.rpm.take(1)
        if self.tpm:
            self.tpm.take(tokens)

    def backoff(self, attempt: int, after: float | None) -> float:
        if after is not None:
            return min(after, MAX_RETRY_AFTER_S)
        cap = min(MAX_BACKOFF_S, self.t.options.backoff_s * 2 ** (attempt - 1))
        return random.uniform(cap / 2, cap)
