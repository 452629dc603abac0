"""Generation tasks: the seeded mix, each task's prompt and context, RAFT with and
without the oracle, and the parsers for requests, citations and refusals."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from distill.generate.plan import clean_request, make_plan
from distill.grounding import citations, is_refusal, numbered
from distill.prompts import load_templates
from distill.recipe import Recipe
from distill.split import Split

DOCS = {
    "billing/plans": [
        "Starter costs $12 per user.",
        "Team costs $29 per user.",
        "Trials: 14 days.",
    ],
    "account/password": ["Reset links last 30 minutes.", "Passwords need 12 characters."],
    "api/limits": ["The API allows 600 requests a minute.", "Webhooks retry 5 times."],
}


class Chunks:
    """The two things planning needs from a Retriever: the chunks, and neighbours
    (here: every other chunk, same document first, in corpus order)."""

    def __init__(self) -> None:
        self.chunks = [
            {
                "chunk_id": f"{doc}#{i}",
                "doc_id": doc,
                "text": text,
                "heading_path": doc.split("/")[1].title(),
                "n_tokens": 8,
            }
            for doc, texts in DOCS.items()
            for i, text in enumerate(texts)
        ]

    def neighbours(
        self, chunk_id: str, k: int = 5, within: frozenset[str] | None = None
    ) -> list[tuple[dict[str, Any], float]]:
        me = next(c for c in self.chunks if c["chunk_id"] == chunk_id)
        others = [
            c
            for c in self.chunks
            if c["chunk_id"] != chunk_id and (within is None or c["doc_id"] in within)
        ]
        others.sort(key=lambda c: c["doc_id"] != me["doc_id"])
        return [(c, 1.0) for c in others[:k]]


def recipe(**generate: Any) -> Recipe:
    return Recipe.model_validate(
        {"name": "t", "ingest": {"paths": ["docs"]}, "generate": generate, "base_dir": Path(".")}
    )


def plan(**generate: Any):  # type: ignore[no-untyped-def]
    return make_plan(recipe(**generate), Chunks())  # type: ignore[arg-type]


def test_task_mix_is_seeded_and_follows_the_weights() -> None:
    mix = {"qa": 3, "instructions": 1}
    a = plan(tasks=mix, samples_per_chunk=40)
    b = plan(tasks=mix, samples_per_chunk=40)
    assert [j.task for j in a.jobs] == [j.task for j in b.jobs]
    assert [j.sample_id for j in a.jobs] == [j.sample_id for j in b.jobs]
    share = Counter(j.task for j in a.jobs)["qa"] / len(a.jobs)
    assert 0.65 < share < 0.85 and len({j.sample_id for j in a.jobs}) == len(a.jobs)
    assert {j.persona for j in a.jobs} == {"a new user", "an experienced user", "an administrator"}
    other = plan(tasks=mix, samples_per_chunk=40, seed=1)
    assert [j.task for j in other.jobs] != [j.task for j in a.jobs]


def test_qa_prompt_carries_persona_difficulty_and_style_and_fences_the_chunk() -> None:
    p = plan(personas=["a billing admin"], difficulties=["hard"], question_styles=["terse"])
    job = p.jobs[0]
    system, user = job.request_prompt
    assert "not instructions" in system["content"]
    assert "a billing admin" in user["content"] and "Difficulty: hard" in user["content"]
    assert "Style: terse" in user["content"]
    assert f'<document id="1" title="Plans">\n{DOCS["billing/plans"][0]}' in user["content"]
    assert job.chunk in job.context and len(job.context) == 2  # the chunk + 1 neighbour
    assert job.oracle_in_context and not job.expects_refusal


def test_instructions_prompt_names_the_kind_of_request() -> None:
    p = plan(tasks={"instructions": 1}, instruction_kinds=["a request to extract the prices"])
    user = p.jobs[0].request_prompt[-1]["content"]
    assert "a request to extract the prices" in user and "Request: <the request>" in user
    assert clean_request("Sure!\nRequest: List every plan's price.\nThanks") == (
        "List every plan's price."
    )


def test_multi_hop_pairs_the_chunk_with_one_from_another_document() -> None:
    jobs = plan(tasks={"multi_hop": 1}).jobs
    assert len(jobs) >= 4  # the checks below run on every job, and there are jobs
    for job in jobs:
        assert job.task == "multi_hop"
        first, second = job.sources
        assert first["doc_id"] != second["doc_id"]
        user = job.request_prompt[-1]["content"]
        assert first["text"] in user and second["text"] in user and "both" in user
        assert first in job.context and second in job.context


def test_raft_with_and_without_the_oracle() -> None:
    p = plan(tasks={"raft": 1}, samples_per_chunk=30, raft={"distractors": 2})
    with_oracle = [j for j in p.jobs if j.oracle_in_context]
    without = [j for j in p.jobs if not j.oracle_in_context]
    assert with_oracle and without
    assert 0.1 < len(without) / len(p.jobs) < 0.35  # no_oracle_share 0.2
    for j in with_oracle:
        assert len(j.context) == 3 and not j.expects_refusal
    for j in without:
        # No chunk of the oracle's own document either: its answer could be there.
        assert all(c["doc_id"] != j.chunk["doc_id"] for c in j.context)
        assert len(j.context) == 2 and j.expects_refusal
    every = plan(tasks={"raft": 1}, raft={"no_oracle_share": 1.0})
    assert every.jobs and all(j.expects_refusal for j in every.jobs)


def test_answer_prompt_numbers_documents_for_citations() -> None:
    r = recipe()
    tpl = load_templates(r).answer
    chunks = Chunks().chunks[:2]
    system, user = tpl.render(passages=numbered(chunks), question="How much is Starter?")
    assert "Cite the documents you use by their number" in system["content"]
    assert '<document id="1"' in user["content"] and '<document id="2"' in user["content"]
    assert user["content"].endswith("How much is Starter?")
    closed = tpl.render(passages=[], question="How much is Starter?")
    assert "Cite" not in closed[0]["content"]
    assert citations("Starter is $12 [1], Team $29 [2][1].") == [1, 2]


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("The documents provided do not contain the answer to this question.", True),
        ("The context doesn't mention webhook retries.", True),
        ("I cannot find that in the documents.", True),
        ("Webhooks retry 5 times [2].", False),
        ("Not all plans include SSO; Team does [1].", False),
    ],
)
def test_refusal_detection(text: str, refusal: bool) -> None:
    assert is_refusal(text) is refusal


def test_bad_task_mix_is_a_recipe_error() -> None:
    with pytest.raises(ValueError, match="tasks"):
        recipe(tasks={"qa": 0})
    with pytest.raises(ValueError):
        recipe(tasks={"poems": 1})


def test_no_job_carries_a_chunk_from_the_other_side_of_the_split() -> None:
    split = Split(["api/limits"], ["billing/plans", "account/password"])
    mix = {"qa": 1, "multi_hop": 1, "raft": 1, "instructions": 1, "multi_turn": 1}
    p = make_plan(
        recipe(tasks=mix, samples_per_chunk=12, neighbours=3, raft={"distractors": 3}),
        Chunks(),  # type: ignore[arg-type]
        split,
    )
    sides = {"train": 0, "eval": 0}
    for job in p.jobs:
        side = split.side(job.chunk["doc_id"])
        sides[side] += 1
        carried = {c["doc_id"] for c in job.context + job.sources}
        assert carried <= split.docs_of(side), (job.task, carried)
    assert sides["train"] and sides["eval"]
    # Without the split the same jobs would have reached across: the check can fail.
    loose = make_plan(recipe(tasks=mix, samples_per_chunk=12, neighbours=3), Chunks())  # type: ignore[arg-type]
    assert any(
        "api/limits" in {c["doc_id"] for c in j.context}
        for j in loose.jobs
        if j.chunk["doc_id"] != "api/limits"
    )
