"""Judge-free scores of one answer against its item's key facts (distill.keyfacts).

- fact_correct / fact_recall / fact_conflicts: the primary and its companion;
- retrieval_hit: the retrieved chunks state every key fact (the answer was there to
  find); on a miss, a refusal is an acceptable answer too;
- cited_right: citations whose chunk states a key fact (citation precision is
  cited_right over the answer's citations, [n] beyond the documents counting wrong);
- numbers / unsupported_numbers: the numbers and codes in the answer, and how many of
  them no retrieved chunk states (faithfulness: a number made up is the failure users
  fear).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from distill.evaluate.items import Item
from distill.keyfacts import check, figures, known_figures, mentions
from distill.tables import Answer


def score(row: Answer, item: Item, chunk_tokens: Mapping[str, list[str]]) -> None:
    """Fill the row's key-fact columns (see the module docstring)."""
    row["doc_id"] = item.doc_id
    row["key_facts"] = json.dumps(item.key_facts)
    retrieved = [chunk_tokens[c] for c in row["retrieved_chunk_ids"] if c in chunk_tokens]
    if row["answer_error"] is None and row["retrieved_chunk_ids"]:
        said = figures(row["answer"])
        known = set().union(*(known_figures(t) for t in retrieved)) if retrieved else set()
        row["numbers"] = len(said)
        row["unsupported_numbers"] = len(said - known)
    if not item.key_facts:
        return
    if row["retrieved_chunk_ids"]:
        row["retrieval_hit"] = all(any(mentions(t, f) for t in retrieved) for f in item.key_facts)
        row["cited_right"] = sum(
            any(mentions(chunk_tokens.get(c, []), f) for f in item.key_facts)
            for c in row["cited_chunk_ids"]
        )
    if row["answer_error"] is not None:
        return  # no score: the item leaves the comparisons this system is in (counted)
    c = check(row["answer"], item.key_facts, item.question)
    row["fact_found"] = c.found
    row["fact_conflicts"] = c.conflicts
    row["fact_correct"] = c.correct
    row["fact_recall"] = round(c.recall, 4)
