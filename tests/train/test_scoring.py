"""A served GKD teacher's key and coverage, without a model server: which key goes
where (none by default, never over plain http to another machine), and a teacher that
scores nothing fails the pass instead of training on nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from distill.errors import UserError
from distill.train.scoring import ServedOptions, TokenScorer, served_headers
from tests.fakes.loopback import json_server


def test_no_key_is_sent_unless_named_and_never_over_plain_http_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-stay-home-123")
    monkeypatch.setenv("DISTILL_TEST_SERVED_KEY", "local-key-456")
    # A local server with no key named: nothing is sent ($OPENAI_API_KEY stays home).
    assert served_headers("openai:t", ServedOptions(base_url="http://127.0.0.1:8080/v1")) == {}
    assert served_headers("openai:t", ServedOptions(base_url="http://gpu-box:8000/v1")) == {}
    # OpenAI itself reads $OPENAI_API_KEY when no variable is named.
    assert served_headers("openai:t", ServedOptions(base_url="https://api.openai.com/v1")) == {
        "Authorization": "Bearer sk-should-stay-home-123"
    }
    named = {"api_key_env": "DISTILL_TEST_SERVED_KEY"}
    for url in ("http://127.0.0.1:8080/v1", "http://localhost:8080/v1", "https://gpu-box/v1"):
        got = served_headers("openai:t", ServedOptions(base_url=url, **named))
        assert got == {"Authorization": "Bearer local-key-456"}
    with pytest.raises(UserError, match="plain http to another machine"):
        served_headers("openai:t", ServedOptions(base_url="http://10.0.0.5:8000/v1", **named))
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(UserError, match=r"needs an API key in \$OPENAI_API_KEY"):
        served_headers("openai:t", ServedOptions(base_url="https://api.openai.com/v1"))


@pytest.fixture
def blank_server() -> Iterator[str]:
    """vLLM's completions wire, scoring no position (prompt_logprobs all null)."""

    def reply(path: str, body: dict[str, Any], headers: Any) -> dict[str, Any]:
        assert "Authorization" not in headers  # no key named, none sent
        blank = [None] * len(body["prompt"])
        return {"choices": [{"index": 0, "text": "", "prompt_logprobs": blank}]}

    with json_server(reply) as url:
        yield url


def test_a_teacher_that_scores_nothing_fails_the_pass(blank_server: str) -> None:
    from distill.models import load_tokenizer

    options = ServedOptions(base_url=blank_server, logprobs="prompt_logprobs")
    tok = load_tokenizer("smollm2-135m-instruct")
    seq = [1, 2, 3, 4, 5, 6]
    with TokenScorer("openai:blank", options, tok) as teacher:
        for _ in range(3):  # three requests: too early to judge
            assert teacher.top_k([seq], [2]) == [[None] * 4]
        with pytest.raises(UserError, match=r"scored 0% of the 16 positions asked"):
            teacher.top_k([seq], [2])
        with pytest.raises(UserError, match="min_coverage is 50%"):
            teacher.check_coverage(final=True)
    lenient = ServedOptions(base_url=blank_server, logprobs="prompt_logprobs", min_coverage=0)
    with TokenScorer("openai:blank", lenient, tok) as teacher:
        for _ in range(5):
            teacher.top_k([seq], [2])
        teacher.check_coverage(final=True)
