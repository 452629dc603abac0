"""Evaluate: does the small model match the teacher? The decision table on held-out data.

Systems (recipe `eval.systems`):
- `teacher`: the generate stage's teacher, given the retrieved chunks;
- `base` / `base+rag`: the student without its adapter, without / with retrieved chunks;
- `ft` / `ft+rag`: the student with the trained adapter, without / with retrieved chunks;
- `NAME: SPEC`: any other model (e.g. the fine-tune the student replaces), built and
  cached as the teacher is, with retrieved chunks when its `rag` says so, and compared
  with `eval.deciding`'s first system on the answer key (distill.evaluate.decision).
Students run here through llama.cpp (`eval.engine`, by default for a GGUF student
when llama-cpp-python is installed: the base GGUF, and for `ft` the adapter
exported as a LoRA GGUF into export/) or transformers, or through an
OpenAI-compatible endpoint (`eval.base_model` / `eval.ft_model`, e.g. vLLM serving
the adapter).

Items, in three sets:
- unseen documents (the decision table): the held-out split's questions (documents
  no training row contains, not even as context) with their reference answers;
  `eval.unanswerable` of them asked again with their source documents removed from
  retrieval; and `eval.off_topic` questions. For the last two the right answer
  says the documents do not contain it (systems with retrieval only);
- seen documents (`eval.seen_set`): held-out questions on training documents
  (curate's eval_seen.parquet): can the fine-tuned model answer without retrieval
  about what it trained on? Reported beside the first, never mixed into it;
- your traffic (`generate.prompts`): your own held-out questions with your answers, or
  the teacher's grounded ones, as references; reported as its own set, descriptive.
The `+rag` systems search the whole index, as a deployment would.
Every per-question mean carries a 95% bootstrap interval, and the deciding
comparisons a paired one (distill.evaluate.metrics).

Scores: a judge (`eval.judge`, default the teacher) grades correctness 1-5 against
the reference, and groundedness 1-5 against the retrieved chunks for systems with
retrieval; it compares each student system with the teacher in both orders. Also:
citation accuracy, refusal accuracy, similarity to the reference, latency, tokens/s,
cost per 1,000 queries. See distill.evaluate.metrics for the definitions.

Outputs in `eval/`: answers.parquet (one row per system and item, with every score
and judge reason), judgements.parquet (every judge call: verdict, error, raw reply),
metrics.json, report.md, report.html, quality.png, tradeoff.png.
API answers and every judgement are cached in eval/cache.sqlite, so a rerun never
pays twice; local models answer again (their latency is measured, not replayed).
"""

from __future__ import annotations

import random
from typing import Any

from distill.eval_text import what_this_means
from distill.evaluate import keyscore
from distill.evaluate import metrics as eval_metrics
from distill.evaluate.answer_key import LoadedKey
from distill.evaluate.decision import decide
from distill.evaluate.grading import (
    add_similarity,
    grade_answers,
    judge_agreement,
    judge_checks,
    judge_templates,
    judge_vs_teacher,
    make_judge,
    same_family,
    small_judge,
    smoke_test_judge,
)
from distill.evaluate.items import SEEN, TRAFFIC, UNSEEN, Item, build_items
from distill.evaluate.systems import System, answer, hardware, make_systems
from distill.evaluate.versus import with_named
from distill.grounding import (
    ANSWER_STOP,
    answer_prompt,
    citations,
    clean_answer,
    final_answer,
    is_refusal,
    quotes,
    support_score,
)
from distill.io import write_json
from distill.keyfacts import tokens
from distill.prompts import Template, load_templates
from distill.recipe import Recipe
from distill.results import (
    AnswerKeySummary,
    Bootstrap,
    EvalMetrics,
    JudgeCheck,
    SeenMetrics,
    TrafficMetrics,
    Unanswerable,
)
from distill.retrieval import Retriever
from distill.runfolder import RunFolder, RunOptions
from distill.tables import Answer, Judgement
from distill.tables import write as write_rows
from distill.teachers.base import Completion
from distill.teachers.cache import RequestCache
from distill.teachers.judge import JsonJudge
from distill.teachers.llamacpp import LlamaCppTeacher
from distill.teachers.local import LocalTeacher


def run(recipe: Recipe, folder: RunFolder, options: RunOptions) -> dict[str, Any]:
    from distill.evaluate.report import write_report
    from distill.models import student_specials

    cfg = recipe.eval
    student_specials(recipe.student)  # before any prompt is rendered
    out = folder.stage_dir("eval")
    retriever = Retriever(folder.ingest_dir, recipe.retrieval)
    items, key = build_items(recipe, folder, retriever)
    answer_tpl = load_templates(recipe).answer
    grade_tpl, pair_tpl = judge_templates(recipe)
    cache = RequestCache(out / "cache.sqlite")
    systems = make_systems(recipe, folder, cache, answer_tpl.sha)
    rows = _answer_all(recipe, systems, items, answer_tpl)
    by_id = {it.item_id: it for it in items}
    chunk_tokens = {c["chunk_id"]: tokens(c["text"]) for c in retriever.chunks}
    for r in rows:
        keyscore.score(r, by_id[r["item_id"]], chunk_tokens)
    # Answers from local models are not cached: on disk before anything else can fail.
    write_rows(folder.answers, rows, Answer)

    teacher_sys = next((s for s in systems if s.name == "teacher"), None)
    judge_spec, judge_model, judge, judge_cost = None, None, None, 0.0
    checks: dict[str, JudgeCheck] = {}
    if _judge_sample(rows, cfg.judge_items, cfg.seed):
        judge_spec, judge_model = make_judge(
            recipe,
            teacher_sys.model if teacher_sys else None,
            cache,
            grade_tpl.sha + pair_tpl.sha,
        )
        judge = JsonJudge(judge_model, prefill=None)
        chunk_by_id = {c["chunk_id"]: c for c in retriever.chunks}
        judge_cost = grade_answers(rows, by_id, judge, grade_tpl, chunk_by_id)
        judged = sorted({r["item_id"] for r in rows if r["judged"]})
        checks, checks_cost = judge_checks(by_id, judged, judge, grade_tpl, chunk_by_id)
        judge_cost += checks_cost
        if cfg.pairwise and teacher_sys is not None:
            judge_cost += judge_vs_teacher(rows, judge, pair_tpl)
    _support(rows, {c["chunk_id"]: c["text"] for c in retriever.chunks})
    add_similarity(rows, cfg.similarity_model)
    cache.close()
    write_rows(folder.answers, rows, Answer)
    write_rows(out / "judgements.parquet", judge.log if judge else [], Judgement)

    keyed = decisive(rows)  # not your traffic: it never decides
    decision = decide(keyed, cfg.deciding, cfg.teacher_margin, cfg.examples, cfg.seed)
    if decision is not None:  # the deciding system against each named one
        decision = with_named(decision, keyed, cfg.named_systems, cfg.hardware_cost_per_hour)
    metrics = EvalMetrics(
        **_measured(recipe, folder, items, rows, systems),
        judge=judge_spec,
        smoke_test=bool(judge_model and smoke_test_judge(judge_model, recipe.student)),
        small_judge=bool(judge_model and small_judge(judge_model)),
        judge_calls=judge.calls if judge else 0,
        judge_failures=judge.failures if judge else 0,
        judge_cost_usd=round(judge_cost, 4),
        judge_agreement=judge_agreement(rows, cfg.seed),
        judge_checks=checks,
        judge_same_family=bool(judge_spec and same_family(judge_spec, recipe.teacher.model)),
        answer_key=_key_summary(recipe, key),
        decision=decision,
        what_this_means_judged=[],
        what_this_means=[],
    )
    # The sentences are drawn from the metrics above. The verdict first (the report, the
    # card and the benchmarks open with it), then the judged, generated questions'
    # sentences (descriptive when a key decides).
    sentences = what_this_means(metrics)
    metrics.what_this_means_judged = sentences
    metrics.what_this_means = (decision.verdict_lines if decision else []) + sentences
    write_json(folder.eval_metrics, metrics.model_dump(mode="json"))
    write_report(out, recipe, metrics, rows)
    counts: dict[str, Any] = {
        "questions": metrics.questions,
        "unanswerable": metrics.unanswerable.no_oracle + metrics.unanswerable.off_topic,
        "judge_failures": metrics.judge_failures,
        # What this run paid (cached replies are free), priced like every teacher.
        "systems_cost_usd": round(sum(s.model.spent_usd for s in systems), 6),
        "judge_cost_usd": round(judge_model.spent_usd, 6) if judge_model else 0.0,
    }
    if decision is not None:
        counts["key_questions"] = decision.sets[-1].questions
        counts["verdict"] = decision.verdict
    for s, m in metrics.systems.items():
        mean = m.correctness.mean
        counts[f"correctness[{s}]"] = mean if mean is not None else "n/a"
    return counts


def decisive(rows: list[Answer]) -> list[Answer]:
    """The rows the decision reads: all but your traffic's (its own, descriptive set)."""
    return [r for r in rows if r["eval_set"] != TRAFFIC]


def _answer_all(
    recipe: Recipe, systems: list[System], items: list[Item], answer_tpl: Template
) -> list[Answer]:
    """Every system's answers to its items (retrieval systems get the unanswerable ones
    too; the seen set goes to `eval.seen_systems` only); the students are freed after."""
    cfg = recipe.eval
    params = {"max_tokens": cfg.max_new_tokens, "temperature": 0.0, "stop": ANSWER_STOP}
    rows: list[Answer] = []
    for system in systems:
        rag = system.rag
        mine = [
            it
            for it in items
            if (rag or it.kind == "answerable")
            and (it.eval_set != SEEN or system.name in cfg.seen_systems)
        ]
        prompts = [answer_prompt(answer_tpl, it.question, it.hits if rag else []) for it in mine]
        for it, (c, latency, compute) in zip(
            mine, answer(system, prompts, cfg.batch_size, params), strict=True
        ):
            rows.append(_row(system, it, rag, c, latency, compute))
    for student in _students(systems):  # free the student before the judge loads
        student.release()
    for s in systems:  # and a named system loaded here (the teacher may be the judge)
        if s.named and isinstance(s.model, LocalTeacher):
            s.model.release()
    return rows


def _students(systems: list[System]) -> list[LocalTeacher]:
    """The student systems' models loaded here (not the teacher's, not a served one)."""
    return [s.model for s in systems if s.student_here and isinstance(s.model, LocalTeacher)]


def _judge_sample(rows: list[Answer], n: int | None, seed: int) -> bool:
    """Mark the rows of a seeded sample of n answerable items as judged (all when n is
    None); whether any row is to be judged."""
    ids = sorted({r["item_id"] for r in rows if r["kind"] == "answerable"})
    picked = set(ids if n is None else random.Random(seed).sample(ids, min(n, len(ids))))
    for r in rows:
        r["judged"] = r["item_id"] in picked
    return bool(picked)


def _key_summary(recipe: Recipe, key: LoadedKey | None) -> AnswerKeySummary | None:
    if key is None:
        return None
    return AnswerKeySummary(
        file=recipe.eval.answer_key,
        generated=sum(it.item_id.startswith("gen-") for it in key.items),
        items=len(key.items),
        answerable=sum(it.answerable for it in key.items),
        unanswerable=sum(not it.answerable for it in key.items),
        skipped=dict(key.skipped),
        skip_examples=key.examples,
    )


def _support(rows: list[Answer], chunk_text: dict[str, str]) -> None:
    """Each grounded answer's lexical support in the chunks it cites (grounding's rule)."""
    for r in rows:
        r["support"] = (
            support_score(
                {
                    "messages": [{"role": "assistant", "content": r["answer"]}],
                    "cited_chunk_ids": r["cited_chunk_ids"],
                    "chunk_ids": r["retrieved_chunk_ids"],
                },
                chunk_text,
            )
            if r["kind"] == "answerable" and not r["answer_error"] and r["retrieved_chunk_ids"]
            else None
        )


def _measured(
    recipe: Recipe,
    folder: RunFolder,
    items: list[Item],
    rows: list[Answer],
    systems: list[System],
) -> dict[str, Any]:
    """EvalMetrics' fields without the judge's part and the decision: the sets, the
    systems' metrics with their intervals, and the paired comparisons."""
    cfg = recipe.eval
    # The generated questions (teacher references, judged) and the refusal items not
    # verified by an answer key: the descriptive tables. The key's rows: decision.py.
    answerable = [
        it for it in items if it.kind == "answerable" and it.eval_set == UNSEEN and not it.key_facts
    ]
    found = [bool(set(it.source_chunk_ids) & {c["chunk_id"] for c in it.hits}) for it in answerable]
    unseen = [
        r
        for r in rows
        if r["eval_set"] == UNSEEN and r["key_facts"] == "[]" and r["kind"] != "unanswerable"
    ]
    seen = [r for r in rows if r["eval_set"] == SEEN]
    names = cfg.system_names
    seen_names: list[str] = [s for s in names if s in cfg.seen_systems]
    rag = cfg.retrieval_systems
    # The judged comparisons: the built-in ones, then the deciding system against each
    # named one (the decision compares them on the answer key).
    pairs = [*eval_metrics.DECIDING, *((cfg.deciding[0], n) for n in cfg.named_systems)]
    hourly = cfg.hardware_cost_per_hour
    students = _students(systems)
    metrics: dict[str, Any] = {
        "questions": len(answerable),
        "unanswerable": Unanswerable(
            no_oracle=sum(it.kind == "no_oracle" for it in items),
            off_topic=sum(it.kind == "off_topic" and it.eval_set == UNSEEN for it in items),
        ),
        "k": cfg.k,
        "retrieval_hit_rate": round(sum(found) / len(found), 4) if found else None,
        "teacher": recipe.teacher.model,
        "student": recipe.student,
        "hardware": hardware(),
        "batch_size": cfg.batch_size,
        "student_engine": students[0].engine if students else None,
        "student_weights": (
            students[0].gguf.name if students and isinstance(students[0], LlamaCppTeacher) else None
        ),
        "systems": eval_metrics.summarise(unseen, names, hourly, cfg.seed, rag),
        "comparisons": eval_metrics.comparisons(unseen, names, cfg.seed, rag, pairs),
        "bootstrap": Bootstrap(resamples=eval_metrics.N_BOOT, seed=cfg.seed, level=0.95),
        # Which adapter these numbers are of: publish refuses to put them on another one.
        "adapter_sha256": folder.adapter_id,
    }
    traffic = [r for r in rows if r["eval_set"] == TRAFFIC]
    if traffic:
        asked = {it.item_id: it for it in items if it.eval_set == TRAFFIC}
        user_refs = sum(it.reference_by == "user" for it in asked.values())
        # Your file's answers may be the named system's own (its fine-tuning file, its
        # stored completions): graded against them it would be graded against itself, so
        # it is compared on your traffic only when the teacher wrote every reference.
        traffic_pairs = eval_metrics.DECIDING if user_refs else pairs
        metrics["traffic"] = TrafficMetrics(
            questions=sum(it.kind == "answerable" for it in asked.values()),
            user_references=user_refs,
            cannot_answer=sum(it.kind != "answerable" for it in asked.values()),
            systems=eval_metrics.summarise(traffic, names, hourly, cfg.seed, rag),
            comparisons=eval_metrics.comparisons(traffic, names, cfg.seed, rag, traffic_pairs),
        )
    if seen:
        metrics["seen"] = SeenMetrics(
            questions=len({r["item_id"] for r in seen}),
            systems=eval_metrics.summarise(seen, seen_names, hourly, cfg.seed, rag),
            comparisons=eval_metrics.comparisons(seen, seen_names, cfg.seed, rag),
        )
    return metrics


def _row(
    system: System, it: Item, rag: bool, c: Completion, latency: float, compute: float
) -> Answer:
    full = clean_answer(c.text) if c.error is None else ""
    # A quote-style answer is scored on its answer; its quotes are its reasoning, and
    # quotes with no "Answer:" after them (cut at the token cap) answer nothing.
    text = final_answer(full)
    if text == full and quotes(full):
        text = ""
    ids = [h["chunk_id"] for h in it.hits] if rag else []
    cited = citations(text) if rag else []
    return {
        "item_id": it.item_id,
        "eval_set": it.eval_set,
        "kind": it.kind,
        "system": system.name,
        "local": system.local,
        "priced": system.local or system.model.price is not None,
        "question": it.question,
        "reference": it.reference,
        "answer": text,
        "quoted": "\n".join(quotes(full)),
        "answer_error": str(c.error)[:200] if c.error is not None else None,
        # With retrieval, the search is part of what the user waits for.
        "latency_s": round(latency + (it.retrieval_s if rag else 0.0), 4),
        "compute_s": round(compute, 4),
        "timed": c.timed,
        "finish": c.finish_reason,
        "output_tokens": c.usage.output_tokens,
        "cost_usd": c.cost_usd,
        "retrieved_chunk_ids": ids,
        "source_chunk_ids": it.source_chunk_ids,
        "cited": cited,
        "cited_chunk_ids": [ids[n - 1] for n in cited if 0 < n <= len(ids)],
        "refused": is_refusal(text) if c.error is None else False,
        "correctness": None,
        "groundedness": None,
        "grade_reason": None,
        "grade_error": None,
        "vs_teacher": None,
        "pairwise": None,
        "pairwise_error": None,
        "similarity": None,
        "token_f1": round(eval_metrics.token_f1(text, it.reference), 4)
        if it.kind == "answerable" and c.error is None
        else None,
        "support": None,
        "doc_id": it.doc_id,
        "key_facts": "[]",
        "fact_found": [],
        "fact_conflicts": [],
        "fact_correct": None,
        "fact_recall": None,
        "retrieval_hit": None,
        "cited_right": 0,
        "numbers": 0,
        "unsupported_numbers": 0,
        "prompt_tokens": c.usage.input_tokens,
        "judged": False,
    }
