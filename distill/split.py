"""The split by document, chosen before generation: held out means held out.

Each document gets a seeded uniform number u(seed, doc_id) in [0, 1) from a hash;
it is an eval document when u < eval_fraction. A document's side depends on its id
and the seed alone, so adding or removing other documents never moves it. With
two or more documents each side keeps at least one (the lowest u goes to eval if
none fell there, the highest u to train if all did), and `split.min_eval_documents`
raises the first floor: when fewer documents fall under the fraction, the next ones by
u are held out too (on a small corpus that depends on which other documents exist).

Generation reads the split: every chunk a training sample carries (source,
neighbours, RAFT distractors, multi-hop partner, follow-up context) comes from
training documents, and eval samples are written from eval documents only. The
split is recorded in `generate/split.json`; curate re-checks every row against it.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from distill.errors import InputError
from distill.io import read_json, write_json

TRAIN, EVAL = "train", "eval"
T = TypeVar("T")


def spread(rows: list[T], n: int | None, seed: int, doc: Callable[[T], str]) -> list[T]:
    """At most n rows, a seeded sample spread evenly over documents (round robin over
    the documents in a seeded order), in their original order: never the first n in
    corpus order, which would drop whole documents."""
    if n is None or n >= len(rows):
        return rows
    rng = random.Random(seed)
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(doc(r), []).append(i)
    queues = list(groups.values())
    rng.shuffle(queues)
    for q in queues:
        rng.shuffle(q)
    picked: list[int] = []
    while len(picked) < n:
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop())
    return [rows[i] for i in sorted(picked)]


def unit(seed: int, doc_id: str) -> float:
    """A seeded number in [0, 1) for a document, the same on every machine."""
    digest = hashlib.sha256(f"{seed}:{doc_id}".encode()).hexdigest()
    return int(digest[:15], 16) / 16**15


def split_documents(
    doc_ids: Iterable[str], eval_fraction: float, seed: int, min_held: int = 1
) -> set[str]:
    """The eval documents among `doc_ids` (see the module docstring): at least
    `min_held` of them (the lowest hashes first) and never every one."""
    docs = sorted(set(doc_ids))
    if len(docs) < 2:
        return set()
    u = {d: unit(seed, d) for d in docs}
    held = {d for d in docs if u[d] < eval_fraction}
    by_hash = sorted(docs, key=lambda d: u[d])
    held |= set(by_hash[: min(min_held, len(docs) - 1)])
    if len(held) == len(docs):
        held -= {by_hash[-1]}
    return held


class Split:
    """Which side each document is on."""

    def __init__(self, eval_docs: Iterable[str], train_docs: Iterable[str]) -> None:
        self.eval_docs = frozenset(eval_docs)
        self.train_docs = frozenset(train_docs)

    @classmethod
    def choose(
        cls, doc_ids: Iterable[str], eval_fraction: float, seed: int, min_held: int = 1
    ) -> Split:
        docs = set(doc_ids)
        held = split_documents(docs, eval_fraction, seed, min_held)
        return cls(held, docs - held)

    def side(self, doc_id: str) -> str:
        # A document unknown to the split (added after it was recorded) is never
        # held out: nothing generated from it can be an eval item.
        return EVAL if doc_id in self.eval_docs else TRAIN

    def docs_of(self, side: str) -> frozenset[str]:
        return self.eval_docs if side == EVAL else self.train_docs

    def to_json(self, eval_fraction: float, seed: int) -> dict[str, Any]:
        return {
            "method": "per document: sha256(seed:doc_id) as u in [0,1); eval when u < fraction "
            "(or among the lowest u, up to split.min_eval_documents)",
            "eval_fraction": eval_fraction,
            "seed": seed,
            "eval_docs": sorted(self.eval_docs),
            "train_docs": sorted(self.train_docs),
        }

    def save(self, path: Path, eval_fraction: float, seed: int) -> None:
        write_json(path, self.to_json(eval_fraction, seed))

    @classmethod
    def load(cls, path: Path) -> Split:
        if not path.exists():
            raise InputError(
                f"no split in {path.parent} (from an older distill?); rerun "
                "`distill generate RECIPE`"
            )
        data = read_json(path)
        return cls(data["eval_docs"], data["train_docs"])
