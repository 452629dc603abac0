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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.errors import TeacherError, UserError
from distill.io import hash_json, write_rows
from distill.prompts import Template, fence, load_template
from distill.recipe import GenerateConfig, Recipe
from distill.retrieval import Retriever
from distill.runfolder import RunFolder
from distill.teachers import Completion, Teacher, get_teacher
from distill.teachers.batch import BatchTeacher
from distill.teachers.cache import CachedTeacher, RequestCache
from distill.teachers.engine import ApiTeacher
from distill.teachers.prices import (
    BATCH_DISCOUNT,
    PRICES_AS_OF,
    Budget,
    BudgetExceeded,
    Price,
    lookup,
)
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
    request_id: str,
    step: str,
    reason: str,
    status: int | None = None,
    detail: str = "",
    attempts: int = 1,
) -> dict[str, Any]:
    """A failures.parquet row: one request that ended without a usable reply."""
    return {
        "request_id": request_id,
        "stage": f"generate.{step}",
        "reason": reason[:200],
        "status": status,
        "attempts": attempts,
        "last_error": detail[:2000],
    }


def _teacher_failure(
    request_id: str, step: str, e: TeacherError, attempts: int = 1
) -> dict[str, Any]:
    reason = str(e).split(": ", 1)[-1]
    return _failure(request_id, step, reason, e.status, e.body or str(e), attempts)


@dataclass
class Plan:
    """What generate will ask: one job per (chunk, sample index), its id and context."""

    question_template: Template
    answer_template: Template
    chunks: list[dict[str, Any]]
    jobs: list[tuple[dict[str, Any], int]]
    ids: list[str]
    contexts: list[list[dict[str, Any]]]
    question_prompts: dict[int, list[dict[str, str]]]


def make_plan(recipe: Recipe, retriever: Retriever) -> Plan:
    cfg = recipe.generate
    q_tpl, a_tpl = templates(recipe)
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
    prompts = {j: q_tpl.render(passage=fenced(c), style=None) for j, (c, _) in enumerate(jobs)}
    return Plan(q_tpl, a_tpl, chunks, jobs, ids, contexts, prompts)


def teacher_price(cfg: GenerateConfig) -> tuple[Price | None, str]:
    """The teacher's price and where it came from (no client or key needed)."""
    from distill.teachers import BACKENDS

    provider, _, model = cfg.teacher.partition(":")
    backend = BACKENDS.get(provider)
    is_api = backend is not None and issubclass(backend, ApiTeacher)
    if cfg.mode == "batch" and not is_api:
        raise UserError(
            f"generate.mode batch needs an openai: or anthropic: teacher, not {cfg.teacher}; "
            "set generate.mode: online"
        )
    if cfg.price is not None:
        return Price(cfg.price.input, cfg.price.output, cfg.price.cached_input), "recipe"
    if not is_api:
        return None, "runs on this machine: no API cost"
    price = lookup(provider, model)
    if price is not None:
        return price, f"price table ({PRICES_AS_OF})"
    if cfg.max_cost_usd is not None:
        raise UserError(
            f"no price known for {cfg.teacher} and generate.max_cost_usd is set; give one: "
            "generate.price: {input: USD_PER_1M, output: USD_PER_1M}"
        )
    return None, "unknown (not in the table; set generate.price): counted as 0"


def build_teacher(cfg: GenerateConfig, out_dir: Path) -> tuple[Teacher, str]:
    """The recipe's teacher, priced, with its budget; in batch mode, behind BatchTeacher."""
    price, source = teacher_price(cfg)
    teacher = get_teacher(cfg.teacher, cfg.teacher_options)
    if isinstance(teacher, ApiTeacher):
        teacher.price = price
        teacher.budget = Budget(cfg.max_cost_usd)
    if cfg.mode == "online" or not isinstance(teacher, ApiTeacher):
        return teacher, source
    teacher.discount = BATCH_DISCOUNT
    batched = BatchTeacher(teacher, out_dir / "batches.json", cfg.batch_poll_s, cfg.batch_resubmits)
    return batched, f"{source}, batch API: half price"


class Spend:
    """What this run has paid so far, for the progress bar (cached replies are free)."""

    def __init__(self) -> None:
        self.usd = 0.0

    def add(self, c: Completion) -> None:
        if not c.cached:
            self.usd += c.cost_usd


def _run_step(
    bar: Any,
    label: str,
    teacher: CachedTeacher,
    prompts: dict[int, list[dict[str, str]]],
    ids: list[str],
    failures: list[dict[str, Any]],
    batch_size: int,
    spend: Spend,
    seed: int | None = None,
    **params: Any,
) -> dict[int, Completion]:
    """Send one step's prompts; return index -> reply. Each failed request becomes a
    failure row (never silently dropped). A local teacher gets batches of similar
    length (less padding); an API teacher gets them all at once (its engine keeps
    `concurrency` in flight)."""
    order = sorted(prompts, key=lambda j: sum(len(m["content"]) for m in prompts[j]))
    if teacher.inner.sends_all_at_once:
        batch_size = max(1, len(order))
    task = bar.add_task(label, total=len(order))
    out: dict[int, Completion] = {}
    if isinstance(teacher.inner, BatchTeacher):  # the provider's progress, while we wait

        def status(batch_id: str, state: str, done: int, total: int) -> None:
            bar.update(task, description=f"{label} · batch {batch_id} {state} {done}/{total}")

        teacher.inner.on_status = status
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        if seed is not None:
            params["seed"] = seed + start

        def done(i: int, c: Completion, idx: list[int] = idx) -> None:
            spend.add(c)
            bar.update(task, advance=1, description=f"{label} · ${spend.usd:.4f}")
            if c.error is not None:
                failures.append(_teacher_failure(ids[idx[i]], label, c.error, c.attempts))
            else:
                out[idx[i]] = c

        try:
            teacher.complete_many([prompts[j] for j in idx], on_done=done, **params)
        except TeacherError as e:  # the whole batch failed (e.g. a local model error)
            failures.extend(_teacher_failure(ids[j], label, e) for j in idx if j not in out)
    return out


def run(recipe: Recipe, run: RunFolder) -> dict[str, Any]:
    cfg = recipe.generate
    out_dir: Path = run.stage_dir("generate")
    retriever = Retriever(run.stage_dir("ingest"), recipe.retrieval)
    plan = make_plan(recipe, retriever)
    q_tpl, a_tpl, jobs, ids, contexts = (
        plan.question_template,
        plan.answer_template,
        plan.jobs,
        plan.ids,
        plan.contexts,
    )
    inner, price_source = build_teacher(cfg, out_dir)
    cache = RequestCache(out_dir / "cache.sqlite")
    # Template text is in the messages already; the shas make a template change explicit.
    teacher = CachedTeacher(inner, cache, salt=f"{q_tpl.sha}+{a_tpl.sha}")
    failures: list[dict[str, Any]] = []
    spend = Spend()
    with progress() as bar:
        questions = _run_step(
            bar, "questions", teacher, plan.question_prompts, ids, failures, cfg.batch_size,
            spend, max_tokens=QUESTION_MAX_TOKENS, temperature=cfg.temperature, seed=cfg.seed,
        )  # fmt: skip
        # A question that failed or came back empty is not worth paying to answer.
        a_prompts = {}
        for j, reply in questions.items():
            if question := clean_question(reply.text):
                a_prompts[j] = a_tpl.render(
                    passages=[fenced(x) for x in contexts[j]], question=question
                )
            else:
                failures.append(_failure(ids[j], "questions", "empty question", None, reply.text))
        answers = _run_step(
            bar, "answers", teacher, a_prompts, ids, failures, cfg.batch_size, spend,
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
    counts = {
        "chunks": len(plan.chunks),
        "samples": len(samples),
        "failures": len(failures),
        "cached_replies": teacher.hits,
        "requests_sent": getattr(inner, "requests_sent", teacher.misses),
        "tokens": {
            "input": sum(s["input_tokens"] for s in samples),
            "output": sum(s["output_tokens"] for s in samples),
        },
        # Everything paid in this run (failed and unused replies included); replies
        # served from the cache were paid in an earlier run and cost nothing now.
        "cost_usd": round(spend_now(teacher, spend), 6),
        "cost_of_samples_usd": round(sum(s["cost_usd"] for s in samples), 6),
        "price": price_source,
    }
    if isinstance(inner, BatchTeacher):
        counts["batches_submitted"] = inner.batches_submitted
        counts["batches_resumed"] = inner.batches_resumed
    budget = getattr(inner, "budget", None)
    if budget is not None and budget.refused:
        raise BudgetExceeded(
            f"generate stopped at the budget: spent ${budget.spent:.4f} of max_cost_usd "
            f"${budget.max_usd}; {budget.refused} requests not sent (see failures.parquet). "
            "Replies already paid for are cached: raise generate.max_cost_usd and rerun "
            "to finish.",
            counts=counts,
        )
    return counts


def spend_now(teacher: CachedTeacher, spend: Spend) -> float:
    """What this run paid: replies that came from the cache cost nothing now."""
    budget = getattr(teacher.inner, "budget", None)
    return budget.spent if budget is not None else spend.usd
