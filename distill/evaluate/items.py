"""The eval items: the held-out split's questions with their references and retrieved
chunks, the same questions with their documents removed (the answer is a refusal),
off-topic questions, and held-out questions on training documents (the seen set)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from distill.errors import InputError
from distill.io import read_rows
from distill.recipe import Recipe
from distill.retrieval import Retriever
from distill.rows import Chunk
from distill.runfolder import RunFolder

UNSEEN, SEEN = "unseen", "seen"  # the two eval sets (see distill.evaluate.stage)


@dataclass
class Item:
    item_id: str
    kind: str  # answerable | no_oracle | off_topic
    question: str
    reference: str
    source_chunk_ids: list[str]
    hits: list[Chunk]  # the chunks retrieval systems see, best first
    eval_set: str = UNSEEN


def build_items(recipe: Recipe, folder: RunFolder, retriever: Retriever) -> list[Item]:
    cfg = recipe.eval
    held = read_rows(folder.stage_dir("curate") / "eval.parquet")
    # A RAFT sample whose context lacked the answer has a refusal as its reference;
    # its question is answerable once eval retrieves for itself, so it is left out.
    questions = [q for q in held if not q.get("expects_refusal")][: cfg.max_questions]
    if not questions:
        raise InputError(
            "eval: the held-out split is empty; raise curate.eval_fraction or "
            "generate.max_chunks, or add documents"
        )
    items = _answerable(questions, retriever, cfg.k, UNSEEN)
    picked = random.Random(cfg.seed).sample(questions, min(cfg.unanswerable, len(questions)))
    if picked:
        # Retrieve deeper, then drop every chunk of the question's source documents.
        deep = retriever.retrieve_many([q["question"] for q in picked], cfg.k + 24)
        for q, h in zip(picked, deep, strict=True):
            gone = set(q.get("source_doc_ids") or [q["doc_ids"][0]])
            rest = [c for c, _ in h if c["doc_id"] not in gone][: cfg.k]
            items.append(
                Item(f"{q['sample_id']}-no-oracle", "no_oracle", q["question"], "", [], rest)
            )
    if cfg.off_topic:
        off = retriever.retrieve_many(cfg.off_topic, cfg.k)
        for i, (text, h) in enumerate(zip(cfg.off_topic, off, strict=True)):
            items.append(Item(f"off-topic-{i}", "off_topic", text, "", [], [c for c, _ in h]))
    return items + _seen_items(recipe, folder, retriever)


def _seen_items(recipe: Recipe, folder: RunFolder, retriever: Retriever) -> list[Item]:
    """Held-out questions on training documents (curate's eval_seen.parquet)."""
    cfg = recipe.eval
    path = folder.stage_dir("curate") / "eval_seen.parquet"
    if not cfg.seen_set or not path.exists():
        return []
    return _answerable(read_rows(path)[: cfg.max_questions], retriever, cfg.k, SEEN)


def _answerable(
    rows: list[dict[str, Any]], retriever: Retriever, k: int, eval_set: str
) -> list[Item]:
    """Curated samples as questions with their reference answers and retrieved chunks."""
    hits = retriever.retrieve_many([q["question"] for q in rows], k) if rows else []
    return [
        Item(
            q["sample_id"],
            "answerable",
            q["question"],
            q["answer"],
            list(q.get("source_chunk_ids") or [q["source_chunk_id"]]),
            [c for c, _ in h],
            eval_set,
        )
        for q, h in zip(rows, hits, strict=True)
    ]
