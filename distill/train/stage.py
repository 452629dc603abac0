"""Train: a LoRA adapter on the student with TRL: SFT, DPO, on-policy distillation.

One training config, two loaders. `trl` loads the student with transformers and
wraps it with PEFT LoRA (CPU or GPU); `unsloth` loads and wraps it with Unsloth's
FastLanguageModel (CUDA GPU, the `gpu` extra); `auto` picks Unsloth when it can run.
Either way the same TRL trainers run with the same arguments, so the CPU path
exercises nearly all of the GPU path.

`train.method`:
- `sft`: SFTTrainer on the curated samples. Examples are token ids with an assistant
  mask built from the student's own chat template (distill/train/data.py): the loss
  covers the answers and their EOS only. The eval split's loss is logged every
  `eval_steps`.
- `dpo`: the base student answers each training prompt; pairs of (the chosen answer,
  the student's clearly worse one) are built (distill/train/preferences.py) and
  DPOTrainer trains a fresh LoRA on them against the base student.
- `sft_then_dpo`: SFT as above (its adapter kept in train/sft_adapter), then the SFT
  student's own answers make the pairs and DPO continues from its adapter against it.
- `gkd` / `sft_then_gkd`: on-policy distillation against `train.gkd.teacher`
  (distill/train/gkd.py): TRL's GKDTrainer when it shares the student's tokenizer,
  GOLDTrainer when it does not.

A checkpoint is written every `save_steps` to train/checkpoints/ (dpo_checkpoints/),
and `distill train --resume` continues a killed run from the last one (the
checkpoints are removed once the adapter is saved).

Outputs in `train/`: adapter/ (adapter_model.safetensors, adapter_config.json,
tokenizer), log.json (the trainer's log history), metrics.json, loss.png, report.md;
with DPO also sft_adapter/, candidates.parquet (every sampled answer, graded),
preferences.parquet and preferences.trl.jsonl (TRL's prompt/chosen/rejected format),
dpo_log.json.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from distill import distributed, tables
from distill.errors import InputError
from distill.io import adapter_id, hash_json, read_rows, save_figure, write_json, write_text
from distill.recipe import Recipe
from distill.redact import redact
from distill.review_gate import training_rows
from distill.runfolder import RunFolder, RunOptions
from distill.tables import Candidate, Preference
from distill.train.config import TrainConfig
from distill.train.trainer import (
    _peak_memory_mb,
    reset_peak_memory,
    train_adapter,
)

SUMMARY = ("backend", "examples", "steps", "train_loss", "eval_loss", "tokens_per_second")


def passes(method: str) -> tuple[bool, str | None]:
    """(SFT first?, the pass after it or instead of it: 'dpo', 'gkd' or None)."""
    return method.startswith("sft"), {"dpo": "dpo", "gkd": "gkd"}.get(method.split("_")[-1])


def _sft_stamp(cfg: TrainConfig, rows: list[dict[str, Any]]) -> str:
    return hash_json(
        {"config": cfg.model_dump(mode="json"), "train": [r["messages"] for r in rows]}
    )


def _plan(
    cfg: TrainConfig, rows: list[dict[str, Any]], out: Path, resume: bool
) -> tuple[bool, bool]:
    """(skip SFT, resume the second pass) for `--resume`: a second pass resumes from its
    checkpoints; SFT is skipped when its adapter of these settings and rows is kept
    (a crash came after it), so building the pairs or the second pass starts again."""
    sft_first, then = passes(cfg.method)
    if not (resume and then):
        return False, False
    stamp = out / "sft_adapter" / "settings.sha256"
    kept = stamp.exists() and stamp.read_text() == _sft_stamp(cfg, rows)
    # SFT is skipped only on its own stamp: checkpoints of the second pass say nothing
    # about rows reviewers rejected since. Without the kept adapter the second pass
    # starts over (its start changes); its checkpoints check their own stamp.
    resume_then = _has_checkpoint(out / f"{then}_checkpoints") and (kept or not sft_first)
    return sft_first and kept, resume_then


def run(recipe: Recipe, folder: RunFolder, options: RunOptions) -> dict[str, Any]:
    rows = training_rows(folder)
    if not rows:
        raise InputError("train: no samples left after curation and review")
    cfg = recipe.train
    out = folder.stage_dir("train")
    sft_first, then = passes(cfg.method)
    # Process 0's plan in every process (the others must run the same passes).
    skip_sft, resume_then = distributed.share(_plan(cfg, rows, out, options.resume))
    if not distributed.is_main():
        _worker(recipe, folder, rows, options.resume, skip_sft, resume_then)
        return {}
    metrics: dict[str, Any] = {"method": cfg.method}
    if sft_first and not skip_sft:
        eval_rows = read_rows(folder.curated("eval"))
        sft = train_adapter(cfg, rows, out, eval_rows=eval_rows, resume=options.resume)
        history = sft.pop("log_history")
        write_json(out / "log.json", history)
        _loss_plot(history, out / "loss.png")
        metrics.update(sft)
        if then:
            shutil.rmtree(out / "sft_adapter", ignore_errors=True)
            (out / "adapter").rename(out / "sft_adapter")
            # For --resume after a crash in what follows: SFT need not run again.
            write_json(out / "sft_adapter" / "metrics.json", sft)
            write_text(out / "sft_adapter" / "settings.sha256", _sft_stamp(cfg, rows))
    elif sft_first:
        metrics.update(json.loads((out / "sft_adapter" / "metrics.json").read_text()))
    if then:
        start = out / "sft_adapter" if sft_first else None
        if then == "dpo":
            second = _dpo(recipe, rows, out, start, resume_then)
        else:
            eval_rows = read_rows(folder.curated("eval"))
            second = _gkd(recipe, rows, eval_rows, out, start, resume_then)
        if sft_first:
            metrics["sft"] = {k: v for k, v in metrics.items() if k != "method"}
        else:
            metrics.update(second, examples=len(rows), eval_loss=None, eval_examples=0)
        metrics[then] = second
        metrics["peak_memory_mb"] = max(
            metrics.get("peak_memory_mb", 0),
            second["peak_memory_mb"],
            second.get("pairs_peak_memory_mb", 0),
        )
    write_json(folder.train_metrics, metrics)
    write_text(out / "report.md", _report(cfg, metrics, out))
    summary = {k: metrics.get(k) for k in (*SUMMARY, "peak_memory_mb")}
    if "dpo" in metrics:
        d = metrics["dpo"]
        summary.update(pairs=d["pairs"], dpo_steps=d["steps"], dpo_margin=d["last_margin"])
    if "gkd" in metrics:
        g = metrics["gkd"]
        summary.update(gkd_steps=g["steps"], gkd_loss=g["last_loss"])
    return summary


def _worker(
    recipe: Recipe,
    folder: RunFolder,
    rows: list[dict[str, Any]],
    resume: bool,
    skip_sft: bool,
    resume_then: bool,
) -> None:
    """A process other than 0 under accelerate launch / torchrun: the same passes, its
    share of each batch; process 0 builds the pairs and writes every file."""
    from distill.train.dpo import train_dpo
    from distill.train.gkd import train_gkd

    cfg = recipe.train
    out = folder.stage_dir("train")
    sft_first, then = passes(cfg.method)
    if sft_first and not skip_sft:
        eval_rows = read_rows(folder.curated("eval"))
        train_adapter(cfg, rows, out, eval_rows=eval_rows, resume=resume)
    if then:
        distributed.barrier()  # process 0 moves the SFT adapter (and builds the pairs)
        start = out / "sft_adapter" if sft_first else None
        if then == "dpo":
            pairs = tables.read(folder.preferences, Preference)
            train_dpo(cfg, pairs, out, start_adapter=start, resume=resume_then)
        else:
            eval_rows = read_rows(folder.curated("eval"))
            train_gkd(cfg, rows, out, start_adapter=start, resume=resume_then, eval_rows=eval_rows)


def _gkd(
    recipe: Recipe,
    rows: list[dict[str, Any]],
    eval_rows: list[dict[str, Any]],
    out: Path,
    start: Path | None,
    resume: bool,
) -> dict[str, Any]:
    from distill.train.gkd import train_gkd

    distributed.barrier()  # the other processes wait for the SFT adapter's move
    gkd = train_gkd(
        recipe.train, rows, out, start_adapter=start, resume=resume, eval_rows=eval_rows
    )
    history = gkd.pop("log_history")
    write_json(out / "gkd_log.json", history)
    title = "GKD loss (generalized JSD to the teacher)"
    if gkd["trainer"] == "GOLD":
        title = "GOLD loss (ULD to the teacher, across tokenizers)"
    elif gkd["trainer"] != "GKD":
        title = "GKD loss (generalized JSD to the served teacher's top-k)"
    _loss_plot(history, out / "gkd.png", title)
    return gkd


def _has_checkpoint(path: Path) -> bool:
    return path.is_dir() and any(p.name.startswith("checkpoint-") for p in path.iterdir())


def _dpo(
    recipe: Recipe, rows: list[dict[str, Any]], out: Path, start: Path | None, resume: bool
) -> dict[str, Any]:
    """Build the pairs (or, resuming, reuse them) and run the DPO pass."""
    from distill.train.dpo import train_dpo

    cfg = recipe.train
    pairs_path = out / "preferences.parquet"
    # The pairs are reused on --resume only if built from these rows, from this start
    # adapter's weights (not its path) and with these settings.
    stamp = hash_json(
        {
            "config": cfg.model_dump(mode="json"),
            "train": [r["messages"] for r in rows],
            "start": adapter_id(start),
        }
    )
    stamped = out / "preferences.sha256"
    if resume and pairs_path.exists() and stamped.exists() and stamped.read_text() == stamp:
        pairs = tables.read(pairs_path, Preference)
        stats = json.loads((out / "preferences.json").read_text())
    else:
        pairs, stats = _build_pairs(recipe, rows, out, start)
        write_text(stamped, stamp)
    distributed.barrier()  # the other processes wait for the pairs
    dpo = train_dpo(cfg, pairs, out, start_adapter=start, resume=resume)
    history = dpo.pop("log_history")
    write_json(out / "dpo_log.json", history)
    dpo_series = (("loss", "DPO loss"), ("rewards/margins", "reward margin"))
    _loss_plot(history, out / "dpo.png", "", dpo_series)
    return {**stats, **dpo, "pairs_built": stats["pairs"], "pairs": dpo["pairs"]}


def _build_pairs(
    recipe: Recipe, rows: list[dict[str, Any]], out: Path, start: Path | None
) -> tuple[list[Preference], dict[str, Any]]:
    from distill.models import load_causal_lm
    from distill.train import preferences

    own = reset_peak_memory()
    model, tok = load_causal_lm(recipe.train.student, recipe.train.precision)
    if start is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(start))
    written_by = "sft student" if start is not None else "base student"
    pairs, cands, stats = preferences.build(recipe, rows, model, tok, written_by, out)
    del model
    stats["pairs_peak_memory_mb"] = _peak_memory_mb(False, own)
    tables.write(out / "candidates.parquet", cands, Candidate)
    tables.write(out / "preferences.parquet", pairs, Preference)
    write_text(out / "preferences.trl.jsonl", "".join(trl_line(p) + "\n" for p in pairs))
    write_json(out / "preferences.json", stats)
    return pairs, stats


def trl_line(p: Preference) -> str:
    """A pair in TRL's conversational preference format (prompt / chosen / rejected)."""
    return json.dumps(tables.trl_preference(p), ensure_ascii=False)


LOSS_SERIES = (("loss", "train"), ("eval_loss", "eval split"))


def _loss_plot(
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


def _report(cfg: TrainConfig, m: dict[str, Any], out: Path) -> str:
    parts = [f"# Training report\n\n- method: `{m['method']}`, student `{cfg.student}`\n"]
    if m["method"].startswith("sft"):
        sft = m.get("sft", m)
        history = json.loads((out / "log.json").read_text())
        parts.append("\n## SFT\n\n" + _sft_report(sft, history) + "\n![loss](loss.png)\n")
    if "dpo" in m:
        parts.append("\n## DPO\n\n" + _dpo_report(m["dpo"]) + "\n![DPO](dpo.png)\n")
    if "gkd" in m:
        gkd = _gkd_report(m["gkd"], cfg)
        parts.append("\n## On-policy distillation\n\n" + gkd + "\n![GKD](gkd.png)\n")
    rows = "\n".join(f"| {k} | {v} |" for k, v in cfg.model_dump().items())
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    parts.append(f"\n- versions: {versions}\n\n| setting | value |\n| --- | --- |\n{rows}\n")
    # The settings hold a served teacher's base_url, which can carry credentials.
    return redact("".join(parts))


def _memory(m: dict[str, Any]) -> str:
    where = "GPU allocated" if m["device"] != "cpu" else "process RSS"
    return f"- peak memory: {m['peak_memory_mb']} MB ({where})\n"


def _sft_report(m: dict[str, Any], history: list[dict[str, Any]]) -> str:
    losses = [h["loss"] for h in history if "loss" in h]
    first, last = (losses[0], losses[-1]) if losses else (float("nan"), float("nan"))
    resumed = f" (resumed at step {m['resumed_from_step']})" if m.get("resumed_from_step") else ""
    eval_line = (
        f"- eval-split loss (last): {m['eval_loss']} on {m['eval_examples']} examples\n"
        if m.get("eval_loss") is not None
        else "- no eval split\n"
    )
    return (
        f"- backend `{m['backend']}` on {m['device']} ({m['precision']})\n"
        f"- {m['examples']} examples, {m['steps']} steps{resumed}, {m['epochs']} epochs in "
        f"{m['seconds']} s wall time ({m['tokens_per_second']} tokens/s)\n"
        f"- loss: first step {first:.3f}, last step {last:.3f}, mean {m['train_loss']}\n"
        + eval_line
        + _memory(m)
        + f"- adapter: {m['adapter_bytes'] / 2**20:.1f} MB\n"
    )


def _dpo_report(d: dict[str, Any]) -> str:
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(d["outcomes"].items(), key=lambda x: -x[1]))
    return (
        f"- pairs: {d['pairs_built']} from {d['prompts']} training prompts; the student's "
        f"{d['answers']} sampled answers, graded by `{d['judge']}` "
        f"({d['judge_failures']} failed judgements, ${d['judge_cost_usd']}): {outcomes}\n"
        f"- from the {d['start']}, backend `{d['backend']}` on {d['device']} "
        f"({d['precision']}): {d['pairs']} pairs, {d['steps']} steps, {d['epochs']} epochs, "
        f"beta {d['beta']}, in {d['seconds']} s ({d['tokens_per_second']} tokens/s)\n"
        f"- loss mean {d['train_loss']}; reward margin first step {d['first_margin']}, last "
        f"{d['last_margin']}; last step's preference accuracy {d['last_accuracy']}\n"
        f"- peak memory: building pairs {d['pairs_peak_memory_mb']} MB, DPO "
        f"{d['peak_memory_mb']} MB\n"
    )


def _gkd_report(g: dict[str, Any], cfg: TrainConfig) -> str:
    k = cfg.gkd
    trainer = g.get("trainer", "GKD")
    loss = "ULD" if trainer == "GOLD" else "generalized JSD"
    served = (
        f"- the served teacher's top {g['teacher_top_k']} log-probabilities: "
        f"{g['teacher_requests']} requests, {g['teacher_coverage']} of "
        f"{g['teacher_positions']} answer positions scored\n"
        if "teacher_top_k" in g
        else ""
    )
    held = (
        f"- on the {g['eval_examples']} eval-split answers (no sampling): {loss} "
        f"{g['eval_loss_before']} before, {g['eval_loss_after']} after\n"
        if g.get("eval_examples")
        else ""
    )
    return (
        f"- on-policy distillation with {trainer} from the {g['start']} against "
        f"`{g['teacher']}`, backend `{g['backend']}` on {g['device']} ({g['precision']})\n"
        f"- {g['examples']} training prompts, {g['steps']} steps, {g['epochs']} epochs in "
        f"{g['seconds']} s; lmbda {k.lmbda} (share of steps on the student's own samples), "
        f"beta {k.beta}, temperature {k.temperature}\n"
        f"- loss ({loss} to the teacher): first step {g['first_loss']}, last "
        f"{g['last_loss']}, mean {g['train_loss']}\n" + served + held + _memory(g)
    )
