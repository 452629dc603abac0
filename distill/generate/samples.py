"""Generate's sample rows: a finished conversation, or one pair of a pairs reply, as a
samples.parquet row with its provenance (context and source chunks, citations, the
teacher, the templates, tokens and cost)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from distill.generate.config import GenerateConfig
from distill.generate.pairs import Pairs
from distill.generate.plan import Job, Plan
from distill.generate.steps import failure
from distill.grounding import citations, numbered, quote_sentence
from distill.keyfacts import mentions, tokens
from distill.prompts import defuse
from distill.split import Split
from distill.tables import Failure, Sample


def conversation_samples(
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


def pair_samples(
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
                    failures.append(failure(
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


def conversation(base: list[dict[str, str]], turns: list[dict[str, Any]]) -> list[dict[str, str]]:
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
        "messages": conversation(base, turns),
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
