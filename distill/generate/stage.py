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

Every reply is cached as it arrives; every request that fails is a failure row
(distill.generate.steps sends a step's requests; distill.generate.pairs reads a pairs
reply; distill.generate.samples makes the sample rows).
Before any of that, the corpus's documents are split into train and eval
(distill.split, recorded in `generate/split.json`); every chunk a job carries
comes from its source document's side, and each sample row names its `side`.

With `generate.prompts`, your own questions join them (distill.generate.imported reads
the file, distill.generate.imported_samples answers them): the training ones answered
from retrieved training chunks (task `imported`), a seeded share held out with their
references for eval's `traffic` set (generate/traffic.jsonl).

Outputs in `generate/`: split.json, samples.parquet (one row per sample:
`messages` plus provenance), failures.parquet and, with your own questions,
traffic.jsonl.
"""

from __future__ import annotations

from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

from distill import tables
from distill.errors import InputError
from distill.generate.config import GenerateConfig
from distill.generate.eval_key import KEY_SCHEMA, key_chunks, key_items, key_prompts, write_key
from distill.generate.imported import choose, read_prompts
from distill.generate.imported_samples import (
    ask,
    imported_samples,
    no_context,
    to_ask,
    traffic_items,
    write_traffic,
)
from distill.generate.pairs import (
    EXTRACTIVE_PAIRS_SCHEMA,
    KEYED_PAIRS_SCHEMA,
    PAIRS_SCHEMA,
    Pairs,
    exactly,
    parse_pairs,
)
from distill.generate.plan import Job, Plan, choose_split, clean_question, clean_reply, make_plan
from distill.generate.samples import conversation, conversation_samples, pair_samples
from distill.generate.steps import Spend, failure, run_step, spend_now
from distill.grounding import ANSWER_STOP, clean_answer, numbered
from distill.models import student_specials
from distill.prompts import Templates, fence, load_templates
from distill.recipe import Recipe
from distill.retrieval import Retriever
from distill.runfolder import RunFolder, RunOptions
from distill.split import EVAL, Split
from distill.tables import Failure, Sample
from distill.teachers.base import Teacher
from distill.teachers.cache import CachedTeacher, RequestCache
from distill.teachers.factory import make_teacher
from distill.teachers.prices import BudgetExceeded
from distill.ui import console, progress

QUESTION_MAX_TOKENS = 64


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
    step = partial(run_step, teacher=teacher, ids=ids, failures=failures, spend=spend)
    convo, base, pairs = _converse(step, plan, cfg, failures)
    samples = conversation_samples(plan, convo, base, cfg, split)
    samples += pair_samples(plan, pairs, cfg, split, failures)
    own_counts: dict[str, Any] = {}
    if cfg.prompts is not None:
        own_step = partial(run_step, teacher=teacher, failures=failures, spend=spend)
        own, own_counts = _own_questions(recipe, folder, retriever, split, own_step, failures)
        samples += own
    elif folder.traffic.exists():  # an earlier run's: without the questions, no such set
        folder.traffic.unlink()
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
    counts.update(own_counts)
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
    step = partial(run_step, teacher=teacher, ids=ids, failures=failures, spend=spend)
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


def _own_questions(
    recipe: Recipe,
    folder: RunFolder,
    retriever: Retriever,
    split: Split,
    step: Any,
    failures: list[Failure],
) -> tuple[list[Sample], dict[str, Any]]:
    """Your own questions (distill.generate.imported): the training ones as samples, the
    held-out ones with their references in generate/traffic.jsonl. `step` sends a
    step's requests (run_step with the teacher, `failures` and the spend bound)."""
    cfg = recipe.generate.prompts
    assert cfg is not None
    got = read_prompts(recipe.base_dir / cfg.path, cfg)
    if not got.questions:
        raise InputError(
            f"generate.prompts: no usable question in {cfg.path}"
            + (f" (skipped: {got.summary()})" if got.skipped else "")
        )
    train, held = choose(got.questions, cfg, recipe.split.seed)
    template = load_templates(recipe).answer
    model = recipe.teacher.model
    asked = ask(train, held, retriever, split, template, cfg, model)
    failures.extend(no_context(asked))
    with progress() as bar:
        replies = step(
            bar, "your questions", to_ask(asked, cfg), recipe.generate.batch_size,
            ids=[a.request_id for a in asked], max_tokens=recipe.generate.max_new_tokens,
            temperature=0.0, stop=ANSWER_STOP,
        )  # fmt: skip
    samples = imported_samples(asked, replies, cfg, split, model, template)
    items = traffic_items(asked, replies)
    write_traffic(folder.traffic, items)
    if got.skipped:
        console.print(f"  [yellow]{cfg.path}: skipped {got.summary()}[/]")
    return samples, {
        "imported_questions": len(got.questions),
        "imported_train": len(train),
        "imported_samples": len(samples),
        "imported_answers_kept": sum(s["answer_by"] == "user" for s in samples),
        "imported_held_out": len(held),
        "traffic_items": len(items),
        "imported_skipped": dict(got.skipped),
        "imported_secret_shaped": got.secret_shaped,
    }


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
                schema = exactly(schema, most)
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
                    failures.append(failure(ids[j], "pairs", "no usable pair", None, reply.text))
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
                failures.append(failure(ids[j], "requests", "empty request", None, reply.text))
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
                        failure(ids[j], "follow-ups", "empty follow-up", None, reply.text)
                    )
                    continue
                convo[j].append({"question": question, "reply": reply})
                asks[j] = conversation(base[j], convo[j])

    return convo, base, pairs


def _follow_up_prompt(
    tpl: Templates, job: Job, turns: list[dict[str, Any]]
) -> list[dict[str, str]]:
    passage = fence("1", job.chunk["text"], job.chunk["heading_path"])
    conversation = [{"question": t["question"], "answer": t["answer"]} for t in turns]
    return tpl.follow_up.render(passage=passage, conversation=conversation)
