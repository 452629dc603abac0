"""OpenAI and any OpenAI-compatible server (vLLM, llama.cpp, Ollama, LM Studio, TGI).

`openai:MODEL`, with `teacher_options`: `base_url` for a compatible server,
`api_key_env` (the variable holding the key; the key itself never enters a recipe,
a log or the run folder), `structured` (how a JSON schema is enforced: servers
differ), `timeout_s`, `max_retries` (the SDK retries 429, 5xx and timeouts with
backoff, honouring Retry-After) and `concurrency` (requests in flight).
"""

from __future__ import annotations

import json
from typing import Any, Literal

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
    parse_json,
)


class OpenAIOptions(StrictModel):
    base_url: str | None = Field(None, description="Server URL, e.g. http://127.0.0.1:8000/v1.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable with the key.")
    structured: Literal["json_schema", "json_object", "prompt"] = Field(
        "json_schema",
        description="json_schema (OpenAI strict), json_object with a schema (llama.cpp), or "
        "prompt (schema in the prompt, parsed and validated after).",
    )
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(
        5, ge=0, description="Retries on 429, 5xx, timeouts, lost connections."
    )
    concurrency: int = Field(8, ge=1, description="Requests in flight at once.")


class OpenAITeacher(Teacher):
    supports_schema = True
    Options = OpenAIOptions

    def __init__(self, spec: str, model: str, options: OpenAIOptions | None = None) -> None:
        super().__init__(spec, model, options or OpenAIOptions())
        self.options: OpenAIOptions
        try:
            import openai
        except ImportError as e:
            raise MissingExtraError("the openai SDK (teacher openai:)", "openai") from e
        key = api_key(spec, self.options.api_key_env)
        self._openai = openai
        self.client = openai.OpenAI(
            api_key=key,
            base_url=self.options.base_url,
            timeout=self.options.timeout_s,
            max_retries=self.options.max_retries,
        )

    def _request(
        self, messages: list[Message], schema: dict[str, Any] | None, params: dict[str, Any]
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        if "max_tokens" in params:
            body["max_tokens"] = params["max_tokens"]
        for name in ("temperature", "top_p", "seed", "stop"):
            if params.get(name) is not None:
                body[name] = params[name]
        if schema is not None:
            mode = self.options.structured
            if mode == "json_schema":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "reply", "schema": schema, "strict": True},
                }
            elif mode == "json_object":
                body["response_format"] = {"type": "json_object", "schema": schema}
            else:
                hint = f"\n\nReply with one JSON object matching this schema:\n{json.dumps(schema)}"
                body["messages"] = [
                    *messages[:-1],
                    {**messages[-1], "content": messages[-1]["content"] + hint},
                ]
        return body

    def complete(
        self, messages: list[Message], *, schema: dict[str, Any] | None = None, **params: Any
    ) -> Completion:
        resp = call_sdk(
            self.spec,
            self._openai,
            self.options.timeout_s,
            self.client.chat.completions.create,
            **self._request(messages, schema, params),
        )
        if not resp.choices:
            raise TeacherError(f"{self.spec}: reply has no choices", body=str(resp)[:2000])
        choice = resp.choices[0]
        if getattr(choice.message, "refusal", None):
            raise TeacherError(f"{self.spec}: refused: {choice.message.refusal}")
        text = cut_at_stop(choice.message.content or "", params.get("stop"))
        usage = resp.usage
        return Completion(
            text=text,
            parsed=parse_json(text) if schema is not None else None,
            usage=Usage(usage.prompt_tokens, usage.completion_tokens) if usage else Usage(),
            finish_reason="length" if choice.finish_reason == "length" else "stop",
            raw=resp,
        )

    def complete_many(
        self, batch: list[list[Message]], *, schema: dict[str, Any] | None = None, **params: Any
    ) -> list[Completion]:
        return complete_concurrently(self, batch, self.options.concurrency, schema=schema, **params)
