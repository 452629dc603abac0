from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from distill.config import SplitConfig
from distill.curate.checks import repetition
from distill.curate.config import CurateConfig
from distill.curate.funnel import curate, source_docs
from distill.grounding import support_score
from distill.review.exports import write_exports
from distill.split import Split, split_documents

SYSTEM = {"role": "system", "content": "You are a helpful support assistant."}
NO_DEDUP = {"near_dup_questions": None, "near_dup_samples": None}
NO_SEEN = SplitConfig(seen_eval_fraction=0.0)  # no seen-documents set


def sample(
    i: int,
    doc: str,
    q: str | None = None,
    a: str = "An answer.",
    context: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A sample whose first document states its answer (as a grounded answer's does),
    unless `context` is given."""
    question = f"What is item number {i}?" if q is None else q
    context = f"Item text. {a}" if context is None else context
    context = f'<document id="1">{context}</document>\n\n<document id="2">More.</document>'
    return {
        "sample_id": f"s{i}",
        "task": "qa",
        "question": question,
        "answer": a,
        "messages": [
            SYSTEM,
            {"role": "user", "content": f"{context}\n\n{question}"},
            {"role": "assistant", "content": a},
        ],
        "doc_ids": [doc, "other"],
        "source_doc_ids": [doc],
        "chunk_ids": [f"{doc}#1", "other#1"],
        "expects_refusal": False,
        **extra,
    }


def by_document(samples: list[dict[str, Any]], held: SplitConfig = NO_SEEN) -> Split:
    """The split generate would have chosen over these samples' documents."""
    docs = {d for s in samples for d in source_docs(s)}
    return Split.choose(docs, held.eval_fraction, held.seed, held.min_eval_documents)


def words(text: str) -> int:
    return len(text.split())


def test_checks_reject_with_reasons_and_split_by_source_document() -> None:
    samples = [sample(i, f"doc{i % 5}") for i in range(20)]
    samples += [
        sample(100, "doc1", q="", a=""),
        sample(101, "doc1", q="Short?"),
        sample(102, "doc1", a=" ".join(["word"] * 50)),
        sample(103, "doc1", q="Two\nlines?"),
        sample(104, "doc1", q="The user wants to know about refunds."),
        sample(105, "doc1", q="What does the document say about refunds?"),
        sample(106, "doc1", answer_truncated=True),
        sample(107, "doc1", a="Click the banner. " * 4),
        sample(108, "doc1", a="The documents do not contain that."),
        sample(109, "doc1", a="Trials last 14 days.", expects_refusal=True),
        sample(110, "doc1", a="Trials last 14 days [3]."),
        sample(111, "doc1", q="Summarise the refund policy for a new user.", task="instructions"),
        sample(
            112, "doc1", q="Ask the owner to email the Owner.", a="[1] [2]", task="instructions"
        ),
        sample(
            113, "doc1", q="How many tickets are open now?", a="There are 2 [1].", context="Items."
        ),
        sample(114, "doc1", q="How many minutes are in an hour?", a="60.", context="An hour."),
        sample(
            117,
            "doc1",
            q="What happens to my data after I cancel?",
            a="The Owner cannot leave without transferring ownership to an Admin [1].",
        ),
        # Kept: a short answer, and one that shares a stem ("cancel", "cancelled").
        sample(118, "doc1", q="How long is the reset link valid?", a="Thirty minutes [1]."),
        sample(
            119,
            "doc1",
            q="When is a cancelled workspace deleted?",
            a="Data of a workspace whose plan was cancelled is kept sixty days, then erased [1].",
        ),
        # Kept: figures the context states (in words, too), and a numbered list's markers.
        sample(115, "doc1", a="Trials last 30 days [1].", context="Trials last thirty days."),
        sample(
            116,
            "doc1",
            q="List the steps to export tickets.",
            a="1. Open Admin > Data.\n2. Click Export [1].",
            task="instructions",
        ),
        {**sample(0, "doc0"), "sample_id": "dup"},  # same text as s0
    ]
    cfg = CurateConfig(min_question_chars=10, max_answer_tokens=20, **NO_DEDUP)
    held = SplitConfig(eval_fraction=0.4, seen_eval_fraction=0)
    out = curate(samples, cfg, words, split=by_document(samples, held), split_cfg=held)
    reasons = {r["sample_id"]: r["reject_reason"] for r in out.rejected}
    assert reasons == {
        "s100": "unparseable: empty request or answer",
        "s101": "request shorter than 10 characters",
        "s102": "answer longer than 20 tokens",
        "s103": "unparseable: request spans several lines",
        "s104": "not a question (no question mark)",
        "s105": "request refers to the context instead of standing alone",
        "s106": "answer cut off at the teacher's token limit",
        "s107": "repetitive answer (over 20% repeated 4-grams)",
        "s108": "refuses although its context holds the answer",
        "s109": "answers although its context lacks the answer",
        "s110": "cites a document that is not in its context",
        "s112": "answer is nothing but citation markers",
        "s113": "answer states a number its context does not",
        "s114": "answer states a number its context does not",
        "s117": "answer shares no word with its question",
        "dup": "exact duplicate of s0",
    }  # s111 is an instruction: no question mark needed
    assert len(out.train) + len(out.eval) == 25
    train_docs = {s["source_doc_ids"][0] for s in out.train}
    held_docs = {s["source_doc_ids"][0] for s in out.eval}
    assert train_docs and held_docs and not train_docs & held_docs
    assert held_docs == split_documents([f"doc{i}" for i in range(5)], 0.4, 0)
    assert {s["split"] for s in out.train} == {"train"} and {s["split"] for s in out.eval} == {
        "eval"
    }
    assert dict(out.funnel)["checks"] == 15 and dict(out.funnel)["exact duplicates"] == 1


def test_refusal_targets_pass_and_citations_can_be_required() -> None:
    refusal = sample(
        1, "d1", a="The documents provided do not contain the answer to this question."
    )
    refusal["expects_refusal"] = True
    cited = sample(2, "d1", q="How much is Team?", a="Team costs $29 [1].", context="Team: $29.")
    bare = sample(3, "d2", q="How much is Starter?", a="Starter costs $12.", context="$12")
    rows, cfg = [refusal, cited, bare], CurateConfig(require_citations=True, **NO_DEDUP)
    out = curate(rows, cfg, words, split=by_document(rows), split_cfg=NO_SEEN)
    assert [r["sample_id"] for r in out.rejected] == ["s3"]
    assert out.rejected[0]["reject_reason"] == "cites no document"


def test_near_duplicates_caught_and_distinct_samples_kept() -> None:
    pairs = [
        ("How long does the free trial last?", "How long does the free trial last for?"),
        ("How can I reset my account password?", "How can I reset my account password now?"),
        ("What is the API rate limit per minute?", "what is the api rate-limit per minute?!"),
    ]
    distinct = [
        "How long does the free trial last?",
        "How much does the Team plan cost per user?",
        "How do I export my tickets to CSV?",
        "Which roles can delete a workspace?",
    ]
    samples = [sample(i, f"d{i}", q=q, a=f"Answer {i} with words.") for i, q in enumerate(distinct)]
    for n, (a, b) in enumerate(pairs):
        samples.append(sample(10 + 2 * n, f"e{n}", q=a, a=f"First {n}."))
        samples.append(sample(11 + 2 * n, f"f{n}", q=b, a=f"Second {n}."))
    cfg = CurateConfig(decontam_ngram=0)
    held = SplitConfig()
    out = curate(samples, cfg, words, split=by_document(samples, held), split_cfg=held)
    gone = {r["sample_id"]: r["reject_reason"] for r in out.rejected}
    assert set(gone) == {"s10", "s11", "s13", "s15"}  # s10 repeats distinct[0] (s0)
    assert gone["s11"].startswith("near-duplicate question of s0")
    assert gone["s13"].startswith("near-duplicate question of s12")
    # Whole samples: the same question and nearly the same answer.
    text = "Open Billing in the left menu, then Invoices: each invoice of the last {} is there."
    again = [sample(1, "d1", q="Where are invoices?", a=text.format("two years"))]
    again.append(sample(2, "d2", q="Where are invoices?", a=text.format("2 years")))
    cfg = CurateConfig(near_dup_questions=None)
    out = curate(again, cfg, words, split=by_document(again, held), split_cfg=held)
    assert [r["reject_reason"] for r in out.rejected] == ["near-duplicate sample of s1"]


def test_sources_straddling_the_split_are_dropped() -> None:
    samples = [sample(i, f"doc{i}") for i in range(6)]
    hop = sample(9, "doc0", q="How do plans and trials combine?", source_doc_ids=["doc0", "doc1"])
    cfg, split_cfg = CurateConfig(**NO_DEDUP), SplitConfig(eval_fraction=0.5, seed=3)
    held = split_documents([f"doc{i}" for i in range(6)], 0.5, 3)
    split = by_document([*samples, hop], split_cfg)
    out = curate([*samples, hop], cfg, words, split=split, split_cfg=NO_SEEN)
    straddles = ("doc0" in held) != ("doc1" in held)
    dropped = [r["sample_id"] for r in out.rejected]
    assert ("s9" in dropped) == straddles
    for s in out.train:
        assert not set(s["source_doc_ids"]) & held


def test_decontamination_removes_a_planted_overlap() -> None:
    shared = "refunds are issued to the original card within ten business days of the request"
    samples = [sample(i, f"doc{i}", a=f"Answer number {i}.") for i in range(8)]
    held = split_documents([f"doc{i}" for i in range(8)], 0.25, 0)
    eval_doc = sorted(held)[0]
    train_doc = next(d for d in (f"doc{i}" for i in range(8)) if d not in held)
    samples.append(sample(20, eval_doc, q="How are refunds paid?", a=f"Well, {shared}."))
    samples.append(sample(21, train_doc, q="When do refunds arrive?", a=f"So {shared}!"))
    samples.append(sample(22, train_doc, q="Who pays refunds?", a="The finance team [1]."))
    cfg, split_cfg = CurateConfig(**NO_DEDUP), SplitConfig(eval_fraction=0.25)
    out = curate(samples, cfg, words, split=by_document(samples, split_cfg), split_cfg=NO_SEEN)
    reasons = {r["sample_id"]: r["reject_reason"] for r in out.rejected}
    assert reasons == {"s21": "shares a 13-word sequence with an eval sample"}
    assert dict(out.funnel)["decontamination"] == 1
    assert "s20" in {s["sample_id"] for s in out.eval}


def test_a_failed_judge_call_is_not_a_pass() -> None:
    samples = [sample(i, f"doc{i}", a=f"Answer {i}.") for i in range(4)]

    def judge(batch: list[dict[str, Any]]) -> list[dict[str, Any] | str]:
        return [
            {"groundedness": 5, "quality": 4, "reason": "fine"},
            "HTTP 500",
            {"groundedness": 2, "quality": 5, "reason": "invented a number"},
            {"groundedness": 5, "quality": 1, "reason": "useless"},
        ]

    cfg = CurateConfig(**NO_DEDUP)
    out = curate(samples, cfg, words, judge=judge, split=by_document(samples), split_cfg=NO_SEEN)
    reasons = {r["sample_id"]: r["reject_reason"] for r in out.rejected}
    assert reasons == {
        "s1": "judge failed: HTTP 500",
        "s2": "judge: groundedness 2 below 4",
        "s3": "judge: quality 1 below 3",
    }
    (kept,) = out.train + out.eval
    assert (kept["groundedness"], kept["quality"]) == (5, 4)


def test_support_score_reads_the_cited_documents() -> None:
    chunks = {"d1#1": "Starter costs $12 per user per month.", "other#1": "Team costs $29."}
    q = "What does Starter cost?"
    good = sample(1, "d1", q=q, a="Starter costs $12 per user [1].")
    wrong = sample(2, "d1", q=q, a="Starter costs $15 weekly [1].", context="Starter: $15.")
    assert support_score({**good, "cited_chunk_ids": ["d1#1"]}, chunks) == 1.0
    assert support_score({**wrong, "cited_chunk_ids": ["d1#1"]}, chunks) == 0.5
    assert support_score({**good, "expects_refusal": True}, chunks) is None
    rows, cfg = [good, wrong], CurateConfig(min_support=0.8, **NO_DEDUP)
    out = curate(rows, cfg, words, chunks, split=by_document(rows), split_cfg=NO_SEEN)
    assert [r["sample_id"] for r in out.rejected] == ["s2"]


def test_repetition_score() -> None:
    assert repetition("Trials last 14 days and need no credit card.") == 0.0
    assert repetition("go to the page. " * 10) > 0.7


def test_exports_in_three_formats(tmp_path: Path) -> None:
    talk = sample(1, "d1", q="How long is a trial?", a="14 days [1].")
    talk["messages"] += [
        {"role": "user", "content": "Can I extend it?"},
        {"role": "assistant", "content": "Yes, once, by 7 days [1]."},
    ]
    write_exports(tmp_path, "train", [talk], ["openai", "sharegpt", "alpaca"])
    (line,) = (tmp_path / "train.openai.jsonl").read_text().splitlines()
    assert json.loads(line) == {"messages": talk["messages"]}
    (conv,) = json.loads((tmp_path / "train.sharegpt.json").read_text())
    assert [t["from"] for t in conv["conversations"]] == ["system", "human", "gpt", "human", "gpt"]
    (alp,) = json.loads((tmp_path / "train.alpaca.json").read_text())
    assert alp["instruction"] == "Can I extend it?" and alp["output"].startswith("Yes, once")
    assert alp["history"] == [[talk["messages"][1]["content"], "14 days [1]."]]
    assert alp["system"] == SYSTEM["content"]


def test_refusal_rows_beyond_the_planned_share_are_dropped() -> None:
    # 12 answerable rows and 9 refusal targets, all on training documents.
    rows = [sample(i, f"doc{i % 4}", q=f"What is setting {i} set to?") for i in range(12)]
    rows += [
        sample(
            100 + i,
            f"doc{i % 4}",
            q=f"How many widgets does plan {i} allow?",
            a="The documents do not contain the answer.",
            expects_refusal=True,
        )
        for i in range(9)
    ]
    split = Split([], [f"doc{i}" for i in range(4)] + ["other"])
    cfg = CurateConfig(**NO_DEDUP, decontam_ngram=0, max_refusal_share=0.2)
    out = curate(rows, cfg, words, split=split, split_cfg=NO_SEEN)
    kept = [s for s in out.train if s["expects_refusal"]]
    # At most 20% of what stays: 12 answerable rows leave room for 3 refusals.
    assert len(out.train) == 15 and len(kept) == 3
    assert dict(out.funnel)["refusal share"] == 6
    gone = [r for r in out.rejected if r["reject_reason"].startswith("refusal rows over 20%")]
    assert len(gone) == 6 and all(r["expects_refusal"] for r in gone)
    # The choice is seeded, and no cap (None or 1) keeps them all.
    again = curate(rows, cfg, words, split=split, split_cfg=NO_SEEN)
    assert [s["sample_id"] for s in again.train] == [s["sample_id"] for s in out.train]
    for share in (None, 1.0):
        uncapped = cfg.model_copy(update={"max_refusal_share": share})
        assert len(curate(rows, uncapped, words, split=split, split_cfg=NO_SEEN).train) == 21
    # The report says how many refusal targets train, against the plan.
    from distill.curate.report import report_text

    text = report_text(rows, out, [], cfg, planned_refusals=0.2)
    assert "- refusal targets in train: 3 of 15 (20%); generate planned 20%" in text


def test_the_planned_refusal_share_follows_the_recipe(tmp_path: Path) -> None:
    from distill.curate.stage import planned_refusal_share as refusal_share
    from distill.recipe import load_recipe
    from tests.conftest import write_recipe

    path = write_recipe(tmp_path, "name: r\ningest:\n  paths: [docs]\n", name="r.yaml")
    # Half the tasks' weight is raft, and the default no-oracle share is 0.2 of raft jobs.
    planned = load_recipe(path, ["generate.tasks={qa: 0.5, raft: 0.5}"])
    assert refusal_share(planned) == pytest.approx(0.5 * 0.2)
    quickstart = load_recipe(
        path,
        [
            "generate.tasks={qa: 0.4, raft: 0.4, instructions: 0.2}",
            "generate.raft={no_oracle_share: 0.4}",
        ],
    )
    assert refusal_share(quickstart) == pytest.approx(0.4 * 0.4)
    no_raft = load_recipe(path, ["generate.tasks={qa: 1.0}"])
    assert refusal_share(no_raft) == 0
    assert load_recipe(path).curate.max_refusal_share is None  # no cap unless asked


def test_samples_too_long_to_train_on_are_dropped() -> None:
    long_answer = "Starter costs twelve dollars a user each month, billed yearly or monthly."
    short, long = sample(1, "d1"), sample(2, "d2", q="How is Starter billed?", a=long_answer)
    cfg = CurateConfig(**NO_DEDUP)
    out = curate(
        [short, long],
        cfg,
        words,
        split=by_document([short, long]),
        split_cfg=NO_SEEN,
        sample_tokens=lambda s: sum(words(m["content"]) for m in s["messages"]),
        max_sample_tokens=20,
    )
    (gone,) = out.rejected
    assert gone["sample_id"] == "s2" and gone["reject_reason"].startswith(
        "longer than train.max_seq_length"
    )
    assert dict(out.funnel)["too long to train on"] == 1
    # The report counts them as one reason, whatever their lengths.
    from distill.curate.report import _reason_kind

    assert _reason_kind(gone["reject_reason"]) == "longer than train.max_seq_length"


def test_a_training_sample_carrying_a_held_out_chunk_is_dropped() -> None:
    split = Split(["doc9"], [f"doc{i}" for i in range(9)] + ["other"])
    clean = sample(1, "doc1")
    leaky = sample(2, "doc2", doc_ids=["doc2", "doc9"], chunk_ids=["doc2#1", "doc9#1"])
    held = sample(3, "doc9", doc_ids=["doc9"], chunk_ids=["doc9#1", "doc9#2"])
    out = curate(
        [clean, leaky, held], CurateConfig(**NO_DEDUP), words, split=split, split_cfg=NO_SEEN
    )
    assert [s["sample_id"] for s in out.train] == ["s1"]
    assert [s["sample_id"] for s in out.eval] == ["s3"]
    assert {r["sample_id"]: r["reject_reason"] for r in out.rejected} == {
        "s2": "its context carries chunks of held-out documents"
    }


def test_seen_documents_set_is_held_out_and_decontaminated_against_training() -> None:
    split = Split(["doc0"], [f"doc{i}" for i in range(1, 40)] + ["other"])
    rows = [sample(i, f"doc{i % 40}", q=f"Which setting controls feature {i}?") for i in range(200)]
    cfg = CurateConfig(decontam_similarity=None, near_dup_questions=None)
    seen_share = SplitConfig(seen_eval_fraction=0.2)
    out = curate(rows, cfg, words, split=split, split_cfg=seen_share)
    seen = {s["sample_id"] for s in out.eval_seen}
    train = {s["sample_id"] for s in out.train}
    assert 20 < len(seen) < 60 and not seen & train  # binomial around 0.2 * 195
    assert {s["split"] for s in out.eval_seen} == {"eval_seen"}
    assert all(s["source_doc_ids"][0] != "doc0" for s in out.eval_seen)  # training documents
    # A seen-set question that the training set asks word for word is not kept.
    twin = next(iter(seen))
    twin_q = next(s["question"] for s in out.eval_seen if s["sample_id"] == twin)
    again = rows + [sample(999, "doc5", q=twin_q.upper(), a="Another answer entirely.")]
    out2 = curate(again, cfg, words, split=split, split_cfg=seen_share)
    reasons = {r["sample_id"]: r["reject_reason"] for r in out2.rejected}
    assert "s999" in {s["sample_id"] for s in out2.train}
    assert reasons[twin] == "seen set: the same question is in the training set"
    assert twin not in {s["sample_id"] for s in out2.eval_seen}
    assert dict(out2.funnel)["held out: questions on training documents"] >= len(seen)


@pytest.mark.slow
def test_a_paraphrased_eval_request_is_caught_by_embedding_similarity() -> None:
    from distill.retrieval import embed

    split = Split(["billing"], ["account", "api", "other"])
    eval_q = sample(1, "billing", q="How long does a refund take to reach my card?")
    eval_q["doc_ids"] = ["billing"]
    near = sample(2, "account", q="How long does a refund take to arrive on my card?")
    far = sample(3, "api", q="Which HTTP header carries the API key?")
    cfg = CurateConfig(decontam_similarity=0.9, decontam_ngram=0, **NO_DEDUP)
    out = curate(
        [eval_q, near, far],
        cfg,
        words,
        split=split,
        split_cfg=NO_SEEN,
        embed=lambda texts: embed(texts, "all-minilm-l6-v2"),
    )
    reasons = {r["sample_id"]: r["reject_reason"] for r in out.rejected}
    assert list(reasons) == ["s2"] and reasons["s2"].startswith("its request is 0.9")
    assert "an eval question (s1)" in reasons["s2"]
    assert [s["sample_id"] for s in out.train] == ["s3"]
    assert dict(out.funnel)["semantic decontamination"] == 1


def test_the_report_accounts_for_every_document() -> None:
    from distill.curate.report import coverage

    chunk_docs = {"a#0": "a", "a#1": "a", "a#2": "a", "b#0": "b", "c#0": "c"}
    samples = [
        sample(1, "a", source_chunk_ids=["a#0"]),
        sample(2, "a", q="Where is item two?", a="[1]", source_chunk_ids=["a#1"]),
        sample(3, "a", q="Where is item three?", a="[1]", source_chunk_ids=["a#1"]),
        sample(4, "b", q="What is item four?", source_chunk_ids=["b#0"]),
    ]
    cfg = CurateConfig(**NO_DEDUP)
    out = curate(samples, cfg, words, split=by_document(samples), split_cfg=NO_SEEN)
    rows = {line.split(" | ")[0].strip("| "): line for line in coverage(chunk_docs, samples, out)}
    # a: 3 chunks, 2 of them a source, 3 samples, 1 kept, 2 dropped and why; c: nothing.
    assert rows["a"] == "| a | 3 | 2 | 3 | 1 | 2 | answer is nothing but citation markers (2) |"
    assert rows["b"] == "| b | 1 | 1 | 1 | 1 | 0 | — |"
    assert rows["c"] == "| c | 1 | 0 | 0 | 0 | 0 | — |"


def test_quote_style_answers_must_quote_their_context_word_for_word() -> None:
    ctx = "Reset links are valid for *30 minutes*. Each account may request 5 links an hour."
    quote = "Quote: Reset links are valid for 30 minutes. [1]\n"
    good = sample(
        1,
        "d1",
        q="How long is a reset link valid?",
        a=quote + "Answer: 30 minutes [1].",
        context=ctx,
    )
    made_up = sample(
        2,
        "d1",
        q="How long is a reset link valid?",
        a="Quote: Links expire after 30 minutes. [1]\nAnswer: 30 minutes [1].",
        context=ctx,
    )
    no_answer = sample(3, "d1", q="How many links can I request?", a=quote, context=ctx)
    bare = sample(4, "d1", q="How many reset links an hour?", a=quote + "Answer: [1]", context=ctx)
    rows, cfg = [good, made_up, no_answer, bare], CurateConfig(**NO_DEDUP)
    out = curate(rows, cfg, words, split=by_document(rows), split_cfg=NO_SEEN)
    assert {r["sample_id"]: r["reject_reason"] for r in out.rejected} == {
        "s2": "quote is not a verbatim span of its context",
        "s3": "quotes but gives no answer",
        "s4": "answer is nothing but citation markers",
    }
