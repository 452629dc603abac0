"""Curate: reject unusable samples and exact duplicates, split train/eval by document.

Outputs in `curate/`: train.parquet, eval.parquet, rejected.parquet (each with the
reason it was rejected) and report.md. Splitting by source document keeps every
question about one document on one side, so evaluation never sees a document the
student was trained on.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from distill.errors import InputError
from distill.io import read_rows, sha256_text, write_rows, write_text
from distill.recipe import CurateConfig, Recipe
from distill.runfolder import RunFolder


def normalise(text: str) -> str:
    """Lower case, punctuation and extra spaces removed: the key for exact dedup."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


# "What does the document say..." cannot be asked by a user who never saw the document.
_REFERS_TO_CONTEXT = re.compile(
    r"\b(the|this|that|above|given|provided) (document|passage|text|help page|context|article)\b",
    re.I,
)


def repetition(text: str) -> float:
    """Share of word 4-grams that repeat an earlier one (0 = none, near 1 = a loop)."""
    words = text.lower().split()
    grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def check(sample: dict[str, Any], cfg: CurateConfig, count_tokens: Callable[[str], int]) -> str:
    """The reason to reject a sample, or '' to keep it."""
    q, a = sample.get("question") or "", sample.get("answer") or ""
    if not q.strip() or not a.strip():
        return "unparseable: empty question or answer"
    if "\n" in q.strip():
        return "unparseable: question spans several lines"
    if cfg.require_question_mark and not q.strip().endswith("?"):
        return "not a question (no question mark)"
    if _REFERS_TO_CONTEXT.search(q):
        return "question refers to the context instead of standing alone"
    if len(q.strip()) < cfg.min_question_chars:
        return f"question shorter than {cfg.min_question_chars} characters"
    if len(a.strip()) < cfg.min_answer_chars:
        return f"answer shorter than {cfg.min_answer_chars} characters"
    if sample.get("answer_truncated"):
        return "answer cut off at the teacher's token limit"
    if count_tokens(a) > cfg.max_answer_tokens:
        return f"answer longer than {cfg.max_answer_tokens} tokens"
    if repetition(a) > cfg.max_repetition:
        return f"repetitive answer (over {cfg.max_repetition:.0%} repeated 4-grams)"
    return ""


def split_documents(doc_ids: list[str], eval_fraction: float, seed: int) -> set[str]:
    """Choose the held-out documents: a seeded, order-independent pick of round(f * n).

    With two or more documents, at least one is held out and at least one is kept.
    """
    docs = sorted(set(doc_ids))
    if len(docs) < 2:
        return set()
    n_eval = min(len(docs) - 1, max(1, round(eval_fraction * len(docs))))
    ranked = sorted(docs, key=lambda d: sha256_text(f"{seed}:{d}"))
    return set(ranked[:n_eval])


def curate(
    samples: list[dict[str, Any]], cfg: CurateConfig, count_tokens: Callable[[str], int]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Return (train, eval, rejected) rows."""
    kept, rejected = [], []
    seen: set[str] = set()
    for s in samples:
        reason = check(s, cfg, count_tokens)
        if not reason:
            key = sha256_text(normalise(s["question"]) + "\x00" + normalise(s["answer"]))
            reason = "exact duplicate" if key in seen else ""
            seen.add(key)
        if reason:
            rejected.append({**s, "reject_reason": reason})
        else:
            kept.append(s)
    source_doc = {s["sample_id"]: s["doc_ids"][0] for s in kept}
    eval_docs = split_documents(list(source_doc.values()), cfg.eval_fraction, cfg.seed)
    train = [{**s, "split": "train"} for s in kept if source_doc[s["sample_id"]] not in eval_docs]
    held = [{**s, "split": "eval"} for s in kept if source_doc[s["sample_id"]] in eval_docs]
    return train, held, rejected


def run(recipe: Recipe, run: RunFolder) -> dict[str, Any]:
    from distill.models import load_tokenizer

    samples = read_rows(run.stage_dir("generate") / "samples.parquet")
    if not samples:
        raise InputError("curate: the generate stage produced no samples; check generate failures")
    tok = load_tokenizer(recipe.train.student)
    train, held, rejected = curate(
        samples, recipe.curate, lambda t: len(tok(t, add_special_tokens=False)["input_ids"])
    )
    out = run.stage_dir("curate")
    write_rows(out / "train.parquet", train)
    write_rows(out / "eval.parquet", held)
    write_rows(out / "rejected.parquet", rejected)
    write_text(out / "report.md", _report(samples, train, held, rejected))
    if not train:
        raise InputError(
            "curate: no training samples left; see curate/report.md for the reject reasons"
        )
    return {
        "samples": len(samples),
        "train": len(train),
        "eval": len(held),
        "rejected": len(rejected),
    }


def _report(
    samples: list[dict[str, Any]],
    train: list[dict[str, Any]],
    held: list[dict[str, Any]],
    rejected: list[dict[str, Any]],
) -> str:
    reasons = Counter(r["reject_reason"] for r in rejected)
    lines = [
        "# Curation report",
        "",
        f"- samples in: {len(samples)}",
        f"- kept: {len(train) + len(held)} (train {len(train)} from "
        f"{len({s['doc_ids'][0] for s in train})} documents, eval {len(held)} from "
        f"{len({s['doc_ids'][0] for s in held})} documents)",
        f"- rejected: {len(rejected)}",
        "",
        "| reject reason | samples |",
        "| --- | --- |",
        *(f"| {r} | {n} |" for r, n in reasons.most_common()),
        "",
        "## Held-out documents",
        "",
        *(f"- {d}" for d in sorted({s["doc_ids"][0] for s in held})),
    ]
    return "\n".join(lines) + "\n"
