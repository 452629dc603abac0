"""The eval's judged results as text: the decision table, the paired comparisons and the
sentences drawn from them. The eval report, the model card and the benchmarks all print
them from the eval stage's metrics.json, so they are written in one place (the
judge-free decision's text is distill.decision_text)."""

from __future__ import annotations

from distill.config import ALL_SYSTEMS
from distill.results import (
    EvalMetrics,
    Interval,
    PairedComparison,
    SystemMetrics,
    TrafficMetrics,
)

# The judged tables' headline metric: the share of answers the judge grades >= 4
# (failures count as 0). Descriptive where an answer key decides.
PRIMARY = "correct"

COLUMNS = [
    ("system", "system"),
    ("correct", "correct (% ≥ 4, 95% CI)"),
    ("correctness", "correctness (mean 1-5 [95% CI])"),
    ("token_f1", "token F1 [95% CI]"),
    ("similarity", "similarity to reference [95% CI]"),
    ("vs_teacher", "vs teacher (win / tie / loss)"),
    ("groundedness", "groundedness (1-5 [95% CI])"),
    ("citations", "citation accuracy [95% CI]"),
    ("refusal", "refusal accuracy [95% CI]"),
    ("answer_words", "answer words [95% CI]"),
    ("latency", "latency p50 / p95"),
    ("tokens_per_s", "tokens/s"),
    ("cost", "cost per 1k queries"),
]
DASH = "—"


def pct(x: float | None) -> str:
    return DASH if x is None else f"{x:.0%}"


def ci_pct(ci: Interval | None) -> str:
    return "" if ci is None else f" [{ci[0]:.0%}, {ci[1]:.0%}]"


def ci_num(ci: Interval | None) -> str:
    return "" if ci is None else f" [{ci[0]:.2f}, {ci[1]:.2f}]"


def ci_words(ci: Interval | None) -> str:
    return "" if ci is None else f" [{ci[0]:.0f}, {ci[1]:.0f}]"


def cells(name: str, m: SystemMetrics) -> dict[str, str]:
    """One decision-table row, formatted; the HTML test re-derives these from metrics.json."""
    c, ci = m.correctness, m.ci
    correct = (DASH if c.ge4 is None else f"{pct(c.ge4)}{ci_pct(ci.correct)}") + (
        f" ({c.judged}/{m.n} judged)" if c.failed else ""
    )
    correctness = DASH if c.mean is None else f"{c.mean:.2f}{ci_num(ci.correctness)}"
    f1 = m.token_f1
    token = DASH if f1 is None else f"{f1:.2f}{ci_num(ci.token_f1)}"
    sim = m.similarity
    similarity = DASH if sim is None else f"{sim:.2f}{ci_num(ci.similarity)}"
    words = m.answer_words
    length = DASH if words is None else f"{words:.0f}{ci_words(ci.answer_words)}"
    v = m.vs_teacher
    vs = DASH if v is None else f"{pct(v.win)} / {pct(v.tie)} / {pct(v.loss)}"
    if v is not None and v.failed:
        vs += f" ({v.failed} failed)"
    g = m.groundedness
    grounded = (
        "n/a"
        if g is None
        else (DASH if g.mean is None else f"{g.mean:.2f}{ci_num(ci.groundedness)}")
    )
    cit = m.citations
    citation = (
        "n/a"
        if cit is None
        else (
            DASH
            if cit.accuracy is None
            else f"{pct(cit.accuracy)}{ci_pct(ci.citation_accuracy)} of {cit.n_citing}"
        )
    )
    ref = m.refusal
    refusal = (
        "n/a"
        if ref is None
        else (
            DASH if ref.accuracy is None else f"{pct(ref.accuracy)}{ci_pct(ci.refusal)} of {ref.n}"
        )
    )
    p50, p95 = m.latency_p50_s, m.latency_p95_s
    latency = DASH if p50 is None else f"{p50:.2f} / {p95:.2f} s"
    tps = DASH if m.tokens_per_s is None else f"{m.tokens_per_s:.1f}"
    if m.cost_per_1k_usd is not None:
        cost = f"${m.cost_per_1k_usd:.2f}"
        if m.local:
            cost += " (compute)"
    elif m.compute_s_per_1k is not None:
        cost = f"{m.compute_s_per_1k / 60:.1f} min compute"
    else:
        cost = DASH
    return {
        "system": name,
        "correct": correct,
        "correctness": correctness,
        "token_f1": token,
        "similarity": similarity,
        "vs_teacher": vs,
        "groundedness": grounded,
        "citations": citation,
        "refusal": refusal,
        "answer_words": length,
        "latency": latency,
        "tokens_per_s": tps,
        "cost": cost,
    }


def decision_table(systems: dict[str, SystemMetrics]) -> str:
    """The decision table in Markdown (the report and the model card)."""
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |"]
    lines += ["| " + " | ".join("---" for _ in COLUMNS) + " |"]
    # metrics.json sorts its keys: the table keeps the pipeline's order of systems.
    order = [s for s in ALL_SYSTEMS if s in systems] + [s for s in systems if s not in ALL_SYSTEMS]
    for name in order:
        row = cells(name, systems[name])
        lines.append("| " + " | ".join(row[k] for k, _ in COLUMNS) + " |")
    return "\n".join(lines)


def comparison_table(comparisons: list[PairedComparison]) -> str:
    """The deciding comparisons, paired, in Markdown."""
    lines = [
        "| system | against | metric | difference | paired 95% CI | questions | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in comparisons:
        scale, unit = unit_of(c.metric)
        verdict = (
            ("above 0" if c.diff > 0 else "below 0")
            if c.significant
            else f"not resolved (MDE {c.mde * scale:.0f} {unit})"
        )
        lo, hi = (signed(x * scale, 1) for x in c.ci)
        lines.append(
            f"| {c.system} | {c.against} | {c.metric} | "
            f"{signed(c.diff * scale, 1)} {unit} | {lo} to {hi} {unit} | {c.n} | {verdict} |"
        )
    return "\n".join(lines)


def traffic_markdown(traffic: TrafficMetrics | None) -> list[str]:
    """Your traffic's section (generate.prompts' held-out questions), in Markdown."""
    if traffic is None:
        return []
    refs = (
        f"your answers for {traffic.user_references} of them, the teacher's grounded "
        "answers for the rest"
        if traffic.user_references
        else "the teacher's grounded answers"
    )
    lines = [
        "",
        f"## Your traffic: {traffic.questions} of your own questions, held out",
        "",
        "Questions from your file that no training row asks, answered with retrieval over "
        f"the whole index; references: {refs}. Descriptive: not in the decision's primary."
        + (
            f" {traffic.cannot_answer} more the documents cannot answer (the teacher's "
            "grounded reference refused) are scored on refusal."
            if traffic.cannot_answer
            else ""
        ),
        "",
        decision_table(traffic.systems),
    ]
    if traffic.comparisons:
        lines += ["", comparison_table(traffic.comparisons)]
    return [*lines, ""]


def unit_of(metric: str) -> tuple[float, str]:
    """How a metric's difference is printed: shares and scores in points, length in words."""
    return (1.0, "words") if metric == "answer_words" else (100.0, "pt")


def signed(x: float, digits: int = 0) -> str:
    """+3 / -3 / +0 (never "-0": a difference that rounds to nothing has no sign)."""
    text = f"{x:+.{digits}f}"
    return "+" + text[1:] if float(text) == 0 else text


# -- the judged results in words


def _ratio_words(x: float) -> str:
    """0.025 -> '1/40 of', 3.0 -> '3.0x'."""
    if x <= 0:
        return "none of"
    if x <= 0.5:
        return f"1/{round(1 / x):,} of"
    if x < 1:
        return f"{x:.0%} of"
    return f"{x:.1f} times"


_METRIC_WORDS = {
    "correct": "correct answers (judge ≥ 4)",
    "token_f1": "token F1 against the reference",
    "answer_words": "answer length (words; F1 rewards short answers)",
    "refusal": "refusals on unanswerable questions",
}


def _span(ci: tuple[float, float] | None) -> str:
    return "" if ci is None else f" (95% CI {ci[0]:.0%}–{ci[1]:.0%})"


def describe(c: PairedComparison) -> str:
    """One comparison in words. Descriptive: the judge-free decision (distill.evaluate.
    decision) is the pre-declared primary; these are not corrected for multiplicity."""
    what = _METRIC_WORDS.get(c.metric, c.metric)
    lo, hi = c.ci
    scale, unit = unit_of(c.metric)
    unit = "points" if unit == "pt" else unit
    head = (
        f"`{c.system}` against `{c.against}` on {what}: {signed(c.diff * scale)} "
        f"{unit} (paired 95% CI {signed(lo * scale)} to {signed(hi * scale)}, {c.n} questions)"
    )
    if c.significant:
        side = "above" if c.diff > 0 else "below"
        return head + f": the interval is {side} 0 (descriptive, uncorrected)."
    return head + f": not resolved (the smallest difference this size detects: {_mde(c)})."


def _mde(c: PairedComparison) -> str:
    scale, unit = unit_of(c.metric)
    return f"{c.mde * scale:.0f} {'points' if unit == 'pt' else unit}"


def headline(metrics: EvalMetrics) -> str | None:
    """The report's first sentence: the deciding comparison on the primary metric."""
    for c in metrics.comparisons:
        if c.metric != PRIMARY or c.against == "teacher":
            continue
        a, b = metrics.systems[c.system], metrics.systems[c.against]
        lo, hi = c.ci
        verdict = (
            ("interval above 0" if c.diff > 0 else "interval below 0")
            if c.significant
            else f"not resolved; MDE {_mde(c)}"
        )
        return (
            f"On {metrics.questions} questions about documents the student never trained "
            f"on, `{c.system}` answered {a.correctness.ge4:.0%} correctly"
            f"{_span(a.ci.correct)} and `{c.against}` "
            f"{b.correctness.ge4:.0%}{_span(b.ci.correct)}: "
            f"{signed(c.diff * 100)} points, paired 95% CI {signed(lo * 100)} to "
            f"{signed(hi * 100)} ({verdict})."
        )
    return None


def what_this_means(metrics: EvalMetrics) -> list[str]:
    """Plain sentences drawn from the numbers: the measured result first, then caveats."""
    systems = metrics.systems
    out: list[str] = []
    first = headline(metrics)
    if first:
        out.append(first)
    if metrics.smoke_test:
        out.append(
            f"The judge here is {metrics.judge}, a tiny local model, so these scores are a "
            "smoke test of the pipeline, not a measure of quality; set `eval.judge` to a strong "
            "model for numbers to act on."
        )
    elif metrics.small_judge:
        out.append(
            f"The judge is {metrics.judge}, a small offline model: stronger than the "
            "student, but its grades are noisy, so read the judge-free columns (token F1, "
            "refusals) beside them, and set `eval.judge` to a strong model before acting."
        )
    failed = sum(m.correctness.failed for m in systems.values())
    total = sum(m.n for m in systems.values())
    if total and failed / total > 0.1:
        out.append(
            f"{failed} of {total} answers have no correctness score (the answer or its "
            "judgement failed); they count as not correct."
        )
    teacher = systems.get("teacher")
    t_share = teacher.correctness.ge4 if teacher else None
    for name in ("ft+rag", "ft", "base+rag", "base"):
        m = systems.get(name)
        if m is None or m.correctness.ge4 is None:
            continue
        share = m.correctness.ge4
        parts = [f"`{name}` answers {share:.0%} correctly{_span(m.ci.correct)}"]
        if teacher and t_share:
            parts.append(
                f"against the teacher's {t_share:.0%} ({share / t_share:.0%} of its score)"
            )
            if m.latency_p50_s and teacher.latency_p50_s:
                ratio = m.latency_p50_s / teacher.latency_p50_s
                parts.append(f"at {_ratio_words(ratio)} its median latency")
        v = m.vs_teacher
        if v and v.failed < v.n:
            parts.append(
                f"head to head it wins {v.win:.0%}, ties {v.tie:.0%} and loses "
                f"{v.loss:.0%} against the teacher"
            )
        out.append(", ".join(parts) + ".")
        break  # the best-trained system present; the table has the rest
    out += [describe(c) for c in metrics.comparisons]
    refusals = {
        s: (m.refusal.accuracy, m.refusal.n)
        for s, m in systems.items()
        if m.refusal and m.refusal.n and m.refusal.accuracy is not None
    }
    if refusals:
        best = max(refusals, key=lambda s: refusals[s][0])
        worst = min(refusals, key=lambda s: refusals[s][0])
        (high, n), low = refusals[best], refusals[worst][0]
        if high == low:
            out.append(
                f"On {n} questions the documents cannot answer, every system with retrieval "
                f"says so {high:.0%} of the time."
            )
        else:
            out.append(
                f"On {n} questions the documents cannot answer, `{best}` says so "
                f"{high:.0%} of the time{_span(systems[best].ci.refusal)} "
                f"and `{worst}` {low:.0%}."
            )
    if metrics.seen:
        for c in metrics.seen.comparisons:
            if c.metric == PRIMARY and c.against != "teacher":
                out.append(
                    f"On {metrics.seen.questions} new questions about documents it trained on "
                    "(knowledge absorbed): " + describe(c)
                )
    if metrics.traffic:
        for c in metrics.traffic.comparisons:
            if c.metric == PRIMARY:
                out.append(
                    f"On {metrics.traffic.questions} of your own questions, held out: "
                    + describe(c)
                )
    return out
