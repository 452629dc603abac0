"""The key-fact matcher: whole numbers, units, conflicting values, wordings."""

from __future__ import annotations

import pytest

from distill.keyfacts import check, mentions, quantities, tokens


@pytest.mark.parametrize(
    ("answer", "fact", "found"),
    [
        ("The lock lasts 15 minutes.", "5 minutes", False),  # 5 is not inside 15
        ("You can send 5,000 requests.", "5 requests", False),  # nor inside 5,000
        ("The limit is 5.5 GB.", "5 GB", False),  # nor inside 5.5
        ("You can send 5,000 requests.", "5000 requests", True),
        ("The link is valid for 30 min [2].", "30 minutes", True),
        ("It is a 30-minute link.", "30 minutes", True),
        ("It is valid for thirty minutes.", "30 minutes", True),
        ("Support answers within an hour.", "1 hour", True),
        ("Team costs 29 dollars a seat.", "$29", True),
        ("Team costs $29 a seat.", "29 USD", True),
        ("Uptime is 99.90 percent.", "99.9%", True),
        ("You see error E102.", "E102", True),
        ("You see error E1020.", "E102", False),
        ("Open **Settings → Security**.", "Settings > Security", True),
        ("Open the Security page.", "Settings > Security", False),
        ("Refunds take 5 business days.", "5 business days", True),
    ],
)
def test_a_fact_is_found_on_whole_tokens(answer: str, fact: str, found: bool) -> None:
    assert mentions(answer, fact) is found


def test_a_fact_with_wordings_is_found_by_any_of_them() -> None:
    fact = ["Settings > Security", "security settings"]
    assert mentions("Go to your security settings.", fact)
    assert not mentions("Go to your profile.", fact)


def test_an_answer_needs_every_fact_and_recall_counts_them() -> None:
    c = check("Locked for 15 minutes.", ["15 minutes", "E102"])
    assert c.found == [True, False]
    assert not c.correct
    assert c.recall == 0.5
    assert check("Locked for 15 minutes, error E102.", ["15 minutes", "E102"]).correct


@pytest.mark.parametrize(
    ("answer", "conflict"),
    [
        ("The link lasts 15 minutes.", "15 minute"),
        ("Either 15 or 30 minutes.", "15 minute"),  # a hedge names the wrong value too
        ("Between 15 and 30 minutes.", "15 minute"),
        ("30 minutes, or 2 hours for admins.", None),  # another unit is no conflict
    ],
)
def test_a_conflicting_value_of_the_same_unit_fails(answer: str, conflict: str | None) -> None:
    c = check(answer, ["30 minutes"])
    assert c.conflicts == ([conflict] if conflict else [])
    assert c.correct is (conflict is None and "30 minutes" in answer)


def test_a_value_the_question_states_is_no_conflict() -> None:
    q = "After 5 failed sign-ins in 10 minutes, how long is the lock?"
    assert check("After 10 minutes of failures it locks for 15 minutes.", ["15 minutes"], q).correct
    assert not check("It locks for 20 minutes.", ["15 minutes"], q).correct


def test_values_of_every_key_fact_are_allowed() -> None:
    c = check("Starter costs $12 and Team $29.", ["$12", "$29"])
    assert c.correct and not c.conflicts


def test_tokens_drop_markup_and_citations_but_keep_money_and_percent() -> None:
    assert tokens("**$5,000** [1] or 99.9%") == ["5000", "$", "or", "99.9", "%"]
    assert quantities(tokens("5 business days and 10 GB")) == {("5", "day"), ("10", "gb")}


def test_no_facts_is_never_correct() -> None:
    assert not check("anything", []).correct


def test_the_figures_an_answer_states_and_those_a_source_states() -> None:
    from distill.keyfacts import figures, known_figures

    answer = "1. Open Admin > Team.\n2) Click Save: code E102 lasts 15 minutes [1].\nStep 3: done"
    assert figures(answer) == {"e102", "15"}  # list markers and citations are not claims
    assert figures("It costs $1,500.00 a year, one seat") == {"1500"}
    # A source's number words count: an answer's "30" may come from "thirty".
    assert known_figures("Trials last thirty days; an hour of setup") == {"30", "1"}
