"""The anthropic: backend through the real anthropic SDK against a loopback server."""

from __future__ import annotations

import pytest

from distill.errors import TeacherError, UserError
from distill.teachers.factory import make_teacher
from tests.fakes.openai_server import serve

KEY = "test-key-" + "y" * 24
CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "How long do trials last?"},
]


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILL_TEST_ANTHROPIC", KEY)


def teacher(url: str, **options: object):  # type: ignore[no-untyped-def]
    base = url.removesuffix("/v1")
    opts = {"base_url": base, "api_key_env": "DISTILL_TEST_ANTHROPIC", **options}
    return make_teacher("anthropic:claude-test", opts)


def test_messages_request_and_reply() -> None:
    with serve() as (server, url):
        c = teacher(url).complete(CHAT, max_tokens=64, temperature=0.0, stop=["\nQ:"])
    assert c.text == "Trials last 14 days." and c.finish_reason == "stop"
    assert (c.usage.input_tokens, c.usage.output_tokens) == (13, 5)
    (body,) = server.requests
    assert body["system"] == "Be brief." and body["messages"] == CHAT[1:]
    assert body["max_tokens"] == 64 and "temperature" not in body
    assert body["stop_sequences"] == ["\nQ:"]
    sent = server.headers[0]  # the SDK sends the key as x-api-key or as a bearer token
    assert KEY in (sent.get("x-api-key"), sent.get("authorization", "").removeprefix("Bearer "))


def test_schema_is_enforced_through_a_tool() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    with serve() as (server, url):
        server.reply = lambda body: '{"q": "How long?"}'
        c = teacher(url).complete(CHAT, schema=schema)
    assert c.parsed == {"q": "How long?"}
    body = server.requests[-1]
    assert body["tools"][0]["input_schema"] == schema
    assert body["tool_choice"] == {"type": "tool", "name": "reply"}


def test_retries_truncation_refusal_and_failures() -> None:
    with serve() as (server, url):
        server.faults = [(529, {"retry-after": "0"}, '{"type": "error"}')]
        assert teacher(url, max_retries=2).complete(CHAT).text == "Trials last 14 days."
        assert len(server.requests) == 2
        server.finish_reason = "length"
        assert teacher(url).complete(CHAT).finish_reason == "length"
        server.faults = [(400, {}, '{"type": "error", "error": {"message": "bad"}}')]
        (failed,) = teacher(url, max_retries=0).complete_many([CHAT])
        assert failed.error is not None and failed.error.status == 400
        assert KEY not in str(failed.error)
        server.refusal = "no"
        with pytest.raises(TeacherError, match="refused"):
            teacher(url).complete(CHAT)


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISTILL_TEST_ANTHROPIC")
    with pytest.raises(UserError, match=r"needs an API key in \$DISTILL_TEST_ANTHROPIC"):
        teacher("http://127.0.0.1:9/v1")
