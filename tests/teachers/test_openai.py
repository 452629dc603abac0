"""The openai: backend through the real openai SDK against a loopback server."""

from __future__ import annotations

import json

import pytest

from distill.errors import TeacherError, UserError
from distill.teachers.factory import make_teacher
from tests.fakes.openai_server import serve

KEY = "test-key-" + "x" * 24
CHAT = [{"role": "user", "content": "How long do trials last?"}]


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILL_TEST_KEY", KEY)


def teacher(url: str, **options: object):  # type: ignore[no-untyped-def]
    return make_teacher(
        "openai:gpt-test", {"base_url": url, "api_key_env": "DISTILL_TEST_KEY", **options}
    )


def test_completion_request_and_reply() -> None:
    with serve() as (server, url):
        c = teacher(url).complete(CHAT, max_tokens=32, temperature=0.0, seed=3)
    assert c.text == "Trials last 14 days." and c.finish_reason == "stop"
    assert (c.usage.input_tokens, c.usage.output_tokens) == (11, 7)
    (body,) = server.requests
    assert body["model"] == "gpt-test" and body["messages"] == CHAT
    assert (body["max_tokens"], body["temperature"], body["seed"]) == (32, 0.0, 3)
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"


def test_rate_limit_is_retried_honouring_retry_after() -> None:
    with serve() as (server, url):
        server.faults = [(429, {"Retry-After": "0"}, '{"error": {"message": "slow down"}}')] * 2
        c = teacher(url, max_retries=3).complete(CHAT)
    assert c.text == "Trials last 14 days." and len(server.requests) == 3


def test_server_errors_become_failures_with_status_and_body() -> None:
    with serve() as (server, url):
        server.faults = [(500, {}, '{"error": {"message": "boom"}}')] * 5
        t = teacher(url, max_retries=1)
        with pytest.raises(TeacherError) as e:
            t.complete(CHAT)
        assert e.value.status == 500 and "boom" in (e.value.body or "")
        assert KEY not in str(e.value) and KEY not in (e.value.body or "")
    assert len(server.requests) == 2  # first try + one retry


def test_batch_keeps_per_request_failures() -> None:
    with serve() as (server, url):
        server.faults = [(400, {}, '{"error": {"message": "bad request"}}')]
        replies = teacher(url, max_retries=0, concurrency=1).complete_many([CHAT, CHAT])
    assert replies[0].error is not None and replies[0].error.status == 400
    assert replies[1].error is None and replies[1].text == "Trials last 14 days."


def test_truncation_refusal_and_structured_output() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    with serve() as (server, url):
        server.finish_reason = "length"
        assert teacher(url).complete(CHAT).finish_reason == "length"
        server.finish_reason = "stop"
        server.reply = lambda body: '{"q": "How long?"}'
        c = teacher(url, structured="json_object").complete(CHAT, schema=schema)
        assert c.parsed == {"q": "How long?"}
        assert server.requests[-1]["response_format"] == {"type": "json_object", "schema": schema}
        teacher(url).complete(CHAT, schema=schema)
        assert server.requests[-1]["response_format"]["type"] == "json_schema"
        teacher(url, structured="prompt").complete(CHAT, schema=schema)
        assert json.dumps(schema) in server.requests[-1]["messages"][-1]["content"]
        c = teacher(url, structured="tool").complete(CHAT, schema=schema)
        assert c.parsed == {"q": "How long?"}
        sent = server.requests[-1]
        assert sent["tools"][0]["function"]["parameters"] == schema
        assert sent["tool_choice"]["function"]["name"] == "reply"
        server.refusal = "I can't help with that."
        with pytest.raises(TeacherError, match="refused"):
            teacher(url).complete(CHAT)


def test_malformed_reply_is_retried_then_recorded() -> None:
    with serve() as (server, url):
        server.faults = [(200, {}, "<html>proxy error</html>")] * 2
        c = teacher(url, backoff_s=0.01).complete(CHAT)
        assert c.text == "Trials last 14 days." and c.attempts == 3
        server.faults = [(200, {}, "{not json")] * 3
        (bad,) = teacher(url, backoff_s=0.01, max_retries=2).complete_many([CHAT])
    assert bad.error is not None and "malformed reply" in str(bad.error)
    assert "{not json" in (bad.error.body or "")


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISTILL_TEST_KEY")
    with pytest.raises(UserError, match=r"needs an API key in \$DISTILL_TEST_KEY"):
        teacher("http://127.0.0.1:9/v1")
    with pytest.raises(UserError, match="known options"):
        make_teacher("openai:m", {"api_key": KEY})  # keys never go in recipes
