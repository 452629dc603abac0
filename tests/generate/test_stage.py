from __future__ import annotations

import pytest

from distill.generate.config import GenerateConfig
from distill.generate.plan import clean_question, samples_for, select_chunks
from distill.grounding import clean_answer


def test_samples_per_chunk_or_per_thousand_tokens() -> None:
    assert samples_for({"n_tokens": 900}, GenerateConfig(samples_per_chunk=3)) == 3
    per_1k = GenerateConfig(samples_per_1k_tokens=10)
    assert [samples_for({"n_tokens": n}, per_1k) for n in (20, 250, 900)] == [1, 2, 9]


@pytest.mark.parametrize(
    ("reply", "question"),
    [
        ("Question: How long do trials last?", "How long do trials last?"),
        ('The customer wants to know: "What is the limit?" Thanks', "What is the limit?"),
        ("\n\nQ: Where is the export? More text after.", "Where is the export?"),
        ("No question at all", "No question at all"),
        ("", ""),
    ],
)
def test_clean_question(reply: str, question: str) -> None:
    assert clean_question(reply) == question


def test_clean_answer_and_chunk_sampling() -> None:
    assert clean_answer("Answer: 14 days.") == "14 days."
    chunks = [{"i": i} for i in range(10)]
    picked = select_chunks(chunks, 4, seed=1)
    assert len(picked) == 4 and picked == sorted(picked, key=lambda c: c["i"])
    assert select_chunks(chunks, 4, seed=1) == picked and select_chunks(chunks, None, 0) == chunks


def test_held_out_chunks_caps_the_eval_side_and_gives_the_rest_to_training() -> None:
    from distill.split import Split

    # 30 chunks: documents e0..e2 held out (12 chunks), t0..t5 training (18 chunks).
    chunks = [{"doc_id": f"e{i % 3}", "i": i} for i in range(12)]
    chunks += [{"doc_id": f"t{i % 6}", "i": 12 + i} for i in range(18)]
    split = Split(["e0", "e1", "e2"], [f"t{i}" for i in range(6)])

    def sides(picked: list[dict]) -> tuple[int, int]:
        held = sum(c["doc_id"].startswith("e") for c in picked)
        return held, len(picked) - held

    # Without the cap each side gets its share of max_chunks (12/30 of 10 = 4).
    assert sides(select_chunks(chunks, 10, 0, split)) == (4, 6)
    # Capped: 2 held-out chunks, and the freed 2 go to training, same total.
    capped = select_chunks(chunks, 10, 0, split, held_out=2)
    assert sides(capped) == (2, 8)
    assert capped == sorted(capped, key=lambda c: c["i"])
    # With every chunk (max_chunks null) the cap still applies, training keeps all 18.
    assert sides(select_chunks(chunks, None, 0, split, held_out=3)) == (3, 18)
    assert sides(select_chunks(chunks, None, 0, split, held_out=0)) == (0, 18)
    # A cap above the held-out side's size takes what there is.
    assert sides(select_chunks(chunks, None, 0, split, held_out=50)) == (12, 18)
    assert select_chunks(chunks, None, 0, split) == chunks


def test_the_estimate_says_which_documents_the_plan_covers() -> None:
    from types import SimpleNamespace

    from distill.generate.estimate import coverage, coverage_line

    chunks = [
        {"chunk_id": f"{d}#{i}", "doc_id": d} for d, n in (("a", 4), ("b", 1)) for i in range(n)
    ]
    picked = [chunks[0], chunks[4]]  # one of a's four chunks, b's only chunk
    jobs = [SimpleNamespace(chunk=chunks[0], pairs=3), SimpleNamespace(chunk=chunks[4], pairs=0)]
    rows = coverage(chunks, SimpleNamespace(chunks=picked, jobs=jobs))  # type: ignore[arg-type]
    assert rows == [
        {"doc_id": "a", "chunks": 4, "chunks_used": 1, "samples": 3},
        {"doc_id": "b", "chunks": 1, "chunks_used": 1, "samples": 1},
    ]
    assert coverage_line(rows) == (
        "coverage: every chunk of 1 of 2 documents; least covered: a (1 of 4 chunks)"
    )


@pytest.mark.parametrize("local", [True, False])
def test_a_local_llama_teacher_gets_a_steps_prompts_in_the_order_of_their_text(
    local: bool,
) -> None:
    """llama.cpp keeps the previous prompt's KV cache: prompts that start alike (one
    chunk's samples) must follow each other to evaluate their shared start once. Other
    teachers keep the length order (less padding in a transformers batch)."""
    from distill.generate.steps import Spend
    from distill.generate.steps import run_step as _run_step
    from distill.teachers.fake import FakeTeacher
    from distill.ui import progress

    class Teacher(FakeTeacher):
        runs_locally = local
        sends_all_at_once = True

    def chat(passage: str, question: str) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": "Answer from the documents."},
            {"role": "user", "content": f"<document>{passage}</document>\n{question}"},
        ]

    prompts = {
        0: chat("Plans and prices of every tier, in full.", "How much is Team?"),
        1: chat("Exports run nightly.", "When do exports run?"),
        2: chat("Plans and prices of every tier, in full.", "Is there a free plan?"),
        3: chat("Exports run nightly.", "Who gets the export email, and when exactly?"),
    }
    teacher = Teacher()
    with progress() as bar:
        _run_step(
            bar, "answers", prompts, 8, teacher=teacher, ids=["a", "b", "c", "d"],
            failures=[], spend=Spend(), max_tokens=8,
        )  # fmt: skip
    asked = [prompts_index for m in teacher.calls for prompts_index, p in prompts.items() if p == m]
    if local:  # each passage's two prompts side by side
        assert asked == [1, 3, 0, 2]
    else:  # by length
        assert asked == sorted(prompts, key=lambda j: sum(len(m["content"]) for m in prompts[j]))
