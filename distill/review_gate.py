"""The review's verdict, as the stages after it read it: the training rows with the
reviewers' decisions applied, the review stats, and the gate that keeps training from
starting until the spot-check allows it.

The review stage (distill.review) writes review/stats.json and decisions.parquet; train,
publish and the pipeline read them only through here, so no stage imports another.
"""

from __future__ import annotations

from typing import Any

from distill.errors import UserError
from distill.io import hash_json, read_json, read_rows
from distill.recipe import Recipe
from distill.review.config import ReviewConfig
from distill.runfolder import RunFolder, now

# The review modes in which people review a spot-check and it gates training.
HUMAN_MODES = ("argilla", "file")


class GateClosed(UserError):
    """The spot-check does not allow training yet (exit 4)."""

    exit_code = 4


def review_stats(folder: RunFolder) -> dict[str, Any]:
    return dict(read_json(folder.review_stats))


def reviewed_sha(sample: dict[str, Any]) -> str:
    """What a reviewer sees of a sample (its context, request and answer: the messages),
    hashed. A decision holds the hash of what was reviewed; once the sample is written
    again (a neighbour chunk changed, the teacher answered anew) the decision no longer
    applies, and its Argilla record is a new one, pending."""
    return hash_json(sample["messages"])[:16]


def record_id(sample: dict[str, Any]) -> str:
    """The Argilla record of a sample as it reads now: its id and content hash."""
    return f"{sample['sample_id']}-{reviewed_sha(sample)[:12]}"


def _decisions(folder: RunFolder) -> dict[str, dict[str, Any]]:
    path = folder.decisions
    return {d["sample_id"]: d for d in read_rows(path)} if path.exists() else {}


def training_rows(folder: RunFolder) -> list[dict[str, Any]]:
    """Curated training samples with review decisions applied: rejects out, corrections
    in place of the last assistant message (marked human_edited)."""
    train = read_rows(folder.curated("train"))
    decisions = _decisions(folder)
    human = review_stats(folder).get("human_reviewed", False)
    rows = []
    for s in train:
        d = decisions.get(s["sample_id"])
        if d and d.get("content_sha") not in (None, reviewed_sha(s)):
            d = None  # reviewed as it read before: not a decision on this answer
        status = d["status"] if d else ("not_spot_checked" if human else "not_reviewed")
        if status == "rejected":
            continue
        s = {**s, "review_status": status, "human_edited": False}
        if d and d.get("corrected_answer"):
            msgs = [*s["messages"][:-1], {"role": "assistant", "content": d["corrected_answer"]}]
            s.update(messages=msgs, human_edited=True)
            if sum(m["role"] == "assistant" for m in msgs) == 1:  # else `answer` is turn 1's
                s["answer"] = d["corrected_answer"]
        rows.append(s)
    return rows


def gate_reasons(stats: dict[str, Any], cfg: ReviewConfig) -> list[str]:
    """Why the spot-check keeps training from starting (empty: it does not)."""
    if stats.get("mode") not in HUMAN_MODES:
        return []
    reasons = []
    # Over the random sample: reviewing only the low-score extras must not open the gate.
    if "sample_reviewed" in stats:
        n, done, what = stats["sample_records"], stats["sample_reviewed"], "randomly sampled"
    else:  # stats written before the sample was counted apart
        n, done, what = stats["spot_check"], stats["reviewed"], "spot-check"
    if n and done / n < cfg.required_share:
        reasons.append(
            f"{done} of {n} {what} records reviewed ({done / n:.0%}); "
            f"review.required_share is {cfg.required_share:.0%}"
        )
    least = min(cfg.min_sample_reviewed, n)
    if cfg.required_share > 0 and done < least:
        reasons.append(
            f"{done} {what} records reviewed; the gate needs at least {least} "
            f"(review.min_sample_reviewed is {cfg.min_sample_reviewed})"
        )
    rate = stats.get("reject_rate")
    if rate is not None and rate > cfg.max_reject_rate:
        reasons.append(
            f"reviewers rejected {rate:.0%} of the reviewed random sample; "
            f"review.max_reject_rate is {cfg.max_reject_rate:.0%}"
        )
    return reasons


def render_status(stats: dict[str, Any], cfg: ReviewConfig, top: int = 15) -> str:
    """Progress, the gate's verdict, and counts per task and per source document."""
    if stats.get("mode") not in HUMAN_MODES:
        return f"review.mode is auto: {stats.get('train_samples', 0)} samples, none human-reviewed"
    n = stats["spot_check"]
    lines = [
        f"spot-check: {n} records ({stats['sample_records']} sampled, "
        f"{stats['low_score_records']} low-score) of {stats['train_samples']} training samples",
        f"reviewed {stats['reviewed']} of {n} ({stats['reviewed_share']:.0%}): "
        f"{stats['accepted']} accepted, {stats['rejected']} rejected, {stats['edited']} edited; "
        f"{stats['pending']} pending, {stats['skipped']} skipped",
    ]
    rate = stats.get("reject_rate")
    if rate is not None:
        lines.append(
            f"reject rate on the random sample: {rate:.0%} (max {cfg.max_reject_rate:.0%})"
        )
    reasons = gate_reasons(stats, cfg)
    lines.append("training gate: " + ("closed: " + "; ".join(reasons) if reasons else "open"))
    cols = ("records", "accepted", "rejected", "edited", "pending")
    for title, key in (("task", "by_task"), ("source document", "by_doc")):
        groups = sorted(stats[key].items(), key=lambda kv: -kv[1]["records"])
        width = max([len(title), *(len(k) for k, _ in groups[:top])])
        lines += ["", f"{title:<{width}}  " + "  ".join(f"{c:>8}" for c in cols)]
        for k, v in groups[:top]:
            lines.append(f"{k:<{width}}  " + "  ".join(f"{v.get(c, 0):>8}" for c in cols))
        if len(groups) > top:
            lines.append(f"… and {len(groups) - top} more")
    return "\n".join(lines)


def gate(recipe: Recipe, folder: RunFolder, accept_unreviewed: bool = False) -> dict[str, Any]:
    """Whether training may start; raises GateClosed when not and not overridden.
    Returns the record kept in the manifest as `review_gate`."""
    stats = review_stats(folder)
    cfg = recipe.review
    result: dict[str, Any] = {
        "mode": stats.get("mode", "auto"),
        "human_reviewed": bool(stats.get("human_reviewed")),
        "checked_at": now(),
        "reasons": [],
        "overridden": False,
    }
    result["reasons"] = gate_reasons(stats, cfg)
    result["passed"] = not result["reasons"]
    if not result["passed"]:
        if not accept_unreviewed:
            how = (
                "Fill in the file `distill review export RECIPE` writes, then "
                "`distill review import RECIPE FILE`"
                if stats.get("mode") == "file"
                else "Review in Argilla, then `distill review pull RECIPE`"
            )
            raise GateClosed(
                "train: the spot-check does not allow training: "
                + "; ".join(result["reasons"])
                + f". {how}; "
                "or pass --accept-unreviewed to train anyway (recorded in the manifest "
                "and the dataset card)"
            )
        result["overridden"] = True
    return result


def summary(stats: dict[str, Any], gate_record: dict[str, Any] | None) -> str:
    """One honest paragraph on human review, for cards and reports."""
    if stats.get("mode") not in HUMAN_MODES:
        text = (
            "Not human-reviewed: the recipe's review.mode was `auto`, so no person checked "
            f"any of the {stats.get('train_samples', 0)} training samples."
        )
    else:
        rate = stats.get("reject_rate")
        where = "in Argilla" if stats["mode"] == "argilla" else "in review files"
        if stats["mode"] == "argilla" and stats.get("imported_answers"):
            where += f" (and {stats['imported_answers']} answers imported from review files)"
        text = (
            f"Human spot-check {where}: {stats['reviewed']} of {stats['spot_check']} "
            f"spot-check records reviewed ({stats['sample_records']} sampled at random, "
            f"stratified by task and source document; {stats['low_score_records']} picked for "
            f"low scores): {stats['accepted']} accepted, {stats['rejected']} rejected and "
            f"removed, {stats['edited']} corrected by a reviewer"
            + (f"; reject rate on the random sample {rate:.0%}" if rate is not None else "")
            + f". The other {stats['train_samples'] - stats['spot_check']} training samples "
            "were not individually reviewed."
        )
    if gate_record and gate_record.get("overridden"):
        text += (
            " Training went ahead with --accept-unreviewed although "
            + "; ".join(gate_record.get("reasons", []))
            + "."
        )
    return text
