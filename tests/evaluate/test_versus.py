"""The deciding system against a named system (NAME: SPEC, the model it replaces): the
paired comparison on the answer key, its margin, both costs per 1,000 answers, and how
the decision's Markdown shows them."""

from __future__ import annotations

from typing import Any

from distill.decision_text import decision_markdown
from distill.evaluate.config import NamedSystem
from distill.evaluate.versus import with_named
from distill.results import Decision
from tests.evaluate.test_decision import answer, decided

INCUMBENT = NamedSystem(model="openai:ft:gpt-4o-mini:acme::xyz", margin=0.10)


def rows_with(ft: set[int], incumbent: set[int], n: int = 200) -> list[dict[str, Any]]:
    """ft+rag (here, 1 s of compute an answer) and base+rag, and the incumbent (an API
    at $0.0004 an answer) right on the given questions."""
    rows = []
    for i in range(n):
        for s, right in (("ft+rag", ft), ("base+rag", set()), ("incumbent", incumbent)):
            api = s == "incumbent"
            rows.append(
                answer(s, i, i in right, local=not api, priced=True, timed=True,
                       cost_usd=0.0004 if api else 0.0, compute_s=0.3 if api else 1.0)
            )  # fmt: skip
    return rows


def named(
    rows: list[dict[str, Any]], hourly: float | None = 3.6, spec: NamedSystem = INCUMBENT
) -> Decision:
    d = with_named(decided(rows), rows, {"incumbent": spec}, hourly)  # type: ignore[arg-type]
    return Decision.model_validate(d.model_dump(mode="json"))  # the metrics.json round trip


def test_a_student_within_the_margin_matches_the_incumbent_and_both_costs_are_beside() -> None:
    d = named(rows_with(set(range(118)), set(range(120))))  # 2 lost, none won
    v = d.named["incumbent"]
    c = v.comparison
    assert (c.system, c.against, c.metric, c.n) == ("ft+rag", "incumbent", "key-fact accuracy", 200)
    assert (c.wins, c.losses, c.diff) == (0, 2, -0.01)
    assert c.ci[0] > -0.10 and v.within_margin and v.model == INCUMBENT.model and not v.rag
    # The incumbent at its price; the student as compute at $3.60 an hour (1 s an answer).
    assert (v.cost_per_1k_usd, v.cost_basis) == (0.4, "API prices")
    assert (v.deciding_cost_per_1k_usd, v.deciding_cost_basis) == (1.0, "compute at $3.6/h")
    assert v.deciding_compute_s_per_1k == 1000.0
    line = d.verdict_lines[-1]
    assert line.startswith(
        f"Does `ft+rag` match `incumbent` ({INCUMBENT.model})? Yes, within 10 points: "
        "`ft+rag` − `incumbent` -1.0 points ["
    )
    assert line.endswith(
        "in key-fact accuracy on 200 questions. Per 1,000 answers: `incumbent` $0.40 (API "
        "prices), `ft+rag` $1.00 (compute at $3.6/h)."
    )
    # The primary's lines come first, unchanged.
    assert d.verdict_lines[0].startswith("Deploy `ft+rag` instead of `base+rag`?")
    text = "\n".join(decision_markdown(d))
    assert "## Against the named systems: does `ft+rag` match them?" in text
    assert (f"| incumbent | `{INCUMBENT.model}` | no | 60% [53%, 67%] of 200 | -1.0 [") in text
    assert "| 0 / 2 | yes, within 10 points | $0.40 (API prices) | $1.00 (compute" in text
    assert f"> {line}" in text  # in the verdict box


def test_a_measured_loss_beyond_the_margin_does_not_match() -> None:
    d = named(rows_with(set(range(80)), set(range(140))))
    v = d.named["incumbent"]
    assert not v.within_margin and v.comparison.significant
    assert "? No, a measured loss: `ft+rag` − `incumbent` -30.0 points" in d.verdict_lines[-1]


def test_too_few_questions_to_show_a_match_say_so() -> None:
    d = named(rows_with(set(range(8)), {*range(1, 8), 9}, n=20))  # 1 won, 1 lost of 20
    v = d.named["incumbent"]
    assert not v.within_margin and not v.comparison.significant
    assert (
        "? Not shown at this size (margin 10 points): `ft+rag` − `incumbent` +0.0 points"
    ) in d.verdict_lines[-1]


def test_a_smaller_margin_is_the_systems_own() -> None:
    rows = rows_with(set(range(118)), set(range(120)))
    strict = named(rows, spec=NamedSystem(model="openai:x", margin=0.01))
    assert not strict.named["incumbent"].within_margin
    assert "? Not shown at this size (margin 1 points)" in strict.verdict_lines[-1]


def test_an_unpriced_incumbent_and_an_unpriced_machine_say_what_is_missing() -> None:
    rows = rows_with(set(range(118)), set(range(120)))
    for r in rows:
        if r["system"] == "incumbent":
            r["priced"] = False
    v = named(rows, hourly=None).named["incumbent"]
    assert (v.cost_per_1k_usd, v.cost_basis) == (None, "price unknown (give incumbent a price)")
    assert (v.deciding_cost_per_1k_usd, v.deciding_cost_basis) == (None, "compute only")
    d = named(rows, hourly=None)
    assert d.verdict_lines[-1].endswith(
        "`incumbent` price unknown (give incumbent a price), `ft+rag` 16.7 min of compute "
        "on this machine."
    )


def test_without_its_answers_the_decision_is_as_before() -> None:
    rows = [r for r in rows_with(set(range(118)), set(range(120))) if r["system"] != "incumbent"]
    before = decided(rows)
    after = named(rows)
    assert after == before and after.named == {}
    assert "Against the named systems" not in "\n".join(decision_markdown(after))


def test_the_costs_count_every_answer_as_the_speed_table_does() -> None:
    rows = rows_with(set(range(118)), set(range(120)))
    for i in range(40):  # ft+rag's refusals take 3 s each; the incumbent's cost more
        for s, cost, compute in (("ft+rag", 0.0, 3.0), ("incumbent", 0.0014, 0.3)):
            rows.append(
                answer(s, 1000 + i, False, kind="unanswerable", key_facts="[]", local=s == "ft+rag",
                       priced=True, timed=True, cost_usd=cost, compute_s=compute, refused=True)
            )  # fmt: skip
    d = named(rows)
    v = d.named["incumbent"]
    speed = d.systems["ft+rag"].speed
    assert speed is not None and v.deciding_compute_s_per_1k == speed.compute_s_per_1k
    assert v.deciding_compute_s_per_1k == round((200 * 1.0 + 40 * 3.0) / 240 * 1000, 1)
    assert v.cost_per_1k_usd == round((200 * 0.0004 + 40 * 0.0014) / 240 * 1000, 4)
