"""Keyed pairs (qa_pairs@v2): each pair names the key facts its answer must state;
curate checks them against the source chunk, and the quote style builds RAFT's
target from the chunk's sentence that holds them. Kept flat: the feature spans grounding,
generate and curate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from distill.curate.checks import key_fact_problem
from distill.curate.config import CurateConfig
from distill.generate.config import GenerateConfig
from distill.grounding import (
    final_answer,
    is_refusal,
    quote_sentence,
    quotes,
    sentences,
    verbatim,
)

KF = "key facts: "
CHUNK = (
    "## Trials\n"
    "Every workspace starts with a 14-day free trial. After that, pick a plan.\n"
    "- Starter costs $12 per user per month. Team costs $29 per user per month.\n"
    "| Pro | $49 | 10 GB |"
)


def test_sentences_are_spans_of_the_chunk_split_at_sentence_ends() -> None:
    got = sentences(CHUNK)
    assert got == [
        "Trials",
        "Every workspace starts with a 14-day free trial.",
        "After that, pick a plan.",
        "Starter costs $12 per user per month.",
        "Team costs $29 per user per month.",
        "| Pro | $49 | 10 GB |",
    ]
    assert all(verbatim(s, CHUNK) for s in got)


def test_the_quote_is_the_shortest_sentence_holding_every_fact() -> None:
    # "14 days" matches "14-day" (distill.keyfacts folds the wording).
    assert quote_sentence(CHUNK, ["14 days"]) == "Every workspace starts with a 14-day free trial."
    assert quote_sentence(CHUNK, ["$49", "10 GB"]) == "| Pro | $49 | 10 GB |"
    assert quote_sentence(CHUNK, ["$29"]) == "Team costs $29 per user per month."
    # Facts in two sentences, or nowhere: no quote.
    assert quote_sentence(CHUNK, ["$12", "$29"]) is None
    assert quote_sentence(CHUNK, ["30 days"]) is None


# An HTML manual's paragraph as ingest writes it (PostgreSQL's: lines wrapped mid-
# sentence), a code block, a configuration line outside a fence, a list item that wraps.
MANUAL = (
    "sent to the server before authentication.\n\n"
    "The `pg_hba.conf` file is read on start-up and when\n"
    "   the main server process receives a\n"
    "   SIGHUP\n"
    "   signal.  If you edit the file on an active system, you will need to signal\n"
    "   the postmaster to make it re-read the file.\n\n"
    "```\n"
    "kill -HUP 4242\n"
    "```\n"
    "local   all             all                                     trust\n\n"
    "# The zero mask causes no bits of the host IP address to be considered.\n"
    "The following options are supported:\n\n"
    "- `map` allows for mapping between system\n"
    "  and database user names.\n"
    "- `clientcert` is\n"
    "  redundant with `cert` authentication"
)


def test_wrapped_lines_of_one_sentence_are_one_sentence() -> None:
    got = sentences(MANUAL)
    assert (
        "The `pg_hba.conf` file is read on start-up and when the main server process "
        "receives a SIGHUP signal."
    ) in got
    assert "`map` allows for mapping between system and database user names." in got
    assert "kill -HUP 4242" in got  # a code line is a sentence of the chunk...
    assert all(verbatim(s, MANUAL) for s in got)  # ... and each is a span, up to spacing
    prose = sentences(MANUAL, prose_only=True)
    # ... but not prose: nor are an aligned configuration line, a "#" line, the chunk's
    # first sentence when it starts mid-sentence or its last when it stops mid-sentence.
    for fragment in (
        "kill -HUP 4242",
        "sent to the server before authentication.",
        "The zero mask causes no bits of the host IP address to be considered.",
        "`clientcert` is redundant with `cert` authentication",
    ):
        assert fragment in got and fragment not in prose
    assert not any("trust" in s for s in prose)


def test_a_quote_is_a_whole_sentence_never_a_fragment_or_a_lead_in() -> None:
    # The wrapped sentence is found whole, though "SIGHUP" and "start-up" sit on
    # different lines of the source.
    assert quote_sentence(MANUAL, ["SIGHUP", "start-up"]) == (
        "The `pg_hba.conf` file is read on start-up and when the main server process "
        "receives a SIGHUP signal."
    )
    assert quote_sentence(MANUAL, ["trust"]) is None  # only a configuration line has it
    assert quote_sentence(MANUAL, ["kill -HUP"]) is None  # only a code line
    assert quote_sentence(MANUAL, ["options are supported"]) is None  # a lead-in ("...:")
    assert quote_sentence("Ports.\nThe default is 5432.", ["5432"]) == "The default is 5432."
    assert quote_sentence("Ports.\nIt is 5432.", ["5432"]) is None  # under 4 words


def sample(question: str, answer: str, facts: list[str] | None, **kw: Any) -> dict[str, Any]:
    return {
        "question": question,
        "answer": answer,
        "key_facts": facts,
        "source_chunk_id": "c1",
        **kw,
    }


@pytest.mark.parametrize(
    ("question", "answer", "facts", "reason"),
    [
        ("How long is a trial?", "14 days [1].", ["14-day"], ""),
        ("How long is a trial?", "Quote: a 14-day trial [1]\nAnswer: 14 days [1].", ["14-day"], ""),
        ("How long is a trial?", "14 days [1].", None, ""),  # no keyed template: not checked
        ("How long is a trial?", "14 days [1].", [], "key facts: none given"),
        ("How long is a trial?", "30 days.", ["30 days"], f"{KF}one is not in its source chunk"),
        ("Is the 14-day trial free?", "Yes.", ["14-day"], f"{KF}every one is in the question"),
        # A fact the question states is its topic: the answer must state the other one.
        ("What does Pro cost?", "$49 [1].", ["Pro", "$49"], ""),
        ("What does Pro cost?", "A lot.", ["Pro", "$49"], f"{KF}the answer does not state them"),
        ("How long is a trial?", "Two weeks.", ["14-day"], f"{KF}the answer does not state them"),
        # The quote states the fact, the answer does not: eval scores the answer only.
        ("How long is a trial?", "Quote: a 14-day trial [1]\nAnswer: Two weeks [1].", ["14-day"],
         "key facts: the answer does not state them"),
        ("What does Team cost?", "$29 [1].", ["Team costs $29 per user per month in USD"],
         "key facts: one is not a short span"),
    ],
)  # fmt: skip
def test_key_facts_are_checked_against_the_source_chunk(
    question: str, answer: str, facts: list[str] | None, reason: str
) -> None:
    assert key_fact_problem(sample(question, answer, facts), {"c1": CHUNK}) == reason


def test_a_refusal_target_and_a_lost_chunk() -> None:
    # A refusal target's question is held to the same checks; its answer states nothing.
    refusal = sample("What does Team cost?", "The documents do not say.", ["$29"])
    assert key_fact_problem({**refusal, "expects_refusal": True}, {"c1": CHUNK}) == ""
    assert key_fact_problem(refusal, {"c1": CHUNK}) == "key facts: the answer does not state them"
    made_up = sample("What is the SLA?", "The documents do not say.", ["99.9%"])
    assert (
        key_fact_problem({**made_up, "expects_refusal": True}, {"c1": CHUNK})
        == "key facts: one is not in its source chunk"
    )
    topic = sample("Is Team $29?", "The documents do not say.", ["$29"])
    assert (
        key_fact_problem({**topic, "expects_refusal": True}, {"c1": CHUNK})
        == "key facts: every one is in the question"
    )
    lost = sample("How long is a trial?", "14 days [1].", ["14-day"])
    assert key_fact_problem(lost, {}) == "key facts: its source chunk is not in the index"


def test_refusal_targets_are_worded_several_ways_each_a_refusal() -> None:
    """`raft.refusal` may list several wordings: one is chosen per sample, the same way
    for the same sample; each must read as a refusal."""
    from pydantic import ValidationError

    from distill.generate.config import RaftConfig

    assert RaftConfig().refusal_for("any") == RaftConfig().refusal  # one by default
    raft = RaftConfig(
        refusal=[
            "The documents provided do not contain the answer to this question.",
            "This is not stated in the provided documents.",
            "I found no information about this in the documents.",
            "These documents do not cover this question.",
        ]
    )
    said = [raft.refusal_for(f"sample-{i}") for i in range(60)]
    assert said == [raft.refusal_for(f"sample-{i}") for i in range(60)]  # seeded by the id
    assert len(set(said)) == len(raft.refusal) > 3
    assert all(is_refusal(s) for s in said)
    one = RaftConfig(refusal="The documents do not say.")
    assert {one.refusal_for(f"s{i}") for i in range(9)} == {"The documents do not say."}
    with pytest.raises(ValidationError, match="does not read as a refusal"):
        RaftConfig(refusal=["The documents do not say.", "Team costs $29."])
    with pytest.raises(ValidationError, match="is empty"):
        RaftConfig(refusal=[])


def test_the_quote_style_chooses_its_template_both_ways() -> None:
    assert GenerateConfig(answer_style="quote").answer_template == "grounded_answer_quote@v1"
    assert GenerateConfig(answer_template="grounded_answer_quote@v1").answer_style == "quote"
    assert GenerateConfig().answer_style == "short"
    mine = GenerateConfig(answer_style="quote", answer_template="my_quote@v1")
    assert mine.answer_template == "my_quote@v1"


def test_an_extractive_reply_needs_key_facts_instead_of_an_answer() -> None:
    from distill.generate.pairs import parse_pairs
    from distill.teachers.base import Completion

    text = json.dumps(
        {
            "pairs": [
                {"question": "How long is a trial?", "key_facts": ["14-day"]},
                {"question": "What does Pro cost?", "key_facts": []},  # nothing to build from
                {"question": "What does Team cost?"},  # neither
            ]
        }
    )
    assert parse_pairs(Completion(text=text), 4) == [("How long is a trial?", "", ["14-day"])]


def test_a_keyed_schema_asks_for_exactly_n_pairs_of_short_facts() -> None:
    from distill.generate.pairs import EXTRACTIVE_PAIRS_SCHEMA, KEYED_PAIRS_SCHEMA
    from distill.generate.pairs import exactly as _exactly

    for schema in (KEYED_PAIRS_SCHEMA, EXTRACTIVE_PAIRS_SCHEMA):
        got = _exactly(schema, 3)
        pairs = got["properties"]["pairs"]
        assert (pairs["minItems"], pairs["maxItems"]) == (3, 3)
        facts = pairs["items"]["properties"]["key_facts"]
        assert (facts["minItems"], facts["maxItems"], facts["items"]["maxLength"]) == (1, 2, 60)
        assert pairs["items"]["required"] == schema["properties"]["pairs"]["items"]["required"]
        assert "minItems" not in schema["properties"]["pairs"]  # the original is untouched


@pytest.mark.slow
@pytest.mark.parametrize(
    ("template", "style"),
    [
        ("qa_pairs@v2", "short"),
        ("qa_pairs@v2", "quote"),
        ("qa_keyed@v1", "short"),
        ("qa_keyed@v1", "quote"),
    ],
)
def test_keyed_pairs_through_generate_and_curate(
    small_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, template: str, style: str
) -> None:
    """The fake teacher writes keyed pairs; generate keeps their facts, the quote style's
    target quotes a verbatim sentence of the source chunk that states them, curate keeps
    the samples whose facts check out and counts the rest by reason, and a rerun pays
    for nothing."""
    from distill.io import read_rows
    from distill.pipeline import run_pipeline
    from distill.recipe import load_recipe
    from tests.conftest import write_recipe

    monkeypatch.chdir(tmp_path)
    path = write_recipe(
        tmp_path,
        "name: keyed\ningest:\n  paths: [docs]\n  chunk_tokens: 64\n  chunk_overlap: 8\n"
        "teacher: 'fake:'\ngenerate:\n  neighbours: 1\n  samples_per_chunk: 1\n"
        f"  answer_style: {style}\n"
        f"  pairs_per_request: 3\n  pairs_template: {template}\n  tasks: {{qa: 1.0}}\n"
        "split:\n  seen_eval_fraction: 0\n",
        name="keyed.yaml",
    )
    recipe = load_recipe(path)
    run_pipeline(recipe, until="curate")
    run = tmp_path / "runs" / "keyed"
    samples = read_rows(run / "generate" / "samples.parquet")
    chunks = {c["chunk_id"]: c["text"] for c in read_rows(run / "ingest" / "chunks.parquet")}
    assert samples and all(s["key_facts"] for s in samples)
    for s in samples:
        said = quotes(s["answer"])
        source = chunks[s["source_chunk_id"]]
        if style == "quote":
            assert len(said) == 1 and verbatim(said[0], source)
            assert s["messages"][0]["content"].count("Quote:") == 1  # the student is asked
            assert final_answer(s["answer"]) != s["answer"]
        else:
            assert said == [] and "Quote:" not in s["messages"][0]["content"]
        if template == "qa_keyed@v1":
            # No answer was decoded: the target is built from a sentence of the chunk
            # (short) or from the key facts after that sentence's quote, with a citation.
            n = s["chunk_ids"].index(s["source_chunk_id"]) + 1
            assert s["citations"] == [n]
            if style == "short":
                assert verbatim(s["answer"].removesuffix(f" [{n}]"), source)
            else:
                assert final_answer(s["answer"]) == f"{'; '.join(s['key_facts'])} [{n}]."
    kept = read_rows(run / "curate" / "train.parquet") + read_rows(run / "curate" / "eval.parquet")
    rejected = read_rows(run / "curate" / "rejected.parquet")
    assert kept
    assert all(not key_fact_problem(s, chunks) for s in kept)
    # The fake's question omits the figure, and its answer is the sentence: every fact
    # in the chunk and the answer. A fact made to miss is rejected with its reason.
    assert not [r for r in rejected if r["reject_reason"].startswith("key facts")]
    broken = {**kept[0], "key_facts": ["999 parsecs"]}
    assert key_fact_problem(broken, chunks) == "key facts: one is not in its source chunk"
    manifest = json.loads((run / "manifest.json").read_text())
    sent = manifest["stages"]["generate"]["counts"]["requests_sent"]
    run_pipeline(recipe, until="generate", force={"generate"})
    again = json.loads((run / "manifest.json").read_text())["stages"]["generate"]["counts"]
    assert again["requests_sent"] == 0 and again["cached_replies"] == sent


def test_a_quote_restated_by_its_answer_is_not_a_loop() -> None:
    from distill.curate.checks import check

    sentence = "Team costs $29 per user per month."
    context = f'<document id="1" title="Plans">{sentence}</document>'

    def row(answer: str) -> dict[str, Any]:
        return {
            "task": "qa",
            "question": "What does the Team plan cost?",
            "answer": answer,
            "chunk_ids": ["c1"],
            "messages": [
                {"role": "system", "content": "Quote first."},
                {"role": "user", "content": f"{context}\nWhat does the Team plan cost?"},
                {"role": "assistant", "content": answer},
            ],
        }

    def words(text: str) -> int:
        return len(text.split())

    cfg = CurateConfig()
    assert check(row(f"Quote: {sentence} [1]\nAnswer: {sentence} [1]"), cfg, words) == ""
    loop = "Team costs $29 per user per month, " * 4
    assert check(row(f"Quote: {sentence} [1]\nAnswer: {loop}[1]"), cfg, words).startswith(
        "repetitive answer"
    )


@pytest.mark.slow
def test_a_raft_job_without_its_oracle_writes_a_refusal_per_pair(
    small_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RAFT's no-oracle share holds per sample: a job whose context leaves its chunk out
    asks for pairs over that chunk alone, and each question becomes a refusal sample
    over the context without it."""
    from distill.io import read_rows
    from distill.pipeline import run_pipeline
    from distill.recipe import load_recipe
    from tests.conftest import write_recipe

    monkeypatch.chdir(tmp_path)
    path = write_recipe(
        tmp_path,
        "name: refuse\ningest:\n  paths: [docs]\n  chunk_tokens: 64\n  chunk_overlap: 8\n"
        "teacher: 'fake:'\ngenerate:\n  samples_per_chunk: 2\n  pairs_per_request: 3\n"
        "  pairs_template: qa_keyed@v1\n  tasks: {raft: 1.0}\n"
        "  raft: {no_oracle_share: 1.0, distractors: 1}\n"
        "split:\n  eval_fraction: 0.4\n",
        name="refuse.yaml",
    )
    run_pipeline(load_recipe(path), until="generate")
    run = tmp_path / "runs" / "refuse"
    samples = read_rows(run / "generate" / "samples.parquet")
    chunks = {c["chunk_id"]: c["text"] for c in read_rows(run / "ingest" / "chunks.parquet")}
    refusals = [s for s in samples if s["expects_refusal"]]
    assert refusals
    for s in refusals:
        assert s["source_chunk_id"] not in s["chunk_ids"]
        assert s["answer"] == GenerateConfig().raft.refusal_for(s["sample_id"])
        assert is_refusal(s["answer"])
        # A pair (the one-question path names no key facts), cited nowhere.
        assert s["key_facts"] and s["citations"] == []
        # The question was written from the chunk the context lacks.
        documents = s["messages"][1]["content"].replace(s["question"], "")
        assert chunks[s["source_chunk_id"]][:30] not in documents


@pytest.mark.slow
@pytest.mark.parametrize(
    ("template", "per_request", "resent"),
    [("qa_keyed@v1", 3, False), ("qa_pairs@v2", 3, False), ("qa_pairs@v1", 1, True)],
)
def test_a_style_change_pays_only_for_requests_whose_words_change(
    small_corpus: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    template: str,
    per_request: int,
    resent: bool,
) -> None:
    """The request cache is keyed by what the teacher reads, not by every template's
    text: a keyed pairs request never shows the teacher the answer template (the quote
    is the source chunk's sentence), so switching short answers to quotes rebuilds
    every target from cached replies; a teacher that answers over the answer template
    (one request per answer) is asked again, in the quote style's words."""
    from distill.io import read_rows
    from distill.pipeline import run_pipeline
    from distill.recipe import load_recipe
    from tests.conftest import write_recipe

    monkeypatch.chdir(tmp_path)

    def recipe(style: str):  # type: ignore[no-untyped-def]
        return load_recipe(
            write_recipe(
                tmp_path,
                "name: styles\ningest:\n  paths: [docs]\n  chunk_tokens: 64\n"
                "  chunk_overlap: 8\nteacher: 'fake:'\ngenerate:\n  samples_per_chunk: 1\n"
                f"  answer_style: {style}\n  pairs_per_request: {per_request}\n"
                f"  pairs_template: {template}\n  tasks: {{qa: 1.0}}\n",
                name=f"{style}.yaml",
            )
        )

    run_pipeline(recipe("short"), until="generate")
    run = tmp_path / "runs" / "styles"
    counts = json.loads((run / "manifest.json").read_text())["stages"]["generate"]["counts"]
    assert counts["requests_sent"] > 0
    run_pipeline(recipe("quote"), until="generate")
    again = json.loads((run / "manifest.json").read_text())["stages"]["generate"]["counts"]
    if resent:
        assert again["requests_sent"] > 0
        return
    assert again["requests_sent"] == 0 and again["cached_replies"] == counts["requests_sent"]
    samples = read_rows(run / "generate" / "samples.parquet")
    assert samples and all(len(quotes(s["answer"])) == 1 for s in samples)
