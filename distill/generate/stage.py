"""Generate: the teacher writes training samples grounded in the corpus.

distill.generate.plan plans one job per (chunk, sample index): its task type, persona,
context and request prompt. Then, in steps that each send all their requests
(batched for a local teacher, concurrently for an API teacher, or through a batch
API):
1. requests: the teacher writes each job's question or instruction;
2. answers: the teacher answers it from the job's numbered context documents
   (`answer_template`, which is also the student's prompt); a RAFT job whose
   context lacks the answer gets `raft.refusal` as its target, with no call;
3. for multi_turn jobs, follow-up questions and their answers, turn by turn.

Every reply is cached as it arrives; every request that fails is a failure row.
Before any of that, the corpus's documents are split into train and eval
(distill.split, recorded in `generate/split.json`); every chunk a job carries
comes from its source document's side, and each sample row names its `side`.

Outputs in `generate/`: split.json, samples.parquet (one row per sample:
`messages` plus provenance) and failures.parquet.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from distill import tables
from distill.errors import TeacherError
from distill.generate.config import GenerateConfig
from distill.generate.eval_key import KEY_SCHEMA, key_chunks, key_items, key_prompts, write_key
from distill.generate.plan import Job, Plan, choose_split, clean_question, clean_reply, make_plan
from distill.grounding import ANSWER_STOP, citations, clean_answer, numbered, quote_sentence
from distill.keyfacts import mentions, tokens
from distill.models import student_specials
from distill.prompts import Templates, defuse, fence
from distill.recipe import Recipe
from distill.retrieval import Retriever
from distill.runfolder import RunFolder, RunOptions
from distill.split import EVAL, Split
from distill.tables import Failure, Sample
from distill.teachers.base import Completion, Teacher, parse_json
from distill.teachers.cache import CachedTeacher, RequestCache
from distill.teachers.factory import make_teacher
from distill.teachers.prices import BudgetExceeded
from distill.ui import progress

QUESTION_MAX_TOKENS = 64
_FACTS: dict[str, Any] = {"type": "array", "items": {"type": "string"}}


def _pairs_schema(**fields: dict[str, Any]) -> dict[str, Any]:
    """{"pairs": [{field: ...}]}, every field required, in the order given (a grammar
    writes them in that order)."""
    item = {"type": "object", "properties": fields, "required": list(fields)}
    return {
        "type": "object",
        "properties": {"pairs": {"type": "array", "items": item}},
        "required": ["pairs"],
    }


_TEXT: dict[str, Any] = {"type": "string"}
PAIRS_SCHEMA = _pairs_schema(question=_TEXT, answer=_TEXT)
# The same with each pair's key facts, asked before its answer (so the answer is
# written to state them): for a pairs template that asks for `key_facts`.
KEYED_PAIRS_SCHEMA = _pairs_schema(question=_TEXT, key_facts=_FACTS, answer=_TEXT)
# An extractive pairs template (qa_keyed) asks for questions and key facts only: the
# target is built from the source chunk's sentence that holds the facts, so no answer
# is decoded.
EXTRACTIVE_PAIRS_SCHEMA = _pairs_schema(question=_TEXT, key_facts=_FACTS)
# One complete flat JSON object (strings may hold braces), for a reply cut off mid-list.
_STRING = r'"(?:[^"\\]|\\.)*"'
_OBJECT = re.compile(rf"\{{(?:[^{{}}\"]|{_STRING})*\}}")


def _exactly(schema: dict[str, Any], n: int) -> dict[str, Any]:
    """A keyed pairs schema that asks for n pairs and one or two key facts of at most 60
    characters each: a grammar (llama.cpp) then writes that many, where a small model
    left free stops after one and copies whole paragraphs as facts."""
    item = schema["properties"]["pairs"]["items"]
    facts = {
        "type": "array",
        "items": {"type": "string", "maxLength": 60},
        "minItems": 1,
        "maxItems": 2,
    }
    pairs = {
        "type": "array",
        "items": {**item, "properties": {**item["properties"], "key_facts": facts}},
        "minItems": n,
        "maxItems": n,
    }
    return {**schema, "properties": {**schema["properties"], "pairs": pairs}}


class Pair(NamedTuple):
    """One question/answer pair of a pairs reply; `key_facts` when the template asks
    for them (None when it does not, [] when the teacher gave none)."""

    question: str
    answer: str
    key_facts: list[str] | None = None


def parse_pairs(reply: Completion, n: int) -> list[Pair]:
    """Up to n pairs from a pairs reply, each cleaned; from a reply cut off at the token
    cap, the pairs it completed. Pairs without a question mark, or without an answer
    (or, from an extractive template, key facts), are left out (curate would reject
    them anyway)."""
    data = reply.parsed if isinstance(reply.parsed, dict) else parse_json(reply.text)
    items = data.get("pairs") if isinstance(data, dict) else None
    if not isinstance(items, list):
        items = []
        for m in _OBJECT.findall(reply.text):
            try:
                items.append(json.loads(m, strict=False))
            except ValueError:
                continue
    out: list[Pair] = []
    for it in items:
        if not isinstance(it, dict):
            continue
        q, a = it.get("question"), it.get("answer", "")
        if not isinstance(q, str) or not isinstance(a, str):
            continue
        question, answer = clean_question(q), clean_answer(a)
        facts = it.get("key_facts")
        key_facts = None
        if "key_facts" in it:
            key_facts = (
                [f.strip() for f in facts if isinstance(f, str) and f.strip()]
                if (isinstance(facts, list))
                else []
            )
        # An extractive template asks for no answer: the facts make the target.
        extractive = "answer" not in it and bool(key_facts)
        if (
            question.endswith("?")
            and (answer or extractive)
            and all((question, answer) != (p.question, p.answer) for p in out)
        ):
            out.append(Pair(question, answer, key_facts))
    return out[:n]


def _failure(
    request_id: str,
    step: str,
    reason: str,
    status: int | None = None,
    detail: str = "",
    attempts: int = 1,
) -> Failure:
    """A failures.parquet row: one request that ended without a usable reply."""
    return {
        "request_id": request_id,
        "stage": f"generate.{step}",
        "reason": reason[:200],
        "status": status,
        "attempts": attempts,
        "last_error": detail[:2000],
    }


def _teacher_failure(request_id: str, step: str, e: TeacherError, attempts: int = 1) -> Failure:
    reason = str(e).split(": ", 1)[-1]
    return _failure(request_id, step, reason, e.status, e.body or str(e), attempts)


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
    prompts: dict[int, list[dict[str, str]]],
    batch_size: int,
    *,
    teacher: Teacher,
    ids: list[str],
    failures: list[Failure],
    spend: Spend,
    seed: int | None = None,
    **params: Any,
) -> dict[int, Completion]:
    """Send one step's prompts; return index -> reply. Each failed request becomes a
    failure row (never silently dropped). A local teacher gets batches of similar
    length (less padding); an API teacher gets them all at once (its engine keeps
    `concurrency` in flight)."""
    order = sorted(prompts, key=lambda j: sum(len(m["content"]) for m in prompts[j]))
    if teacher.sends_all_at_once:
        batch_size = max(1, len(order))
    if teacher.sends_all_at_once and teacher.runs_locally:
        # llama.cpp answers one prompt at a time and keeps the previous prompt's KV
        # cache: in the order of their text, prompts that start alike (one chunk's
        # samples, the same system prompt and passages) evaluate their shared start once.
        order = sorted(prompts, key=lambda j: [(m["role"], m["content"]) for m in prompts[j]])
    task = bar.add_task(label, total=len(order))
    out: dict[int, Completion] = {}

    def status(batch_id: str, state: str, done: int, total: int) -> None:
        bar.update(task, description=f"{label} · batch {batch_id} {state} {done}/{total}")

    teacher.watch(status)  # a provider batch's progress, while we wait
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        if seed is not None:
            # The same seed for every batch: a request's reply (and its cache key) must
            # not depend on where its batch fell (which other jobs ran, how long they were).
            params["seed"] = seed

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


def run(recipe: Recipe, folder: RunFolder, options: RunOptions) -> dict[str, Any]:
    cfg = recipe.generate
    out_dir: Path = folder.stage_dir("generate")
    retriever = Retriever(folder.ingest_dir, recipe.retrieval)
    # The split comes first: no held-out document may reach a training prompt.
    split = choose_split(recipe, retriever)
    split.save(folder.split_file, recipe.split.eval_fraction, recipe.split.seed)
    student_specials(recipe.student)
    plan = make_plan(recipe, retriever, split)
    jobs = plan.jobs
    cache = RequestCache(out_dir / "cache.sqlite")
    teacher = make_teacher(
        recipe.teacher.model,
        recipe.teacher.options,
        price=recipe.teacher.price,
        max_cost_usd=cfg.max_cost_usd,
        batch_state=out_dir / "batches.json" if cfg.mode == "batch" else None,
        batch_poll_s=cfg.batch_poll_s,
        batch_resubmits=cfg.batch_resubmits,
        # Keyed by what the teacher reads (the messages hold the templates' words): a
        # change to a template a request does not use (the student's answer template
        # under extractive pairs) costs nothing, and a change to one it uses misses.
        cache=cache,
    )
    assert isinstance(teacher, CachedTeacher)
    ids = [j.sample_id for j in jobs]
    failures: list[Failure] = []
    spend = Spend()
    step = partial(_run_step, teacher=teacher, ids=ids, failures=failures, spend=spend)
    convo, base, pairs = _converse(step, plan, cfg, failures)
    samples = _samples(plan, convo, base, cfg, split)
    samples += _pair_samples(plan, pairs, cfg, split, failures)
    key_counts = {}
    if cfg.eval_key:
        key_teacher: Teacher = teacher
        if cfg.eval_key.teacher:
            opts = cfg.eval_key.teacher_options
            key_teacher = make_teacher(
                cfg.eval_key.teacher,
                opts if opts is not None else recipe.teacher.options,
                max_cost_usd=cfg.max_cost_usd,
                cache=cache,
            )
        key_counts = _eval_key(recipe, folder, retriever, split, key_teacher, failures, spend)
    tables.write(folder.samples, samples, Sample)
    tables.write(out_dir / "failures.parquet", failures, Failure)
    cache.close()
    counts = {
        "train_docs": len(split.train_docs),
        "eval_docs": len(split.eval_docs),
        "chunks": len(plan.chunks),
        "samples": len(samples),
        "failures": len(failures),
        "cached_replies": teacher.hits,
        "requests_sent": teacher.requests_sent,
        "tokens": {
            "input": sum(s["input_tokens"] for s in samples),
            "output": sum(s["output_tokens"] for s in samples),
        },
        # Everything paid in this run (failed and unused replies included); replies
        # served from the cache were paid in an earlier run and cost nothing now.
        "cost_usd": round(spend_now(teacher, spend), 6),
        "cost_of_samples_usd": round(sum(s["cost_usd"] for s in samples), 6),
        "price": teacher.price_source,
        "tasks": dict(Counter(s["task"] for s in samples)),
    }
    counts.update(key_counts)
    counts.update(teacher.stats())  # provider batches submitted and resumed
    budget = teacher.budget
    if budget is not None and budget.refused:
        raise BudgetExceeded(
            f"generate stopped at the budget: spent ${budget.spent:.4f} of max_cost_usd "
            f"${budget.max_usd}; {budget.refused} requests not sent (see failures.parquet). "
            "Replies already paid for are cached: raise generate.max_cost_usd and rerun "
            "to finish.",
            counts=counts,
        )
    return counts


def _eval_key(
    recipe: Recipe,
    folder: RunFolder,
    retriever: Retriever,
    split: Split,
    teacher: Teacher,
    failures: list[Failure],
    spend: Spend,
) -> dict[str, Any]:
    """The teacher's answer key for eval (distill.generate.eval_key): one request per
    chunk, its questions kept only where their facts check out."""
    cfg = recipe.generate.eval_key
    assert cfg is not None
    chunks = key_chunks(retriever.chunks, split, recipe.generate)
    prompts = key_prompts(recipe, chunks)
    # Failure rows name the chunk, prefixed so they never look like samples.
    ids = [f"eval_key:{c['chunk_id']}" for c in chunks]
    step = partial(_run_step, teacher=teacher, ids=ids, failures=failures, spend=spend)
    with progress() as bar:
        replies = step(
            bar, "answer key", prompts, recipe.generate.batch_size,
            schema=KEY_SCHEMA, max_tokens=cfg.max_tokens, temperature=0.0,
        )  # fmt: skip
    items, dropped = key_items(chunks, replies)
    write_key(folder.generated_key, items)
    return {
        "key_requests": len(chunks),
        "key_questions": len(items),
        "key_questions_unseen": sum(split.side(it["doc"]) == EVAL for it in items),
        "key_dropped": dict(dropped),
    }


Pairs = dict[int, tuple[list[Pair], Completion]]


def _converse(
    step: Any, plan: Plan, cfg: GenerateConfig, failures: list[Failure]
) -> tuple[dict[int, list[dict[str, Any]]], dict[int, list[dict[str, str]]], Pairs]:
    """Every job's turns: its request, the answer (or the refusal target), and for
    multi-turn jobs the follow-ups and their answers; each job's answer prompt; and
    the pairs of the jobs that ask for several (question, answer) pairs at once. A
    request or follow-up that comes back empty is a failure, not a sample."""
    jobs, tpl = plan.jobs, plan.templates
    ids = [j.sample_id for j in jobs]
    convo: dict[int, list[dict[str, Any]]] = {}  # job -> turns {question, answer, reply}
    base: dict[int, list[dict[str, str]]] = {}  # job -> the answer prompt (system + user)
    pairs: Pairs = {}
    with progress() as bar:
        asked = {j.index: j.request_prompt for j in jobs if j.pairs}
        if asked:
            most = max(j.pairs for j in jobs)
            text = "\n".join(m["content"] for m in next(iter(asked.values())))
            schema = PAIRS_SCHEMA
            if "key_facts" in text:
                schema = KEYED_PAIRS_SCHEMA if '"answer"' in text else EXTRACTIVE_PAIRS_SCHEMA
            if schema is not PAIRS_SCHEMA:
                schema = _exactly(schema, most)
            written = step(
                bar, "question/answer pairs", asked, cfg.batch_size, schema=schema,
                max_tokens=most * (QUESTION_MAX_TOKENS + cfg.max_new_tokens),
                temperature=cfg.temperature, seed=cfg.seed,
            )  # fmt: skip
            for j, reply in written.items():
                got = parse_pairs(reply, jobs[j].pairs)
                if got:
                    pairs[j] = (got, reply)
                else:
                    failures.append(_failure(ids[j], "pairs", "no usable pair", None, reply.text))
        replies = step(
            bar, "requests", {j.index: j.request_prompt for j in jobs if not j.pairs},
            cfg.batch_size, max_tokens=QUESTION_MAX_TOKENS, temperature=cfg.temperature,
            seed=cfg.seed,
        )  # fmt: skip
        # A request that failed or came back empty is not worth paying to answer.
        asks: dict[int, list[dict[str, str]]] = {}
        for j, reply in replies.items():
            job = jobs[j]
            request = clean_reply(job, reply.text)
            if not request:
                failures.append(_failure(ids[j], "requests", "empty request", None, reply.text))
                continue
            base[j] = tpl.answer.render(passages=numbered(job.context), question=request)
            convo[j] = [{"question": request, "reply": reply}]
            if job.expects_refusal:
                convo[j][0]["answer"] = cfg.raft.refusal_for(ids[j])  # the target; nothing to ask
            else:
                asks[j] = base[j]
        for turn in range(cfg.multi_turn_turns):
            answers = step(
                bar, "answers" if turn == 0 else f"answers (turn {turn + 1})", asks,
                cfg.batch_size, max_tokens=cfg.max_new_tokens, temperature=0.0, stop=ANSWER_STOP,
            )  # fmt: skip
            for j, a in answers.items():
                convo[j][-1].update(answer=clean_answer(a.text), answer_reply=a)
            more = [
                j
                for j in answers
                if jobs[j].task == "multi_turn" and turn + 1 < cfg.multi_turn_turns
            ]
            if not more:
                break
            follow = step(
                bar, f"follow-ups (turn {turn + 2})",
                {j: _follow_up_prompt(tpl, jobs[j], convo[j]) for j in more}, cfg.batch_size,
                max_tokens=QUESTION_MAX_TOKENS, temperature=cfg.temperature, seed=cfg.seed,
            )  # fmt: skip
            asks = {}
            for j, reply in follow.items():
                question = clean_question(reply.text)
                if not question:
                    failures.append(
                        _failure(ids[j], "follow-ups", "empty follow-up", None, reply.text)
                    )
                    continue
                convo[j].append({"question": question, "reply": reply})
                asks[j] = _conversation(base[j], convo[j])

    return convo, base, pairs


def _samples(
    plan: Plan,
    convo: dict[int, list[dict[str, Any]]],
    base: dict[int, list[dict[str, str]]],
    cfg: GenerateConfig,
    split: Split,
) -> list[Sample]:
    """The finished conversations as sample rows (an unfinished one has a failure row)."""
    jobs = plan.jobs
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    samples: list[Sample] = []
    for job in jobs:
        turns = [t for t in convo.get(job.index, []) if "answer" in t]
        if not turns or (job.task == "multi_turn" and len(turns) < cfg.multi_turn_turns):
            continue  # a failure row says why
        row = _sample(job, turns, base[job.index], cfg, plan, created)
        row["side"] = split.side(job.chunk["doc_id"])
        samples.append(row)
    return samples


def _pair_samples(
    plan: Plan, pairs: Pairs, cfg: GenerateConfig, split: Split, failures: list[Failure]
) -> list[Sample]:
    """A sample per pair: the student's prompt is the answer template over the job's
    context (the documents the teacher read, in the same order, so [n] means the same
    chunk) and the pair's question; the reply's tokens and cost are shared evenly. In
    the quote style, a pair with key facts gets RAFT's target: a `Quote:` line with the
    sentence of its source chunk that holds them, then `Answer:` and the teacher's
    answer (when no one whole sentence holds them all, the pair is a failure row)."""
    from distill.io import hash_json

    tpl = plan.templates
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    samples: list[Sample] = []
    for j, (got, reply) in sorted(pairs.items()):
        job = plan.jobs[j]
        for n, pair in enumerate(got):
            sample_id = hash_json([job.sample_id, n])[:16]
            prompt = tpl.answer.render(passages=numbered(job.context), question=pair.question)
            answer = pair.answer
            if job.expects_refusal:  # its context lacks the chunk the question came from
                answer = cfg.raft.refusal_for(sample_id)
            elif pair.key_facts and (cfg.answer_style == "quote" or not answer):
                said = quote_sentence(job.chunk["text"], pair.key_facts)
                if not said:
                    have = tokens(job.chunk["text"])
                    why = (
                        "key facts: one is not in its source chunk"
                        if not all(mentions(have, f) for f in pair.key_facts)
                        else "key facts: no one whole sentence of the source chunk holds them all"
                    )
                    failures.append(_failure(
                        f"{job.sample_id}:{n}", "pairs", why, None, json.dumps(pair._asdict())
                    ))  # fmt: skip
                    continue
                src = job.source_number
                if not answer:  # extractive: the sentence answers; after a quote, its facts
                    answer = f"{said} [{src}]"
                    if cfg.answer_style == "quote":
                        answer = f"{'; '.join(pair.key_facts)} [{src}]."
                if cfg.answer_style == "quote":
                    answer = f"Quote: {said} [{src}]\nAnswer: {answer}"
            turn = {"question": pair.question, "answer": answer}
            row = _sample(job, [turn], prompt, cfg, plan, created)
            row["sample_id"] = sample_id
            row["input_tokens"] = reply.usage.input_tokens // len(got)
            row["output_tokens"] = reply.usage.output_tokens // len(got)
            row["cost_usd"] = reply.cost_usd / len(got)
            row["answer_truncated"] = False  # only pairs the reply completed are kept
            row["side"] = split.side(job.chunk["doc_id"])
            if pair.key_facts is not None:
                row["key_facts"] = pair.key_facts
            samples.append(row)
    return samples


def _follow_up_prompt(
    tpl: Templates, job: Job, turns: list[dict[str, Any]]
) -> list[dict[str, str]]:
    passage = fence("1", job.chunk["text"], job.chunk["heading_path"])
    conversation = [{"question": t["question"], "answer": t["answer"]} for t in turns]
    return tpl.follow_up.render(passage=passage, conversation=conversation)


def _conversation(base: list[dict[str, str]], turns: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The answer prompt followed by the turns so far (the last one unanswered)."""
    msgs = list(base)
    # The teacher's words are untrusted too: a control token in them would be a real turn
    # boundary in the student's training row.
    for n, t in enumerate(turns):
        if n:
            msgs.append({"role": "user", "content": defuse(t["question"])})
        if "answer" in t:
            msgs.append({"role": "assistant", "content": defuse(t["answer"])})
    return msgs


def _sample(
    job: Job,
    turns: list[dict[str, Any]],
    base: list[dict[str, str]],
    cfg: GenerateConfig,
    plan: Plan,
    created: str,
) -> Sample:
    tpl = plan.templates
    replies = [r for t in turns for r in (t.get("reply"), t.get("answer_reply")) if r is not None]
    answers = [t["answer"] for t in turns]
    cited = list(dict.fromkeys(n for a in answers for n in citations(a)))
    context_ids = [c["chunk_id"] for c in job.context]
    return {
        "sample_id": job.sample_id,
        "task": job.task,
        "persona": job.persona,
        "difficulty": job.difficulty,
        "style": job.style,
        "instruction_kind": job.kind,
        "question": turns[0]["question"],
        "answer": turns[0]["answer"],
        "turns": len(turns),
        "answer_truncated": any(
            t.get("answer_reply") is not None and t["answer_reply"].finish_reason == "length"
            for t in turns
        ),
        "messages": _conversation(base, turns),
        "source_chunk_id": job.chunk["chunk_id"],
        "source_chunk_ids": [s["chunk_id"] for s in job.sources],
        "source_doc_ids": list(dict.fromkeys(s["doc_id"] for s in job.sources)),
        "chunk_ids": context_ids,
        "doc_ids": list(
            dict.fromkeys([s["doc_id"] for s in job.sources] + [c["doc_id"] for c in job.context])
        ),
        "oracle_in_context": job.oracle_in_context,
        "expects_refusal": job.expects_refusal,
        "citations": cited,
        "cited_chunk_ids": [context_ids[n - 1] for n in cited if 0 < n <= len(context_ids)],
        "teacher": plan.teacher,
        "template": "+".join(t.ref for t in tpl.all()),
        "template_sha": tpl.salt(),
        "input_tokens": sum(r.usage.input_tokens for r in replies),
        "output_tokens": sum(r.usage.output_tokens for r in replies),
        "cost_usd": sum(r.cost_usd for r in replies),
        "created_at": created,
    }


def spend_now(teacher: Teacher, spend: Spend) -> float:
    """What this run paid: replies that came from the cache cost nothing now."""
    return teacher.spent_usd if teacher.budget is not None else spend.usd
