"""Evaluate: the student before and after training against the teacher, on held-out questions.

Systems (recipe `eval.systems`):
- `teacher`: the generate stage's teacher, given the retrieved chunks;
- `base` / `base+rag`: the student without its adapter, without / with retrieved chunks;
- `ft` / `ft+rag`: the student with the trained adapter, without / with retrieved chunks.

Retrieval uses the ingest index (top `eval.k` chunks for the question). Every answer
is scored by cosine similarity to the reference answer (the teacher's answer in the
held-out split, written with the grounding chunk in context) under `similarity_model`.

Outputs in `eval/`: answers.parquet, metrics.json and report.md.
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np

from distill.errors import InputError
from distill.generate import ANSWER_STOP
from distill.io import read_rows, write_json, write_rows, write_text
from distill.recipe import Recipe
from distill.retrieval import Retriever, embed
from distill.runfolder import RunFolder
from distill.tasks import clean_answer, load_templates, numbered
from distill.teachers import Completion, get_teacher
from distill.teachers.local import generate_batch
from distill.ui import progress


def _answer_all(
    label: str, prompts: list[list[dict[str, str]]], answer_fn: Any, batch_size: int
) -> list[Completion]:
    out: list[Completion] = []
    with progress() as bar:
        task = bar.add_task(f"answering: {label}", total=len(prompts))
        for i in range(0, len(prompts), batch_size):
            out += answer_fn(prompts[i : i + batch_size])
            bar.advance(task, len(prompts[i : i + batch_size]))
    return out


def run(recipe: Recipe, run: RunFolder) -> dict[str, Any]:
    from peft import PeftModel

    from distill.models import load_causal_lm

    cfg = recipe.eval
    # A RAFT sample whose context lacked the answer has a refusal as its reference,
    # which is wrong once eval retrieves for itself; those are left out here.
    held = read_rows(run.stage_dir("curate") / "eval.parquet")
    questions = [q for q in held if not q.get("expects_refusal")][: cfg.max_questions]
    if not questions:
        raise InputError(
            "eval: the held-out split is empty; lower curate.eval_fraction or add documents"
        )
    retriever = Retriever(run.stage_dir("ingest"), recipe.retrieval)
    hits = retriever.retrieve_many([q["question"] for q in questions], cfg.k)
    a_tpl = load_templates(recipe).answer
    rag = [
        a_tpl.render(passages=numbered([c for c, _ in h]), question=q["question"])
        for q, h in zip(questions, hits, strict=True)
    ]
    closed = [a_tpl.render(passages=[], question=q["question"]) for q in questions]
    params: dict[str, Any] = {
        "max_tokens": cfg.max_new_tokens,
        "temperature": 0.0,
        "stop": ANSWER_STOP,
    }

    answers: dict[str, list[Completion]] = {}
    if "teacher" in cfg.systems:
        teacher = get_teacher(recipe.generate.teacher, recipe.generate.teacher_options)
        answers["teacher"] = _answer_all(
            "teacher", rag, lambda b: teacher.complete_many(b, **params), cfg.batch_size
        )
        del teacher
    student_systems = [s for s in cfg.systems if s != "teacher"]
    if student_systems:
        model, tok = load_causal_lm(recipe.train.student, cfg.dtype)
        model = PeftModel.from_pretrained(model, str(run.stage_dir("train") / "adapter"))
        model.eval()
        for system in student_systems:
            prompts = rag if system.endswith("+rag") else closed

            def answer(
                batch: list[list[dict[str, str]]], ft: bool = system.startswith("ft")
            ) -> Any:
                if ft:
                    return generate_batch(model, tok, batch, **params)
                with model.disable_adapter():
                    return generate_batch(model, tok, batch, **params)

            answers[system] = _answer_all(system, prompts, answer, cfg.batch_size)

    rows = _score(questions, hits, answers, cfg.similarity_model)
    out = run.stage_dir("eval")
    write_rows(out / "answers.parquet", rows)
    metrics = summarise(rows, questions, hits, cfg.k)
    write_json(out / "metrics.json", metrics)
    write_text(out / "report.md", _report(recipe, metrics, rows))
    return {
        "questions": len(questions),
        **{f"similarity[{s}]": m["similarity"] for s, m in metrics["systems"].items()},
    }


def _score(
    questions: list[dict[str, Any]],
    hits: list[list[tuple[dict[str, Any], float]]],
    answers: dict[str, list[Completion]],
    model_ref: str,
) -> list[dict[str, Any]]:
    refs = embed([q["answer"] for q in questions], model_ref)
    rows = []
    for system, completions in answers.items():
        texts = [clean_answer(c.text) for c in completions]
        vecs = embed(texts, model_ref)
        sims = np.sum(vecs * refs, axis=1)
        for q, h, c, text, sim in zip(questions, hits, completions, texts, sims, strict=True):
            rows.append(
                {
                    "question_id": q["sample_id"],
                    "system": system,
                    "question": q["question"],
                    "reference": q["answer"],
                    "answer": text,
                    "similarity": round(float(sim), 4),
                    "latency_s": round(c.latency_s, 3),
                    "output_tokens": c.usage.output_tokens,
                    "retrieved_chunk_ids": [x["chunk_id"] for x, _ in h]
                    if "rag" in system or system == "teacher"
                    else [],
                }
            )
    return rows


def summarise(
    rows: list[dict[str, Any]],
    questions: list[dict[str, Any]],
    hits: list[list[tuple[dict[str, Any], float]]],
    k: int,
) -> dict[str, Any]:
    """Per-system means, and how often retrieval found the question's source chunk."""
    systems: dict[str, Any] = {}
    for system in dict.fromkeys(r["system"] for r in rows):
        mine = [r for r in rows if r["system"] == system]
        seconds = sum(r["latency_s"] for r in mine)
        systems[system] = {
            "n": len(mine),
            "similarity": round(statistics.fmean(r["similarity"] for r in mine), 4),
            "latency_s": round(statistics.fmean(r["latency_s"] for r in mine), 3),
            "output_tokens": round(statistics.fmean(r["output_tokens"] for r in mine), 1),
            "tokens_per_s": round(sum(r["output_tokens"] for r in mine) / seconds, 1)
            if seconds
            else 0.0,
        }
    found = [
        q["source_chunk_id"] in {c["chunk_id"] for c, _ in h}
        for q, h in zip(questions, hits, strict=True)
    ]
    return {
        "questions": len(questions),
        "retrieval_hit_rate": round(sum(found) / len(found), 4) if found else 0.0,
        "k": k,
        "systems": systems,
    }


def _report(recipe: Recipe, metrics: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Evaluation report",
        "",
        f"- held-out questions: {metrics['questions']} (from documents never trained on)",
        f"- teacher: `{recipe.generate.teacher}`; student: `{recipe.train.student}`",
        f"- retrieval: the question's source chunk is in the top {metrics['k']} for "
        f"{metrics['retrieval_hit_rate']:.0%} of questions",
        f"- similarity: cosine similarity of the answer to the reference answer under "
        f"`{recipe.eval.similarity_model}` (1.0 = same meaning); the reference is the "
        "teacher's answer written with the source chunk in context",
        f"- latency: wall time per answer, batches of {recipe.eval.batch_size} on this machine",
        *(
            [
                "- note: the teacher is the untrained student model itself, so `teacher` and "
                "`base+rag` answer the same prompts with the same weights",
            ]
            if recipe.generate.teacher == f"local:{recipe.train.student}"
            else []
        ),
        "",
        "| system | n | similarity | latency (s) | output tokens | tokens/s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s, m in metrics["systems"].items():
        lines.append(
            f"| {s} | {m['n']} | {m['similarity']:.3f} | {m['latency_s']:.2f} | "
            f"{m['output_tokens']} | {m['tokens_per_s']} |"
        )
    lines += ["", "## Examples", ""]
    for qid in list(dict.fromkeys(r["question_id"] for r in rows))[:3]:
        mine = [r for r in rows if r["question_id"] == qid]
        lines += [f"**Q: {mine[0]['question']}**", "", f"- reference: {mine[0]['reference']}"]
        lines += [f"- {r['system']} ({r['similarity']:.2f}): {r['answer']}" for r in mine]
        lines.append("")
    return "\n".join(lines)
