"""Eval metrics from answer rows: pure functions, no models.

An answer row (eval/answers.parquet) is one system's answer to one item:
`kind` is `answerable` (a held-out question with its reference answer),
`no_oracle` (the same question with its source documents removed from retrieval)
or `off_topic` (a question the corpus does not cover). For the last two the right
answer is a refusal ("the documents do not contain ...").

Failures stay in the denominators: an answer that errored, a judgement that
errored or could not be parsed, counts as not correct (% >= 4), not a win, not a
refusal. Means of judge scores are over the judged answers, with the judged count
beside them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from typing import Any

Row = dict[str, Any]
RETRIEVAL_SYSTEMS = ("teacher", "base+rag", "ft+rag")

# Pairwise verdicts, from the student's side. `first` was asked with the student as
# answer A, `second` with the student as answer B.
_SIDE = {("A", True): "win", ("B", True): "loss", ("A", False): "loss", ("B", False): "win"}


def student_side(winner: str, student_is_a: bool) -> str:
    """A judge's 'A' / 'B' / 'tie' as the student's win / loss / tie."""
    return "tie" if winner == "tie" else _SIDE[(winner, student_is_a)]


def combine_pairwise(first: str | None, second: str | None) -> str:
    """One outcome from the two orders: a win or loss only when both orders agree;
    a judge that prefers a position (A both times) gives a tie. 'failed' when either
    judgement is missing."""
    if first is None or second is None:
        return "failed"
    a, b = student_side(first, True), student_side(second, False)
    return a if a == b else "tie"


def uses_retrieval(system: str) -> bool:
    return system in RETRIEVAL_SYSTEMS


def percentile(values: Iterable[float], q: float) -> float | None:
    """The nearest-rank percentile (q in 0..100): a value that was measured."""
    xs = sorted(values)
    if not xs:
        return None
    rank = max(1, math.ceil(q / 100 * len(xs)))
    return xs[rank - 1]


def _mean(xs: list[float]) -> float | None:
    return round(statistics.fmean(xs), 3) if xs else None


def _share(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


def system_metrics(rows: list[Row], system: str, hourly_usd: float | None) -> dict[str, Any]:
    mine = [r for r in rows if r["system"] == system]
    answerable = [r for r in mine if r["kind"] == "answerable"]
    unanswerable = [r for r in mine if r["kind"] != "answerable"]
    n = len(answerable)
    ok = [r for r in answerable if not r["answer_error"]]
    scored = [r for r in answerable if r["correctness"] is not None]
    m: dict[str, Any] = {
        "local": bool(mine and mine[0]["local"]),
        "n": n,
        "n_unanswerable": len(unanswerable),
        "answer_failures": sum(bool(r["answer_error"]) for r in mine),
        "correctness": {
            "mean": _mean([r["correctness"] for r in scored]),
            "ge4": _share(sum(r["correctness"] >= 4 for r in scored), n),
            "judged": len(scored),
            "failed": n - len(scored),
        },
        "similarity": _mean([r["similarity"] for r in ok if r["similarity"] is not None]),
    }
    if system != "teacher":
        outcomes = [r["vs_teacher"] for r in answerable if r["vs_teacher"] is not None]
        m["vs_teacher"] = (
            {
                "n": n,
                **{o: _share(outcomes.count(o), n) for o in ("win", "tie", "loss")},
                "failed": n - sum(outcomes.count(o) for o in ("win", "tie", "loss")),
            }
            if outcomes
            else None
        )
    else:
        m["vs_teacher"] = None
    if uses_retrieval(system):
        grounded = [r["groundedness"] for r in answerable if r["groundedness"] is not None]
        citing = [r for r in ok if r["cited"]]
        accurate = [
            r
            for r in citing
            if set(r["cited_chunk_ids"]) & set(r["source_chunk_ids"])
            and len(r["cited_chunk_ids"]) == len(r["cited"])  # no [n] beyond the documents
        ]
        refused = [r for r in unanswerable if r["refused"]]
        m |= {
            "groundedness": {
                "mean": _mean(grounded),
                "judged": len(grounded),
                "failed": n - len(grounded),
            },
            "support": _mean([r["support"] for r in ok if r["support"] is not None]),
            "citations": {
                "citing": _share(len(citing), n),
                "accuracy": _share(len(accurate), len(citing)),
                "n_citing": len(citing),
            },
            "refusal": {
                "accuracy": _share(len(refused), len(unanswerable)),
                "n": len(unanswerable),
                "false_refusals": _share(sum(r["refused"] for r in ok), n),
            },
        }
    else:
        m |= {"groundedness": None, "support": None, "citations": None, "refusal": None}
    timed = [r for r in mine if not r["answer_error"]]
    compute = sum(r["compute_s"] for r in timed)
    per_1k_s = compute / len(timed) * 1000 if timed else None
    api_cost = sum(r["cost_usd"] for r in mine)
    if not m["local"] and all(r.get("priced", True) for r in mine):
        cost = api_cost / len(mine) * 1000 if mine else None
        basis = "API prices"
    elif not m["local"]:
        cost, basis = None, "price unknown (set generate.price)"
    elif hourly_usd is not None and per_1k_s is not None:
        cost = per_1k_s / 3600 * hourly_usd
        basis = f"compute at ${hourly_usd:g}/h"
    else:
        cost, basis = None, "compute only"
    m |= {
        "latency_p50_s": percentile((r["latency_s"] for r in timed), 50),
        "latency_p95_s": percentile((r["latency_s"] for r in timed), 95),
        "tokens_per_s": round(sum(r["output_tokens"] for r in timed) / compute, 1)
        if compute
        else None,
        "compute_s_per_1k": round(per_1k_s, 1) if per_1k_s is not None else None,
        "cost_per_1k_usd": round(cost, 4) if cost is not None else None,
        "cost_basis": basis,
    }
    return m


def summarise(
    rows: list[Row], systems: list[str], hourly_usd: float | None = None
) -> dict[str, dict[str, Any]]:
    """Per-system metrics, in the order of `systems`."""
    return {s: system_metrics(rows, s, hourly_usd) for s in systems}


def _ratio_words(x: float) -> str:
    """0.025 -> '1/40 of', 3.0 -> '3.0x'."""
    if x <= 0:
        return "none of"
    if x <= 0.5:
        return f"1/{round(1 / x):,} of"
    if x < 1:
        return f"{x:.0%} of"
    return f"{x:.1f} times"


def what_this_means(metrics: dict[str, Any]) -> list[str]:
    """Plain sentences drawn from the numbers, strongest caveats first."""
    systems: dict[str, Any] = metrics["systems"]
    out: list[str] = []
    if metrics.get("smoke_test"):
        out.append(
            f"The judge here is {metrics['judge']}, a tiny local model, so these scores are a "
            "smoke test of the pipeline, not a measure of quality; set `eval.judge` to a strong "
            "model for numbers to act on."
        )
    n = metrics["questions"]
    if n < 30:
        out.append(
            f"With {n} questions, one answer moves a percentage by {100 / max(n, 1):.0f} points; "
            "differences smaller than that are noise."
        )
    failed = sum(m["correctness"]["failed"] for m in systems.values())
    total = sum(m["n"] for m in systems.values())
    if total and failed / total > 0.1:
        out.append(
            f"{failed} of {total} answers have no correctness score (the answer or its "
            "judgement failed); they count as not correct."
        )
    teacher = systems.get("teacher")
    t_mean = teacher["correctness"]["mean"] if teacher else None
    for name in ("ft+rag", "ft", "base+rag", "base"):
        m = systems.get(name)
        if m is None or m["correctness"]["mean"] is None:
            continue
        mean = m["correctness"]["mean"]
        parts = [f"`{name}` scores {mean:.1f}/5 for correctness"]
        if teacher and t_mean:
            parts.append(f"{mean / t_mean:.0%} of the teacher's {t_mean:.1f}")
            if m["latency_p50_s"] and teacher["latency_p50_s"]:
                ratio = m["latency_p50_s"] / teacher["latency_p50_s"]
                parts.append(f"at {_ratio_words(ratio)} its median latency")
        if m["vs_teacher"] and m["vs_teacher"]["failed"] < m["vs_teacher"]["n"]:
            v = m["vs_teacher"]
            parts.append(
                f"head to head it wins {v['win']:.0%}, ties {v['tie']:.0%} and loses "
                f"{v['loss']:.0%} against the teacher"
            )
        out.append(", ".join(parts) + ".")
        break  # the best-trained system present; the table has the rest
    lift = []
    base = systems.get("base", {}).get("correctness", {}).get("mean")
    for name, label in (
        ("base+rag", "retrieval alone"),
        ("ft", "fine-tuning alone"),
        ("ft+rag", "fine-tuning with retrieval"),
    ):
        other = systems.get(name, {}).get("correctness", {}).get("mean")
        if base is not None and other is not None:
            lift.append(f"{label} {other - base:+.1f}")
    if lift:
        out.append("Against the base student's correctness, " + ", ".join(lift) + " points (of 5).")
    refusals = {
        s: m["refusal"]["accuracy"]
        for s, m in systems.items()
        if m["refusal"] and m["refusal"]["n"] and m["refusal"]["accuracy"] is not None
    }
    if refusals:
        best = max(refusals, key=lambda s: refusals[s])
        worst = min(refusals, key=lambda s: refusals[s])
        if refusals[best] == refusals[worst]:
            out.append(
                "On questions the documents cannot answer, every system with retrieval says so "
                f"{refusals[best]:.0%} of the time."
            )
        else:
            out.append(
                f"On questions the documents cannot answer, `{best}` says so "
                f"{refusals[best]:.0%} of the time and `{worst}` {refusals[worst]:.0%}."
            )
    return out
