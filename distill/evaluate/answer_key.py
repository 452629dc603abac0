"""An answer key: questions with key facts, checked against the corpus before they score.

A key is JSON Lines, one question a line (`eval.answer_key`):

    {"question": "How long is a reset link valid?", "key_facts": ["30 minutes"],
     "doc": "account/resetting-your-password", "id": "pw-1"}
    {"question": "Does it integrate with Salesforce?", "answerable": false,
     "absent": ["Salesforce"]}

- `key_facts`: what a correct answer must state, each a short span of the page or a
  list of accepted wordings (distill.keyfacts matches them). `reference` (optional)
  is a full answer for the judge; without one the judge sees the facts.
- `doc` (optional): the document it is about; without it, the first document with a
  chunk that states every fact. The run's split decides the set: a held-out document's
  question is in the unseen-documents set, a training document's in the deployment
  set (answered with retrieval: what users run).
- `answerable: false` with `absent`: terms the answer would hinge on; the item is kept
  only when no chunk in the index mentions any of them (a verified unanswerable).

A line that is not a JSON object with a question is an error naming the line. An item
that cannot be scored honestly is skipped and counted by reason: no facts, a fact in
no chunk of its document, a fact stated in its question, a duplicate question, an
unknown document, an unanswerable whose probe the index mentions.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.errors import InputError
from distill.keyfacts import Fact, mentions, tokens, wordings
from distill.tables import Chunk


@dataclass(frozen=True)
class KeyItem:
    """One checked question of an answer key."""

    item_id: str
    question: str
    key_facts: list[Fact]  # empty for an unanswerable item
    doc_id: str | None
    chunk_ids: list[str]  # the document's chunks that state a key fact
    reference: str
    answerable: bool = True
    absent: list[str] = field(default_factory=list)


@dataclass
class LoadedKey:
    items: list[KeyItem]
    skipped: Counter[str]
    examples: list[str]  # the first few skips, "line N: why"


def _facts(raw: Any, where: str) -> list[Fact]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(
        isinstance(f, str) or (isinstance(f, list) and f and all(isinstance(w, str) for w in f))
        for f in raw
    ):
        raise InputError(
            f"{where}: key_facts must be a list of strings or of lists of strings "
            '(accepted wordings), e.g. ["30 minutes", ["Admin > Team", "team settings"]]'
        )
    return [f if isinstance(f, str) else list(f) for f in raw]


def _record(line: str, where: str) -> dict[str, Any]:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: not JSON ({e.msg}); one JSON object a line") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("question"), str):
        raise InputError(f'{where}: expected an object with a "question" string')
    for name in ("doc", "reference", "id"):
        if rec.get(name) is not None and not isinstance(rec[name], str):
            raise InputError(f"{where}: {name!r} must be a string")
    if not isinstance(rec.get("answerable", True), bool):
        raise InputError(f"{where}: 'answerable' must be true or false")
    absent = rec.get("absent")
    if absent is not None and not (
        isinstance(absent, list) and all(isinstance(a, str) for a in absent)
    ):
        raise InputError(f"{where}: 'absent' must be a list of strings")
    return rec


def load_answer_key(paths: Path | list[Path], chunks: list[Chunk]) -> LoadedKey:
    """The keys' items checked against the corpus's chunks (see the module docstring);
    a question already asked in an earlier file is a duplicate."""
    paths = [paths] if isinstance(paths, Path) else paths
    for path in paths:
        if not path.is_file():
            raise InputError(f"eval.answer_key: no file {path}; give a JSON Lines answer key")
    toks = {c["chunk_id"]: tokens(c["text"]) for c in chunks}
    by_doc: dict[str, list[Chunk]] = {}
    for c in chunks:
        by_doc.setdefault(c["doc_id"], []).append(c)
    items: list[KeyItem] = []
    skipped: Counter[str] = Counter()
    examples: list[str] = []
    asked: set[tuple[str, ...]] = set()

    def skip(n: int, why: str) -> None:
        skipped[why] += 1
        if len(examples) < 5:
            examples.append(f"{path.name} line {n}: {why}")

    lines = [
        (path, n, line)
        for path in paths
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
    ]
    for path, n, line in lines:
        if not line.strip():
            continue
        where = f"{path.name} line {n}"
        rec = _record(line, where)
        question = rec["question"].strip()
        facts = _facts(rec.get("key_facts"), where)
        item_id = rec.get("id") or (f"key-{n}" if path == paths[0] else f"{path.stem}-{n}")
        q = tuple(tokens(question))
        if not q:
            skip(n, "empty question")
            continue
        if q in asked:
            skip(n, "duplicate question")
            continue
        if not rec.get("answerable", True):
            probes = rec.get("absent") or []
            if not probes:
                skip(n, "unanswerable without 'absent' terms to verify it by")
            elif any(mentions(t, p) for t in toks.values() for p in probes):
                skip(n, "unanswerable, but the index mentions one of its 'absent' terms")
            else:
                asked.add(q)
                items.append(KeyItem(item_id, question, [], None, [], "", False, probes))
            continue
        if "key_facts" in rec and not facts:
            skip(n, "empty key_facts")
            continue
        if not facts:
            skip(n, "no key_facts (a reference alone cannot be scored without a judge)")
            continue
        if any(mentions(question, w) for f in facts for w in wordings(f)):
            skip(n, "a key fact is stated in its question")
            continue
        doc = rec.get("doc")
        if doc is not None and doc not in by_doc:
            skip(n, "its doc is not in the corpus")
            continue
        pool = by_doc[doc] if doc else chunks
        stating = [c for c in pool if all(mentions(toks[c["chunk_id"]], f) for f in facts)]
        if doc is None and stating:
            doc = stating[0]["doc_id"]
            pool = by_doc[doc]
        if doc is None or not all(
            any(mentions(toks[c["chunk_id"]], wordings(f)[0]) for c in pool) for f in facts
        ):
            skip(n, "a key fact is in no chunk of its document")
            continue
        asked.add(q)
        ids = [c["chunk_id"] for c in pool if any(mentions(toks[c["chunk_id"]], f) for f in facts)]
        reference = rec.get("reference") or "; ".join(wordings(f)[0] for f in facts)
        items.append(KeyItem(item_id, question, facts, doc, ids, reference))
    return LoadedKey(items, skipped, examples)
