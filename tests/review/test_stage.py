"""The review logic without a server: the spot-check sample, decisions from responses,
statistics, the training gate, and what training reads."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from distill.io import write_json, write_rows
from distill.recipe import Recipe
from distill.review.config import ReviewConfig
from distill.review.stage import _stats, decide, spot_check
from distill.review_gate import (
    GateClosed,
    gate,
    gate_reasons,
    render_status,
    summary,
    training_rows,
)
from distill.runfolder import RunFolder


def sample(i: int, task: str = "qa", doc: str = "a", **extra: Any) -> dict[str, Any]:
    return {
        "sample_id": f"s{i:03d}",
        "task": task,
        "source_doc_ids": [doc],
        "question": f"Q{i}?",
        "answer": f"A{i}.",
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": f"docs + Q{i}?"},
            {"role": "assistant", "content": f"A{i}."},
        ],
        **extra,
    }


def test_spot_check_is_proportional_to_strata_seeded_and_sized() -> None:
    train = [sample(i, "qa", "a") for i in range(60)]
    train += [sample(100 + i, "raft", "b") for i in range(30)]
    train += [sample(200 + i, "qa", "c") for i in range(10)]
    picked = spot_check(train, ReviewConfig(sample_fraction=0.1))
    assert len(picked) == 10 and all(p["reason"] == "sample" for p in picked)
    strata = Counter((p["task"], p["source_doc"]) for p in picked)
    assert strata == {("qa", "a"): 6, ("raft", "b"): 3, ("qa", "c"): 1}
    assert picked == spot_check(list(reversed(train)), ReviewConfig(sample_fraction=0.1))
    other = spot_check(train, ReviewConfig(sample_fraction=0.1, seed=1))
    assert {p["sample_id"] for p in other} != {p["sample_id"] for p in picked}
    assert len(spot_check(train, ReviewConfig(sample_count=25))) == 25
    assert len(spot_check(train[:3], ReviewConfig(sample_count=25))) == 3
    assert spot_check([], ReviewConfig()) == []


def test_small_strata_share_the_remainder_and_low_scores_are_added_capped() -> None:
    train = [sample(i, "qa", f"doc{i}") for i in range(20)]  # 20 strata of one
    for i, s in enumerate(train[:8]):
        s.update(groundedness=2 if i < 5 else 5, quality=5 if i < 5 else 2)
    picked = spot_check(train, ReviewConfig(sample_count=4, low_score_cap=3))
    assert Counter(p["reason"] for p in picked) == {"sample": 4, "low_score": 3}
    assert len({p["source_doc"] for p in picked}) == 7  # no stratum twice
    low = [p["sample_id"] for p in picked if p["reason"] == "low_score"]
    ids = {s["sample_id"]: s for s in train}
    assert all(ids[i]["groundedness"] == 2 or ids[i]["quality"] == 2 for i in low)
    off = ReviewConfig(sample_count=4, flag_groundedness_below=0, flag_quality_below=0)
    assert all(p["reason"] == "sample" for p in spot_check(train, off))


def r(user: str, status: str = "submitted", **values: Any) -> dict[str, Any]:
    return {"user": user, "status": status, "values": values}


def test_decisions_from_responses() -> None:
    assert decide([])["status"] == "pending"
    assert decide([r("a", "draft", verdict="reject")])["status"] == "pending"
    assert decide([r("a", "discarded")])["status"] == "skipped"
    assert decide([r("a", verdict="accept", quality=4)])["status"] == "accepted"
    edited = decide([r("a", verdict="accept", corrected_response="  Better.  ")])
    assert edited["status"] == "edited" and edited["corrected_answer"] == "Better."
    # A reject wins over another reviewer's accept; its text is a note, not an answer.
    both = decide(
        [
            r("a", verdict="accept", quality=5),
            r("b", verdict="reject", corrected_response="wrong", issues=["hallucination"]),
        ]
    )
    assert both["status"] == "rejected" and both["corrected_answer"] is None
    assert both["issues"] == ["hallucination"] and both["reviewer_notes"] == ["wrong"]
    assert both["reviewers"] == ["a", "b"] and both["quality"] == 5.0
    blank = decide([r("a", verdict="accept", corrected_response="   ")])
    assert blank["status"] == "accepted"


def entries_and_decisions(outcomes: list[tuple[str, str]]) -> tuple[list[dict], list[dict]]:
    entries, decisions = [], []
    for i, (reason, status) in enumerate(outcomes):
        sid = f"s{i}"
        entries.append(
            {
                "sample_id": sid,
                "reason": reason,
                "task": "qa" if i % 2 else "raft",
                "source_doc": "d",
            }
        )
        decisions.append({"sample_id": sid, "status": status, "issues": []})
    return entries, decisions


def test_stats_and_gate_reasons() -> None:
    cfg = ReviewConfig(max_reject_rate=0.2, required_share=1.0)
    entries, decisions = entries_and_decisions(
        [("sample", "accepted")] * 4 + [("sample", "rejected")] + [("low_score", "rejected")] * 3
    )
    stats = {**_stats(entries, decisions, 40), "mode": "argilla"}
    assert stats["reviewed"] == 8 and stats["rejected"] == 4
    assert stats["reject_rate"] == 0.2  # the low-score extras are not in the rate
    assert gate_reasons(stats, cfg) == []
    assert stats["by_task"]["qa"]["records"] == 4
    entries, decisions = entries_and_decisions(
        [("sample", "accepted")] * 2 + [("sample", "rejected")] + [("sample", "pending")]
    )
    stats = {**_stats(entries, decisions, 40), "mode": "argilla"}
    reasons = gate_reasons(stats, cfg)
    assert len(reasons) == 3
    assert "3 of 4 randomly sampled records reviewed (75%)" in reasons[0]
    assert "the gate needs at least 4" in reasons[1]
    assert "rejected 33%" in reasons[2]
    loose = ReviewConfig(required_share=0.75, max_reject_rate=0.5, min_sample_reviewed=3)
    assert gate_reasons(stats, loose) == []
    text = render_status(stats, cfg)
    assert "training gate: closed" in text and "pending" in text and "raft" in text
    assert gate_reasons({"mode": "auto"}, cfg) == []


def test_reviewing_only_low_score_extras_keeps_the_gate_closed() -> None:
    """All 30 low-score extras reviewed, none of the 20 random records: 30 of 50 is 60%,
    which opened a gate at required_share 0.5, with no reject rate to check."""
    cfg = ReviewConfig(required_share=0.5, max_reject_rate=0.2)
    entries, decisions = entries_and_decisions(
        [("sample", "pending")] * 20 + [("low_score", "accepted")] * 30
    )
    stats = {**_stats(entries, decisions, 200), "mode": "argilla"}
    assert stats["reviewed"] == 30 and stats["sample_reviewed"] == 0
    assert stats["reject_rate"] is None
    reasons = gate_reasons(stats, cfg)
    assert "0 of 20 randomly sampled records reviewed (0%)" in reasons[0]
    assert "needs at least 10" in reasons[1]
    # Ten random records reviewed (50%): the share and the minimum are met.
    entries, decisions = entries_and_decisions(
        [("sample", "accepted")] * 10 + [("sample", "pending")] * 10
    )
    stats = {**_stats(entries, decisions, 200), "mode": "argilla"}
    assert gate_reasons(stats, cfg) == []
    # Five of eight (63%) pass the share but not the minimum of ten (eight, here).
    entries, decisions = entries_and_decisions(
        [("sample", "accepted")] * 5 + [("sample", "pending")] * 3
    )
    stats = {**_stats(entries, decisions, 200), "mode": "argilla"}
    assert gate_reasons(stats, cfg) == [
        "5 randomly sampled records reviewed; the gate needs at least 8 "
        "(review.min_sample_reviewed is 10)"
    ]


def make_run(tmp_path: Path, stats: dict[str, Any], decisions: list[dict] | None) -> RunFolder:
    run = RunFolder(tmp_path / "run")
    multi = sample(3)
    multi["messages"] = [
        *multi["messages"],
        {"role": "user", "content": "And then?"},
        {"role": "assistant", "content": "Then B."},
    ]
    multi["turns"] = 2
    write_rows(run.curated("train"), [sample(1), sample(2), multi])
    write_json(run.review_stats, stats)
    if decisions is not None:
        write_rows(run.decisions, decisions)
    return run


def test_training_rows_apply_rejects_and_corrections(tmp_path: Path) -> None:
    decisions = [
        {"sample_id": "s001", "status": "rejected", "corrected_answer": None},
        {"sample_id": "s003", "status": "edited", "corrected_answer": "Then C."},
    ]
    run = make_run(tmp_path, {"mode": "argilla", "human_reviewed": True}, decisions)
    rows = {s["sample_id"]: s for s in training_rows(run)}
    assert set(rows) == {"s002", "s003"}
    assert rows["s002"]["review_status"] == "not_spot_checked"
    multi = rows["s003"]
    assert multi["human_edited"] and multi["messages"][-1]["content"] == "Then C."
    assert multi["messages"][-2]["content"] == "And then?" and multi["answer"] == "A3."
    auto = make_run(tmp_path / "auto", {"mode": "auto", "human_reviewed": False}, None)
    assert {s["review_status"] for s in training_rows(auto)} == {"not_reviewed"}


def test_gate_raises_or_records_the_override(tmp_path: Path) -> None:
    stats = {"mode": "argilla", "human_reviewed": True, "spot_check": 4, "reviewed": 1}
    stats.update(reject_rate=0.0)
    run = make_run(tmp_path, stats, [])
    recipe = Recipe.model_validate({"name": "x", "ingest": {"paths": ["d"]}})
    with pytest.raises(GateClosed, match="1 of 4 spot-check records reviewed.*--accept-unreviewed"):
        gate(recipe, run)
    assert GateClosed.exit_code == 4
    got = gate(recipe, run, accept_unreviewed=True)
    assert got["overridden"] and not got["passed"] and got["reasons"]
    full = {
        **stats,
        "train_samples": 40,
        "sample_records": 4,
        "low_score_records": 0,
        "accepted": 1,
        "rejected": 0,
        "edited": 0,
    }
    text = summary(full, got)
    assert "1 of 4 spot-check records reviewed" in text and "--accept-unreviewed" in text
    assert "36 training samples were not individually reviewed" in text
    auto = summary({"mode": "auto", "train_samples": 7}, {"overridden": False})
    assert auto.startswith("Not human-reviewed") and "7 training samples" in auto


def test_the_context_shows_tables_as_aligned_text_after_the_answer() -> None:
    import inspect

    from distill.review import argilla as argilla_io
    from distill.review.records import aligned_tables

    text = (
        "Plans:\n\n| Plan | Price |\n| --- | ---: |\n| Starter | $12 |\n| Enterprise | custom |\n"
    )
    assert aligned_tables(text).splitlines()[2:] == [
        "Plan        Price",
        "----------  ------",
        "Starter     $12",
        "Enterprise  custom",
    ]
    assert aligned_tables("a | b without pipes at both ends") == "a | b without pipes at both ends"
    assert [name for name, _ in argilla_io.FIELDS] == ["instruction", "response", "context"]
    source = inspect.getsource(argilla_io.settings)
    assert "use_markdown=False" in source  # documents are never rendered (browser test too)


def test_a_decision_on_an_answer_rewritten_since_review_no_longer_applies(
    tmp_path: Path,
) -> None:
    """Decisions were matched by sample id only: a reject or a correction was applied to
    an answer the teacher wrote again after the review (and counted as reviewed)."""
    from distill.review.records import record
    from distill.review.stage import _entry
    from distill.review_gate import record_id, reviewed_sha

    reviewed = [sample(1), sample(2)]
    decisions = [
        {"sample_id": s["sample_id"], "status": st, "corrected_answer": fix,
         "content_sha": reviewed_sha(s)}
        for s, st, fix in ((reviewed[0], "rejected", None), (reviewed[1], "edited", "B."))
    ]  # fmt: skip
    run = make_run(tmp_path, {"mode": "argilla", "human_reviewed": True}, decisions)
    rows = {s["sample_id"]: s for s in training_rows(run)}
    assert "s001" not in rows and rows["s002"]["messages"][-1]["content"] == "B."
    # The teacher writes both again (a neighbour chunk changed): new answers, new records.
    again = [sample(1), sample(2), sample(3)]
    for s in again[:2]:
        s["messages"][-1]["content"] += " Written again."
    write_rows(run.curated("train"), again)
    rows = {s["sample_id"]: s for s in training_rows(run)}
    assert set(rows) == {"s001", "s002", "s003"}
    assert rows["s002"]["messages"][-1]["content"] == "A2. Written again."
    assert not rows["s002"]["human_edited"]
    assert {r["review_status"] for r in rows.values()} == {"not_spot_checked"}
    # Its Argilla record is a new one (pending), not the reviewed one.
    assert record_id(again[0]) != record_id(reviewed[0])
    assert record_id(sample(1)) == record_id(reviewed[0])  # same text: same record
    entry = _entry(again[0], "sample")
    recipe = Recipe.model_validate({"name": "r", "ingest": {"paths": ["d"]}, "teacher": "fake:"})
    assert record(again[0], entry, {}, recipe)["id"] == record_id(again[0])


def publishable_run(
    tmp_path: Path, train: list[dict[str, Any]], decisions: list[dict[str, Any]], method: str
) -> tuple[Recipe, RunFolder]:
    """The least a run folder needs for `publish.stage.write_dataset`: curated rows, a
    reviewed spot-check of them with `decisions`, and the corpus's documents."""
    recipe = Recipe.model_validate(
        {
            "name": "r",
            "ingest": {"paths": ["docs"]},
            "teacher": "fake:",
            "train": {"method": method},
        }
    )
    run = RunFolder(tmp_path / "run")
    write_rows(run.curated("train"), train)
    write_rows(run.curated("eval"), [sample(9)])
    write_rows(run.curated("rejected"), [])
    write_rows(run.documents, [{"source": "a.md", "format": "md"}])
    entries, _ = entries_and_decisions([("sample", "accepted")] * len(train))
    done = [{"sample_id": e["sample_id"], "status": "accepted", "issues": []} for e in entries]
    stats = {**_stats(entries, done, len(train)), "mode": "argilla", "human_reviewed": True}
    write_json(run.review_stats, stats)
    write_rows(run.decisions, decisions)
    return recipe, run
