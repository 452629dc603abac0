"""Eval metrics from answer rows: pure functions, no models (the sentences drawn from
them are distill.eval_text's).

An answer row (eval/answers.parquet) is one system's answer to one item:
`kind` is `answerable` (a held-out question with its reference answer),
`no_oracle` (the same question with its source documents removed from retrieval)
or `off_topic` (a question the corpus does not cover). For the last two the right
answer is a refusal ("the documents do not contain ...").

Every share carries a 95% Wilson interval and every mean a bootstrap one (`m.ci`,
seeded, `N_BOOT` resamples); the comparisons (`comparisons`) carry a paired interval
(Newcombe's for shares), so question difficulty cancels out, and the minimum detectable
effect at 80% power. With an answer key, these judged tables are descriptive: the
decision is distill.evaluate.decision's.

Failures stay in the denominators: an answer that errored, a judgement that
errored or could not be parsed, counts as not correct (% >= 4), not a win, not a
refusal. Means of judge scores are over the judged answers, with the judged count
beside them.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Collection, Iterable, Sequence

import numpy as np

from distill.config import RETRIEVAL_SYSTEMS
from distill.eval_text import PRIMARY
from distill.evaluate import stats
from distill.results import (
    Citations,
    Correctness,
    Groundedness,
    PairedComparison,
    PairedDifference,
    Refusal,
    SystemCI,
    SystemMetrics,
    VsTeacher,
)
from distill.tables import Answer

Row = Answer
# `retrieval`, below: the names of the systems given retrieved chunks (the built-in ones
# by default; the eval stage adds the named systems with `rag`, EvalConfig.retrieval_systems).

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


N_BOOT = 2000
# The comparisons that decide, (system, against), when both systems ran.
DECIDING = (("ft+rag", "base+rag"), ("ft", "base"), ("ft+rag", "teacher"))
_WORD = re.compile(r"\w+")
_CITE_MARK = re.compile(r"\[\d{1,2}\]")


def _squad_words(text: str) -> list[str]:
    """SQuAD's normalisation: no citation markers ([1] is no word), lower case, no
    punctuation, no articles."""
    text = _CITE_MARK.sub(" ", text.lower())
    return [w for w in _WORD.findall(text) if w not in ("a", "an", "the")]


def token_f1(answer: str, reference: str) -> float:
    """SQuAD-style token F1 of an answer against the reference. It rewards short
    answers, so the report puts the paired length difference beside it."""
    a, r = _squad_words(answer), _squad_words(reference)
    if not a or not r:
        return float(a == r)
    common = sum((Counter(a) & Counter(r)).values())
    if not common:
        return 0.0
    precision, recall = common / len(a), common / len(r)
    return 2 * precision * recall / (precision + recall)


def bootstrap_ci(values: list[float], seed: int = 0, n_boot: int = N_BOOT) -> list[float] | None:
    """The 95% percentile-bootstrap interval of the mean of `values`."""
    if not values:
        return None
    x = np.asarray(values, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(x), size=(n_boot, len(x)))
    lo, hi = np.percentile(x[idx].mean(axis=1), [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


BINARY = ("correct", "refusal", "citation_accuracy", "win")  # 0/1 per question


def paired_difference(
    a: dict[str, float], b: dict[str, float], seed: int = 0, binary: bool = False
) -> PairedDifference | None:
    """Mean of a - b over the items both have, with its paired 95% interval: Newcombe's
    score interval for 0/1 outcomes (never zero width), a bootstrap otherwise.

    `significant` when the interval excludes 0; `mde` is the smallest difference this
    many questions detect at 80% power (distill.evaluate.stats)."""
    d = stats.paired_binary(a, b) if binary else stats.paired_continuous(a, b, seed=seed)
    if d is None:
        return None
    return PairedDifference(
        diff=round(d.diff, 4),
        ci=(round(d.ci[0], 4), round(d.ci[1], 4)),
        n=d.n,
        significant=d.significant,
        p_value=round(d.p_value, 4),
        mde=round(d.mde, 4),
    )


def item_scores(
    rows: Sequence[Row], system: str, retrieval: Collection[str] = RETRIEVAL_SYSTEMS
) -> dict[str, dict[str, float]]:
    """Per-question values of each metric with an interval: {metric: {item_id: value}}.

    Failures count as they do in the table: an unjudged answer is not correct, not a
    win; an errored answer has token F1 0 and no refusal."""
    mine = [r for r in rows if r["system"] == system]
    answerable = [r for r in mine if r["kind"] == "answerable"]
    ok = [r for r in answerable if not r["answer_error"]]
    judged = [r for r in answerable if r.get("judged", True)]
    out: dict[str, dict[str, float]] = {
        "correct": {
            r["item_id"]: float(r["correctness"] is not None and r["correctness"] >= 4)
            for r in judged
        },
        "correctness": {
            r["item_id"]: float(r["correctness"])
            for r in answerable
            if r["correctness"] is not None
        },
        "token_f1": {
            r["item_id"]: 0.0 if r["answer_error"] else token_f1(r["answer"], r["reference"])
            for r in answerable
        },
        "similarity": {r["item_id"]: r["similarity"] for r in ok if r["similarity"] is not None},
        "answer_words": {r["item_id"]: float(len(r["answer"].split())) for r in ok},
    }
    if system != "teacher":
        out["win"] = {
            r["item_id"]: float(r["vs_teacher"] == "win")
            for r in judged
            if r["vs_teacher"] is not None
        }
    if uses_retrieval(system, retrieval):
        out["groundedness"] = {
            r["item_id"]: float(r["groundedness"])
            for r in answerable
            if r["groundedness"] is not None
        }
        out["refusal"] = {
            r["item_id"]: float(r["refused"]) for r in mine if r["kind"] != "answerable"
        }
        out["citation_accuracy"] = {
            r["item_id"]: float(
                bool(set(r["cited_chunk_ids"]) & set(r["source_chunk_ids"]))
                and len(r["cited_chunk_ids"]) == len(r["cited"])
            )
            for r in ok
            if r["cited"] and r["source_chunk_ids"]
        }
    return out


def intervals(
    rows: Sequence[Row],
    system: str,
    seed: int = 0,
    retrieval: Collection[str] = RETRIEVAL_SYSTEMS,
) -> SystemCI:
    """The 95% interval of each per-question metric of one system: Wilson's for shares
    (never zero width at 0% or 100%), a bootstrap for means."""
    out: dict[str, tuple[float, float] | None] = {}
    for k, v in item_scores(rows, system, retrieval).items():
        if k in BINARY:
            w = stats.wilson(round(sum(v.values())), len(v))
            out[k] = (round(w[0], 4), round(w[1], 4)) if w else None
        else:
            ci = bootstrap_ci(list(v.values()), seed)
            out[k] = (ci[0], ci[1]) if ci else None
    return SystemCI(**out)


def comparisons(
    rows: Sequence[Row],
    systems: list[str],
    seed: int = 0,
    retrieval: Collection[str] = RETRIEVAL_SYSTEMS,
    pairs: Sequence[tuple[str, str]] = DECIDING,
) -> list[PairedComparison]:
    """The deciding comparisons (`pairs`: DECIDING, and eval.deciding's first system
    against each named one) with paired intervals, for the systems present."""
    out = []
    scores = {s: item_scores(rows, s, retrieval) for s in systems}
    for a, b in pairs:
        if a not in scores or b not in scores:
            continue
        for metric in (PRIMARY, "token_f1", "answer_words", "refusal"):
            if metric not in scores[a] or metric not in scores[b]:
                continue
            d = paired_difference(
                scores[a][metric], scores[b][metric], seed, binary=metric in BINARY
            )
            if d is not None:
                out.append(PairedComparison(system=a, against=b, metric=metric, **d.model_dump()))
    return out


def uses_retrieval(system: str, retrieval: Collection[str] = RETRIEVAL_SYSTEMS) -> bool:
    """Whether `system` was given retrieved chunks (`retrieval`: their names)."""
    return system in retrieval


def percentile(values: Iterable[float], q: float) -> float | None:
    """The nearest-rank percentile (q in 0..100): a value that was measured."""
    xs = sorted(values)
    if not xs:
        return None
    rank = max(1, math.ceil(q / 100 * len(xs)))
    return xs[rank - 1]


def _mean(xs: Sequence[float]) -> float | None:
    return round(statistics.fmean(xs), 3) if xs else None


def _share(k: int, n: int) -> float | None:
    return round(k / n, 4) if n else None


def _vs_teacher(judged: Sequence[Row]) -> VsTeacher | None:
    """The judged sample head to head with the teacher; None when nothing was compared."""
    outcomes = [r["vs_teacher"] for r in judged if r["vs_teacher"] is not None]
    if not outcomes:
        return None
    n = len(judged)
    win, tie, loss = (outcomes.count(o) for o in ("win", "tie", "loss"))
    return VsTeacher(
        n=n,
        win=round(win / n, 4),
        tie=round(tie / n, 4),
        loss=round(loss / n, 4),
        failed=n - win - tie - loss,
    )


def cost_per_1k(
    rows: Sequence[Row], hourly_usd: float | None, unpriced: str = "set teacher.price"
) -> tuple[float | None, str, float | None]:
    """What 1,000 of these answers cost, how it was priced, and their compute seconds:
    an API system at its price (the rows' cost_usd; none when its price is unknown:
    `unpriced` says how to give one), a local one as compute time on this machine,
    priced at `hourly_usd` when given. One system's rows."""
    local = bool(rows and rows[0]["local"])
    # Answers that reused another prompt's start are not timed (LlamaCppTeacher).
    timed = [r for r in rows if not r["answer_error"] and r.get("timed", True)]
    per_1k_s = sum(r["compute_s"] for r in timed) / len(timed) * 1000 if timed else None
    if not local and all(r.get("priced", True) for r in rows):
        cost = sum(r["cost_usd"] for r in rows) / len(rows) * 1000 if rows else None
        return cost, "API prices", per_1k_s
    if not local:
        return None, f"price unknown ({unpriced})", per_1k_s
    if hourly_usd is not None and per_1k_s is not None:
        return per_1k_s / 3600 * hourly_usd, f"compute at ${hourly_usd:g}/h", per_1k_s
    return None, "compute only", per_1k_s


def system_metrics(
    rows: Sequence[Row],
    system: str,
    hourly_usd: float | None,
    seed: int = 0,
    retrieval: Collection[str] = RETRIEVAL_SYSTEMS,
) -> SystemMetrics:
    # Long on purpose: one metric after another over the same rows, each with its CI.
    mine = [r for r in rows if r["system"] == system]
    answerable = [r for r in mine if r["kind"] == "answerable"]
    unanswerable = [r for r in mine if r["kind"] != "answerable"]
    n = len(answerable)
    ok = [r for r in answerable if not r["answer_error"]]
    judged = [r for r in answerable if r.get("judged", True)]
    scored = [r for r in judged if r["correctness"] is not None]
    grades = [c for r in scored if (c := r["correctness"]) is not None]
    local = bool(mine and mine[0]["local"])
    # Groundedness, citations and refusals only where there is retrieval.
    rag = uses_retrieval(system, retrieval)
    grounded = [r["groundedness"] for r in answerable if r["groundedness"] is not None]
    citing = [r for r in ok if r["cited"]]
    # Accuracy needs the question's source chunks: your own questions referenced by
    # your answers have none.
    sourced = [r for r in citing if r["source_chunk_ids"]]
    accurate = [
        r
        for r in sourced
        if set(r["cited_chunk_ids"]) & set(r["source_chunk_ids"])
        and len(r["cited_chunk_ids"]) == len(r["cited"])  # no [n] beyond the documents
    ]
    refused = [r for r in unanswerable if r["refused"]]
    timed = [r for r in mine if not r["answer_error"] and r.get("timed", True)]
    compute = sum(r["compute_s"] for r in timed)
    unpriced = "set teacher.price" if system == "teacher" else f"give {system} a price"
    cost, basis, per_1k_s = cost_per_1k(mine, hourly_usd, unpriced)
    return SystemMetrics(
        local=local,
        n=n,
        n_unanswerable=len(unanswerable),
        answer_failures=sum(bool(r["answer_error"]) for r in mine),
        correctness=Correctness(
            mean=_mean(grades),
            ge4=_share(sum(c >= 4 for c in grades), len(judged)),
            judged=len(scored),
            failed=len(judged) - len(scored),
        ),
        similarity=_mean([r["similarity"] for r in ok if r["similarity"] is not None]),
        token_f1=_mean(
            [
                0.0 if r["answer_error"] else token_f1(r["answer"], r["reference"])
                for r in answerable
            ]
        ),
        answer_words=_mean([float(len(r["answer"].split())) for r in ok]),
        ci=intervals(rows, system, seed, retrieval),
        vs_teacher=_vs_teacher(judged) if system != "teacher" else None,
        groundedness=Groundedness(
            mean=_mean(grounded), judged=len(grounded), failed=n - len(grounded)
        )
        if rag
        else None,
        support=_mean([r["support"] for r in ok if r["support"] is not None]) if rag else None,
        citations=Citations(
            citing=_share(len(citing), n),
            accuracy=_share(len(accurate), len(sourced)),
            n_citing=len(sourced),  # the accuracy's denominator
        )
        if rag
        else None,
        refusal=Refusal(
            accuracy=_share(len(refused), len(unanswerable)),
            n=len(unanswerable),
            false_refusals=_share(sum(r["refused"] for r in ok), n),
        )
        if rag
        else None,
        latency_p50_s=percentile((r["latency_s"] for r in timed), 50),
        latency_p95_s=percentile((r["latency_s"] for r in timed), 95),
        tokens_per_s=round(sum(r["output_tokens"] for r in timed) / compute, 1)
        if compute
        else None,
        compute_s_per_1k=round(per_1k_s, 1) if per_1k_s is not None else None,
        cost_per_1k_usd=round(cost, 4) if cost is not None else None,
        cost_basis=basis,
    )


def summarise(
    rows: Sequence[Row],
    systems: list[str],
    hourly_usd: float | None = None,
    seed: int = 0,
    retrieval: Collection[str] = RETRIEVAL_SYSTEMS,
) -> dict[str, SystemMetrics]:
    """Per-system metrics, in the order of `systems`."""
    return {s: system_metrics(rows, s, hourly_usd, seed, retrieval) for s in systems}
