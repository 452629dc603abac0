"""Batch mode through the real SDKs against the loopback server's OpenAI Batch API
(files + batches) and Anthropic Message Batches."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.io import read_json
from distill.teachers.batch import BatchTeacher
from distill.teachers.factory import make_teacher
from distill.teachers.prices import Price
from tests.fakes.openai_server import serve

KEY = "test-key-" + "b" * 24


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILL_TEST_KEY", KEY)


def chats(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"question {i}"}] for i in range(n)]


def echo(body: dict) -> str:
    return "re: " + body["messages"][-1]["content"]


def batched(kind: str, url: str, state: Path) -> BatchTeacher:
    options = {"api_key_env": "DISTILL_TEST_KEY", "backoff_s": 0.01}
    if kind == "openai":
        inner = make_teacher("openai:gpt-4o-mini", {"base_url": url, **options})
    else:
        inner = make_teacher("anthropic:claude-haiku-4-5", {"base_url": url[:-3], **options})
    inner.price = Price(1000.0, 1000.0, discount=0.5)  # as price_for gives it for a batch
    return BatchTeacher(inner, state, poll_s=0.01)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_batch_round_trip_at_half_price(kind: str, tmp_path: Path) -> None:
    with serve() as (server, url):
        server.reply = echo
        server.batch_polls = 2
        teacher = batched(kind, url, tmp_path / "batches.json")
        done: list[int] = []
        replies = teacher.complete_many(
            chats(3), max_tokens=16, on_done=lambda i, c: done.append(i)
        )
    assert [r.text for r in replies] == [f"re: question {i}" for i in range(3)]
    assert sorted(done) == [0, 1, 2] and len(server.batches) == 1
    (batch,) = server.batches.values()
    assert batch["items"][0][1]["max_tokens"] == 16  # the request body as online
    usage = replies[0].usage
    full = (usage.input_tokens + usage.output_tokens) * 0.001
    assert replies[0].cost_usd == pytest.approx(full / 2)
    (entry,) = read_json(tmp_path / "batches.json")["batches"]
    assert entry["status"] == "merged" and len(entry["custom_ids"]) == 3
    assert KEY not in (tmp_path / "batches.json").read_text()


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_expired_items_alone_are_resubmitted(kind: str, tmp_path: Path) -> None:
    with serve() as (server, url):
        server.reply = echo
        server.expire_next = 2
        replies = batched(kind, url, tmp_path / "b.json").complete_many(chats(5), max_tokens=8)
    assert all(r.error is None for r in replies)
    first, second = server.batches.values()
    assert len(first["items"]) == 5 and len(second["items"]) == 2
    assert sum(r.attempts == 2 for r in replies) == 2
    assert set(server.batch_answered.values()) == {1} and len(server.batch_answered) == 5


def test_items_that_keep_failing_end_as_failures(tmp_path: Path) -> None:
    with serve() as (server, url):
        server.expire_next = 10
        replies = batched("openai", url, tmp_path / "b.json").complete_many(chats(2))
    assert all(r.error is not None and "batch_expired" in str(r.error) for r in replies)
    assert len(server.batches) == 2  # submitted once, resubmitted once (batch_resubmits 1)


def test_restart_resumes_polling_without_resubmitting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "batches.json"
    with serve() as (server, url):
        server.reply = echo
        server.batch_polls = 3

        async def crash(self: BatchTeacher, client: object, entry: dict) -> None:
            raise KeyboardInterrupt  # Ctrl-C (or a crash) while waiting on the batch

        with monkeypatch.context() as m:
            m.setattr(BatchTeacher, "_wait", crash)
            with pytest.raises(KeyboardInterrupt):
                batched("openai", url, state).complete_many(chats(4), max_tokens=8)
        assert len(server.batches) == 1 and read_json(state)["batches"][0]["status"] == "submitted"

        again = batched("openai", url, state)
        replies = again.complete_many(chats(4), max_tokens=8)
    assert [r.text for r in replies] == [f"re: question {i}" for i in range(4)]
    assert len(server.batches) == 1  # polled the old batch, submitted nothing new
    assert (again.batches_resumed, again.batches_submitted, again.requests_sent) == (1, 0, 0)
