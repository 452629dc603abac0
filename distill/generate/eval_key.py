"""An answer key the teacher writes: extractive questions with verbatim key facts.

One request per chunk asks for several questions, each with one or two key facts
copied from the chunk. A question is kept only when every fact occurs in its chunk and
none in the question (a string check: distill.keyfacts), and once; the rest are counted
by reason. Held-out chunks give the unseen-documents set; `deployment_chunks` training
chunks give new questions on training documents. None of it reaches training: the key
is eval's (`RunFolder.generated_key`, generate/eval_key.jsonl, in the answer-key
format of distill.evaluate.answer_key, read by the eval stage beside
`eval.answer_key`).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from distill.generate.config import GenerateConfig
from distill.io import write_text
from distill.keyfacts import mentions, tokens
from distill.prompts import fence, recipe_template
from distill.recipe import Recipe
from distill.split import EVAL, Split, spread
from distill.tables import Chunk
from distill.teachers.base import Completion, parse_json

KEY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "question": {"type": "string"},
                    "key_facts": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["question", "key_facts"],
            },
        }
    },
    "required": ["items"],
}


def key_chunks(chunks: list[Chunk], split: Split, cfg: GenerateConfig) -> list[Chunk]:
    """The chunks to write key questions from: held-out ones, then training ones, each a
    seeded sample spread over documents."""
    assert cfg.eval_key is not None
    held = [c for c in chunks if split.side(c["doc_id"]) == EVAL]
    kept = [c for c in chunks if split.side(c["doc_id"]) != EVAL]

    def doc(c: Chunk) -> str:
        return c["doc_id"]

    return spread(held, cfg.eval_key.unseen_chunks, cfg.seed, doc) + spread(
        kept, cfg.eval_key.deployment_chunks, cfg.seed, doc
    )


def key_prompts(recipe: Recipe, chunks: list[Chunk]) -> dict[int, list[dict[str, str]]]:
    cfg = recipe.generate.eval_key
    assert cfg is not None
    tpl = recipe_template(recipe, cfg.template)
    return {
        i: tpl.render(passage=fence("1", c["text"], c["heading_path"]), n=cfg.questions_per_chunk)
        for i, c in enumerate(chunks)
    }


def key_items(
    chunks: list[Chunk], replies: dict[int, Completion]
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The checked questions, as answer-key records, and what was dropped, by reason."""
    out: list[dict[str, Any]] = []
    dropped: Counter[str] = Counter()
    asked: set[tuple[str, ...]] = set()
    for i, chunk in enumerate(chunks):
        reply = replies.get(i)
        if reply is None:
            dropped["request failed"] += 1
            continue
        data = reply.parsed if reply.parsed is not None else parse_json(reply.text)
        items = data.get("items") if isinstance(data, dict) else None
        if not isinstance(items, list):
            dropped["reply not the JSON asked for"] += 1
            continue
        have = tokens(chunk["text"])
        for n, it in enumerate(items):
            why = _problem(it, have, asked)
            if why:
                dropped[why] += 1
                continue
            asked.add(tuple(tokens(it["question"])))
            out.append(
                {
                    "id": f"gen-{chunk['chunk_id']}-{n}",
                    "question": it["question"].strip(),
                    "key_facts": [f.strip() for f in it["key_facts"]],
                    "doc": chunk["doc_id"],
                    "chunk": chunk["chunk_id"],
                }
            )
    return out, dropped


def _problem(it: Any, chunk_tokens: list[str], asked: set[tuple[str, ...]]) -> str:
    if not isinstance(it, dict) or not isinstance(it.get("question"), str):
        return "not a question"
    facts = it.get("key_facts")
    if not isinstance(facts, list) or not facts or not all(isinstance(f, str) for f in facts):
        return "no key facts"
    if not tokens(it["question"]):
        return "not a question"
    if tuple(tokens(it["question"])) in asked:
        return "duplicate question"
    if any(len(f.split()) > 8 or not tokens(f) for f in facts):
        return "a key fact is not a short span"
    if not all(mentions(chunk_tokens, f) for f in facts):
        return "a key fact is not in the chunk"
    if any(mentions(it["question"], f) for f in facts):
        return "a key fact is in the question"
    return ""


def write_key(path: Path, items: list[dict[str, Any]]) -> None:
    write_text(path, "".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items))
