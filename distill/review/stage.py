"""Review: a human spot-check of the training samples that gates training.

`review.mode: auto` (no humans): every curated training sample is recorded as not
human-reviewed, and training is not gated; cards say so.

`review.mode: argilla`:
- `spot_check` picks a seeded sample of the training split, stratified by task and
  source document (proportional, largest remainder), plus every sample under the
  judge/support thresholds (`flag_*_below`, capped at `low_score_cap`).
- `push` creates or updates the Argilla dataset; record ids are sample ids.
- `pull` (the stage) reads the reviewers' submitted answers: a reject removes the
  sample from training (kept in review/rejected.parquet with the reasons), an accept
  with a corrected response replaces the answer (marked human-edited). With several
  reviewers, one reject wins, then a correction, then accept.
- `gate` is checked before training: enough of the spot-check reviewed
  (`required_share`) and a reject rate on the random sample at or under
  `max_reject_rate`. Low-score extras are reviewed and applied but left out of the
  rate: they were picked for looking bad.

`review.mode: file` is the same without Argilla: the spot-check goes out as a JSONL or
CSV file (distill.review.files) and its filled copy comes back through
distill.review.answers as responses of the same shape, decided, counted and gated as
above. With `argilla`, imported answers join Argilla's as more reviewers'.

Outputs in `review/`: spot_check.parquet, decisions.parquet, rejected.parquet,
stats.json.
"""

from __future__ import annotations

import math
import random
import shutil
from collections import Counter, defaultdict
from typing import Any

from distill import tables
from distill.errors import InputError, UserError
from distill.io import hash_json, read_rows, write_json, write_rows
from distill.recipe import Recipe
from distill.review.config import ReviewConfig
from distill.review.records import record
from distill.review_gate import record_id, reviewed_sha, training_rows
from distill.runfolder import RunFolder, RunOptions
from distill.tables import Chunk
from distill.ui import console

OUTCOMES = ("accepted", "rejected", "edited")


def _train(folder: RunFolder) -> list[dict[str, Any]]:
    if not folder.is_done("curate"):
        raise InputError("review needs the curated samples; run `distill curate RECIPE` first")
    return read_rows(folder.curated("train"))


def _doc(s: dict[str, Any]) -> str:
    docs = s.get("source_doc_ids") or s.get("doc_ids") or ["?"]
    return str(docs[0])


def spot_check(train: list[dict[str, Any]], cfg: ReviewConfig) -> list[dict[str, Any]]:
    """The samples to review: [{sample_id, reason ('sample'|'low_score'), task, source_doc}]."""
    if not train:
        return []
    n = min(len(train), cfg.sample_count or max(1, round(cfg.sample_fraction * len(train))))
    strata: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for s in sorted(train, key=lambda s: s["sample_id"]):
        strata[(s["task"], _doc(s))].append(s)
    keys = sorted(strata)
    quota = {k: n * len(strata[k]) / len(train) for k in keys}
    take = {k: math.floor(q) for k, q in quota.items()}
    rng = random.Random(cfg.seed)
    tiebreak = {k: rng.random() for k in keys}
    by_remainder = sorted(keys, key=lambda k: (-(quota[k] - take[k]), tiebreak[k]))
    for k in by_remainder[: n - sum(take.values())]:
        take[k] += 1
    picked: list[dict[str, Any]] = []
    for k in keys:
        # Seeded per stratum, so a change elsewhere does not reshuffle this one.
        members = random.Random(hash_json([cfg.seed, *k])).sample(strata[k], take[k])
        picked += [_entry(s, "sample") for s in members]
    chosen = {p["sample_id"] for p in picked}
    low = [s for s in train if s["sample_id"] not in chosen and _low_score(s, cfg)]
    low.sort(key=lambda s: (_num(s, "groundedness"), _num(s, "quality"), _num(s, "support")))
    picked += [_entry(s, "low_score") for s in low[: cfg.low_score_cap]]
    return picked


def _num(s: dict[str, Any], key: str) -> float:
    v = s.get(key)
    return float(v) if v is not None else math.inf


def _low_score(s: dict[str, Any], cfg: ReviewConfig) -> bool:
    g, q, sup = s.get("groundedness"), s.get("quality"), s.get("support")
    return (
        (g is not None and g < cfg.flag_groundedness_below)
        or (q is not None and q < cfg.flag_quality_below)
        or (sup is not None and cfg.flag_support_below is not None and sup < cfg.flag_support_below)
    )


def _entry(s: dict[str, Any], reason: str) -> dict[str, Any]:
    return {
        "sample_id": s["sample_id"],
        "reason": reason,
        "task": s["task"],
        "source_doc": _doc(s),
        # The record holds the sample as it reads now: rewritten, it is a new record.
        "content_sha": reviewed_sha(s),
        "record_id": record_id(s),
    }


def picked(recipe: Recipe, folder: RunFolder) -> tuple[list[dict], dict[str, dict[str, Any]]]:
    """The spot-check of the training split as it reads now, and the split by sample id."""
    train = _train(folder)
    return spot_check(train, recipe.review), {s["sample_id"]: s for s in train}


def chunks_by_id(folder: RunFolder) -> dict[str, dict[str, Any]]:
    return {c["chunk_id"]: dict(c) for c in tables.read(folder.chunks, Chunk)}


def push(recipe: Recipe, folder: RunFolder) -> dict[str, Any]:
    """Pick the spot-check and create or update its Argilla records."""
    from distill.review import argilla as argilla_io

    entries, by_id = picked(recipe, folder)
    chunks = chunks_by_id(folder)
    items = [record(by_id[e["sample_id"]], e, chunks, recipe) for e in entries]
    conn = argilla_io.connect(recipe)
    try:
        ds = argilla_io.open_dataset(conn, recipe, create=True)
        argilla_io.log_records(conn, ds, items)
        url = argilla_io.ui_url(conn, ds)
    finally:
        conn.close()
    write_rows(folder.spot_check, entries)
    reasons = Counter(e["reason"] for e in entries)
    return {
        "records": len(items),
        "sample": reasons["sample"],
        "low_score": reasons["low_score"],
        "dataset": argilla_io.dataset_name(recipe),
        "url": url,
    }


# --- decisions -----------------------------------------------------------------


def decide(responses: list[dict[str, Any]]) -> dict[str, Any]:
    """One record's outcome from its reviewers' responses (drafts do not count)."""
    submitted = [r for r in responses if r["status"] == "submitted"]
    if not submitted:
        skipped = any(r["status"] == "discarded" for r in responses)
        return {"status": "skipped" if skipped else "pending", "reviewers": [], "issues": []}
    verdicts = [r["values"].get("verdict") for r in submitted]
    corrections = [
        str(r["values"]["corrected_response"]).strip()
        for r in sorted(submitted, key=lambda r: r["user"])
        if r["values"].get("verdict") == "accept"
        and str(r["values"].get("corrected_response") or "").strip()
    ]
    status = "rejected" if "reject" in verdicts else ("edited" if corrections else "accepted")
    ratings = [r["values"]["quality"] for r in submitted if r["values"].get("quality")]
    issues = sorted({i for r in submitted for i in r["values"].get("issues") or []})
    notes = [
        str(r["values"]["corrected_response"]).strip()
        for r in submitted
        if r["values"].get("verdict") == "reject" and r["values"].get("corrected_response")
    ]
    return {
        "status": status,
        "reviewers": sorted(r["user"] for r in submitted),
        "verdicts": verdicts,
        "corrected_answer": corrections[0] if status == "edited" else None,
        "quality": round(sum(ratings) / len(ratings), 2) if ratings else None,
        "issues": issues,
        "reviewer_notes": notes,
    }


def _stats(
    entries: list[dict[str, Any]], decisions: list[dict[str, Any]], n_train: int
) -> dict[str, Any]:
    outcome = {d["sample_id"]: d["status"] for d in decisions}
    reviewed = [e for e in entries if outcome[e["sample_id"]] in OUTCOMES]
    sample = [e for e in reviewed if e["reason"] == "sample"]
    rejected_sample = sum(outcome[e["sample_id"]] == "rejected" for e in sample)

    def tally(key: str) -> dict[str, dict[str, int]]:
        out: dict[str, Counter[str]] = defaultdict(Counter)
        for e in entries:
            out[e[key]]["records"] += 1
            out[e[key]][outcome[e["sample_id"]]] += 1
        return {k: dict(v) for k, v in sorted(out.items())}

    counts = Counter(outcome.values())
    return {
        "train_samples": n_train,
        "spot_check": len(entries),
        "sample_records": sum(e["reason"] == "sample" for e in entries),
        "low_score_records": sum(e["reason"] == "low_score" for e in entries),
        "reviewed": len(reviewed),
        "sample_reviewed": len(sample),
        "reviewed_share": round(len(reviewed) / len(entries), 4) if entries else 1.0,
        **{k: counts[k] for k in (*OUTCOMES, "pending", "skipped")},
        "reject_rate": round(rejected_sample / len(sample), 4) if sample else None,
        "issues": dict(Counter(i for d in decisions for i in d["issues"])),
        "by_task": tally("task"),
        "by_doc": tally("source_doc"),
    }


def _from_argilla(
    recipe: Recipe, entries: list[dict[str, Any]]
) -> tuple[dict[str, list[dict]], dict[str, Any]]:
    """The Argilla records' responses by record id, and where they are."""
    from distill.review import argilla as argilla_io

    conn = argilla_io.connect(recipe)
    try:
        ds = argilla_io.open_dataset(conn, recipe, create=False)
        got = {a["id"]: a["responses"] for a in argilla_io.answers(conn, ds)}
        url = argilla_io.ui_url(conn, ds)
    finally:
        conn.close()
    missing = [e["record_id"] for e in entries if e["record_id"] not in got]
    if missing:
        raise UserError(
            f"{len(missing)} spot-check records are not in Argilla (e.g. {missing[0]}); "
            "run `distill review push RECIPE`"
        )
    return got, {"dataset": argilla_io.dataset_name(recipe), "url": url}


def pull(recipe: Recipe, folder: RunFolder) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Read the reviewers' answers (Argilla's with `review.mode: argilla`, and those
    imported from review files in either mode); return (entries, decisions, stats)."""
    from distill.review import answers

    entries = read_rows(folder.spot_check)
    for e in entries:  # a spot-check pushed by an older distill: records by sample id
        e.setdefault("record_id", e["sample_id"])
        e.setdefault("content_sha", None)
    got: dict[str, list[dict]] = defaultdict(list)
    where: dict[str, Any] = {}
    if recipe.review.mode == "argilla":
        server, where = _from_argilla(recipe, entries)
        for rid, responses in server.items():
            got[rid] += responses
    imported = answers.responses(folder)
    for rid, responses in imported.items():
        got[rid] += responses
    decisions = []
    for e in entries:
        d = decide(got.get(e["record_id"], []))
        decisions.append(
            {
                "sample_id": e["sample_id"],
                "content_sha": e["content_sha"],  # what was reviewed (gate.reviewed_sha)
                "reason": e["reason"],
                "status": d["status"],
                "reviewers": d["reviewers"],
                "corrected_answer": d.get("corrected_answer"),
                "human_edited": d["status"] == "edited",
                "quality": d.get("quality"),
                "issues": d["issues"],
                "reviewer_notes": d.get("reviewer_notes", []),
            }
        )
    stats = _stats(entries, decisions, len(_train(folder)))
    stats.update(mode=recipe.review.mode, human_reviewed=True, **where)
    used = sum(len(imported.get(e["record_id"], [])) for e in entries)
    if used or recipe.review.mode == "file":  # else stats.json reads as it did before files
        stats["imported_answers"] = used
    return entries, decisions, stats


def _exports(recipe: Recipe, folder: RunFolder) -> None:
    """review/exports/: what trains (reviewers' rejects out, their corrections in) and
    the eval split, in each of `review.exports`' formats."""
    from distill.review.exports import write_exports

    out = folder.exports_dir
    shutil.rmtree(out, ignore_errors=True)
    formats: list[str] = [str(f) for f in recipe.review.exports]
    write_exports(out, "train", training_rows(folder), formats)
    write_exports(out, "eval", read_rows(folder.curated("eval")), formats)


def run(recipe: Recipe, folder: RunFolder, options: RunOptions) -> dict[str, Any]:
    """The review stage: `auto` records no human review; `argilla` pushes the spot-check
    (idempotent) and pulls the decisions submitted so far; `file` picks the same
    spot-check and reads the answers `distill review import` brought in."""
    train = _train(folder)
    folder.stage_dir("review")
    for stale in (folder.spot_check, folder.decisions, folder.human_rejected):
        stale.unlink(missing_ok=True)
    if recipe.review.mode == "auto":
        stats = {
            "mode": "auto",
            "human_reviewed": False,
            "train_samples": len(train),
            "spot_check": 0,
            "reviewed": 0,
            **{k: 0 for k in OUTCOMES},
        }
        write_json(folder.review_stats, stats)
        _exports(recipe, folder)
        return {"mode": "auto", "samples": len(train), "human_reviewed": 0}
    if recipe.review.mode == "argilla":
        url = push(recipe, folder)["url"]
    else:  # file: the same pick; the answers come from `distill review import`
        write_rows(folder.spot_check, picked(recipe, folder)[0])
    _, decisions, stats = pull(recipe, folder)
    write_rows(folder.decisions, decisions)
    by_id = {s["sample_id"]: s for s in train}
    rejected = [
        {**by_id[d["sample_id"]], **{k: d[k] for k in ("reviewers", "issues", "reviewer_notes")}}
        for d in decisions
        if d["status"] == "rejected"
    ]
    if rejected:
        write_rows(folder.human_rejected, rejected)
    write_json(folder.review_stats, {k: v for k, v in stats.items() if k != "url"})
    _exports(recipe, folder)
    if recipe.review.mode == "argilla":
        console.print(f"  review in Argilla: {url}", soft_wrap=True)
    else:
        console.print(
            f"  {stats['reviewed']} of {stats['spot_check']} spot-check records reviewed in "
            "imported files (`distill review export`, then `distill review import`)",
            soft_wrap=True,
        )
    return {
        "mode": recipe.review.mode,
        "spot_check": stats["spot_check"],
        "reviewed": stats["reviewed"],
        **{k: stats[k] for k in (*OUTCOMES, "pending")},
        **({"reject_rate": stats["reject_rate"]} if stats["reject_rate"] is not None else {}),
        "by_task": stats["by_task"],
        "by_doc": stats["by_doc"],
    }
