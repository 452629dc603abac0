"""Anthropic's Messages API through the official `anthropic` SDK.

`anthropic:MODEL`, with `teacher_options`: `api_key_env` (default
ANTHROPIC_API_KEY; the key is read only from the environment), `base_url`,
`timeout_s`, `max_retries` (the SDK retries 429, 5xx and timeouts, honouring
Retry-After) and `concurrency`. A JSON schema is enforced through tool use: the
model must call one tool whose input schema is the schema.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field

from distill.errors import MissingExtraError, TeacherError
from distill.recipe import StrictModel
from distill.teachers.base import (
    Completion,
    Message,
    Teacher,
    Usage,
    api_key,
    call_sdk,
    complete_concurrently,
    cut_at_stop,
)

DEFAULT_MAX_TOKENS = 1024  # the Messages API requires a cap


class AnthropicOptions(StrictModel):
    base_url: str | None = Field(None, description="API URL; default Anthropic's.")
    api_key_env: str = Field("ANTHROPIC_API_KEY", description="Environment variable with the key.")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(
        5, ge=0, description="Retries on 429, 5xx, timeouts, lost connections."
    )
    concurrency: int = Field(8, ge=1, description="Requests in flight at once.")


class AnthropicTeacher(Teacher):
    supports_schema = True
    Options = AnthropicOptions

    def __init__(self, spec: str, model: str, options: AnthropicOptions | None = None) -> None:
        super().__init__(spec, model, options or AnthropicOptions())
        self.options: AnthropicOptions
        try:
            import anthropic
        except ImportError as e:
            raise MissingExtraError("the anthropic SDK (teacher anthropic:)", "anthropic") from e
        key = api_key(spec, self.options.api_key_env)
        self._anthropic = anthropic
        self.client = anthropic.Anthropic(
            api_key=key,
            base_url=self.options.base_url,
            timeout=self.options.timeout_s,
            max_retries=self.options.max_retries,
        )

    def _request(
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

    def complete(
        self, messages: list[Message], *, schema: dict[str, Any] | None = None, **params: Any
    ) -> Completion:
        resp = call_sdk(
            self.spec,
            self._anthropic,
            self.options.timeout_s,
            self.client.messages.create,
            **self._request(messages, schema, params),
        )
        if resp.stop_reason == "refusal":
            raise TeacherError(f"{self.spec}: refused")
        parsed = None
        texts = []
        for block in resp.content:
            if block.type == "tool_use":
                parsed = block.input
                texts.append(json.dumps(block.input))
            elif block.type == "text":
                texts.append(block.text)
        return Completion(
            text=cut_at_stop("".join(texts), params.get("stop")),
            parsed=parsed,
            usage=Usage(resp.usage.input_tokens, resp.usage.output_tokens),
            finish_reason="length" if resp.stop_reason == "max_tokens" else "stop",
            raw=resp,
        )

    def complete_many(
        self, batch: list[list[Message]], *, schema: dict[str, Any] | None = None, **params: Any
    ) -> list[Completion]:
        return complete_concurrently(self, batch, self.options.concurrency, schema=schema, **params)
