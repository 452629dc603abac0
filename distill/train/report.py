"""The train stage's report (train/report.md) and its plots: what each pass measured."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distill.io import save_figure
from distill.redact import redact
from distill.train.config import TrainConfig
from distill.train_results import DpoMetrics, GkdPass, PassResult, SftPass, TrainMetrics

LOSS_SERIES = (("loss", "train"), ("eval_loss", "eval split"))


def loss_plot(
    history: list[dict[str, Any]],
    path: Path,
    ylabel: str = "loss (answer tokens)",
    series: tuple[tuple[str, str], ...] = LOSS_SERIES,
) -> None:
    """Each logged series (key, label) against the optimizer step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for key, label in series:
        points = [(h["step"], h[key]) for h in history if key in h]
        if points:
            ax.plot(*zip(*points, strict=True), label=label, marker=".")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def report(student: str, cfg: TrainConfig, m: TrainMetrics, out: Path) -> str:
    parts = [f"# Training report\n\n- method: `{m.method}`, student `{student}`\n"]
    if m.sft:
        history = json.loads((out / "log.json").read_text())
        parts.append("\n## SFT\n\n" + _sft_report(m.sft, history) + "\n![loss](loss.png)\n")
    if m.dpo:
        parts.append("\n## DPO\n\n" + _dpo_report(m.dpo) + "\n![DPO](dpo.png)\n")
    if m.gkd:
        gkd = _gkd_report(m.gkd, cfg)
        parts.append("\n## On-policy distillation\n\n" + gkd + "\n![GKD](gkd.png)\n")
    settings = list(cfg.model_dump().items())
    settings.insert(2, ("student", student))  # its row where it stood before it left train
    rows = "\n".join(f"| {k} | {v} |" for k, v in settings)
    versions = ", ".join(f"{k} {v}" for k, v in m.first.versions.items())
    parts.append(f"\n- versions: {versions}\n\n| setting | value |\n| --- | --- |\n{rows}\n")
    # The settings hold a served teacher's base_url, which can carry credentials.
    return redact("".join(parts))


def _memory(m: PassResult) -> str:
    where = "GPU allocated" if m.device != "cpu" else "process RSS"
    return f"- peak memory: {m.peak_memory_mb} MB ({where})\n"


def _sft_report(m: SftPass, history: list[dict[str, Any]]) -> str:
    losses = [h["loss"] for h in history if "loss" in h]
    first, last = (losses[0], losses[-1]) if losses else (float("nan"), float("nan"))
    resumed = f" (resumed at step {m.resumed_from_step})" if m.resumed_from_step else ""
    eval_line = (
        f"- eval-split loss (last): {m.eval_loss} on {m.eval_examples} examples\n"
        if m.eval_loss is not None
        else "- no eval split\n"
    )
    return (
        f"- backend `{m.backend}` on {m.device} ({m.precision})\n"
        f"- {m.examples} examples, {m.steps} steps{resumed}, {m.epochs} epochs in "
        f"{m.seconds} s wall time ({m.tokens_per_second} tokens/s)\n"
        f"- loss: first step {first:.3f}, last step {last:.3f}, mean {m.train_loss}\n"
        + eval_line
        + _memory(m)
        + f"- adapter: {m.adapter_bytes / 2**20:.1f} MB\n"
    )


def _dpo_report(d: DpoMetrics) -> str:
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(d.outcomes.items(), key=lambda x: -x[1]))
    return (
        f"- pairs: {d.pairs_built} from {d.prompts} training prompts; the student's "
        f"{d.answers} sampled answers, graded by `{d.judge}` "
        f"({d.judge_failures} failed judgements, ${d.judge_cost_usd}): {outcomes}\n"
        f"- from the {d.start}, backend `{d.backend}` on {d.device} "
        f"({d.precision}): {d.pairs} pairs, {d.steps} steps, {d.epochs} epochs, "
        f"beta {d.beta}, in {d.seconds} s ({d.tokens_per_second} tokens/s)\n"
        f"- loss mean {d.train_loss}; reward margin first step {d.first_margin}, last "
        f"{d.last_margin}; last step's preference accuracy {d.last_accuracy}\n"
        f"- peak memory: building pairs {d.pairs_peak_memory_mb} MB, DPO "
        f"{d.peak_memory_mb} MB\n"
    )


def _gkd_report(g: GkdPass, cfg: TrainConfig) -> str:
    k = cfg.gkd
    loss = "ULD" if g.trainer == "GOLD" else "generalized JSD"
    s = g.served
    served = (
        f"- the served teacher's top {s.teacher_top_k} log-probabilities: "
        f"{s.teacher_requests} requests, {s.teacher_coverage} of "
        f"{s.teacher_positions} answer positions scored\n"
        if s
        else ""
    )
    c = g.capture
    captured = (
        f"- the teacher's top {c.top_k} log-probabilities read from its capture ({c.bits} "
        f"bits, {c.tokens} answer tokens, {c.bytes_per_token} bytes a token); "
        + (
            f"{c.captured_rows} of the {c.rows} rows captured in this pass, in {c.seconds} s "
            f"(peak memory {c.peak_memory_mb} MB)\n"
            if c.captured_rows
            else f"all {c.rows} rows were in it: the teacher was neither loaded nor called\n"
        )
        if c
        else ""
    )
    held = (
        f"- on the {g.eval_examples} eval-split answers (no sampling): {loss} "
        f"{g.eval_loss_before} before, {g.eval_loss_after} after\n"
        if g.eval_examples
        else ""
    )
    return (
        f"- on-policy distillation with {g.trainer} from the {g.start} against "
        f"`{g.teacher}`, backend `{g.backend}` on {g.device} ({g.precision})\n"
        f"- {g.examples} training prompts, {g.steps} steps, {g.epochs} epochs in "
        f"{g.seconds} s; lmbda {k.lmbda} (share of steps on the student's own samples), "
        f"beta {k.beta}, temperature {k.temperature}\n"
        f"- loss ({loss} to the teacher): first step {g.first_loss}, last "
        f"{g.last_loss}, mean {g.train_loss}\n" + served + captured + held + _memory(g)
    )
