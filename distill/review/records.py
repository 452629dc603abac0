"""What a reviewer reads in Argilla: every field plain text made inert (Argilla's UI
would render HTML), Markdown tables as aligned columns, and the spot-check's record
of one training sample (its context, the instruction, the answer under review, and the
judge's scores as suggestions). Calibration's blinded records use the same text rules;
review files (distill.review.files) carry the same `fields`, before they are made inert."""

from __future__ import annotations

import re
from typing import Any

from distill.recipe import Recipe

_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")


def aligned_tables(text: str) -> str:
    """Markdown tables as aligned plain-text columns (Argilla shows the context as plain
    text: documents are untrusted, never rendered as Markdown or HTML)."""
    lines = text.splitlines()
    out: list[str] = []
    block: list[str] = []

    def flush() -> None:
        rows = [
            [c.strip() for c in ln.strip().strip("|").split("|")]
            for ln in block
            if not _TABLE_RULE.match(ln)
        ]
        if rows:
            width = [
                max(len(r[i]) if i < len(r) else 0 for r in rows)
                for i in range(max(map(len, rows)))
            ]
            for k, r in enumerate(rows):
                out.append("  ".join(c.ljust(w) for c, w in zip(r, width, strict=False)).rstrip())
                if k == 0 and len(rows) > 1:
                    out.append("  ".join("-" * w for w in width))
        block.clear()

    for ln in lines:
        if _TABLE_ROW.match(ln):
            block.append(ln)
            continue
        flush()
        out.append(ln)
    flush()
    return "\n".join(out)


def inert(text: str) -> str:
    """Text Argilla's UI cannot render as HTML: every '<' becomes a full-width '＜'.

    Argilla 2.8's web UI renders a text field that looks like HTML inside an
    un-sandboxed, same-origin <iframe srcdoc>, so a document's `<script>` or `<img
    onerror>` would run in the reviewer's browser with access to the Argilla page
    (tests/integration/test_review_loop.py planted both and saw them in the frame). Display only:
    what trains is the sample itself, or the reviewer's correction."""
    return text.replace("<", "\uff1c")


def _context(s: dict[str, Any], chunks: dict[str, dict[str, Any]]) -> str:
    parts = []
    for n, cid in enumerate(s.get("chunk_ids") or [], start=1):
        c = chunks.get(cid)
        head = f"[{n}] {cid}" + (f"  ({c['heading_path']})" if c and c["heading_path"] else "")
        body = aligned_tables(c["text"].strip()) if c else "(chunk no longer in the index)"
        parts.append(head + "\n" + body)
    return "\n\n".join(parts) or "(no context: this sample was written without documents)"


def _instruction(s: dict[str, Any]) -> str:
    """The question, or for a conversation every turn before the answer under review."""
    msgs = [m for m in s["messages"] if m["role"] != "system"][:-1]
    if len(msgs) <= 1:
        return str(s["question"])
    lines = [f"user: {s['question']}"]  # the first user message also holds the documents
    lines += [f"{m['role']}: {m['content']}" for m in msgs[1:]]
    return "\n\n".join(lines)


def citations(s: dict[str, Any], chunks: dict[str, dict[str, Any]]) -> list[str]:
    """The answer's citations, one line each: `[n] chunk id  (heading path)`; a citation
    past the context says so (the teacher cited a passage it was not given)."""
    ids = s.get("chunk_ids") or []
    out = []
    for n in s.get("citations") or []:
        if not 0 < n <= len(ids):
            out.append(f"[{n}] (no passage {n} in the context)")
            continue
        c = chunks.get(ids[n - 1])
        out.append(
            f"[{n}] {ids[n - 1]}" + (f"  ({c['heading_path']})" if c and c["heading_path"] else "")
        )
    return out


def fields(s: dict[str, Any], chunks: dict[str, dict[str, Any]]) -> dict[str, str]:
    """What a reviewer reads of a sample, as it trains (not yet made inert)."""
    return {
        "context": _context(s, chunks),
        "instruction": _instruction(s),
        "response": s["messages"][-1]["content"],
    }


def record(
    s: dict[str, Any], entry: dict[str, Any], chunks: dict[str, Any], recipe: Recipe
) -> dict[str, Any]:
    """One Argilla record: fields, metadata, and the judge's scores as suggestions."""
    g, q = s.get("groundedness"), s.get("quality")
    judge = f"judge:{recipe.curate.judge}" if recipe.curate.judge else "judge"
    suggestions: list[tuple[str, Any, float | None, str]] = []
    if g is not None and q is not None:
        ok = g >= recipe.curate.min_groundedness and q >= recipe.curate.min_quality
        verdict = "accept" if ok else "reject"
        suggestions.append(("verdict", verdict, round(min(g, q) / 5, 2), judge))
        suggestions.append(("quality", int(q), None, judge))
        if g <= 3:
            suggestions.append(("issues", ["not_grounded"], None, judge))
    return {
        "id": entry["record_id"],
        "fields": {k: inert(v) for k, v in fields(s, chunks).items()},
        "metadata": {
            "task": s["task"],
            "source_doc": entry["source_doc"],
            "reason": entry["reason"],
            "template": s.get("template"),
            "groundedness": g,
            "judge_quality": q,
            "support": s.get("support"),
        },
        "suggestions": suggestions,
    }
