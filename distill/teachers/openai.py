"""OpenAI and any OpenAI-compatible server (vLLM, llama.cpp, Ollama, LM Studio, TGI).

`openai:MODEL`, with `teacher.options`: `base_url` for a compatible server,
`api_key_env` (the variable holding the key; the key itself never enters a recipe,
a log or the run folder), `structured` (how a JSON schema is enforced: servers
differ), and the engine's settings (concurrency, rpm, tpm, timeout_s, max_retries,
backoff_s; see distill.teachers.engine).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from distill.errors import TeacherError
from distill.teachers.base import Completion, Message, Usage, cut_at_stop, parse_json
from distill.teachers.engine import (
    ApiTeacher,
    BatchItem,
    BatchStatus,
    EngineOptions,
)


class OpenAIOptions(EngineOptions):
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable with the key.")
    structured: Literal["json_schema", "json_object", "tool", "prompt"] = Field(
        "json_schema",
        description="How a JSON schema is enforced: json_schema (OpenAI strict), json_object "
        "with a schema (llama.cpp), tool (a forced function call: vLLM, Ollama, TGI), or "
        "prompt (schema in the prompt; the reply is validated, with one repair).",
    )


class OpenAITeacher(ApiTeacher):
    Options = OpenAIOptions
    provider = "openai"
    sdk_name = "openai"
    client_class = "AsyncOpenAI"
    error_class = "OpenAIError"
    chat_path = "/chat/completions"
    options: OpenAIOptions

    def request_body(
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
            elif mode == "tool":
                body["tools"] = [
                    {"type": "function", "function": {"name": "reply", "parameters": schema}}
                ]
                body["tool_choice"] = {"type": "function", "function": {"name": "reply"}}
            else:
                hint = f"\n\nReply with one JSON object matching this schema:\n{json.dumps(schema)}"
                body["messages"] = [
                    *messages[:-1],
                    {**messages[-1], "content": messages[-1]["content"] + hint},
                ]
        return body

    def completion(
        self, resp: dict[str, Any], schema: dict[str, Any] | None, params: dict[str, Any]
    ) -> Completion:
        """A chat-completion reply (JSON) as a Completion; raises TeacherError."""
        try:
            choice = resp["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError) as e:
            raise TeacherError(
                f"{self.spec}: reply has no choices", body=json.dumps(resp)[:2000]
            ) from e
        if message.get("refusal"):
            raise TeacherError(f"{self.spec}: refused: {message['refusal']}")
        calls = message.get("tool_calls") or []
        if calls and schema is not None:  # structured: tool — the arguments are the reply
            text = calls[0].get("function", {}).get("arguments") or ""
        else:
            text = cut_at_stop(message.get("content") or "", params.get("stop"))
        return Completion(
            text=text,
            parsed=parse_json(text) if schema is not None else None,
            usage=_usage(resp.get("usage")),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            raw=resp,
        )

    async def batch_submit(self, client: Any, items: list[BatchItem]) -> str:
        lines = [
            {"custom_id": it.custom_id, "method": "POST", "url": ENDPOINT, "body": it.body}
            for it in items
        ]
        data = ("\n".join(json.dumps(x) for x in lines) + "\n").encode()
        upload = await self.sdk_call(
            client.files.create(file=("distill-batch.jsonl", data), purpose="batch")
        )
        batch = await self.sdk_call(
            client.batches.create(
                input_file_id=upload.id, endpoint=ENDPOINT, completion_window="24h"
            )
        )
        return str(batch.id)

    async def batch_status(self, client: Any, batch_id: str) -> BatchStatus:
        b = await self.sdk_call(client.batches.retrieve(batch_id))
        counts = b.request_counts
        done = (counts.completed + counts.failed) if counts else 0
        return BatchStatus(b.status in BATCH_ENDED, b.status, done, counts.total if counts else 0)

    async def batch_results(
        self, client: Any, batch_id: str, schema: dict[str, Any] | None, params: dict[str, Any]
    ) -> dict[str, Completion]:
        b = await self.sdk_call(client.batches.retrieve(batch_id))
        files = [f for f in (b.output_file_id, b.error_file_id) if f]
        texts = [(await self.sdk_call(client.files.content(f))).text for f in files]
        out: dict[str, Completion] = {}
        for line in (ln for text in texts for ln in text.splitlines() if ln.strip()):
            item = json.loads(line)
            out[item["custom_id"]] = self._batch_item(item, schema, params)
        if b.status in ("failed", "cancelled", "expired") and not out:
            # The whole batch ended without results (e.g. it failed validation).
            errors = getattr(getattr(b, "errors", None), "data", None) or []
            why = "; ".join(f"{e.code}: {e.message}" for e in errors) or b.status
            whole = TeacherError(
                f"{self.spec}: batch {b.status}: {why}", retryable=b.status != "failed"
            )
            return {"*": Completion(text="", error=whole)}
        return out

    def _batch_item(
        self, item: dict[str, Any], schema: dict[str, Any] | None, params: dict[str, Any]
    ) -> Completion:
        """One line of a batch output or error file."""
        err, resp = item.get("error"), item.get("response")
        if err:
            code = err.get("code") or "error"
            failed = TeacherError(
                f"{self.spec}: batch item {code}: {err.get('message', '')}",
                retryable=code in ("batch_expired", "batch_cancelled"),
            )
            return Completion(text="", error=failed)
        status = int((resp or {}).get("status_code") or 0)
        body = (resp or {}).get("body") or {}
        if status != 200:
            http = TeacherError(
                f"{self.spec}: HTTP {status}",
                status=status,
                body=json.dumps(body)[:2000],
                retryable=status == 429 or status >= 500,
            )
            return Completion(text="", error=http)
        try:
            return self.completion(body, schema, params)
        except TeacherError as e:
            return Completion(text="", error=e)


ENDPOINT = "/v1/chat/completions"
BATCH_ENDED = ("completed", "failed", "expired", "cancelled")


def _usage(usage: dict[str, Any] | None) -> Usage:
    if not usage:
        return Usage()
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return Usage(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0, cached)
