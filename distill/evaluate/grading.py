"""Grading: the judge (by default the teacher) scores each answer's correctness against
the reference and its groundedness in the retrieved chunks, and compares each student
system with the teacher in both orders; similarity to the reference by embedding.
A failed judgement stays a failure, never a pass."""

from __future__ import annotations

import numpy as np

from distill.evaluate import metrics as eval_metrics
from distill.evaluate.items import Item
from distill.grounding import numbered
from distill.prompts import Template, recipe_template
from distill.recipe import Recipe
from distill.retrieval import embed
from distill.rows import Answer, JudgementKey
from distill.teachers.base import Teacher
from distill.teachers.cache import RequestCache
from distill.teachers.factory import make_teacher, with_cache
from distill.teachers.judge import (
    CORRECTNESS_SCHEMA,
    GRADE_SCHEMA,
    PAIRWISE_SCHEMA,
    JsonJudge,
)


def _judge(
    recipe: Recipe, teacher: Teacher | None, cache: RequestCache, salt: str
) -> tuple[str, Teacher]:
    """The judge's spec and a ready, cached judge; `teacher` is the teacher system's."""
    g = recipe.generate
    spec, options = recipe.judge_of(recipe.eval.judge, recipe.eval.judge_options)
    reuse = spec == g.teacher and options == g.teacher_options
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


def _grade(rows: list[Answer], items: dict[str, Item], judge: JsonJudge, tpl: Template) -> float:
    todo = [r for r in rows if r["kind"] == "answerable" and r["judged"]]
    for r in todo:
        if r["answer_error"]:
            r["grade_error"] = "no answer to grade"
    # Question by question: the systems answering one question share the judge prompt's
    # start (rubric, documents, question, reference), which llama.cpp evaluates once.
    todo = sorted((r for r in todo if not r["answer_error"]), key=lambda r: r["item_id"])
    prompts, schemas = [], []
    for r in todo:
        it = items[r["item_id"]]
        rag = bool(r["retrieved_chunk_ids"])
        prompts.append(
            tpl.render(
                passages=numbered(it.hits) if rag else [],
                question=it.question,
                reference=it.reference,
                answer=r["answer"],
            )
        )
        schemas.append(GRADE_SCHEMA if rag else CORRECTNESS_SCHEMA)
    cost = 0.0
    for schema, label in (
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
            else:
                r["correctness"] = int(v["correctness"])
                r["groundedness"] = (
                    int(v["groundedness"])
                    if "groundedness" in v and (schema is GRADE_SCHEMA)
                    else None
                )
                r["grade_reason"] = str(v.get("reason", ""))[:500]
    return cost


def _pairwise(rows: list[Answer], judge: JsonJudge, tpl: Template) -> float:
    """Each student answer against the teacher's, in both orders."""
    teacher = {r["item_id"]: r for r in rows if r["system"] == "teacher"}
    todo = sorted(
        (r for r in rows if r["system"] != "teacher" and r["kind"] == "answerable" and r["judged"]),
        key=lambda r: r["item_id"],  # shared prompt prefixes, as in _grade
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


def judge_agreement(rows: list[Answer]) -> dict[str, float | int] | None:
    """The judge against the key-fact check on the answers both scored: Cohen's kappa of
    'correct' (judge >= 4) and 'states every key fact', and the raw agreement."""
    pairs = [
        (r["correctness"] >= 4, bool(r["fact_correct"]))
        for r in rows
        if r["correctness"] is not None and r["fact_correct"] is not None
    ]
    if not pairs:
        return None
    n = len(pairs)
    agree = sum(j == k for j, k in pairs) / n
    pj, pk = sum(j for j, _ in pairs) / n, sum(k for _, k in pairs) / n
    chance = pj * pk + (1 - pj) * (1 - pk)
    kappa = (agree - chance) / (1 - chance) if chance < 1 else 1.0
    return {"n": n, "agreement": round(agree, 4), "kappa": round(kappa, 4)}


def _similarity(rows: list[Answer], model_ref: str) -> None:
    # Against a written reference only: an answer key's facts are no reference text.
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
