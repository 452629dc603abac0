"""The decision table as text: the eval report, the model card and the benchmarks all
print it from the eval stage's metrics.json, so it is formatted in one place."""

from __future__ import annotations

from typing import Any

from distill.config import ALL_SYSTEMS

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


def ci_pct(ci: list[float] | None) -> str:
    return "" if ci is None else f" [{ci[0]:.0%}, {ci[1]:.0%}]"


def ci_num(ci: list[float] | None) -> str:
    return "" if ci is None else f" [{ci[0]:.2f}, {ci[1]:.2f}]"


def ci_words(ci: list[float] | None) -> str:
    return "" if ci is None else f" [{ci[0]:.0f}, {ci[1]:.0f}]"


def cells(name: str, m: dict[str, Any]) -> dict[str, str]:
    """One decision-table row, formatted; the HTML test re-derives these from metrics.json."""
    c = m["correctness"]
    ci = m.get("ci") or {}
    correct = (DASH if c["ge4"] is None else f"{pct(c['ge4'])}{ci_pct(ci.get('correct'))}") + (
        f" ({c['judged']}/{m['n']} judged)" if c["failed"] else ""
    )
    correctness = DASH if c["mean"] is None else f"{c['mean']:.2f}{ci_num(ci.get('correctness'))}"
    f1 = m.get("token_f1")
    token = DASH if f1 is None else f"{f1:.2f}{ci_num(ci.get('token_f1'))}"
    sim = m.get("similarity")
    similarity = DASH if sim is None else f"{sim:.2f}{ci_num(ci.get('similarity'))}"
    words = m.get("answer_words")
    length = DASH if words is None else f"{words:.0f}{ci_words(ci.get('answer_words'))}"
    v = m["vs_teacher"]
    vs = DASH if v is None else f"{pct(v['win'])} / {pct(v['tie'])} / {pct(v['loss'])}"
    if v is not None and v["failed"]:
        vs += f" ({v['failed']} failed)"
    g = m["groundedness"]
    grounded = (
        "n/a"
        if g is None
        else (DASH if g["mean"] is None else f"{g['mean']:.2f}{ci_num(ci.get('groundedness'))}")
    )
    cit = m["citations"]
    citation = (
        "n/a"
        if cit is None
        else (
            DASH
            if cit["accuracy"] is None
            else f"{pct(cit['accuracy'])}{ci_pct(ci.get('citation_accuracy'))} of {cit['n_citing']}"
        )
    )
    ref = m["refusal"]
    refusal = (
        "n/a"
        if ref is None
        else (
            DASH
            if ref["accuracy"] is None
            else f"{pct(ref['accuracy'])}{ci_pct(ci.get('refusal'))} of {ref['n']}"
        )
    )
    p50, p95 = m["latency_p50_s"], m["latency_p95_s"]
    latency = DASH if p50 is None else f"{p50:.2f} / {p95:.2f} s"
    tps = DASH if m["tokens_per_s"] is None else f"{m['tokens_per_s']:.1f}"
    if m["cost_per_1k_usd"] is not None:
        cost = f"${m['cost_per_1k_usd']:.2f}"
        if m["local"]:
            cost += " (compute)"
    elif m["compute_s_per_1k"] is not None:
        cost = f"{m['compute_s_per_1k'] / 60:.1f} min compute"
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


def decision_table(metrics: dict[str, Any], systems: dict[str, Any] | None = None) -> str:
    """The decision table in Markdown (the report and the model card)."""
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |"]
    lines += ["| " + " | ".join("---" for _ in COLUMNS) + " |"]
    group = systems if systems is not None else metrics["systems"]
    # metrics.json sorts its keys: the table keeps the pipeline's order of systems.
    order = [s for s in ALL_SYSTEMS if s in group] + [s for s in group if s not in ALL_SYSTEMS]
    for name, m in ((s, group[s]) for s in order):
        row = cells(name, m)
        lines.append("| " + " | ".join(row[k] for k, _ in COLUMNS) + " |")
    return "\n".join(lines)


def comparison_table(comparisons: list[dict[str, Any]]) -> str:
    """The deciding comparisons, paired, in Markdown."""
    lines = [
        "| system | against | metric | difference | paired 95% CI | questions | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in comparisons:
        verdict = (
            ("gain" if c["diff"] > 0 else "loss")
            if c["significant"]
            else "within noise"
            + (f" (~{c['n_to_resolve']:,} questions to resolve)" if c["n_to_resolve"] else "")
        )
        lo, hi = (signed(x * 100, 1) for x in c["ci"])
        lines.append(
            f"| {c['system']} | {c['against']} | {c['metric']} | {signed(c['diff'] * 100, 1)} pt "
            f"| {lo} to {hi} pt | {c['n']} | {verdict} |"
        )
    return "\n".join(lines)


def signed(x: float, digits: int = 0) -> str:
    """+3 / -3 / +0 (never "-0": a difference that rounds to nothing has no sign)."""
    text = f"{x:+.{digits}f}"
    return "+" + text[1:] if float(text) == 0 else text
