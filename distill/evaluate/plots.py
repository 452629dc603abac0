"""The eval report's two plots: quality.png (the share correct by system, with its 95%
intervals, unseen and seen documents side by side) and tradeoff.png (the same against
latency and against cost)."""

from __future__ import annotations

from pathlib import Path

from distill.io import save_figure
from distill.results import EvalMetrics, SystemMetrics


def _errorbars(systems: dict[str, SystemMetrics]) -> tuple[list[float], list[list[float]]]:
    """(values, yerr) for a bar chart of the share correct with its 95% intervals."""
    vals = [float(m.correctness.ge4 or 0.0) for m in systems.values()]
    lows, highs = [], []
    for v, m in zip(vals, systems.values(), strict=True):
        ci = m.ci.correct
        lows.append(max(0.0, v - ci[0]) if ci else 0.0)
        highs.append(max(0.0, ci[1] - v) if ci else 0.0)
    return vals, [lows, highs]


def plots(out: Path, metrics: EvalMetrics) -> dict[str, bytes]:
    """quality.png (correctness by system) and tradeoff.png (against latency and cost)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = metrics.systems
    names = list(systems)
    sets = [("unseen documents", systems)]
    if metrics.seen:
        sets.append(("seen documents", metrics.seen.systems))
    if metrics.traffic:
        sets.append(("your traffic", metrics.traffic.systems))
    fig, ax = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / len(sets)
    for k, (label, group) in enumerate(sets):
        vals, err = _errorbars(group)
        xs = [names.index(s) + (k - (len(sets) - 1) / 2) * width for s in group]
        ax.bar(xs, vals, width, yerr=err, capsize=4, label=label)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("correct (judge ≥ 4), 95% CI")
    ax.set_title(f"Correct answers on {metrics.questions} held-out questions (unseen docs)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "quality.png", dpi=100)
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    by_latency = sorted(names, key=lambda s: systems[s].latency_p50_s or 0)
    for s in names:
        i = by_latency.index(s)
        m = systems[s]
        if m.correctness.ge4 is None or m.latency_p50_s is None:
            continue
        y = m.correctness.ge4
        ci = m.ci.correct
        yerr = [[max(0.0, y - ci[0])], [max(0.0, ci[1] - y)]] if ci else None
        shift = (4, 4 + 12 * (i % 3))  # staggered labels: close points stay readable
        left.errorbar(m.latency_p50_s, y, yerr=yerr, fmt="o", color="#4c72b0", capsize=3)
        left.annotate(s, (m.latency_p50_s, y), textcoords="offset points", xytext=shift)
        cost = m.cost_per_1k_usd
        x = cost if cost is not None else (m.compute_s_per_1k or 0) / 3600
        right.errorbar(
            x, y, yerr=yerr, fmt="o", color="#dd8452" if cost is None else "#4c72b0", capsize=3
        )
        right.annotate(s, (x, y), textcoords="offset points", xytext=shift)
    left.set_xscale("log")
    left.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    left.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    left.set_xlabel("p50 latency per answer (s, log)")
    priced = any(systems[s].cost_per_1k_usd is not None for s in names)
    right.set_xlabel(
        "cost per 1k queries (USD; orange: compute hours, unpriced)"
        if priced
        else "compute hours per 1k queries"
    )
    for ax in (left, right):
        ax.set_ylabel("correct (judge ≥ 4), 95% CI")
        ax.set_ylim(0, 1.05)
    fig.tight_layout()
    save_figure(fig, out / "tradeoff.png", dpi=100)
    plt.close(fig)
    return {name: (out / name).read_bytes() for name in ("quality.png", "tradeoff.png")}
