"""The pairs request's reply: the JSON schemas that ask a teacher for several
(question, answer) pairs at once (with key facts, or key facts alone for an extractive
template), and the pairs read back from a reply, a reply cut off at its token cap
included."""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from distill.generate.plan import clean_question
from distill.grounding import clean_answer
from distill.teachers.base import Completion, parse_json

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


def exactly(schema: dict[str, Any], n: int) -> dict[str, Any]:
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


# Job index -> its pairs and the reply they came from.
Pairs = dict[int, tuple[list[Pair], Completion]]
