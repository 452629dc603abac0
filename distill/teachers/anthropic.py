"""Anthropic's Messages API through the official `anthropic` SDK.

`anthropic:MODEL`, with `teacher.options`: `api_key_env` (default
ANTHROPIC_API_KEY; the key is read only from the environment) and the engine's
settings (base_url, concurrency, rpm, tpm, timeout_s, max_retries, backoff_s). A
JSON schema is enforced through tool use: the model must call one tool whose input
schema is the schema.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from distill.errors import TeacherError
from distill.teachers.base import Completion, Message, Usage, cut_at_stop
from distill.teachers.engine import (
    ApiTeacher,
    BatchItem,
    BatchStatus,
    EngineOptions,
    sdk_error,
)

DEFAULT_MAX_TOKENS = 1024  # the Messages API requires a cap


class AnthropicOptions(EngineOptions):
    api_key_env: str = Field("ANTHROPIC_API_KEY", description="Environment variable with the key.")


class AnthropicTeacher(ApiTeacher):
    Options = AnthropicOptions
    provider = "anthropic"
    sdk_name = "anthropic"
    client_class = "AsyncAnthropic"
    error_class = "AnthropicError"
    chat_path = "/v1/messages"
    options: AnthropicOptions

    def request_body(
        self, messages: list[Message], schema: dict[str, Any] | None, params: dict[str, Any]
    ) -> dict[str, Any]:
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": params.get("max_tokens") or DEFAULT_MAX_TOKENS,
            "messages": [m for m in messages if m["role"] != "system"],
        }
        if system:
            body["system"] = system
        # anthropic 2.x's Messages API takes no temperature/top_p (current models fix
        # their sampling), so those parameters are not sent.
        if params.get("stop"):
            body["stop_sequences"] = params["stop"]
        if schema is not None:
            body["tools"] = [
                {"name": "reply", "description": "Give the reply.", "input_schema": schema}
            ]
            body["tool_choice"] = {"type": "tool", "name": "reply"}
        return body

    def completion(
        self, resp: dict[str, Any], schema: dict[str, Any] | None, params: dict[str, Any]
    ) -> Completion:
        """A Messages API reply (JSON) as a Completion; raises TeacherError."""
        if resp.get("stop_reason") == "refusal":
            raise TeacherError(f"{self.spec}: refused")
        parsed = None
        texts = []
        for block in resp.get("content") or []:
            if block.get("type") == "tool_use":
                parsed = block.get("input")
                texts.append(json.dumps(parsed))
            elif block.get("type") == "text":
                texts.append(block.get("text", ""))
        u = resp.get("usage") or {}
        cached = u.get("cache_read_input_tokens") or 0
        return Completion(
            text=cut_at_stop("".join(texts), params.get("stop")),
            parsed=parsed,
            # Anthropic counts cache reads apart from input_tokens; Usage counts them in.
            usage=Usage((u.get("input_tokens") or 0) + cached, u.get("output_tokens") or 0, cached),
            finish_reason="length" if resp.get("stop_reason") == "max_tokens" else "stop",
            raw=resp,
        )

    async def batch_submit(self, client: Any, items: list[BatchItem]) -> str:
        requests = [{"custom_id": it.custom_id, "params": it.body} for it in items]
        batch = await self.sdk_call(client.messages.batches.create(requests=requests))
        return str(batch.id)

    async def batch_status(self, client: Any, batch_id: str) -> BatchStatus:
        b = await self.sdk_call(client.messages.batches.retrieve(batch_id))
        c = b.request_counts
        done = c.succeeded + c.errored + c.canceled + c.expired
        return BatchStatus(
            b.processing_status == "ended", b.processing_status, done, done + c.processing
        )

    async def batch_results(
        self, client: Any, batch_id: str, schema: dict[str, Any] | None, params: dict[str, Any]
    ) -> dict[str, Completion]:
        out: dict[str, Completion] = {}
        results = await self.sdk_call(client.messages.batches.results(batch_id))
        try:
            async for item in results:
                out[item.custom_id] = self._batch_item(item.result.model_dump(), schema, params)
        except self.sdk.AnthropicError as e:
            raise sdk_error(self.spec, self.sdk, e, self.options.timeout_s) from e
        return out

    def _batch_item(
        self, result: dict[str, Any], schema: dict[str, Any] | None, params: dict[str, Any]
    ) -> Completion:
        kind = result.get("type")
        if kind == "succeeded":
            try:
                return self.completion(result["message"], schema, params)
            except TeacherError as e:
                return Completion(text="", error=e)
        if kind == "errored":
            err = (result.get("error") or {}).get("error") or {}
            etype = err.get("type", "error")
            failed = TeacherError(
                f"{self.spec}: batch item {etype}: {err.get('message', '')}",
                body=json.dumps(result)[:2000],
                retryable=etype in ("overloaded_error", "api_error", "rate_limit_error"),
            )
            return Completion(text="", error=failed)
        # expired or canceled: worth sending again
        return Completion(
            text="", error=TeacherError(f"{self.spec}: batch item {kind}", retryable=True)
        )
