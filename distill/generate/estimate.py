"""`distill estimate`: requests, tokens and cost of a recipe's generate stage, before
anything is spent.

Request prompts (questions, instructions) are rendered exactly as generate will send
them. Answer and follow-up prompts depend on what the teacher has not written yet,
so they are rendered with a stand-in question (and answers) of typical length.
Prompt tokens use the ~4 characters a token rule
(distill.teachers.prices.estimate_tokens). Output is given two ways: the cap
(`max_tokens` on every reply: the most the run can cost) and an expectation
(questions ~EXPECTED_QUESTION_TOKENS, answers ANSWER_FILL of the cap), which is an
assumption, not a measurement: after a run, compare with the manifest's tokens.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from distill.generate.imported import choose, read_prompts
from distill.generate.imported_samples import ask, to_ask
from distill.generate.plan import Plan, choose_split, make_plan
from distill.generate.stage import QUESTION_MAX_TOKENS
from distill.grounding import numbered
from distill.prompts import fence
from distill.recipe import Recipe
from distill.retrieval import Retriever
from distill.runfolder import RunFolder
from distill.split import Split
from distill.tables import Chunk
from distill.teachers.factory import price_for
from distill.teachers.prices import estimate_tokens

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


def estimate(recipe: Recipe, folder: RunFolder) -> dict[str, Any]:
    """The generate stage's requests, tokens and cost; ingest must have run."""
    # Long on purpose: the stage's steps priced in the order generate sends them.
    cfg = recipe.generate
    retriever = Retriever(folder.ingest_dir, recipe.retrieval)
    split = choose_split(recipe, retriever)
    plan = make_plan(recipe, retriever, split)
    tpl, jobs = plan.templates, plan.jobs
    answer_out = round(cfg.max_new_tokens * ANSWER_FILL)
    stand_in = {"question": STAND_IN_QUESTION, "answer": "x" * (answer_out * 4)}
    answer_in = {
        j.index: estimate_tokens(
            tpl.answer.render(passages=numbered(j.context), question=STAND_IN_QUESTION)
        )
        for j in jobs
        if not j.expects_refusal and not j.pairs
    }
    q_out = min(EXPECTED_QUESTION_TOKENS, QUESTION_MAX_TOKENS)
    # A pairs request writes its questions and their answers in one reply.
    pairs = sum(j.pairs for j in jobs)
    singles = len(jobs) - sum(bool(j.pairs) for j in jobs)
    steps = [
        StepEstimate(
            "requests",
            len(jobs),
            sum(estimate_tokens(j.request_prompt) for j in jobs),
            singles * q_out + pairs * (q_out + answer_out),
            singles * QUESTION_MAX_TOKENS + pairs * (QUESTION_MAX_TOKENS + cfg.max_new_tokens),
        ),
        StepEstimate(
            "answers",
            len(answer_in),
            sum(answer_in.values()),
            len(answer_in) * answer_out,
            len(answer_in) * cfg.max_new_tokens,
        ),
    ]
    talks = [j for j in jobs if j.task == "multi_turn"]
    for turn in range(1, cfg.multi_turn_turns if talks else 1):
        passage = [fence("1", j.chunk["text"], j.chunk["heading_path"]) for j in talks]
        follow_in = sum(
            estimate_tokens(tpl.follow_up.render(passage=p, conversation=[stand_in] * turn))
            for p in passage
        )
        steps.append(
            StepEstimate(
                f"follow-ups {turn + 1}",
                len(talks),
                follow_in,
                len(talks) * q_out,
                len(talks) * QUESTION_MAX_TOKENS,
            )
        )
        # Each earlier turn adds a user question and an assistant answer to the prompt.
        per_turn = estimate_tokens([{"role": "user", "content": STAND_IN_QUESTION}]) + answer_out
        steps.append(
            StepEstimate(
                f"answers {turn + 1}",
                len(talks),
                sum(answer_in[j.index] for j in talks) + len(talks) * turn * per_turn,
                len(talks) * answer_out,
                len(talks) * cfg.max_new_tokens,
            )
        )
    if cfg.prompts is not None:
        steps.append(_own_questions(recipe, retriever, split, plan, answer_out))
    price, source = price_for(
        plan.teacher, recipe.teacher.price, max_cost_usd=cfg.max_cost_usd, batch=cfg.mode == "batch"
    )
    rows = []
    for s in steps:
        rows.append(
            {
                "step": s.step,
                "requests": s.requests,
                "input_tokens": s.input_tokens,
                "output_tokens_expected": s.output_expected,
                "output_tokens_max": s.output_max,
                "cost_usd_expected": price.bound(s.input_tokens, s.output_expected)
                if price
                else 0.0,
                "cost_usd_max": price.bound(s.input_tokens, s.output_max) if price else 0.0,
            }
        )
    total: dict[str, Any] = {"step": "total"}
    for key in rows[0]:
        if key != "step":
            total[key] = sum(r[key] for r in rows)
    return {
        "teacher": plan.teacher,
        "coverage": coverage(retriever.chunks, plan),
        "price": source,
        "price_per_1m": None if price is None else {"input": price.input, "output": price.output},
        "max_cost_usd": cfg.max_cost_usd,
        "chunks": len(plan.chunks),
        "steps": rows,
        "total": total,
    }


def _own_questions(
    recipe: Recipe, retriever: Retriever, split: Split, plan: Plan, answer_out: int
) -> StepEstimate:
    """Your own questions (generate.prompts): the prompts generate will send, exactly."""
    cfg = recipe.generate.prompts
    assert cfg is not None
    train, held = choose(read_prompts(recipe.base_dir / cfg.path, cfg).questions, cfg,
                         recipe.split.seed)  # fmt: skip
    asked = ask(train, held, retriever, split, plan.templates.answer, cfg, plan.teacher)
    prompts = to_ask(asked, cfg)
    n, cap = len(prompts), recipe.generate.max_new_tokens
    return StepEstimate(
        "your questions", n, sum(map(estimate_tokens, prompts.values())), n * answer_out, n * cap
    )


def coverage(chunks: list[Chunk], plan: Plan) -> list[dict[str, Any]]:
    """Per document: its chunks, how many the plan writes from, and the samples planned
    (least covered first): a long document that max_chunks samples thinly shows here,
    before any request is paid for."""
    total = Counter(c["doc_id"] for c in chunks)
    used = Counter(c["doc_id"] for c in plan.chunks)
    samples = Counter(j.chunk["doc_id"] for j in plan.jobs for _ in range(max(1, j.pairs)))
    rows = [
        {"doc_id": d, "chunks": n, "chunks_used": used[d], "samples": samples[d]}
        for d, n in total.items()
    ]
    return sorted(rows, key=lambda r: (r["chunks_used"] / r["chunks"], r["doc_id"]))


def coverage_line(rows: list[dict[str, Any]]) -> str:
    """One line: how many documents the plan covers whole, and the least covered."""
    whole = sum(r["chunks_used"] == r["chunks"] for r in rows)
    line = f"coverage: every chunk of {whole} of {len(rows)} documents"
    thin = [r for r in rows if r["chunks_used"] < r["chunks"]][:3]
    if thin:
        line += "; least covered: " + ", ".join(
            f"{r['doc_id']} ({r['chunks_used']} of {r['chunks']} chunks)" for r in thin
        )
    return line


def render(est: dict[str, Any]) -> str:
    """The estimate as a table for the terminal."""
    p = est["price_per_1m"]
    price = f"${p['input']:g} in / ${p['output']:g} out per 1M tokens, " if p else ""
    lines = [
        f"teacher {est['teacher']} ({price}{est['price']}); {est['chunks']} chunks",
        coverage_line(est["coverage"]),
        f"{'step':<14}{'requests':>9}{'input tok':>12}{'output tok (exp / max)':>26}"
        f"{'cost USD (exp / max)':>24}",
    ]
    for r in [*est["steps"], est["total"]]:
        out = f"{r['output_tokens_expected']:,} / {r['output_tokens_max']:,}"
        cost = f"{r['cost_usd_expected']:.4f} / {r['cost_usd_max']:.4f}"
        lines.append(
            f"{r['step']:<14}{r['requests']:>9,}{r['input_tokens']:>12,}{out:>26}{cost:>24}"
        )
    lines.append(
        "requests assume every question succeeds; answer prompts use a stand-in question; "
        "'exp' output is an assumption (see distill/generate/estimate.py), 'max' is the cap."
    )
    if est["max_cost_usd"] is not None:
        fits = est["total"]["cost_usd_max"] <= est["max_cost_usd"]
        lines.append(
            f"max_cost_usd {est['max_cost_usd']}: "
            + ("the whole run fits even at the cap" if fits else "the run may stop at the budget")
        )
    return "\n".join(lines)
