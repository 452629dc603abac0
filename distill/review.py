"""Review: human decisions that gate training.

In this version the only backend is `none`: every curated training sample is
recorded as `not_reviewed` and passes through. The stage exists so recipes name it
and so training already reads its samples through `training_rows`, which is where
rejections and corrections will apply.

Outputs in `review/`: decisions.parquet (sample_id, status, reviewer, edited,
corrected_answer) and stats.json.
"""

from __future__ import annotations

from typing import Any

from distill.io import read_json, read_rows, write_json, write_rows
from distill.recipe import Recipe
from distill.runfolder import RunFolder


def run(recipe: Recipe, run: RunFolder) -> dict[str, Any]:
    train = read_rows(run.stage_dir("curate") / "train.parquet")
    decisions = [
        {
            "sample_id": s["sample_id"],
            "status": "not_reviewed",
            "reviewer": None,
            "edited": False,
            "corrected_answer": None,
        }
        for s in train
    ]
    out = run.stage_dir("review")
    write_rows(out / "decisions.parquet", decisions)
    stats = {"backend": recipe.review.backend, "samples": len(train), "not_reviewed": len(train)}
    stats.update(reviewed=0, accepted=0, rejected=0)
    write_json(out / "stats.json", stats)
    return {"samples": len(train), "not_reviewed": len(train)}


def training_rows(run: RunFolder) -> list[dict[str, Any]]:
    """Curated training samples with review decisions applied (rejects out, edits in)."""
    train = read_rows(run.stage_dir("curate") / "train.parquet")
    decisions = {
        d["sample_id"]: d for d in read_rows(run.stage_dir("review") / "decisions.parquet")
    }
    rows = []
    for s in train:
        d = decisions.get(s["sample_id"], {"status": "not_reviewed"})
        if d["status"] == "rejected":
            continue
        if d.get("corrected_answer"):
            s = {**s, "answer": d["corrected_answer"]}
            s["messages"] = [*s["messages"][:-1], {"role": "assistant", "content": s["answer"]}]
        rows.append({**s, "review_status": d["status"]})
    return rows


def review_stats(run: RunFolder) -> dict[str, Any]:
    return read_json(run.stage_dir("review") / "stats.json")
