"""`distill eval --compare`: two runs' eval results side by side, system by system."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from distill.errors import InputError
from distill.eval_text import DASH
from distill.results import EvalMetrics, SystemMetrics, read_metrics


def load_metrics(where: Path) -> tuple[str, EvalMetrics]:
    """metrics.json of a run folder, its eval folder, or a recipe's run."""
    if where.suffix in (".yaml", ".yml") and where.is_file():
        from distill.recipe import load_recipe

        where = load_recipe(where).run_path
    for candidate in (where / "eval" / "metrics.json", where / "metrics.json"):
        if candidate.is_file():
            return str(where), read_metrics(candidate)
    raise InputError(
        f"no eval results in {where}; give a run folder (runs/NAME) or a recipe whose eval ran"
    )


_COMPARED: list[tuple[str, Callable[[SystemMetrics], float | None], str]] = [
    ("correctness", lambda m: m.correctness.mean, ".2f"),
    ("% ≥ 4", lambda m: m.correctness.ge4, "%"),
    ("token F1", lambda m: m.token_f1, ".2f"),
    ("win vs teacher", lambda m: m.vs_teacher.win if m.vs_teacher else None, "%"),
    ("groundedness", lambda m: m.groundedness.mean if m.groundedness else None, ".2f"),
    ("refusal accuracy", lambda m: m.refusal.accuracy if m.refusal else None, "%"),
    ("latency p50 (s)", lambda m: m.latency_p50_s, ".2f"),
    ("tokens/s", lambda m: m.tokens_per_s, ".1f"),
    ("cost per 1k (USD)", lambda m: m.cost_per_1k_usd, ".4f"),
]


def compare(a: Path, b: Path) -> str:
    """The difference between two runs' eval results, system by system."""
    name_a, ma = load_metrics(a)
    name_b, mb = load_metrics(b)
    lines = [
        f"A: {name_a} ({ma.questions} questions, judge {ma.judge})",
        f"B: {name_b} ({mb.questions} questions, judge {mb.judge})",
    ]
    if ma.judge != mb.judge:
        lines.append("note: different judges; their scores are not on the same scale")
    lines.append("")
    lines.append(f"{'system':<10} {'metric':<18} {'A':>9} {'B':>9} {'B - A':>9}")
    da, db = ma.decision, mb.decision
    if da is not None or db is not None:
        acc_a = da.sets[-1].accuracy if da else {}
        acc_b = db.sets[-1].accuracy if db else {}
        for system in dict.fromkeys([*acc_a, *acc_b]):
            va, vb = (
                (share.value if (share := acc.get(system)) else None) for acc in (acc_a, acc_b)
            )
            delta = DASH if va is None or vb is None else _fmt(vb - va, "%", signed=True)
            lines.append(
                f"{system:<10} {'key-fact accuracy':<18} {_fmt(va, '%'):>9} {_fmt(vb, '%'):>9} "
                f"{delta:>9}"
            )
    for system in dict.fromkeys([*ma.systems, *mb.systems]):
        sa, sb = ma.systems.get(system), mb.systems.get(system)
        for label, get, fmt in _COMPARED:
            va = get(sa) if sa else None
            vb = get(sb) if sb else None
            if va is None and vb is None:
                continue
            delta = DASH if va is None or vb is None else _fmt(vb - va, fmt, signed=True)
            lines.append(
                f"{system:<10} {label:<18} {_fmt(va, fmt):>9} {_fmt(vb, fmt):>9} {delta:>9}"
            )
    return "\n".join(lines)


def _fmt(x: float | None, fmt: str, signed: bool = False) -> str:
    if x is None:
        return DASH
    if fmt == "%":
        return f"{x * 100:+.0f}pt" if signed else f"{x:.0%}"
    return format(x, ("+" if signed else "") + fmt)
