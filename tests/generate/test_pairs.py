"""Several question/answer pairs per request (generate.pairs_per_request): the reply's
parsing, and a run through the pipeline with the fake teacher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.generate.pairs import parse_pairs
from distill.teachers.base import Completion


def reply(text: str) -> Completion:
    return Completion(text=text)


def test_pairs_are_parsed_cleaned_and_capped() -> None:
    text = json.dumps(
        {
            "pairs": [
                {"question": "Question: How long is a trial?", "answer": "Answer: 14 days [1]."},
                {"question": "How long is a trial?", "answer": "14 days [1]."},  # a repeat
                {"question": "Tell me about prices", "answer": "$12 [1]."},  # not a question
                {"question": "What does Team cost?", "answer": ""},  # no answer
                {"question": "What does Starter cost?", "answer": "$12 a user [1]."},
                {"question": "Is SMS supported?", "answer": "No [2]."},
            ]
        }
    )
    got = [(p.question, p.answer) for p in parse_pairs(reply(text), 2)]
    assert got == [
        ("How long is a trial?", "14 days [1]."),
        ("What does Starter cost?", "$12 a user [1]."),
    ]
    assert parse_pairs(reply("no JSON here"), 3) == []
    assert parse_pairs(reply('{"pairs": "not a list"}'), 3) == []


def test_a_reply_cut_off_mid_list_keeps_the_pairs_it_completed() -> None:
    cut = (
        '{"pairs": [{"question": "How long is a trial?", "answer": "14 \\"free\\" days [1]."}, '
        '{"question": "What does Team cost?", "answer": "$29 per user per mo'
    )
    got = parse_pairs(reply(cut), 4)
    assert [(p.question, p.answer) for p in got] == [
        ("How long is a trial?", '14 "free" days [1].')
    ]
    assert got[0].key_facts is None  # the template asked for none


def test_keyed_pairs_keep_their_facts_even_from_a_cut_reply() -> None:
    cut = (
        '{"pairs": [{"question": "How long is a trial?", "key_facts": ["14 days", " "], '
        '"answer": "A trial lasts 14 days {free} [1]."}, {"question": "Is SMS in Team?", '
        '"key_facts": "no", "answer": "No [2]."}, {"question": "What does Team cost?", "key_'
    )
    got = parse_pairs(reply(cut), 4)
    assert got == [
        ("How long is a trial?", "A trial lasts 14 days {free} [1].", ["14 days"]),
        ("Is SMS in Team?", "No [2].", []),  # facts not a list: none, and curate says so
    ]


@pytest.mark.slow
def test_pairs_through_generate_resume_and_keep_the_split(
    small_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One request per qa/raft job writes its pairs; each sample's prompt holds the
    documents the teacher read, in the same order; no training sample carries a held-out
    chunk; a rerun answers every request from the cache and writes the same samples."""
    from distill.io import read_rows
    from distill.pipeline import run_pipeline
    from distill.recipe import load_recipe
    from tests.conftest import write_recipe

    monkeypatch.chdir(tmp_path)
    path = write_recipe(
        tmp_path,
        "name: pairs\ningest:\n  paths: [docs]\n  chunk_tokens: 64\n  chunk_overlap: 8\n"
        "teacher: 'fake:'\ngenerate:\n  neighbours: 1\n  samples_per_chunk: 2\n"
        "  pairs_per_request: 3\n  tasks: {qa: 0.5, raft: 0.5}\n",
        name="pairs.yaml",
    )
    recipe = load_recipe(path)
    run_pipeline(recipe, until="generate")
    run = tmp_path / "runs" / "pairs"
    samples = read_rows(run / "generate" / "samples.parquet")
    manifest = json.loads((run / "manifest.json").read_text())
    counts = manifest["stages"]["generate"]["counts"]
    split = json.loads((run / "generate" / "split.json").read_text())
    chunks = {c["chunk_id"]: c for c in read_rows(run / "ingest" / "chunks.parquet")}
    paired = [s for s in samples if not s["expects_refusal"]]
    assert paired and len({s["sample_id"] for s in samples}) == len(samples)
    # Fewer requests than samples: a pair costs no answer request of its own.
    assert counts["requests_sent"] < len(samples)
    for s in paired:
        user = s["messages"][1]["content"]
        for n, cid in enumerate(s["chunk_ids"], start=1):
            assert f'<document id="{n}"' in user and chunks[cid]["text"].split()[0] in user
        # The fake cites the source chunk by its number in the context: [n] maps back.
        assert s["cited_chunk_ids"] == [s["source_chunk_id"]]
        assert s["messages"][2]["content"] == s["answer"]
    for s in samples:
        if s["side"] == "train":
            assert not set(s["doc_ids"]) & set(split["eval_docs"])
    run_pipeline(recipe, until="generate", force={"generate"})
    again = json.loads((run / "manifest.json").read_text())["stages"]["generate"]["counts"]
    assert again["requests_sent"] == 0 and again["cached_replies"] == counts["requests_sent"]
    rerun = read_rows(run / "generate" / "samples.parquet")
    strip = [{k: v for k, v in r.items() if k != "created_at"} for r in rerun]
    assert strip == [{k: v for k, v in r.items() if k != "created_at"} for r in samples]
