"""OpenAI and any OpenAI-compatible server (vLLM, llama.cpp, Ollama, LM Studio, TGI).

`openai:MODEL`, with `teacher_options`: `base_url` for a compatible server,
`api_key_env` (the variable holding the key; the key itself never enters a recipe,
a log or the run folder), `structured` (how a JSON schema is enforced: servers
differ), and the engine's settings (concurrency, rpm, tpm, timeout_s, max_retries,
backoff_s; see distill.teachers.engine).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from distill.errors import MissingExtraError, TeacherError
from distill.teachers.base import Completion, Message, Usage, api_key, cut_at_stop, parse_json
from distill.teachers.engine import ApiTeacher, EngineOptions, aiohttp_client, reply_json, sdk_error


class OpenAIOptions(EngineOptions):
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable with the key.")
    structured: Literal["json_schema", "json_object", "prompt"] = Field(
        "json_schema",
        description="json_schema (OpenAI strict), json_object with a schema (llama.cpp), or "
        "prompt (schema in the prompt, parsed and validated after).",
    )


class OpenAITeacher(ApiTeacher):
    Options = OpenAIOptions
    provider = "openai"

    def __init__(self, spec: str, model: str, options: OpenAIOptions | None = None) -> None:
        super().__init__(spec, model, options or OpenAIOptions())
        self.options: OpenAIOptions
        try:
            import openai
        except ImportError as e:
            raise MissingExtraError("the openai SDK (teacher openai:)", "openai") from e
        self._key = api_key(spec, self.options.api_key_env)
        self._openai = openai

    def open_client(self) -> Any:
        # Retries are the engine's (shared cool-down, budget), so the SDK makes none.
        return self._openai.AsyncOpenAI(
            api_key=self._key,
            base_url=self.options.base_url,
            timeout=self.options.timeout_s,
            max_retries=0,
            http_client=aiohttp_client(self._openai),
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

    async def send(
        self, client: Any, messages: list[Message], schema: dict[str, Any] | None, params: Any
    ) -> Completion:
        # The SDK's raw path (auth, base URL, errors, HTTP) without its typed request and
        # reply models, which cost ~1 ms of CPU a request; the reply is the documented
        # chat-completion JSON.
        body = self._request(messages, schema, params)
        try:
            raw = await client.post("/chat/completions", body=body, cast_to=bytes)
        except self._openai.OpenAIError as e:
            raise sdk_error(self.spec, self._openai, e, self.options.timeout_s) from e
        resp = reply_json(self.spec, raw)
        try:
            choice = resp["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError) as e:
            raise TeacherError(f"{self.spec}: reply has no choices", body=raw[:2000]) from e
        if message.get("refusal"):
            raise TeacherError(f"{self.spec}: refused: {message['refusal']}")
        text = cut_at_stop(message.get("content") or "", params.get("stop"))
        return Completion(
            text=text,
            parsed=parse_json(text) if schema is not None else None,
            usage=_usage(resp.get("usage")),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            raw=resp,
        )


def _usage(usage: dict[str, Any] | None) -> Usage:
    if not usage:
        return Usage()
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return Usage(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0, cached)
