"""Grading: the judge (by default the teacher) scores each answer's correctness against
the reference and its groundedness in the retrieved chunks, and compares each student
system with the teacher in both orders; similarity to the reference by embedding.
A failed judgement stays a failure, never a pass."""

from __future__ import annotations

import re

import numpy as np

from distill.agreement import agreement
from distill.evaluate import metrics as eval_metrics
from distill.evaluate.items import Item
from distill.evaluate.stats import wilson
from distill.grounding import numbered
from distill.prompts import Fenced, Template, fence, recipe_template
from distill.recipe import Recipe
from distill.results import Agreement, JudgeCheck
from distill.retrieval import embed
from distill.tables import Answer, Chunk, JudgementKey
from distill.teachers import Message
from distill.teachers.base import Teacher
from distill.teachers.cache import RequestCache
from distill.teachers.factory import make_teacher, with_cache
from distill.teachers.judge import (
    CORRECTNESS_SCHEMA,
    GRADE_SCHEMA,
    PAIRWISE_SCHEMA,
    VERDICT_SCHEMA,
    JsonJudge,
)


def make_judge(
    recipe: Recipe, teacher: Teacher | None, cache: RequestCache, salt: str
) -> tuple[str, Teacher]:
    """The judge's spec and a ready, cached judge; `teacher` is the teacher system's."""
    t = recipe.teacher
    spec, options = recipe.judge_of(recipe.eval.judge, recipe.eval.judge_options)
    reuse = spec == t.model and options == t.options
    if teacher is not None and reuse and teacher.runs_locally:
        return spec, with_cache(teacher, cache, salt)  # one loaded model, not two
    price = recipe.price_of(spec)  # priced like curate's judge, by the same rule
    return spec, make_teacher(spec, options, price=price, cache=cache, salt=salt)


def judge_templates(recipe: Recipe) -> tuple[Template, Template]:
    """The grade and pairwise templates (the recipe's prompts_dir first)."""
    return (
        recipe_template(recipe, recipe.eval.grade_template),
        recipe_template(recipe, recipe.eval.pairwise_template),
    )


# Offline judges too small to grade anything: their scores only exercise the pipeline.
TINY_JUDGES = ("smollm2-135m-instruct",)


def smoke_test_judge(judge: Teacher, student: str = "") -> bool:
    """A judge whose scores only exercise the pipeline: scripted, tiny, or the student."""
    local = judge.runs_locally and (judge.model in TINY_JUDGES or judge.model == student)
    return judge.scripted or local


def small_judge(judge: Teacher) -> bool:
    """A small offline judge (stronger than the student, still noisy)."""
    from distill.models import OFFLINE_MODELS

    return judge.runs_locally and judge.model in OFFLINE_MODELS


# A three-level verdict (eval_grade@v3 and later) kept on the 1-5 scale of the tables,
# so "correct" is the share >= 4.
VERDICT_SCORE = {"correct": 5, "partial": 3, "wrong": 1}


def _verdict_style(tpl: Template) -> bool:
    """A grade template that asks for a named verdict (reason first), not a 1-5 score."""
    return '"verdict"' in tpl.text


def _grade_prompt(
    tpl: Template, it: Item, answer: str, sources: list[Fenced], passages: list[str]
) -> list[Message]:
    return tpl.render(
        sources=sources,
        passages=passages,
        question=it.question,
        reference=it.reference,
        answer=answer,
    )


def _sources(it: Item, chunk_by_id: dict[str, Chunk]) -> list[Fenced]:
    """The question's source chunks, fenced: the same for every system's answer."""
    found = [chunk_by_id[c] for c in it.source_chunk_ids if c in chunk_by_id]
    return [fence(str(n), c["text"], c["heading_path"]) for n, c in enumerate(found, 1)]


def grade_answers(
    rows: list[Answer],
    items: dict[str, Item],
    judge: JsonJudge,
    tpl: Template,
    chunk_by_id: dict[str, Chunk],
) -> float:
    """Judge each answer of the judged answerable rows in place (its grade, or the reason
    it has none in `grade_error`: a failed judgement is never a pass); the judge's cost."""
    todo = [r for r in rows if r["kind"] == "answerable" and r["judged"]]
    for r in todo:
        if r["answer_error"]:
            r["grade_error"] = "no answer to grade"
    # Question by question: the systems answering one question share the judge prompt's
    # start (rubric, documents, question, reference), which llama.cpp evaluates once.
    todo = sorted((r for r in todo if not r["answer_error"]), key=lambda r: r["item_id"])
    named = _verdict_style(tpl)
    prompts, schemas = [], []
    for r in todo:
        it = items[r["item_id"]]
        rag = bool(r["retrieved_chunk_ids"])
        prompts.append(
            _grade_prompt(
                tpl,
                it,
                r["answer"],
                _sources(it, chunk_by_id),
                numbered(it.hits) if rag and not named else [],
            )
        )
        schemas.append(VERDICT_SCHEMA if named else GRADE_SCHEMA if rag else CORRECTNESS_SCHEMA)
    cost = 0.0
    for schema, label in (
        (VERDICT_SCHEMA, "judging: correct, partial or wrong"),
        (GRADE_SCHEMA, "judging: correctness + groundedness"),
        (CORRECTNESS_SCHEMA, "judging: correctness"),
    ):
        idx = [i for i, s in enumerate(schemas) if s is schema]
        keys = [
            JudgementKey(item_id=todo[i]["item_id"], system=todo[i]["system"], kind="grade")
            for i in idx
        ]
        verdicts = judge.ask(label, [prompts[i] for i in idx], schema, keys)
        for i, (v, err, usd) in zip(idx, verdicts, strict=True):
            r, cost = todo[i], cost + usd
            if v is None:
                r["grade_error"] = err
                continue
            r["correctness"] = (
                VERDICT_SCORE[v["verdict"]] if schema is VERDICT_SCHEMA else int(v["correctness"])
            )
            r["groundedness"] = int(v["groundedness"]) if schema is GRADE_SCHEMA else None
            r["grade_reason"] = str(v.get("reason", ""))[:500]
    return cost


def judge_checks(
    items: dict[str, Item],
    judged: list[str],
    judge: JsonJudge,
    tpl: Template,
    chunk_by_id: dict[str, Chunk],
) -> tuple[dict[str, JudgeCheck], float]:
    """The judge measured on answers whose grade is known, for every judged question:
    its own reference as the answer (identity: must be top; the share that is not is
    the false-negative rate) and another question's reference (foil: must be bottom;
    the share that is not is the false-positive rate). Failed checks are counted apart."""
    ids = sorted(i for i in judged if items[i].reference)
    if len(ids) < 2 or not _verdict_style(tpl):
        return {}, 0.0
    prompts, keys = [], []
    for n, item_id in enumerate(ids):
        it = items[item_id]
        foil = items[ids[(n + 1) % len(ids)]].reference  # the next question's, cyclically
        for kind, answer in (("identity", it.reference), ("foil", foil)):
            prompts.append(_grade_prompt(tpl, it, answer, _sources(it, chunk_by_id), []))
            keys.append(JudgementKey(item_id=item_id, system=f"check: {kind}", kind="grade"))
    verdicts = judge.ask("judging: identity and foil checks", prompts, VERDICT_SCHEMA, keys)
    out: dict[str, JudgeCheck] = {}
    for kind, want in (("identity", "correct"), ("foil", "wrong")):
        got = [v for (v, _, _), k in zip(verdicts, keys, strict=True) if k["system"].endswith(kind)]
        done = [v["verdict"] for v in got if v is not None]
        missed = sum(x != want for x in done)
        w = wilson(missed, len(done))
        out[kind] = JudgeCheck(
            n=len(done),
            failed=len(got) - len(done),
            missed=missed,
            rate=round(missed / len(done), 4) if done else None,
            ci=(round(w[0], 4), round(w[1], 4)) if w else None,
        )
    return out, sum(usd for _, _, usd in verdicts)


def same_family(a: str, b: str) -> bool:
    """Whether two 'provider:model' specs name models of one family ('qwen2.5-coder-1.5b'
    and 'qwen2.5-coder-0.5b'): a judge of the teacher's family may prefer its answers."""

    def family(spec: str) -> str:
        name = spec.split(":", 1)[-1].rsplit("/", 1)[-1].lower()
        return re.split(r"[^a-z]", name, maxsplit=1)[0]

    return bool(family(a)) and family(a) == family(b)


def judge_vs_teacher(rows: list[Answer], judge: JsonJudge, tpl: Template) -> float:
    """Each student answer against the teacher's, in both orders."""
    teacher = {r["item_id"]: r for r in rows if r["system"] == "teacher"}
    todo = sorted(
        (r for r in rows if r["system"] != "teacher" and r["kind"] == "answerable" and r["judged"]),
        key=lambda r: r["item_id"],  # shared prompt prefixes, as in grade_answers
    )
    asked, prompts = [], []
    for r in todo:
        t = teacher.get(r["item_id"])
        if t is None or r["answer_error"] or t["answer_error"]:
            r["vs_teacher"] = "failed"
            r["pairwise_error"] = "no answer to compare"
            continue
        common = {"question": r["question"], "reference": r["reference"]}
        s_ans, t_ans = r["answer"], t["answer"]
        prompts.append(tpl.render(**common, answer_a=s_ans, answer_b=t_ans))
        prompts.append(tpl.render(**common, answer_a=t_ans, answer_b=s_ans))
        asked.append(r)
    keys = [
        JudgementKey(item_id=r["item_id"], system=r["system"], kind=kind)
        for r in asked
        for kind in ("pairwise: student first", "pairwise: teacher first")
    ]
    verdicts = judge.ask("judging: head to head with the teacher", prompts, PAIRWISE_SCHEMA, keys)
    cost = 0.0
    for j, r in enumerate(asked):
        (v1, e1, c1), (v2, e2, c2) = verdicts[2 * j], verdicts[2 * j + 1]
        cost += c1 + c2
        first = v1["winner"] if v1 else None
        second = v2["winner"] if v2 else None
        r["pairwise"] = f"{first or 'failed'}/{second or 'failed'}"
        r["vs_teacher"] = eval_metrics.combine_pairwise(first, second)
        if e1 or e2:
            r["pairwise_error"] = e1 or e2
    return cost


def judge_agreement(rows: list[Answer], seed: int = 0) -> Agreement | None:
    """The judge against the key-fact check on the answers both scored: Cohen's kappa of
    'correct' (judge >= 4) and 'states every key fact' with its interval, and the raw
    agreement."""
    pairs = [
        (r["correctness"] >= 4, bool(r["fact_correct"]))
        for r in rows
        if r["correctness"] is not None and r["fact_correct"] is not None
    ]
    return Agreement.model_validate(agreement(pairs, seed)) if pairs else None


def add_similarity(rows: list[Answer], model_ref: str) -> None:
    """Each answer's embedding cosine to its written reference, in place (not for answer
    key rows: their facts are no reference text)."""
    todo = [
        r
        for r in rows
        if r["kind"] == "answerable" and not r["answer_error"] and r["key_facts"] == "[]"
    ]
    if not todo:
        return
    answers = embed([r["answer"] for r in todo], model_ref)
    refs = embed([r["reference"] for r in todo], model_ref)
    for r, sim in zip(todo, np.sum(answers * refs, axis=1), strict=True):
        r["similarity"] = round(float(sim), 4)
