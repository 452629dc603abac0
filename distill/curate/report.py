"""curate/report.md: the funnel, the score histograms and examples of each reject reason."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from distill.curate.config import CurateConfig
from distill.curate.funnel import Curated, source_docs
from distill.io import save_figure


def print_funnel(n_in: int, result: Curated) -> None:
    from rich.table import Table

    from distill.ui import console

    table = Table(title="curation", show_edge=False)
    for col in ("filter", "in", "removed", "out"):
        table.add_column(col, justify="left" if col == "filter" else "right")
    left = n_in
    for name, removed in result.funnel:
        table.add_row(name, str(left), str(removed), str(left - removed))
        left -= removed
    console.print(table)


def histograms(out: Path, result: Curated) -> list[str]:
    """support.png (and judge.png when judged); returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    everyone = result.train + result.eval + result.rejected
    written = []
    support = [s["support"] for s in everyone if s.get("support") is not None]
    if support:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.hist(support, bins=20, range=(0, 1), color="#4c72b0")
        ax.set_xlabel("support score (share of answer words found in cited documents)")
        ax.set_ylabel("samples")
        fig.tight_layout()
        save_figure(fig, out / "support.png", dpi=100)
        plt.close(fig)
        written.append("support.png")
    judged = [s for s in everyone if s.get("groundedness") is not None]
    if judged:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3))
        for ax, key in zip(axes, ("groundedness", "quality"), strict=True):
            counts = Counter(s[key] for s in judged)
            ax.bar(range(1, 6), [counts.get(v, 0) for v in range(1, 6)], color="#55a868")
            ax.set_xlabel(f"judge {key}")
            ax.set_xticks(range(1, 6))
        axes[0].set_ylabel("samples")
        fig.tight_layout()
        save_figure(fig, out / "judge.png", dpi=100)
        plt.close(fig)
        written.append("judge.png")
    return written


def coverage(
    chunk_docs: dict[str, str], samples: list[dict[str, Any]], result: Curated
) -> list[str]:
    """Per document: its chunks, how many were a sample's source, and what became of
    the samples (kept, or the most common reason they were dropped). A long document
    that gave few samples shows here, not only in the totals."""
    used: dict[str, set[str]] = {}
    written: Counter[str] = Counter()
    for s in samples:
        doc = source_docs(s)[0]
        written[doc] += 1
        used.setdefault(doc, set()).update(s.get("source_chunk_ids") or [])
    kept = Counter(source_docs(s)[0] for s in result.train + result.eval + result.eval_seen)
    dropped: dict[str, Counter[str]] = {}
    for r in result.rejected:
        dropped.setdefault(source_docs(r)[0], Counter())[_reason_kind(r["reject_reason"])] += 1
    chunks = Counter(chunk_docs.values())
    lines = [
        "## Coverage by document",
        "",
        "| document | chunks | chunks used | samples | kept | dropped | most common reason |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for doc in sorted(chunks | written):
        why = dropped.get(doc, Counter())
        top = f"{why.most_common(1)[0][0]} ({why.most_common(1)[0][1]})" if why else "—"
        lines.append(
            f"| {doc} | {chunks[doc]} | {len(used.get(doc, ()))} | {written[doc]} | "
            f"{kept[doc]} | {sum(why.values())} | {top} |"
        )
    return lines + [""]


def report_text(
    samples: list[dict[str, Any]],
    result: Curated,
    plots: list[str],
    cfg: CurateConfig,
    chunk_docs: dict[str, str] | None = None,
    planned_refusals: float | None = None,
) -> str:
    train, held, rejected = result.train, result.eval, result.rejected
    refusals = sum(bool(s.get("expects_refusal")) for s in train)
    lines = [
        "# Curation report",
        "",
        f"- samples in: {len(samples)}",
        f"- kept: {len(train) + len(held)} (train {len(train)} from "
        f"{len({d for s in train for d in source_docs(s)})} documents, eval {len(held)} from "
        f"{len({d for s in held for d in source_docs(s)})} documents)",
        f"- rejected: {len(rejected)}",
        f"- tasks kept: {dict(Counter(s.get('task', 'qa') for s in train + held))}",
        f"- refusal targets in train: {refusals} of {len(train)}"
        + (f" ({refusals / len(train):.0%})" if train else "")
        + (f"; generate planned {planned_refusals:.0%}" if planned_refusals is not None else ""),
        "",
        "| filter | in | removed | out |",
        "| --- | --- | --- | --- |",
    ]
    left = len(samples)
    for name, removed in result.funnel:
        lines.append(f"| {name} | {left} | {removed} | {left - removed} |")
        left -= removed
    reasons = Counter(_reason_kind(r["reject_reason"]) for r in rejected)
    lines += ["", "| reject reason | samples |", "| --- | --- |"]
    lines += [f"| {r} | {n} |" for r, n in reasons.most_common()]
    lines += [""] + [f"![{p}]({p})" for p in plots]
    lines += ["", "## Rejected examples", ""]
    for reason, _ in reasons.most_common():
        lines.append(f"### {reason}")
        for r in [r for r in rejected if _reason_kind(r["reject_reason"]) == reason][:3]:
            answer = " ".join(r["answer"].split())[:300]
            lines.append(
                f"- `{r['sample_id']}` ({r.get('task', 'qa')}): **{r['question']}** → {answer}"
            )
        lines.append("")
    if chunk_docs is not None:
        lines += coverage(chunk_docs, samples, result)
    lines += ["## Held-out documents", ""]
    lines += [f"- {d}" for d in sorted({d for s in held for d in source_docs(s)})]
    lines += [
        "",
        "## Seen-documents eval set",
        "",
        f"{len(result.eval_seen)} questions on training documents held out of training "
        "(eval_seen.parquet), to ask without retrieval what fine-tuning absorbed.",
    ]
    lines += [f"- removed: {name}: {n}" for name, n in result.seen_funnel]
    return "\n".join(lines) + "\n"


def _reason_kind(reason: str) -> str:
    """A reason without its specifics ('near-duplicate question of X' -> '... question',
    'longer than train.max_seq_length (1214 > 1024 tokens)' -> '... max_seq_length')."""
    return re.sub(r" (of|\() ?[0-9a-f]{16}.*$| \(\d+ > \d+ tokens\)$", "", reason)
