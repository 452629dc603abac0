"""The judge-free decision (distill.results.Decision) as Markdown: the verdict box, the
primary (key-fact accuracy, paired), the Holm-adjusted secondaries, every system on the
answer key, the named systems the deciding one is measured against (and their costs),
speed, and the questions the two deciding systems disagree on. The eval report, the
model card and the benchmarks print it from metrics.json."""

from __future__ import annotations

from distill.eval_text import DASH, signed
from distill.results import Comparison, Decision, Mean, Share, Versus


def _share(s: Share | None) -> str:
    if s is None or s.value is None or s.ci is None:
        return DASH
    return f"{s.value:.0%} [{s.ci[0]:.0%}, {s.ci[1]:.0%}] of {s.n}"


def _mean(m: Mean | None, fmt: str = ".2f") -> str:
    return DASH if m is None or m.value is None else format(m.value, fmt)


def _diff(c: Comparison) -> str:
    if c.kind == "continuous":
        return f"{c.diff:+.3f} [{c.ci[0]:+.3f}, {c.ci[1]:+.3f}]"
    return f"{signed(c.diff * 100, 1)} [{signed(c.ci[0] * 100, 1)}, {signed(c.ci[1] * 100, 1)}] pt"


def _call(c: Comparison) -> str:
    """A comparison's verdict word: a gain or loss only when its interval excludes 0."""
    if not c.significant:
        unit = "" if c.kind == "continuous" else " pt"
        scale = 1 if c.kind == "continuous" else 100
        return f"not resolved (MDE {c.mde * scale:.{3 if unit == '' else 0}f}{unit})"
    good = c.diff > 0 if c.better == "higher" else c.diff < 0
    return "better" if good else "worse"


def _usd(x: float) -> str:
    """Dollars to the cent, or to two figures under a cent ($0.0042)."""
    return f"${x:,.2f}" if x >= 0.01 or x == 0 else f"${x:.2g}"


def cost_words(dollars: float | None, basis: str, compute_s: float | None = None) -> str:
    """What 1,000 answers cost, in words: dollars, else compute minutes, else why not."""
    if dollars is not None:
        return f"{_usd(dollars)} ({basis})"
    if basis == "compute only" and compute_s is not None:
        return f"{compute_s / 60:.1f} min of compute on this machine"
    return basis


def _costs(v: Versus) -> tuple[str, str]:
    """What 1,000 answers cost: the named system's, the deciding system's."""
    own = (v.deciding_cost_per_1k_usd, v.deciding_cost_basis, v.deciding_compute_s_per_1k)
    return cost_words(v.cost_per_1k_usd, v.cost_basis), cost_words(*own)


def matches(v: Versus) -> str:
    """Does the deciding system match it? From the paired interval and the margin."""
    c, m = v.comparison, f"{v.margin * 100:.0f}"
    gain, loss = c.significant and c.diff > 0, c.significant and c.diff < 0
    if v.within_margin:
        said = "yes, a measured gain" if gain else f"yes, within {m} points"
        return said + (", though a measured loss" if loss else "")
    return "no, a measured loss" if loss else f"not shown at this size (margin {m} points)"


def verdict_line(a: str, name: str, v: Versus) -> str:
    """The verdict box's line for a named system: does `a` match it, and at what cost."""
    c = v.comparison
    lo, hi = (signed(x * 100, 1) for x in c.ci)
    theirs, own = _costs(v)
    said = matches(v)
    return (
        f"Does `{a}` match `{name}` ({v.model}{', with retrieval' if v.rag else ''})? "
        f"{said[0].upper()}{said[1:]}: `{a}` − `{name}` {signed(c.diff * 100, 1)} points "
        f"[{lo}, {hi}] in key-fact accuracy on {c.n} questions. Per 1,000 answers: "
        f"`{name}` {theirs}, `{a}` {own}."
    )


def _named_markdown(d: Decision) -> list[str]:
    """The deciding system against each named system, with both costs."""
    a = d.deciding[0]
    pooled = d.sets[-1]
    lines = [
        "",
        f"## Against the named systems: does `{a}` match them?",
        "",
        "Key-fact accuracy on the answer key, pooled and paired as the primary is; a "
        "named system is matched when the paired lower bound is above minus its margin. "
        "Cost per 1,000 answers: an API system at its price, a local one as compute on "
        "this machine (priced with `eval.hardware_cost_per_hour`).",
        "",
        f"| system | model | retrieval | key-fact accuracy | `{a}` − system [95% CI] | "
        f"won / lost | matched | cost per 1k answers | `{a}` per 1k answers |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, v in d.named.items():
        c = v.comparison
        theirs, own = _costs(v)
        lines.append(
            f"| {name} | `{v.model}` | {'yes' if v.rag else 'no'} | "
            f"{_share(pooled.accuracy.get(name))} | {_diff(c)} | {c.wins} / {c.losses} | "
            f"{matches(v)} | {theirs} | {own} |"
        )
    return lines


def decision_markdown(d: Decision) -> list[str]:
    """The verdict box and the judge-free tables, as Markdown lines."""
    a, b = d.deciding
    lines = ["## Verdict", ""] + [
        f"> {'**' + ln + '**' if i == 0 else ln}" for i, ln in enumerate(d.verdict_lines)
    ]
    lines += [
        "",
        f"## Primary: key-fact accuracy, `{a}` against `{b}`",
        "",
        "An answer is correct when it states every key fact of the answer key and no "
        "conflicting value; no judge is involved. Pairs are the same questions answered "
        "by both systems.",
        "",
        f"| set | questions | documents | {a} | {b} | paired difference [95% CI] | "
        "won / lost | McNemar p | design effect | MDE (80%) | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in d.sets:
        p = s.primary
        if p is None:
            continue
        lines.append(
            f"| {s.eval_set} | {s.questions} | {s.documents} | {_share(s.accuracy.get(a))} | "
            f"{_share(s.accuracy.get(b))} | {_diff(p)} | {p.wins} / {p.losses} | "
            f"{p.p_value:.3g} | {p.deff:.2f} ({p.clusters} {p.cluster_by}s) | "
            f"{p.mde * 100:.0f} pt | {_call(p)} |"
        )
    if d.secondaries:
        lines += [
            "",
            f"## Key secondaries (Holm-adjusted over {len(d.secondaries)})",
            "",
            f"| metric | questions | `{a}` − `{b}` [95% CI] | p | p (Holm) | better is | verdict |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for c in d.secondaries:
            lines.append(
                f"| {c.metric} | {c.n} | {_diff(c)} | {c.p_value:.3g} | "
                f"{(c.p_holm if c.p_holm is not None else c.p_value):.3g} | {c.better} | "
                f"{_call(c)} |"
            )
    lines += [
        "",
        "## Every system on the answer key (descriptive)",
        "",
        "| system | key-fact accuracy | fact recall | correct when retrieval found the facts | "
        "acceptable when it missed (correct or refusal) | refusals on unanswerables | "
        "false refusals | cites | citation precision | numbers in no retrieved chunk | "
        "words | prompt / output tokens | failed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    pooled = d.sets[-1]
    for name, m in d.systems.items():
        lines.append(
            f"| {name} | {_share(pooled.accuracy.get(name))} | "
            f"{_mean(pooled.recall.get(name))} | {_share(m.accuracy_on_hit)} | "
            f"{_share(m.acceptable_on_miss)} | {_share(m.refusal)} | {_share(m.false_refusal)} | "
            f"{_share(m.citing)} | {_mean(m.citation_precision)} | "
            f"{_share(m.unsupported_numbers)} | {_mean(m.answer_words, '.0f')} | "
            f"{_mean(m.prompt_tokens, '.0f')} / {_mean(m.output_tokens, '.0f')} | {m.failed} |"
        )
    if pooled.hit_rate is not None:
        lines += [
            "",
            f"Retrieval put every key fact in front of `{a}` for {_share(pooled.hit_rate)} "
            "questions; on the others a refusal is as acceptable as a correct answer.",
        ]
    if d.teacher is not None:
        t = d.teacher
        shown = "shown" if d.teacher_within_margin else "not shown"
        lines += [
            "",
            f"Against the teacher: `{a}` − `teacher` {_diff(t)} on {t.n} questions; within "
            f"{d.teacher_margin * 100:.0f} points of the teacher (non-inferiority): {shown}.",
        ]
    if d.named:
        lines += _named_markdown(d)
    speeds = {name: m for name, m in d.systems.items() if m.speed is not None}
    if speeds:
        lines += [
            "",
            "## Speed on this machine (descriptive)",
            "",
            "| system | latency p50 / p95 | compute per 1k answers | output tokens/s | "
            "answers timed | replies cut in a loop |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name, m in speeds.items():
            sp = m.speed
            assert sp is not None
            latency = (
                DASH
                if sp.latency_p50_s is None or sp.latency_p95_s is None
                else f"{sp.latency_p50_s:.2f} / {sp.latency_p95_s:.2f} s"
            )
            compute = DASH if sp.compute_s_per_1k is None else f"{sp.compute_s_per_1k / 60:.1f} min"
            tps = DASH if sp.output_tokens_per_s is None else f"{sp.output_tokens_per_s:.0f}"
            lines.append(
                f"| {name} | {latency} | {compute} | {tps} | {sp.timed} | {_share(m.loops)} |"
            )
        lines += [
            "",
            "Latency includes retrieval's search for +rag systems. A local llama.cpp student "
            "answers most questions reusing the previous prompt's start (the same chunk "
            "first); only the answers timed alone, with that cache reset, are in these "
            "figures. A reply that starts to repeat itself verbatim (16 tokens) is cut "
            "there.",
        ]
    return lines


def discordant_markdown(d: Decision) -> list[str]:
    """The questions the two deciding systems disagree on: where users see what changed."""
    from html import escape

    def one_line(text: str) -> str:
        return escape(" ".join(text.split())) or "(empty)"

    lines = ["## What changed: questions the two systems disagree on", ""]
    for side, examples in d.discordant.items():
        lines += [
            f"### {side.replace(' right', '')} right, the other wrong ({len(examples)} shown)",
            "",
        ]
        for ex in examples:
            lines.append(f"- **{one_line(ex.question)}** (key: {one_line(ex.key_facts)})")
            for system, answer in ex.answers.items():
                lines.append(f"  - `{system}`: {one_line(answer)}")
        lines.append("")
    return lines
