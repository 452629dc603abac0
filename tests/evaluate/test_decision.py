"""The judge-free decision over answer rows: the verdict's words follow the numbers."""

from __future__ import annotations

from typing import Any

from distill.decision_text import decision_markdown
from distill.evaluate.decision import decide
from distill.results import Decision


def answer(system: str, item: int, correct: bool, **extra: Any) -> dict[str, Any]:
    """One answer row with the columns decide() reads."""
    row: dict[str, Any] = {
        "item_id": f"q{item}",
        "eval_set": "deployment" if item % 2 else "unseen",
        "kind": "answerable",
        "system": system,
        "question": f"question {item}?",
        "answer": "It is 30 minutes [1]." if correct else "I am not sure.",
        "answer_error": None,
        "doc_id": f"doc{item % 20}",
        "source_chunk_ids": [f"doc{item % 20}#{item % 3}"],
        "key_facts": '["30 minutes"]',
        "fact_correct": correct,
        "fact_recall": float(correct),
        "retrieval_hit": True,
        "retrieved_chunk_ids": [f"doc{item % 20}#{item % 3}"],
        "refused": False,
        "cited": [1] if correct else [],
        "cited_right": 1 if correct else 0,
        "numbers": 1 if correct else 0,
        "unsupported_numbers": 0,
        "prompt_tokens": 500,
        "output_tokens": 12,
        "latency_s": 1.0,
        "compute_s": 1.0,
    }
    row.update(extra)
    return row


def rows_for(ft: set[int], base: set[int], n: int = 200) -> list[dict[str, Any]]:
    return [
        answer(s, i, i in right)
        for i in range(n)
        for s, right in (("ft+rag", ft), ("base+rag", base))
    ]


def decided(rows: list[dict[str, Any]]) -> Decision:
    d = decide(rows, ("ft+rag", "base+rag"), 0.10)  # type: ignore[arg-type]
    assert d is not None
    return Decision.model_validate(d.model_dump(mode="json"))  # the metrics.json round trip


def test_a_large_gain_is_a_gain_and_says_for_this_adapter() -> None:
    d = decided(rows_for(set(range(120)), set(range(80))))  # 40 wins, 0 losses of 200
    pooled = d.sets[-1]
    assert [s.eval_set for s in d.sets] == ["unseen", "deployment", "pooled"]
    assert pooled.primary is not None and pooled.primary.wins == 40
    assert d.verdict == "gain"
    assert d.verdict_lines[0].startswith("Deploy `ft+rag` instead of `base+rag`? Yes")
    assert d.verdict_lines[0].endswith("(for this adapter).")
    # 20 documents: clustered by document; the MDE is printed with the discordance
    assert pooled.primary.cluster_by == "document" and pooled.primary.clusters == 20
    assert (
        "resolves differences of" in d.verdict_lines[2] and "discordance 20%" in d.verdict_lines[2]
    )


def test_a_loss_is_a_loss() -> None:
    d = decided(rows_for(set(range(80)), set(range(120))))
    assert d.verdict == "loss" and "No: a measured loss" in d.verdict_lines[0]


def test_a_small_difference_is_not_resolvable_and_says_its_mde() -> None:
    d = decided(rows_for(set(range(104)), set(range(4, 104)) | {150}, n=200))
    p = d.sets[-1].primary
    assert p is not None and not p.significant
    assert d.verdict == "not resolvable"
    assert "Not resolvable at this size" in d.verdict_lines[0]
    assert f"{p.mde * 100:.0f} points or more" in d.verdict_lines[2]


def test_no_harm_and_a_behaviour_gained() -> None:
    """Accuracy equal, but ft+rag refuses the unanswerables base+rag answers: the lower
    bound is above -5 points and a Holm-adjusted secondary is gained."""
    rows = rows_for(set(range(100)), set(range(100)))
    for i in range(40):
        for s, refused in (("ft+rag", True), ("base+rag", False)):
            rows.append(
                answer(s, 1000 + i, False, kind="unanswerable", key_facts="[]",
                       fact_correct=None, refused=refused, doc_id="")
            )  # fmt: skip
    d = decided(rows)
    (refusal,) = [c for c in d.secondaries if c.metric == "refusal on unanswerables"]
    assert refusal.wins == 40 and refusal.favourable and refusal.p_holm is not None
    assert d.verdict == "no harm, behaviour gained"
    assert "a measured gain in refusal on unanswerables" in d.verdict_lines[0]


def test_an_unanswered_question_leaves_the_pair_and_is_counted() -> None:
    rows = rows_for(set(range(120)), set(range(80)))
    broken = next(r for r in rows if r["system"] == "base+rag" and r["item_id"] == "q7")
    broken.update(answer_error="timeout", fact_correct=None, fact_recall=None)
    d = decided(rows)
    p = d.sets[-1].primary
    assert p is not None and p.n == 199 and p.dropped == 1
    assert "1 without a complete pair" in d.verdict_lines[1]


def test_the_tables_render_every_set_and_system() -> None:
    d = decided(rows_for(set(range(120)), set(range(80))))
    text = "\n".join(decision_markdown(d))
    assert text.startswith("## Verdict\n\n> **Deploy")
    for name in ("| unseen |", "| deployment |", "| pooled |", "| ft+rag |", "| base+rag |"):
        assert name in text
    # Citation precision pairs the 80 questions both systems cite for (both right).
    assert "## Key secondaries (Holm-adjusted over 2)" in text  # no unanswerables here
    assert "| citation precision | 80 | +0.000" in text


def test_no_key_rows_no_decision() -> None:
    rows = [answer("ft+rag", 0, True, key_facts="[]")]
    assert decide(rows, ("ft+rag", "base+rag"), 0.1) is None  # type: ignore[arg-type]


def test_a_secondary_with_fewer_than_two_pairs_is_left_out_not_a_crash() -> None:
    """Base cites on one question only: citation precision has one pair, no spread."""
    rows = rows_for(set(range(120)), set(range(80)))
    for r in rows:
        if r["system"] == "base+rag" and r["item_id"] != "q0":
            r["cited"], r["cited_right"] = [], 0
    d = decided(rows)
    assert {c.metric for c in d.secondaries} == {"false refusal"}
    assert d.verdict == "gain"


def test_speed_counts_only_answers_timed_alone_and_the_loops() -> None:
    rows = rows_for(set(range(50)), set(range(40)), n=60)
    for r in rows:
        i = int(r["item_id"][1:])
        r |= {"latency_s": 1.0, "compute_s": 1.0, "timed": True, "finish": "stop"}
        if r["system"] == "base+rag" and i >= 10:
            # Reused the previous prompt's start: fast, and not a lone request's wait.
            r |= {"latency_s": 0.1, "compute_s": 0.1, "timed": False}
        if r["system"] == "base+rag" and i < 6:
            r["finish"] = "loop"
    d = decided(rows)
    base = d.systems["base+rag"]
    assert base.speed is not None and base.speed.timed == 10
    assert base.speed.latency_p50_s == 1.0 and base.speed.compute_s_per_1k == 1000.0
    assert base.speed.output_tokens_per_s == 12.0
    assert base.loops is not None and (base.loops.k, base.loops.n) == (6, 60)
    assert d.systems["ft+rag"].speed.timed == 60  # type: ignore[union-attr]
    text = "\n".join(decision_markdown(d))
    assert "## Speed on this machine (descriptive)" in text
    assert "| base+rag | 1.00 / 1.00 s | 16.7 min | 12 | 10 | 10% [" in text
