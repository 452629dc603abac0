"""Generate: the teacher writes question/answer pairs grounded in the corpus.

For each selected chunk (and each of `samples_per_chunk`):
1. the teacher writes a question the chunk answers (`question_template`);
2. the teacher answers it from the chunk plus its retrieved neighbours
   (`answer_template`); that prompt plus the answer is the training sample.

Outputs in `generate/`: samples.parquet (one row per sample, with the chunk ids it
was grounded in) and failures.parquet (requests that ended in an error).
"""

from __future__ import annotations

import datetime as dt
import random
import re
from pathlib import Path
from typing import Any

from distill.errors import TeacherError
from distill.io import hash_json, write_rows
from distill.prompts import Template, fence, load_template
from distill.recipe import GenerateConfig, Recipe
from distill.retrieval import Retriever
from distill.runfolder import RunFolder
from distill.teachers import Teacher, get_teacher
from distill.teachers.cache import CachedTeacher, RequestCache
from distill.ui import progress

QUESTION_MAX_TOKENS = 64
# SmolLM-class teachers sometimes run on into a new "Question:"; cut there.
ANSWER_STOP = ["\nQuestion:", "\nQ:"]


def templates(recipe: Recipe) -> list[Template]:
    """The question and answer templates the recipe names."""
    cfg = recipe.generate
    search = [recipe.base_dir / cfg.prompts_dir] if cfg.prompts_dir else []
    return [
        load_template(cfg.question_template, search),
        load_template(cfg.answer_template, search),
    ]


def clean_question(text: str) -> str:
    """The question in a teacher's reply: the first line with a '?', labels and quotes stripped.

    Small teachers wrap it ('Question: ...', 'The customer wants to know: "...?"').
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = next((ln for ln in lines if "?" in ln), lines[0] if lines else "")
    line = re.sub(r"^(question|q)\s*[:.)-]\s*", "", line, flags=re.I)
    quoted = re.search(r":\s*[\"“](.+?\?)", line)
    if quoted:
        line = quoted.group(1)
    if "?" in line:
        line = line[: line.rindex("?") + 1]
    return line.strip().strip('"“”').strip()


def clean_answer(text: str) -> str:
    return re.sub(r"^(answer|a)\s*:\s*", "", text.strip(), flags=re.I).strip()


def fenced(chunk: dict[str, Any]) -> str:
    return fence(chunk["chunk_id"], chunk["text"], chunk["heading_path"])


def select_chunks(
    chunks: list[dict[str, Any]], max_chunks: int | None, seed: int
) -> list[dict[str, Any]]:
    """All chunks, or a seeded sample of `max_chunks` spread over the corpus, in corpus order."""
    if max_chunks is None or max_chunks >= len(chunks):
        return chunks
    picked = sorted(random.Random(seed).sample(range(len(chunks)), max_chunks))
    return [chunks[i] for i in picked]


def samples_for(chunk: dict[str, Any], cfg: GenerateConfig) -> int:
    """How many samples to write from a chunk: fixed, or proportional to its tokens."""
    if cfg.samples_per_1k_tokens is None:
        return cfg.samples_per_chunk
    return max(1, round(chunk["n_tokens"] / 1000 * cfg.samples_per_1k_tokens))


def _failure(
    request_id: str, step: str, reason: str, status: int | None = None, detail: str = ""
) -> dict[str, Any]:
    """A failures.parquet row: one request that ended without a usable reply."""
    return {
        "request_id": request_id,
        "stage": f"generate.{step}",
        "reason": reason[:200],
        "status": status,
        "attempts": 1,
        "last_error": detail[:2000],
    }


def _teacher_failure(request_id: str, step: str, e: TeacherError) -> dict[str, Any]:
    return _failure(request_id, step, str(e).split(": ", 1)[-1], e.status, e.body or str(e))


def _complete(
    teacher: Teacher,
    batch: list[list[dict[str, str]]],
    request_ids: list[str],
    failures: list[dict[str, Any]],
    step: str,
    **params: Any,
) -> list[Any]:
    """Answer a batch; each failed request becomes a failure row (never silently dropped)."""
    try:
        replies = teacher.complete_many(batch, **params)
    except TeacherError as e:
        failures.extend(_teacher_failure(rid, step, e) for rid in request_ids)
        return [None] * len(batch)
    out: list[Any] = []
    for rid, reply in zip(request_ids, replies, strict=True):
        if reply.error is not None:
            failures.append(_teacher_failure(rid, step, reply.error))
            out.append(None)
        else:
            out.append(reply)
    return out


def _run_batches(
    bar: Any,
    label: str,
    teacher: Teacher,
    prompts: dict[int, list[dict[str, str]]],
    ids: list[str],
    failures: list[dict[str, Any]],
    batch_size: int,
    seed: int | None = None,
    **params: Any,
) -> dict[int, Any]:
    """Send prompts in batches of similar length (less padding); return index -> Completion."""
    order = sorted(prompts, key=lambda j: sum(len(m["content"]) for m in prompts[j]))
    task = bar.add_task(label, total=len(order))
    out: dict[int, Any] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        if seed is not None:
            params["seed"] = seed + start
        replies = _complete(
            teacher, [prompts[j] for j in idx], [ids[j] for j in idx], failures, label, **params
        )
        out.update((j, r) for j, r in zip(idx, replies, strict=True) if r is not None)
        bar.advance(task, len(idx))
    return out


def run(recipe: Recipe, run: RunFolder) -> dict[str, Any]:
    cfg = recipe.generate
    out_dir: Path = run.stage_dir("generate")
    retriever = Retriever(run.stage_dir("ingest"), recipe.retrieval)
    q_tpl, a_tpl = templates(recipe)
    cache = RequestCache(out_dir / "cache.sqlite")
    # Template text is in the messages already; the shas make a template change explicit.
    teacher = CachedTeacher(
        get_teacher(cfg.teacher, cfg.teacher_options), cache, salt=f"{q_tpl.sha}+{a_tpl.sha}"
    )
    chunks = select_chunks(retriever.chunks, cfg.max_chunks, cfg.seed)
    jobs = [(c, i) for c in chunks for i in range(samples_for(c, cfg))]
    ids = [
        hash_json(
            ["qa", c["chunk_id"], q_tpl.sha, a_tpl.sha, cfg.teacher, cfg.seed, i, cfg.neighbours]
        )[:16]
        for c, i in jobs
    ]
    rng = random.Random(cfg.seed)
    contexts = []
    for c, _ in jobs:
        context = [c] + [n for n, _ in retriever.neighbours(c["chunk_id"], cfg.neighbours)]
        rng.shuffle(context)  # the grounding chunk is not always first
        contexts.append(context)
    failures: list[dict[str, Any]] = []
    with progress() as bar:
        q_prompts = {
            j: q_tpl.render(passage=fenced(c), style=None) for j, (c, _) in enumerate(jobs)
        }
        questions = _run_batches(
            bar, "questions", teacher, q_prompts, ids, failures, cfg.batch_size,
            max_tokens=QUESTION_MAX_TOKENS, temperature=cfg.temperature, seed=cfg.seed,
        )  # fmt: skip
        # A question that failed or came back empty is not worth paying to answer.
        a_prompts = {}
        for j, q in questions.items():
            if question := clean_question(q.text):
                a_prompts[j] = a_tpl.render(
                    passages=[fenced(x) for x in contexts[j]], question=question
                )
            else:
                failures.append(_failure(ids[j], "questions", "empty question", None, q.text))
        answers = _run_batches(
            bar, "answers", teacher, a_prompts, ids, failures, cfg.batch_size,
            max_tokens=cfg.max_new_tokens, temperature=0.0, stop=ANSWER_STOP,
        )  # fmt: skip

    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    samples = []
    for j, (chunk, _) in enumerate(jobs):
        q, a = questions.get(j), answers.get(j)
        if q is None or a is None:
            continue
        question = clean_question(q.text)
        answer = clean_answer(a.text)
        samples.append(
            {
                "sample_id": ids[j],
                "task": "qa",
                "question": question,
                "answer": answer,
                "answer_truncated": a.finish_reason == "length",
                "messages": [*a_prompts[j], {"role": "assistant", "content": answer}],
                "source_chunk_id": chunk["chunk_id"],
                "chunk_ids": [x["chunk_id"] for x in contexts[j]],
                "doc_ids": list(
                    dict.fromkeys([chunk["doc_id"]] + [x["doc_id"] for x in contexts[j]])
                ),
                "teacher": cfg.teacher,
                "template": f"{q_tpl.ref}+{a_tpl.ref}",
                "template_sha": f"{q_tpl.sha}+{a_tpl.sha}",
                "input_tokens": q.usage.input_tokens + a.usage.input_tokens,
                "output_tokens": q.usage.output_tokens + a.usage.output_tokens,
                "cost_usd": q.cost_usd + a.cost_usd,
                "created_at": created,
            }
        )
    write_rows(out_dir / "samples.parquet", samples)
    write_rows(out_dir / "failures.parquet", failures)
    cache.close()
    return {
        "chunks": len(chunks),
        "samples": len(samples),
        "failures": len(failures),
        "cached_replies": teacher.hits,
        "requests_sent": teacher.misses,
        "tokens": {
            "input": sum(s["input_tokens"] for s in samples),
            "output": sum(s["output_tokens"] for s in samples),
        },
        "cost_usd": round(sum(s["cost_usd"] for s in samples), 6),
    }
