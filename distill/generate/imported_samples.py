"""Your own questions answered (`generate.prompts`; read by distill.generate.imported).

A training question gets the student's prompt (`answer_template`) over the `k` chunks
retrieval finds for it among the training documents alone (the split holds: no held-out
chunk reaches a training prompt), and its target is the teacher's grounded, cited answer,
or with `answers: keep` the imported answer when the record has one. A held-out question
(the `traffic` eval set) gets a reference: the imported answer, else the teacher's
answer over the chunks retrieval finds in the whole corpus (as eval's systems search).
Every request goes through the same cached step as the rest of generate, so a rerun pays
for nothing twice; a failed one is a failure row.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.generate.config import PromptsConfig
from distill.generate.imported import Question
from distill.generate.samples import conversation
from distill.grounding import citations, clean_answer, is_refusal, numbered
from distill.io import hash_json, write_text
from distill.prompts import Template
from distill.retrieval import Retriever
from distill.split import Split
from distill.tables import Chunk, Failure, Sample
from distill.teachers.base import Completion, Message

TASK = "imported"


@dataclass
class Asked:
    """One question with the context its answer is grounded in."""

    question: Question
    request_id: str  # the sample id (training) or the traffic item's id (held out)
    context: list[Chunk]
    prompt: list[Message]
    held_out: bool

    @property
    def kept(self) -> bool:
        """Its target is the imported answer (no request)."""
        return self.question.answer is not None


def ask(
    train: list[Question],
    held: list[Question],
    retriever: Retriever,
    split: Split,
    template: Template,
    cfg: PromptsConfig,
    teacher: str,
) -> list[Asked]:
    """Each question with its retrieved context and answer prompt: training questions
    from the training documents only, held-out ones from the whole corpus."""
    k = cfg.k
    found = retriever.retrieve_many([q.question for q in train], k, within=split.train_docs)
    found += retriever.retrieve_many([q.question for q in held], k)
    out = []
    for i, (q, hits) in enumerate(zip([*train, *held], found, strict=True)):
        context = [c for c, _ in hits]
        held_out = i >= len(train)
        request_id = (
            f"traffic-{q.qid}"
            if held_out
            else hash_json(
                [TASK, q.qid, [c["chunk_id"] for c in context], template.sha]
                + [teacher, cfg.answers]
            )[:16]  # fmt: skip
        )
        prompt = template.render(passages=numbered(context), question=q.question)
        out.append(Asked(q, request_id, context, prompt, held_out))
    return out


def to_ask(asked: list[Asked], cfg: PromptsConfig) -> dict[int, list[Message]]:
    """The prompts the teacher answers: every question with no context is left out (a
    failure row), and so is each one whose imported answer is kept (the held-out ones'
    imported answers are their references)."""
    keep = cfg.answers == "keep"
    return {
        i: a.prompt
        for i, a in enumerate(asked)
        if a.context and not (a.kept and (keep or a.held_out))
    }


def no_context(asked: list[Asked]) -> list[Failure]:
    """A question retrieval found no chunk for (BM25 without a shared word) is not asked."""
    return [
        {
            "request_id": a.request_id,
            "stage": "generate.your questions",
            "reason": "retrieval found no chunk for it",
            "status": None,
            "attempts": 0,
            "last_error": a.question.question[:2000],
        }
        for a in asked
        if not a.context
    ]


def imported_samples(
    asked: list[Asked],
    replies: dict[int, Completion],
    cfg: PromptsConfig,
    split: Split,
    teacher: str,
    template: Template,
) -> list[Sample]:
    """The training questions' sample rows: the teacher's reply, or the kept answer."""
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    out: list[Sample] = []
    for i, a in enumerate(asked):
        if a.held_out or not a.context:
            continue
        reply = replies.get(i)
        if reply is not None:
            answer, by = clean_answer(reply.text), "teacher"
        elif a.kept and cfg.answers == "keep":
            assert a.question.answer is not None
            answer, by = a.question.answer, "user"
        else:
            continue  # its request failed: a failure row says why
        out.append(_sample(a, answer, by, reply, teacher, template, created))
        out[-1]["side"] = split.side(a.context[0]["doc_id"])  # train: retrieved within it
    return out


def _sample(
    a: Asked,
    answer: str,
    by: str,
    reply: Completion | None,
    teacher: str,
    template: Template,
    created: str,
) -> Sample:
    ids = [c["chunk_id"] for c in a.context]
    cited = list(dict.fromkeys(citations(answer)))
    source = a.context[0]  # the best hit: the chunk the answer most likely rests on
    usage = reply.usage if reply is not None else None
    return {
        "sample_id": a.request_id,
        "task": TASK,
        "persona": "",
        "difficulty": "",
        "style": None,
        "instruction_kind": None,
        "question": a.question.question,
        "answer": answer,
        "turns": 1,
        "answer_truncated": reply is not None and reply.finish_reason == "length",
        "messages": conversation(a.prompt, [{"question": a.question.question, "answer": answer}]),
        "source_chunk_id": source["chunk_id"],
        "source_chunk_ids": [source["chunk_id"]],
        "source_doc_ids": [source["doc_id"]],
        "chunk_ids": ids,
        "doc_ids": list(dict.fromkeys(c["doc_id"] for c in a.context)),
        "oracle_in_context": True,
        "expects_refusal": False,
        "citations": cited,
        "cited_chunk_ids": [ids[n - 1] for n in cited if 0 < n <= len(ids)],
        "teacher": teacher if by == "teacher" else "user",
        "template": template.ref,
        "template_sha": template.sha,
        "input_tokens": usage.input_tokens if usage else 0,
        "output_tokens": usage.output_tokens if usage else 0,
        "cost_usd": reply.cost_usd if reply is not None else 0.0,
        "created_at": created,
        "origin": a.question.origin,
        "answer_by": by,
    }


def traffic_items(asked: list[Asked], replies: dict[int, Completion]) -> list[dict[str, Any]]:
    """The held-out questions with their references, as eval's `traffic` set reads them
    (distill.evaluate.items): the imported answer, else the teacher's grounded one. A
    reference that refuses marks the question as one the documents cannot answer."""
    out = []
    for i, a in enumerate(asked):
        if not a.held_out:
            continue
        reply = replies.get(i)
        if a.kept:
            assert a.question.answer is not None
            reference, by, ids, cited = a.question.answer, "user", [], []
        elif reply is not None:
            reference, by = clean_answer(reply.text), "teacher"
            ids = [c["chunk_id"] for c in a.context]
            cited = [ids[n - 1] for n in dict.fromkeys(citations(reference)) if 0 < n <= len(ids)]
        else:
            continue  # its request failed: a failure row says why
        out.append(
            {
                "id": a.request_id,
                "question": a.question.question,
                "reference": reference,
                "reference_by": by,
                "refusal": by == "teacher" and is_refusal(reference),
                "chunk_ids": ids,
                "cited_chunk_ids": cited,
                "origin": a.question.origin,
            }
        )
    return out


def write_traffic(path: Path, items: list[dict[str, Any]]) -> None:
    write_text(path, "".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items))
