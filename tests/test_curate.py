from __future__ import annotations

from typing import Any

from distill.curate import curate, repetition, split_documents
from distill.recipe import CurateConfig


def sample(i: int, doc: str, q: str | None = None, a: str = "An answer.") -> dict[str, Any]:
    return {
        "sample_id": f"s{i}",
        "question": f"What is item number {i}?" if q is None else q,
        "answer": a,
        "doc_ids": [doc, "other"],
    }


def words(text: str) -> int:
    return len(text.split())


def test_split_holds_out_whole_documents_deterministically() -> None:
    docs = [f"doc{i}" for i in range(10)]
    held = split_documents(docs, 0.2, seed=0)
    assert len(held) == 2 and held <= set(docs)
    assert split_documents(list(reversed(docs)), 0.2, seed=0) == held  # order-independent
    assert split_documents(docs, 0.2, seed=1) != held or len(docs) < 3


def test_split_keeps_one_document_on_each_side() -> None:
    assert len(split_documents(["a", "b"], 0.9, seed=0)) == 1
    assert len(split_documents(["a", "b", "c"], 0.01, seed=0)) == 1
    assert split_documents(["only"], 0.5, seed=0) == set()


def test_curate_rejects_with_reasons_and_splits_by_source_document() -> None:
    samples = [sample(i, f"doc{i % 5}") for i in range(20)]
    samples += [
        sample(100, "doc1", q="", a=""),
        sample(101, "doc1", q="Short?"),
        sample(102, "doc1", a=" ".join(["word"] * 50)),
        sample(103, "doc1", q="Two\nlines?"),
        sample(104, "doc1", q="The user wants to know about refunds."),
        sample(105, "doc1", q="What does the document say about refunds?"),
        {**sample(106, "doc1"), "answer_truncated": True},
        sample(107, "doc1", a="Click the banner. " * 4),
        {**sample(0, "doc0"), "sample_id": "dup"},  # same text as s0
    ]
    cfg = CurateConfig(min_question_chars=10, max_answer_tokens=20, eval_fraction=0.4)
    train, held, rejected = curate(samples, cfg, words)
    reasons = {r["sample_id"]: r["reject_reason"] for r in rejected}
    assert reasons == {
        "s100": "unparseable: empty question or answer",
        "s101": "question shorter than 10 characters",
        "s102": "answer longer than 20 tokens",
        "s103": "unparseable: question spans several lines",
        "s104": "not a question (no question mark)",
        "s105": "question refers to the context instead of standing alone",
        "s106": "answer cut off at the teacher's token limit",
        "s107": "repetitive answer (over 20% repeated 4-grams)",
        "dup": "exact duplicate",
    }
    assert len(train) + len(held) == 20
    train_docs = {s["doc_ids"][0] for s in train}
    held_docs = {s["doc_ids"][0] for s in held}
    assert train_docs and held_docs and not train_docs & held_docs
    assert len(held_docs) == 2
    assert {s["split"] for s in train} == {"train"} and {s["split"] for s in held} == {"eval"}


def test_repetition_score() -> None:
    assert repetition("Trials last 14 days and need no credit card.") == 0.0
    assert repetition("go to the page. " * 10) > 0.7


def test_duplicates_ignore_case_and_punctuation() -> None:
    a = sample(1, "d1", q="How long is the trial?", a="14 days.")
    b = sample(2, "d2", q="how long is the TRIAL", a="14 days")
    _, _, rejected = curate([a, b], CurateConfig(), words)
    assert [r["sample_id"] for r in rejected] == ["s2"]
