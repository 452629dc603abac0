"""`distill estimate`: requests, tokens and cost of a recipe's generate stage, before
anything is spent.

Question prompts are rendered exactly as generate will send them. Answer prompts
depend on the questions the teacher has not written yet, so they are rendered with
a stand-in question of typical length. Prompt tokens use the ~4 characters a token
rule (distill.teachers.prices.estimate_tokens). Output is given two ways: the cap
(`max_tokens` on every reply: the most the run can cost) and an expectation
(questions ~EXPECTED_QUESTION_TOKENS, answers ANSWER_FILL of the cap), which is an
assumption, not a measurement: after a run, compare with the manifest's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from distill.generate import QUESTION_MAX_TOKENS, fenced, make_plan, teacher_price
from distill.recipe import Recipe
from distill.retrieval import Retriever
from distill.runfolder import RunFolder
from distill.teachers.prices import BATCH_DISCOUNT, estimate_tokens

EXPECTED_QUESTION_TOKENS = 24
ANSWER_FILL = 0.6
STAND_IN_QUESTION = "How do I change the setting described here, and what is its limit?"


@dataclass
class StepEstimate:
    step: str
    requests: int
    input_tokens: int
    output_expected: int
    output_max: int


def estimate(recipe: Recipe, run: RunFolder) -> dict[str, Any]:
    """The generate stage's requests, tokens and cost; ingest must have run."""
    cfg = recipe.generate
    plan = make_plan(recipe, Retriever(run.stage_dir("ingest"), recipe.retrieval))
    q_in = sum(estimate_tokens(m) for m in plan.question_prompts.values())
    a_in = sum(
        estimate_tokens(
            plan.answer_template.render(
                passages=[fenced(x) for x in plan.contexts[j]], question=STAND_IN_QUESTION
            )
        )
        for j in range(len(plan.jobs))
    )
    n = len(plan.jobs)
    steps = [
        StepEstimate(
            "questions",
            n,
            q_in,
            n * min(EXPECTED_QUESTION_TOKENS, QUESTION_MAX_TOKENS),
            n * QUESTION_MAX_TOKENS,
        ),
        StepEstimate(
            "answers", n, a_in, round(n * cfg.max_new_tokens * ANSWER_FILL), n * cfg.max_new_tokens
        ),
    ]
    price, source = teacher_price(cfg)
    discount = BATCH_DISCOUNT if cfg.mode == "batch" else 1.0
    if cfg.mode == "batch":
        source += ", batch API: half price"
    rows = []
    for s in steps:
        rows.append(
            {
                "step": s.step,
                "requests": s.requests,
                "input_tokens": s.input_tokens,
                "output_tokens_expected": s.output_expected,
                "output_tokens_max": s.output_max,
                "cost_usd_expected": price.bound(s.input_tokens, s.output_expected, discount)
                if price
                else 0.0,
                "cost_usd_max": price.bound(s.input_tokens, s.output_max, discount)
                if price
                else 0.0,
            }
        )
    total: dict[str, Any] = {"step": "total"}
    for key in rows[0]:
        if key != "step":
            total[key] = sum(r[key] for r in rows)
    return {
        "teacher": cfg.teacher,
        "price": source,
        "price_per_1m": None if price is None else {"input": price.input, "output": price.output},
        "max_cost_usd": cfg.max_cost_usd,
        "chunks": len(plan.chunks),
        "steps": rows,
        "total": total,
    }


def render(est: dict[str, Any]) -> str:
    """The estimate as a table for the terminal."""
    p = est["price_per_1m"]
    price = f"${p['input']:g} in / ${p['output']:g} out per 1M tokens, " if p else ""
    lines = [
        f"teacher {est['teacher']} ({price}{est['price']}); {est['chunks']} chunks",
        f"{'step':<10}{'requests':>9}{'input tok':>12}{'output tok (exp / max)':>26}"
        f"{'cost USD (exp / max)':>24}",
    ]
    for r in [*est["steps"], est["total"]]:
        out = f"{r['output_tokens_expected']:,} / {r['output_tokens_max']:,}"
        cost = f"{r['cost_usd_expected']:.4f} / {r['cost_usd_max']:.4f}"
        lines.append(
            f"{r['step']:<10}{r['requests']:>9,}{r['input_tokens']:>12,}{out:>26}{cost:>24}"
        )
    lines.append(
        "requests assume every question succeeds; answer prompts use a stand-in question; "
        "'exp' output is an assumption (see distill/estimate.py), 'max' is the cap."
    )
    if est["max_cost_usd"] is not None:
        fits = est["total"]["cost_usd_max"] <= est["max_cost_usd"]
        lines.append(
            f"max_cost_usd {est['max_cost_usd']}: "
            + ("the whole run fits even at the cap" if fits else "the run may stop at the budget")
        )
    return "\n".join(lines)
