"""The eval items: the answer key's questions (`eval.answer_key`: key facts checked
against the corpus, in the unseen-documents or the deployment set by the split, and
verified unanswerables), the held-out split's generated questions with the teacher's
references, those questions with their documents removed (right answer: a refusal;
not verified, so descriptive only), off-topic questions, held-out questions on
training documents (the seen set), and your held-out questions (`generate.prompts`: the
traffic set, with your answers or the teacher's grounded ones as references).

A cap (`eval.max_questions`) takes a seeded sample spread evenly over documents, never
the first questions in corpus order (which would drop whole documents)."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from distill import tables
from distill.errors import InputError
from distill.evaluate.answer_key import KeyItem, LoadedKey, load_answer_key
from distill.grounding import content_words
from distill.io import read_rows
from distill.keyfacts import Fact, mentions, tokens
from distill.recipe import Recipe
from distill.retrieval import Retriever
from distill.runfolder import RunFolder
from distill.split import EVAL, Split, spread
from distill.tables import Chunk, CuratedSample

# The eval sets (see distill.evaluate.stage): questions on held-out documents, answer-key
# questions on training documents asked with retrieval (deployment), and generated
# questions on training documents asked without it (seen: knowledge absorbed).
# Your own questions held out (generate.prompts), asked with retrieval like deployment.
UNSEEN, DEPLOYMENT, SEEN, TRAFFIC = "unseen", "deployment", "seen", "traffic"
KEY_SETS = (UNSEEN, DEPLOYMENT)
DECONTAMINATION = 0.8  # content-word Jaccard at which a key question counts as trained


@dataclass
class Item:
    item_id: str
    kind: str  # answerable | unanswerable (verified) | no_oracle | off_topic
    question: str
    reference: str
    source_chunk_ids: list[str]
    hits: list[Chunk]  # the chunks retrieval systems see, best first
    eval_set: str = UNSEEN
    key_facts: list[Fact] = field(default_factory=list)  # the answer key's; [] if none
    doc_id: str = ""
    retrieval_s: float = 0.0  # this question's share of its batch's search time
    reference_by: str = "teacher"  # the traffic set's may be "user" (your imported answer)


def _retrieve(retriever: Retriever, questions: list[str], k: int) -> tuple[list[Any], float]:
    """Each question's top k, and the search time per question (in the +rag latency)."""
    if not questions:
        return [], 0.0
    t0 = time.perf_counter()
    hits = retriever.retrieve_many(questions, k)
    return hits, (time.perf_counter() - t0) / len(questions)


def _doc_of(q: Mapping[str, Any]) -> str:
    return str((q.get("source_doc_ids") or q.get("doc_ids") or [""])[0])


def build_items(
    recipe: Recipe, folder: RunFolder, retriever: Retriever
) -> tuple[list[Item], LoadedKey | None]:
    """Every eval item, and the answer key as loaded (None without one)."""
    cfg = recipe.eval
    key = None
    items: list[Item] = []
    keys = [recipe.base_dir / cfg.answer_key] if cfg.answer_key is not None else []
    if cfg.generated_key and folder.generated_key.is_file():
        keys.append(folder.generated_key)  # the teacher's (generate.eval_key)
    if keys:
        key = load_answer_key(keys, retriever.chunks)
        split = Split.load(folder.split_file)
        key.items[:] = _decontaminated(key, folder)
        items += _key_items(key, split, retriever, cfg.k, cfg.max_questions, cfg.seed)
        items += _verified_twins(key, retriever, cfg.k, cfg.unanswerable, cfg.seed)
    if cfg.generated:
        items += _generated_items(recipe, folder, retriever)
    items += _traffic_items(recipe, folder, retriever)
    if cfg.off_topic:
        off, per = _retrieve(retriever, cfg.off_topic, cfg.k)
        for i, (text, h) in enumerate(zip(cfg.off_topic, off, strict=True)):
            hits = [c for c, _ in h]
            items.append(Item(f"off-topic-{i}", "off_topic", text, "", [], hits, retrieval_s=per))
    if not any(it.kind == "answerable" for it in items):
        raise InputError(
            "eval: no questions to ask; give eval.answer_key, or (with eval.generated) raise "
            "split.eval_fraction or generate.max_chunks, or add documents"
        )
    return items + _seen_items(recipe, folder, retriever), key


def _key_items(
    key: LoadedKey, split: Split, retriever: Retriever, k: int, cap: int | None, seed: int
) -> list[Item]:
    """The answer key's items, answerable ones in the set their document's side decides."""
    sets = {
        s: spread(
            [it for it in key.items if it.answerable and _key_set(split, it.doc_id) == s],
            cap,
            seed,
            lambda it: it.doc_id or "",
        )
        for s in KEY_SETS
    }
    unanswerable = spread(
        [it for it in key.items if not it.answerable], cap, seed, lambda it: it.item_id
    )
    asked = [(it, s) for s in KEY_SETS for it in sets[s]] + [(it, UNSEEN) for it in unanswerable]
    hits, per = _retrieve(retriever, [it.question for it, _ in asked], k)
    return [
        Item(
            it.item_id,
            "answerable" if it.answerable else "unanswerable",
            it.question,
            it.reference,
            it.chunk_ids,
            [c for c, _ in h],
            s,
            it.key_facts,
            it.doc_id or "",
            per,
        )
        for (it, s), h in zip(asked, hits, strict=True)
    ]


def _verified_twins(key: LoadedKey, retriever: Retriever, k: int, n: int, seed: int) -> list[Item]:
    """Up to n answer-key questions asked again with their document removed from
    retrieval, each kept only if no chunk left in the index states any of its key facts
    (a verified unanswerable: many corpora state a fact on several pages)."""
    if not n:
        return []
    toks = {c["chunk_id"]: (c["doc_id"], tokens(c["text"])) for c in retriever.chunks}
    verified = [
        it
        for it in key.items
        if it.answerable
        and not any(
            doc != it.doc_id and mentions(t, f) for doc, t in toks.values() for f in it.key_facts
        )
    ]
    picked = spread(verified, n, seed, lambda it: it.doc_id or "")
    deep, per = _retrieve(retriever, [it.question for it in picked], k + 24)
    return [
        Item(
            f"{it.item_id}-no-oracle",
            "unanswerable",
            it.question,
            "",
            [],
            [c for c, _ in h if c["doc_id"] != it.doc_id][:k],
            UNSEEN,
            doc_id=it.doc_id or "",
            retrieval_s=per,
        )
        for it, h in zip(picked, deep, strict=True)
    ]


def _trained(folder: RunFolder) -> Callable[[str], bool]:
    """Whether a training row asks this question too (the same content words, or
    nearly: Jaccard >= DECONTAMINATION)."""
    path = folder.curated("train")
    trained = [
        set(content_words(q["question"]))
        for q in (read_rows(path) if path.exists() else [])
        if q.get("question")
    ]

    def asked(question: str) -> bool:
        words = set(content_words(question))
        return bool(words) and any(
            len(words & t) / len(words | t) >= DECONTAMINATION for t in trained
        )

    return asked


def _decontaminated(key: LoadedKey, folder: RunFolder) -> list[KeyItem]:
    """The key's items less those a training row asks too; counted as skipped."""
    asked = _trained(folder)
    kept = []
    for it in key.items:
        if asked(it.question):
            key.skipped["asked in training (decontaminated)"] += 1
        else:
            kept.append(it)
    return kept


def _traffic_items(recipe: Recipe, folder: RunFolder, retriever: Retriever) -> list[Item]:
    """Your held-out questions (generate/traffic.jsonl), less any a training row asks
    too, capped like the other sets. A question whose grounded reference refused is one
    the documents cannot answer (right answer: a refusal; systems with retrieval only)."""
    cfg = recipe.eval
    if not folder.traffic.is_file():
        return []
    asked = _trained(folder)
    rows = [json.loads(ln) for ln in folder.traffic.read_text(encoding="utf-8").splitlines()]
    rows = spread([r for r in rows if not asked(r["question"])], cfg.max_questions, cfg.seed,
                  lambda r: r["id"])  # fmt: skip
    hits, per = _retrieve(retriever, [r["question"] for r in rows], cfg.k)
    return [
        Item(
            r["id"],
            "off_topic" if r["refusal"] else "answerable",
            r["question"],
            "" if r["refusal"] else r["reference"],
            r["cited_chunk_ids"] or r["chunk_ids"],
            [c for c, _ in h],
            TRAFFIC,
            retrieval_s=per,
            reference_by=r["reference_by"],
        )
        for r, h in zip(rows, hits, strict=True)
    ]


def _key_set(split: Split, doc_id: str | None) -> str:
    return UNSEEN if doc_id is not None and split.side(doc_id) == EVAL else DEPLOYMENT


def _generated_items(recipe: Recipe, folder: RunFolder, retriever: Retriever) -> list[Item]:
    """The held-out split's generated questions, and some asked with their documents gone."""
    cfg = recipe.eval
    held = tables.read(folder.curated("eval"), CuratedSample)
    # A RAFT sample whose context lacked the answer has a refusal as its reference;
    # its question is answerable once eval retrieves for itself, so it is left out.
    asked = [q for q in held if not q.get("expects_refusal")]
    questions = spread(asked, cfg.max_questions, cfg.seed, _doc_of)
    items = _answerable(questions, retriever, cfg.k, UNSEEN)
    picked = random.Random(cfg.seed).sample(questions, min(cfg.unanswerable, len(questions)))
    if picked:
        # Retrieve deeper, then drop every chunk of the question's source documents.
        deep, per = _retrieve(retriever, [q["question"] for q in picked], cfg.k + 24)
        for q, h in zip(picked, deep, strict=True):
            gone = set(q.get("source_doc_ids") or [q["doc_ids"][0]])
            rest = [c for c, _ in h if c["doc_id"] not in gone][: cfg.k]
            items.append(
                Item(
                    f"{q['sample_id']}-no-oracle",
                    "no_oracle",
                    q["question"],
                    "",
                    [],
                    rest,
                    retrieval_s=per,
                )  # fmt: skip
            )
    return items


def _seen_items(recipe: Recipe, folder: RunFolder, retriever: Retriever) -> list[Item]:
    """Held-out questions on training documents (curate's eval_seen.parquet)."""
    cfg = recipe.eval
    path = folder.curated("eval_seen")
    if not cfg.seen_set or not path.exists():
        return []
    rows = spread(read_rows(path), cfg.max_questions, cfg.seed, _doc_of)
    return _answerable(rows, retriever, cfg.k, SEEN)


def _answerable(
    rows: Sequence[Mapping[str, Any]], retriever: Retriever, k: int, eval_set: str
) -> list[Item]:
    """Curated samples as questions with their reference answers and retrieved chunks."""
    hits, per = _retrieve(retriever, [q["question"] for q in rows], k)
    return [
        Item(
            q["sample_id"],
            "answerable",
            q["question"],
            q["answer"],
            list(q.get("source_chunk_ids") or [q["source_chunk_id"]]),
            [c for c, _ in h],
            eval_set,
            doc_id=_doc_of(q),
            retrieval_s=per,
        )
        for q, h in zip(rows, hits, strict=True)
    ]
