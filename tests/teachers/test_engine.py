"""The request engine (rate limits, shared cool-down, retries, budget, schema repair)
through the real openai SDK against the loopback server."""

from __future__ import annotations

import time

import pytest

from distill.teachers.engine import TokenBucket, retry_after
from distill.teachers.factory import make_teacher
from distill.teachers.prices import Budget, Price, estimate_tokens, lookup
from tests.fakes.openai_server import serve

KEY = "test-key-" + "y" * 24


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILL_TEST_KEY", KEY)


def teacher(url: str, **options: object):  # type: ignore[no-untyped-def]
    return make_teacher(
        "openai:gpt-4o-mini", {"base_url": url, "api_key_env": "DISTILL_TEST_KEY", **options}
    )


def chats(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"question {i}"}] for i in range(n)]


def test_results_keep_input_order_and_concurrency_is_real() -> None:
    with serve() as (server, url):
        server.delay_s = 0.3
        server.reply = lambda body: body["messages"][0]["content"].upper()
        replies = teacher(url, concurrency=4, ramp_s=0).complete_many(chats(8))
        assert [r.text for r in replies] == [f"QUESTION {i}" for i in range(8)]
        # Four in flight at once: the first four arrive together, the next four 0.3 s later.
        a = sorted(server.arrivals)
        assert a[3] - a[0] < 0.25 and a[4] - a[0] >= 0.29
        # With a ramp, the first four start spread over it.
        server.arrivals.clear()
        teacher(url, concurrency=4, ramp_s=0.4).complete_many(chats(4))
        a = sorted(server.arrivals)
        # 0.1 s apart in theory; each gap jitters by connection set-up on a loaded machine,
        # so the test holds the spread as a whole (0.3 s in theory, about 0 without a ramp).
        assert 0.2 <= a[-1] - a[0] < 1.0


def test_requests_per_minute_cap() -> None:
    with serve() as (server, url):
        t0 = time.monotonic()
        teacher(url, concurrency=8, rpm=120).complete_many(chats(6))
    # 2 a second with bursts of 2: requests 3-6 wait 0.5 s each
    assert server.arrivals[-1] - t0 >= 1.8
    gaps = [b - a for a, b in zip(server.arrivals[2:], server.arrivals[3:], strict=False)]
    assert min(gaps) >= 0.4


def test_rate_limit_pauses_every_worker() -> None:
    with serve() as (server, url):
        server.delay_s = 0.2  # the other request is still in flight when the 429 comes
        server.faults = [(429, {"retry-after": "0.8"}, '{"error": {"message": "slow down"}}')]
        replies = teacher(url, concurrency=2).complete_many(chats(5))
    assert all(r.error is None for r in replies)
    assert sum(r.attempts for r in replies) == 6 == len(server.requests)
    first_429 = server.arrivals[0]
    # Only the two first requests went before the cool-down; all others after it.
    assert all(t - first_429 >= 0.75 for t in server.arrivals[2:])


def test_retry_after_header_forms() -> None:
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    assert retry_after({"retry-after": "3"}) == 3.0
    assert 0 <= (retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) or 0) == 0
    assert retry_after({}) is None and retry_after({"retry-after": "soon"}) is None


def test_timeouts_and_5xx_are_retried_then_recorded() -> None:
    with serve() as (server, url):
        server.delay_s = 0.5
        replies = teacher(url, timeout_s=0.2, max_retries=2, backoff_s=0.01).complete_many(chats(1))
        (c,) = replies
        assert c.error is not None and "timed out" in str(c.error) and c.attempts == 3
        server.delay_s = 0
        server.faults = [(503, {}, '{"error": {"message": "overloaded"}}')] * 2
        (ok,) = teacher(url, backoff_s=0.01).complete_many(chats(1))
        assert ok.error is None and ok.attempts == 3
        server.faults = [(400, {}, '{"error": {"message": "bad"}}')]
        (bad,) = teacher(url, backoff_s=0.01).complete_many(chats(1))
        assert bad.error.status == 400 and bad.attempts == 1  # 4xx is not retried


def test_invalid_structured_reply_gets_one_repair() -> None:
    schema = {
        "type": "object",
        "properties": {"question": {"type": "string"}},
        "required": ["question"],
    }
    replies = iter(['{"q": 1}', '{"question": "How long?"}', "not json", "still not json"])
    with serve() as (server, url):
        server.reply = lambda body: next(replies)
        t = teacher(url, concurrency=1)
        fixed = t.complete_many(chats(1), schema=schema)[0]
        assert fixed.parsed == {"question": "How long?"} and fixed.attempts == 2
        repair = server.requests[1]["messages"]
        assert repair[-2] == {"role": "assistant", "content": '{"q": 1}'}
        assert "'question' is a required property" in repair[-1]["content"]
        failed = t.complete_many(chats(1), schema=schema)[0]
    assert failed.error is not None and "after one repair" in str(failed.error)
    assert "not a JSON object" in str(failed.error) and failed.attempts == 2


def test_budget_is_never_exceeded_and_refusals_are_failures() -> None:
    price = Price(input=1000.0, output=1000.0)  # $0.001 a token: a few cents a request
    with serve() as (server, url):
        server.delay_s = 0.05
        t = teacher(url, concurrency=4)
        t.price, t.budget = price, Budget(0.2)
        replies = t.complete_many(chats(20), max_tokens=20)
    sent = [r for r in replies if r.error is None]
    refused = [r for r in replies if r.error is not None]
    assert sent and refused and len(server.requests) == len(sent)
    assert all("budget" in str(r.error) and r.attempts == 0 for r in refused)
    # Each reply costs (11 + 7) tokens at $0.001; worst case reserved was prompt + 20.
    assert sum(r.cost_usd for r in sent) == pytest.approx(t.budget.spent)
    assert t.budget.spent <= 0.2 and t.budget.reserved == pytest.approx(0, abs=1e-12)
    assert sent[0].cost_usd == pytest.approx(18 * 0.001)


def test_token_bucket_and_price_table() -> None:
    b = TokenBucket(per_minute=600)  # 10 a second
    assert b.wait_s(1) == 0
    b.take(10)
    assert 0.05 < b.wait_s(1) <= 0.11
    assert lookup("openai", "gpt-4o-mini-2024-07-18") == lookup("openai", "gpt-4o-mini")
    assert lookup("openai", "gpt-4o-mini") != lookup("openai", "gpt-4o")
    assert lookup("anthropic", "claude-opus-4-1-20250805").input == 15.0  # type: ignore[union-attr]
    assert lookup("openai", "my-local-model") is None
    assert estimate_tokens([{"role": "user", "content": "x" * 400}]) == 104


def test_tokens_per_minute_cap_uses_the_providers_counts() -> None:
    with serve() as (server, url):
        server.count_tokens = lambda text: 50  # every request really uses ~100 tokens
        t = teacher(url, concurrency=1, ramp_s=0, tpm=12_000)
        replies = t.complete_many(chats(5), max_tokens=10)
    assert all(r.usage.input_tokens + r.usage.output_tokens == 100 for r in replies)
    # 200 tokens a second, bursts of 200. Each request is estimated at 17 tokens before it
    # goes (prompt + max_tokens) but uses 100: after 4 (400 tokens), the 5th waits ~1.1 s.
    assert server.arrivals[-1] - server.arrivals[0] >= 1.0
