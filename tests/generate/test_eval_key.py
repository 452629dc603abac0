"""The teacher's answer key (generate.eval_key): extractive questions kept only where
their facts check out, and read by eval beside the user's key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from distill.generate.eval_key import key_items
from distill.tables import Chunk
from distill.teachers.base import Completion

CHUNK = Chunk(
    chunk_id="account/password#0",
    doc_id="account/password",
    source="account/password.md",
    title="Passwords",
    heading_path="Passwords > Reset",
    text="The reset link is valid for 30 minutes. After 5 failed sign-ins you see E102.",
    n_tokens=16,
    position=0,
)


def reply(items: object) -> Completion:
    return Completion(text=json.dumps(items))


def test_only_questions_whose_facts_check_out_are_kept() -> None:
    good = {"question": "How long does a reset link work?", "key_facts": ["30 minutes"]}
    items = [
        good,
        {"question": "Which code shows after failed sign-ins?", "key_facts": ["E102"]},
        {"question": "How long does a reset link work?", "key_facts": ["30 minutes"]},  # again
        {"question": "Is the link valid for 30 minutes?", "key_facts": ["30 minutes"]},
        {"question": "How long is the lock?", "key_facts": ["15 minutes"]},  # not in the chunk
        {"question": "What happens?", "key_facts": []},
        {"question": "Anything?", "key_facts": ["the reset link is valid for 30 minutes after"]},
        "not an object",
    ]
    kept, dropped = key_items(
        [CHUNK, CHUNK, CHUNK], {0: reply({"items": items}), 1: Completion(text="no JSON")}
    )
    assert [k["question"] for k in kept] == [good["question"], items[1]["question"]]
    assert kept[0] == {
        "id": "gen-account/password#0-0",
        "question": good["question"],
        "key_facts": ["30 minutes"],
        "doc": "account/password",
        "chunk": "account/password#0",
    }
    assert dropped == {
        "duplicate question": 1,
        "a key fact is in the question": 1,
        "a key fact is not in the chunk": 1,
        "no key facts": 1,
        "a key fact is not a short span": 1,
        "not a question": 1,
        "reply not the JSON asked for": 1,
        "request failed": 1,  # chunk 2 had no reply
    }


@pytest.mark.slow
def test_generate_writes_a_key_that_eval_asks(ingested: Path, tmp_path: Path) -> None:
    """The fake teacher writes a key over the small corpus; eval's items take it, the
    held-out documents' questions in the unseen set and training ones in deployment."""
    from distill.evaluate.items import build_items
    from distill.pipeline import run_pipeline
    from distill.recipe import load_recipe
    from distill.retrieval import Retriever
    from distill.runfolder import RunFolder
    from tests.conftest import write_recipe

    path = write_recipe(
        tmp_path,
        "name: small\ningest:\n  paths: [docs]\n  chunk_tokens: 64\n  chunk_overlap: 8\n"
        "teacher: 'fake:'\ngenerate:\n  neighbours: 1\n"
        "  eval_key: {deployment_chunks: 1}\n"
        "eval:\n  generated: false\n",
    )
    recipe = load_recipe(path)
    run_pipeline(recipe, until="curate")
    folder = RunFolder(ingested)
    lines = folder.generated_key.read_text().splitlines()
    key = [json.loads(ln) for ln in lines]
    assert key and all(k["id"].startswith("gen-") for k in key)
    split = json.loads((ingested / "generate" / "split.json").read_text())
    sides = {k["doc"] in split["eval_docs"] for k in key}
    assert sides == {True, False}  # every held-out chunk, and one training chunk
    manifest = json.loads((ingested / "manifest.json").read_text())
    counts = manifest["stages"]["generate"]["counts"]
    assert counts["key_questions"] == len(key)
    assert counts["key_questions_unseen"] == sum(k["doc"] in split["eval_docs"] for k in key)

    items, loaded = build_items(recipe, folder, Retriever(ingested / "ingest", recipe.retrieval))
    asked = {it.item_id: it for it in items if it.kind == "answerable"}
    assert loaded is not None and set(asked) == {k["id"] for k in key}
    # Each fact here is on one page only: every question has a verified twin (up to 4).
    twins = [it for it in items if it.kind == "unanswerable"]
    assert len(twins) == min(4, len(key))
    assert all(it.item_id.removesuffix("-no-oracle") in asked for it in twins)
    for k in key:
        it = asked[k["id"]]
        assert it.key_facts == k["key_facts"] and it.doc_id == k["doc"]
        assert it.eval_set == ("unseen" if k["doc"] in split["eval_docs"] else "deployment")


@pytest.mark.slow
def test_the_key_can_have_its_own_teacher(
    ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """generate.eval_key.teacher writes the key; the training data stays the teacher's."""
    import distill.generate.stage as generate_stage
    from distill.pipeline import run_pipeline
    from distill.recipe import load_recipe
    from distill.runfolder import RunFolder
    from tests.conftest import write_recipe

    made: dict[str, list[Any]] = {}
    real = generate_stage.make_teacher

    def spy(spec: str, *args: Any, **kwargs: Any) -> Any:
        t = real(spec, *args, **kwargs)
        inner = t
        while hasattr(inner, "inner"):  # the cache and budget wrappers
            inner = inner.inner
        made[spec] = inner.calls
        return t

    monkeypatch.setattr(generate_stage, "make_teacher", spy)
    path = write_recipe(
        tmp_path,
        "name: small\ningest:\n  paths: [docs]\n  chunk_tokens: 64\n  chunk_overlap: 8\n"
        "teacher: 'fake:'\ngenerate:\n  neighbours: 1\n"
        "  eval_key: {deployment_chunks: 1, teacher: 'fake:key-writer'}\n"
        "eval:\n  generated: false\n",
    )
    run_pipeline(load_recipe(path), until="generate")
    key = RunFolder(ingested).generated_key.read_text().splitlines()
    assert key and set(made) == {"fake:", "fake:key-writer"}
    asked_key = [m for m in made["fake:key-writer"] if "test questions" in m[0]["content"]]
    assert asked_key and len(asked_key) == len(made["fake:key-writer"])
    assert not any("test questions" in m[0]["content"] for m in made["fake:"])


def test_a_quote_style_answer_is_scored_on_its_answer_alone() -> None:
    """The quotes are the answer's reasoning: a quote that states the key fact does not
    make an answer right, and quotes cut off before "Answer:" answer nothing."""
    from distill.evaluate.items import Item
    from distill.evaluate.keyscore import score
    from distill.evaluate.stage import _row
    from distill.evaluate.systems import System
    from distill.keyfacts import tokens
    from distill.teachers.base import Completion
    from distill.teachers.fake import FakeTeacher

    chunk: Chunk = {
        "chunk_id": "d#1",
        "doc_id": "d",
        "text": "Links last 30 minutes.",
        "heading_path": "",
        "n_tokens": 5,
    }  # type: ignore[typeddict-item]
    item = Item(
        "q1",
        "answerable",
        "How long do links last?",
        "",
        ["d#1"],
        [chunk],
        key_facts=["30 minutes"],
        doc_id="d",
    )
    system = System("ft+rag", FakeTeacher(), True)
    quote = "Quote: Links last 30 minutes. [1]\n"
    wrong = _row(system, item, True, Completion(text=quote + "Answer: An hour [1]."), 1.0, 1.0)
    right = _row(system, item, True, Completion(text=quote + "Answer: 30 minutes [1]."), 1.0, 1.0)
    cut = _row(system, item, True, Completion(text=quote), 1.0, 1.0)
    for row in (wrong, right, cut):
        score(row, item, {"d#1": tokens(chunk["text"])})
    assert (wrong["answer"], wrong["quoted"]) == ("An hour [1].", "Links last 30 minutes.")
    assert [r["fact_correct"] for r in (wrong, right, cut)] == [False, True, False]
    assert cut["answer"] == "" and right["cited"] == [1]
