"""Preference pairs for DPO, built from the run itself.

For each training prompt (the curated sample's conversation up to its last answer),
the student writes `preferences.samples` answers of its own, sampled: the base student
for `method: dpo`, the SFT student for `sft_then_dpo`. The judge grades each against
the chosen answer (the teacher's, or the reviewer's correction) with eval's rubric,
correctness 1-5. A pair is kept only where an answer is clearly worse (correctness at
most `max_rejected_correctness`); the prompt's worst such answer is its rejected one.
A failed or unparseable judgement never makes a pair. Every sampled answer, its grade
and what became of it go to train/candidates.parquet; each pair records why it exists.

The judge sees the question, the chosen answer as the reference and the student's
answer, not the documents: "clearly worse than the chosen answer" is what a pair
needs, and leaving the documents out makes each judgement several times cheaper.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from distill.grounding import clean_answer
from distill.prompts import Template, recipe_template
from distill.recipe import Recipe
from distill.tables import Candidate, JudgementKey, Preference
from distill.teachers import Message
from distill.teachers.judge import CORRECTNESS_SCHEMA, JsonJudge
from distill.train.config import PreferencesConfig
from distill.train_results import PairCounts
from distill.ui import progress

SAMPLE_BATCH = 8  # prompts the student answers at once
_DOCS = re.compile(r"<document\b.*?</document>\s*", re.S)


def judge_spec(recipe: Recipe) -> tuple[str, dict[str, Any]]:
    """Who grades the student's answers, and with what backend settings: the
    preferences' own judge, else eval's, else the teacher."""
    p, e = recipe.train.preferences, recipe.eval
    if p.judge is None:  # eval's judge, with the preferences' settings if they give any
        spec, options = recipe.judge_of(e.judge, e.judge_options)
        return spec, options if p.judge_options is None else p.judge_options
    return recipe.judge_of(p.judge, p.judge_options)


def prompt_of(row: dict[str, Any]) -> list[Message]:
    """The conversation up to the answer a pair is about (its last)."""
    return [{"role": m["role"], "content": m["content"]} for m in row["messages"][:-1]]


def question_of(row: dict[str, Any]) -> str:
    """The question the last answer answers: the last user turn, documents left out."""
    last = next(m["content"] for m in reversed(row["messages"]) if m["role"] == "user")
    return _DOCS.sub("", last).strip() or str(row.get("question", ""))


def sample_answers(
    model: Any, tok: Any, rows: list[dict[str, Any]], cfg: PreferencesConfig, seed: int
) -> list[list[str]]:
    """`cfg.samples` sampled answers of the loaded student per row."""
    from distill.teachers.local import generate_batch

    model.eval()
    prompts = [prompt_of(r) for r in rows]
    out: list[list[str]] = [[] for _ in rows]
    with progress() as bar:
        task = bar.add_task("student answers", total=len(rows) * cfg.samples)
        for k in range(cfg.samples):
            for start in range(0, len(prompts), SAMPLE_BATCH):
                batch = prompts[start : start + SAMPLE_BATCH]
                done = generate_batch(
                    model,
                    tok,
                    batch,
                    max_tokens=cfg.max_new_tokens,
                    temperature=cfg.temperature,
                    seed=seed + 1000 * k + start,
                )
                for i, c in enumerate(done):
                    out[start + i].append(clean_answer(c.text) if c.error is None else "")
                bar.advance(task, len(batch))
    return out


def grade(
    judge: JsonJudge,
    template: Template,
    rows: list[dict[str, Any]],
    answers: list[list[str]],
    written_by: str,
) -> list[Candidate]:
    """Each sampled answer graded against its row's chosen answer (empty ones are not
    sent: they are failures of the student, not pairs)."""
    cands: list[Candidate] = []
    prompts, keys, todo = [], [], []
    for row, texts in zip(rows, answers, strict=True):
        chosen = row["messages"][-1]["content"]
        for k, text in enumerate(texts):
            c = Candidate(
                sample_id=row["sample_id"],
                sample=k,
                written_by=written_by,
                answer=text,
                correctness=None,
                reason=None,
                error=None,
                outcome="",
            )
            cands.append(c)
            if not text.strip():
                c["outcome"] = "empty answer"
            elif _same(text, chosen):
                c["outcome"] = "the same as the chosen answer"
            else:
                todo.append(c)
                prompts.append(
                    template.render(
                        passages=[], question=question_of(row), reference=chosen, answer=text
                    )
                )
                keys.append(JudgementKey(item_id=row["sample_id"], system=written_by, kind=str(k)))
    verdicts = judge.ask("judging the student's answers", prompts, CORRECTNESS_SCHEMA, keys)
    for c, (v, err, _usd) in zip(todo, verdicts, strict=True):
        if v is None:
            c["error"] = err
            c["outcome"] = "judgement failed"
        else:
            c["correctness"] = int(v["correctness"])
            c["reason"] = str(v.get("reason", ""))[:500]
    return cands


def _same(a: str, b: str) -> bool:
    def norm(s: str) -> str:
        return " ".join(s.lower().split())

    return norm(a) == norm(b)


def make_pairs(
    rows: list[dict[str, Any]], cands: list[Candidate], max_correctness: int, judge: str
) -> list[Preference]:
    """One pair per prompt with a clearly worse answer (its worst); every candidate's
    `outcome` says what became of it."""
    by_id: dict[str, list[Candidate]] = {}
    for c in cands:
        by_id.setdefault(c["sample_id"], []).append(c)
    pairs: list[Preference] = []
    for row in rows:
        graded = [c for c in by_id.get(row["sample_id"], []) if c["correctness"] is not None]
        worse = [c for c in graded if (c["correctness"] or 0) <= max_correctness]
        for c in graded:
            if c not in worse:
                c["outcome"] = "not clearly worse"
        if not worse:
            continue
        worst = min(worse, key=lambda c: (c["correctness"] or 0, c["sample"]))
        for c in worse:
            c["outcome"] = "pair" if c is worst else "a worse answer to this prompt was kept"
        chosen_by = "reviewer" if row.get("human_edited") else "teacher"
        pairs.append(
            Preference(
                pair_id=f"{row['sample_id']}-{worst['sample']}",
                sample_id=row["sample_id"],
                task=str(row.get("task", "")),
                doc_ids=list(row.get("doc_ids") or []),
                prompt=prompt_of(row),
                chosen=row["messages"][-1]["content"],
                rejected=worst["answer"],
                chosen_by=chosen_by,
                rejected_by=worst["written_by"],
                rejected_correctness=int(worst["correctness"] or 0),
                judge=judge,
                why=(
                    f"the {worst['written_by']}'s answer was graded {worst['correctness']}/5 "
                    f"for correctness against the {chosen_by}'s answer by {judge}: "
                    f"{worst['reason'] or 'no reason given'}"
                ),
            )
        )
    return pairs


def build(
    recipe: Recipe,
    rows: list[dict[str, Any]],
    model: Any,
    tok: Any,
    written_by: str,
    out: Path,
) -> tuple[list[Preference], list[Candidate], PairCounts]:
    """Pairs for `rows` from the loaded student's own answers; (pairs, candidates, counts)."""
    from distill.teachers.cache import RequestCache
    from distill.teachers.factory import make_teacher

    cfg = recipe.train.preferences
    answers = sample_answers(model, tok, rows, cfg, recipe.train.seed)
    template = recipe_template(recipe, cfg.grade_template)
    spec, options = judge_spec(recipe)
    cache = RequestCache(out / "cache.sqlite")
    try:
        teacher = make_teacher(
            spec, options, price=recipe.price_of(spec), cache=cache, salt=template.sha
        )
        judge = JsonJudge(teacher, max_tokens=128, prefill=None)
        cands = grade(judge, template, rows, answers, written_by)
        spent = teacher.spent_usd
    finally:
        cache.close()
    pairs = make_pairs(rows, cands, cfg.max_rejected_correctness, spec)
    outcomes: dict[str, int] = {}
    for c in cands:
        outcomes[c["outcome"]] = outcomes.get(c["outcome"], 0) + 1
    counts = PairCounts(
        prompts=len(rows),
        answers=len(cands),
        pairs=len(pairs),
        judge=spec,
        judge_cost_usd=round(spent, 6),
        judge_failures=judge.failures,
        outcomes=outcomes,
    )
    return pairs, cands, counts
