"""The decision: the pre-declared primary, its secondaries and the verdict, judge-free.

The primary is `eval.deciding` (ft+rag against base+rag) on key-fact accuracy, per
eval set (unseen documents; deployment: training documents asked with retrieval) and
pooled. Binary differences carry Newcombe's paired score interval widened by the
design effect, an exact McNemar p and the minimum detectable effect at 80% power
(distill.evaluate.stats); questions cluster by document when a set spans 15 or more,
else by chunk. Only complete pairs count: an item one system failed to answer leaves
the comparison, and the count of those is shown.

Three key secondaries, Holm-adjusted: refusal rate on verified unanswerables (higher is
better), false-refusal rate on answerables (lower is better), citation precision.
Everything else is descriptive: the other systems, retrieval hits and misses, numbers
no retrieved chunk states, length and tokens.

The result is a typed model (distill.results.Decision): metrics.json's `decision`,
which the report, the model card and the benchmarks read back through `read_metrics`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Literal

from distill.evaluate import stats
from distill.evaluate.items import DEPLOYMENT, UNSEEN
from distill.evaluate.metrics import percentile
from distill.results import (
    POOLED,
    Comparison,
    Decision,
    Example,
    Mean,
    SetResult,
    Share,
    Speed,
    SystemDetail,
)
from distill.tables import Answer

SMALL_HARM = 0.05  # "no harm": the primary's lower bound above -5 points
PLANNING_EFFECTS = (0.05, 0.10)  # the n these effects would need is printed


def _share(k: int, n: int) -> Share:
    return Share(k=k, n=n, value=round(k / n, 4) if n else None, ci=stats.wilson(k, n))


def _mean(xs: Sequence[float]) -> Mean:
    return Mean(n=len(xs), value=round(statistics.fmean(xs), 4) if xs else None)


def by_system(rows: Sequence[Answer], system: str, keep: Callable[[Answer], bool]) -> list[Answer]:
    """`system`'s rows that `keep` keeps."""
    return [r for r in rows if r["system"] == system and keep(r)]


def _values(rows: Sequence[Answer], value: Callable[[Answer], float | None]) -> dict[str, float]:
    return {r["item_id"]: v for r in rows if (v := value(r)) is not None}


def _planning(p_d: float | None, deff: float, sd: float | None) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for effect in PLANNING_EFFECTS:
        label = f"+{effect * 100:.0f}"
        try:
            if p_d is not None:
                out[label] = stats.n_paired_binary(effect, max(p_d, 2 * effect * effect), deff)
            elif sd is not None:
                out[label] = stats.n_continuous(effect, sd, deff)
        except ValueError:
            out[label] = None
    return out


def compare(
    rows: Sequence[Answer],
    system: str,
    against: str,
    metric: str,
    value: Callable[[Answer], float | None],
    keep: Callable[[Answer], bool],
    eval_set: str,
    kind: Literal["binary", "continuous"] = "binary",
    better: Literal["higher", "lower"] = "higher",
    seed: int = 0,
) -> Comparison | None:
    """A paired comparison over the items both systems have a value for."""
    mine, theirs = by_system(rows, system, keep), by_system(rows, against, keep)
    a, b = _values(mine, value), _values(theirs, value)
    ids = sorted(set(a) & set(b))
    if not ids:
        return None
    dropped = len({r["item_id"] for r in [*mine, *theirs]}) - len(ids)
    doc = {r["item_id"]: r["doc_id"] or r["item_id"] for r in mine}
    chunk = {r["item_id"]: (r["source_chunk_ids"] or [r["item_id"]])[0] for r in mine}
    clusters, by = stats.cluster_of(ids, doc, chunk)
    common = dict(
        metric=metric, system=system, against=against, eval_set=eval_set, kind=kind,
        better=better, dropped=dropped, cluster_by=by,
    )  # fmt: skip
    if kind == "binary":
        pb = stats.paired_binary(a, b, clusters)
        if pb is None:
            return None
        return Comparison(
            **common, n=pb.n, diff=pb.diff, ci=pb.ci, p_value=pb.p_value, wins=pb.wins,
            losses=pb.losses, p_d=pb.p_d, deff=pb.deff, clusters=pb.clusters, mde=pb.mde,
            significant=pb.significant, n_for=_planning(pb.p_d, pb.deff, None),
        )  # fmt: skip
    pc = stats.paired_continuous(a, b, clusters, seed=seed)
    if pc is None:  # fewer than two pairs: no spread to measure
        return None
    return Comparison(
        **common, n=pc.n, diff=pc.diff, ci=pc.ci, p_value=pc.p_value, sd=pc.sd,
        deff=pc.deff, clusters=pc.clusters, mde=pc.mde, significant=pc.significant,
        n_for=_planning(None, pc.deff, pc.sd),
    )  # fmt: skip


def is_keyed(r: Answer) -> bool:
    """An answerable question of the answer key (it has key facts)."""
    return r["kind"] == "answerable" and r["key_facts"] not in ("", "[]")


def key_correct(r: Answer) -> float | None:
    """1 when the answer states every key fact, 0 when not, None when unscored."""
    return None if r["fact_correct"] is None else float(r["fact_correct"])


def _refused(r: Answer) -> float | None:
    return None if r["answer_error"] else float(r["refused"])


def _precision(r: Answer) -> float | None:
    if r["answer_error"] or not r["cited"]:
        return None
    return r["cited_right"] / len(r["cited"])


def _unanswerable(r: Answer) -> bool:
    return r["kind"] in ("unanswerable", "off_topic")


def _set_result(rows: Sequence[Answer], name: str, deciding: tuple[str, str]) -> SetResult:
    mine = [r for r in rows if is_keyed(r) and (name == POOLED or r["eval_set"] == name)]
    systems = list(dict.fromkeys(r["system"] for r in mine))
    rag = [r for r in mine if r["system"] == deciding[0] and r["retrieval_hit"] is not None]
    acc, rec = {}, {}
    for s in systems:
        scored = [r for r in mine if r["system"] == s and r["fact_correct"] is not None]
        acc[s] = _share(sum(bool(r["fact_correct"]) for r in scored), len(scored))
        rec[s] = _mean([r["fact_recall"] for r in scored if r["fact_recall"] is not None])
    primary = compare(mine, *deciding, "key-fact accuracy", key_correct, is_keyed, name)
    return SetResult(
        eval_set=name,
        questions=len({r["item_id"] for r in mine}),
        documents=len({r["doc_id"] for r in mine}),
        accuracy=acc,
        recall=rec,
        hit_rate=_share(sum(bool(r["retrieval_hit"]) for r in rag), len(rag)) if rag else None,
        primary=primary,
    )


def _detail(rows: Sequence[Answer], system: str) -> SystemDetail:
    mine = [r for r in rows if r["system"] == system]
    ok = [r for r in mine if not r["answer_error"]]
    keyed = [r for r in ok if is_keyed(r)]
    un = [r for r in ok if _unanswerable(r)]
    hit = [r for r in keyed if r["retrieval_hit"]]
    miss = [r for r in keyed if r["retrieval_hit"] is False]
    precisions = [p for r in keyed if (p := _precision(r)) is not None]
    numbers = sum(r["numbers"] for r in ok)
    return SystemDetail(
        refusal=_share(sum(r["refused"] for r in un), len(un)) if un else None,
        false_refusal=_share(sum(r["refused"] for r in keyed), len(keyed)) if keyed else None,
        accuracy_on_hit=_share(sum(bool(r["fact_correct"]) for r in hit), len(hit))
        if hit
        else None,
        acceptable_on_miss=_share(
            sum(bool(r["fact_correct"]) or r["refused"] for r in miss), len(miss)
        )
        if miss
        else None,
        citing=_share(sum(bool(r["cited"]) for r in keyed), len(keyed))
        if any(r["retrieved_chunk_ids"] for r in keyed)
        else None,
        citation_precision=_mean(precisions) if precisions else None,
        unsupported_numbers=_share(sum(r["unsupported_numbers"] for r in ok), numbers)
        if numbers
        else None,
        answer_words=_mean([float(len(r["answer"].split())) for r in keyed]),
        prompt_tokens=_mean([float(r["prompt_tokens"]) for r in keyed]),
        output_tokens=_mean([float(r["output_tokens"]) for r in keyed]),
        failed=len(mine) - len(ok),
        loops=_share(sum(r.get("finish") == "loop" for r in ok), len(ok)) if ok else None,
        speed=_speed(ok),
    )


def _speed(rows: Sequence[Answer]) -> Speed | None:
    timed = [r for r in rows if r.get("timed", True)]
    if not timed:
        return None
    compute = sum(r["compute_s"] for r in timed)
    return Speed(
        timed=len(timed),
        latency_p50_s=percentile((r["latency_s"] for r in timed), 50),
        latency_p95_s=percentile((r["latency_s"] for r in timed), 95),
        compute_s_per_1k=round(compute / len(timed) * 1000, 1),
        output_tokens_per_s=round(sum(r["output_tokens"] for r in timed) / compute, 1)
        if compute
        else None,
    )


def _examples(
    rows: Sequence[Answer], deciding: tuple[str, str], n: int
) -> dict[str, list[Example]]:
    a, b = deciding
    by = {(r["item_id"], r["system"]): r for r in rows if is_keyed(r)}
    out: dict[str, list[Example]] = {f"{a} right": [], f"{b} right": []}
    for (item, system), r in by.items():
        if system != a or (item, b) not in by:
            continue
        other = by[(item, b)]
        if r["fact_correct"] is None or other["fact_correct"] is None:
            continue
        if r["fact_correct"] == other["fact_correct"]:
            continue
        side = f"{a} right" if r["fact_correct"] else f"{b} right"
        if len(out[side]) < n:
            out[side].append(
                Example(
                    item_id=item,
                    eval_set=r["eval_set"],
                    question=r["question"],
                    key_facts=r["key_facts"],
                    answers={a: r["answer"], b: other["answer"]},
                )  # fmt: skip
            )
    return out


def _pts(x: float) -> str:
    text = f"{x * 100:+.1f}"
    return "+" + text[1:] if float(text) == 0 else text


def _verdict(d: Decision, pooled: SetResult) -> tuple[str, list[str]]:
    a, b = d.deciding
    p = pooled.primary
    if p is None:
        return "none", [f"No answer-key question was answered by both `{a}` and `{b}`."]
    gained = [s.metric for s in d.secondaries if s.favourable]
    lo, hi = p.ci
    if p.significant:
        word = "gain" if p.diff > 0 else "loss"
        answer = (
            f"Deploy `{a}` instead of `{b}`? Yes: a measured gain in key-fact accuracy"
            if word == "gain"
            else f"Deploy `{a}` instead of `{b}`? No: a measured loss in key-fact accuracy"
        )
    elif lo > -SMALL_HARM and gained:
        word = "no harm, behaviour gained"
        answer = (
            f"Deploy `{a}` instead of `{b}`? No harm to key-fact accuracy shown (lower bound "
            f"{_pts(lo)} points, above -{SMALL_HARM * 100:.0f}), and a measured gain in "
            + ", ".join(gained)
        )
    else:
        word = "not resolvable"
        answer = (
            f"Deploy `{a}` instead of `{b}`? Not resolvable at this size: the difference "
            f"could be anywhere from {_pts(lo)} to {_pts(hi)} points"
        )
    sa, sb = pooled.accuracy.get(a), pooled.accuracy.get(b)

    def share(s: Share | None) -> str:
        if s is None or s.value is None or s.ci is None:
            return "—"
        return f"{s.value:.0%} [{s.ci[0]:.0%}, {s.ci[1]:.0%}]"

    sets = ", ".join(f"{r.questions} {r.eval_set}" for r in d.sets if r.eval_set != POOLED)
    needs = "; ".join(
        f"a {k}-point effect needs ~{v:,}" for k, v in p.n_for.items() if v is not None
    )
    lines = [
        answer + " (for this adapter).",
        f"Key-fact accuracy on {p.n} questions ({sets}): `{a}` {share(sa)}, `{b}` {share(sb)}; "
        f"paired difference {_pts(p.diff)} points [{_pts(lo)}, {_pts(hi)}], "
        f"{p.wins} won / {p.losses} lost, exact McNemar p = {p.p_value:.3g}"
        + (f"; {p.dropped} without a complete pair" if p.dropped else "")
        + ".",
        f"This size resolves differences of {p.mde * 100:.0f} points or more at 80% power "
        f"(discordance {p.p_d:.0%}, design effect {p.deff:.2f} by {p.cluster_by})"
        + (f"; {needs} questions" if needs else "")
        + ".",
    ]
    return word, lines


def decide(
    rows: Sequence[Answer],
    deciding: tuple[str, str],
    teacher_margin: float,
    examples: int = 5,
    seed: int = 0,
) -> Decision | None:
    """The decision over the answer key's rows; None when no row has key facts."""
    if not any(is_keyed(r) for r in rows):
        return None
    a, b = deciding
    present = {r["eval_set"] for r in rows if is_keyed(r)}
    sets = [_set_result(rows, s, deciding) for s in (UNSEEN, DEPLOYMENT) if s in present]
    pooled = _set_result(rows, POOLED, deciding)
    secondaries = [
        c
        for c in (
            compare(rows, a, b, "refusal on unanswerables", _refused, _unanswerable, POOLED),
            compare(rows, a, b, "false refusal", _refused, is_keyed, POOLED, better="lower"),
            compare(
                rows,
                a,
                b,
                "citation precision",
                _precision,
                is_keyed,
                POOLED,
                "continuous",
                seed=seed,
            ),  # fmt: skip
        )
        if c is not None
    ]
    if secondaries:
        adjusted = stats.holm({c.metric: c.p_value for c in secondaries})
        secondaries = [c.model_copy(update={"p_holm": adjusted[c.metric]}) for c in secondaries]
    teacher = compare(rows, a, "teacher", "key-fact accuracy", key_correct, is_keyed, POOLED)
    d = Decision(
        deciding=deciding,
        sets=[*sets, pooled] if len(sets) > 1 else sets,
        secondaries=secondaries,
        systems={s: _detail(rows, s) for s in dict.fromkeys(r["system"] for r in rows)},
        teacher=teacher,
        teacher_margin=teacher_margin,
        teacher_within_margin=stats.non_inferior(teacher.ci[0], teacher_margin)
        if teacher
        else None,
        verdict="none",
        verdict_lines=[],
        discordant=_examples(rows, deciding, examples),
        unanswerable=len({r["item_id"] for r in rows if _unanswerable(r)}),
    )
    word, lines = _verdict(d, pooled)
    return d.model_copy(update={"verdict": word, "verdict_lines": lines})
