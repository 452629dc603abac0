"""Train: a LoRA adapter on the student with TRL's SFTTrainer.

One training config, two loaders. `trl` loads the student with transformers and
wraps it with PEFT LoRA (CPU or GPU); `unsloth` loads and wraps it with Unsloth's
FastLanguageModel (CUDA GPU, the `gpu` extra); `auto` picks Unsloth when it can run.
Either way the same SFTTrainer runs with the same arguments, so the CPU path
exercises nearly all of the GPU path.

Examples are token ids with an assistant mask built from the student's own chat
template (distill/train/data.py): the loss covers the answers and their EOS only.
The eval split's loss is logged every `eval_steps`; a checkpoint is written every
`save_steps` to train/checkpoints/, and `distill train --resume` continues a killed
run from the last one (the checkpoints are removed once the adapter is saved).

Outputs in `train/`: adapter/ (adapter_model.safetensors, adapter_config.json,
tokenizer), log.json (the trainer's log history), metrics.json, loss.png, report.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill.errors import InputError
from distill.gate import training_rows
from distill.io import read_rows, save_figure, write_json, write_text
from distill.recipe import Recipe
from distill.runfolder import RunFolder, RunOptions
from distill.train.config import TrainConfig
from distill.train.trainer import train_adapter


def run(recipe: Recipe, folder: RunFolder, options: RunOptions) -> dict[str, Any]:
    rows = training_rows(folder)
    if not rows:
        raise InputError("train: no samples left after curation and review")
    eval_rows = read_rows(folder.stage_dir("curate") / "eval.parquet")
    out = folder.stage_dir("train")
    metrics = train_adapter(
        recipe.train,
        rows,
        out,
        eval_rows=eval_rows,
        resume=options.resume,
    )
    history = metrics.pop("log_history")
    write_json(out / "log.json", history)
    write_json(out / "metrics.json", metrics)
    _loss_plot(history, out / "loss.png")
    write_text(out / "report.md", _report(recipe.train, metrics, history))
    keys = ("backend", "examples", "steps", "train_loss", "eval_loss", "tokens_per_second")
    return {k: metrics[k] for k in (*keys, "peak_memory_mb")}


def _loss_plot(history: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    if train:
        ax.plot(*zip(*train, strict=True), label="train", marker=".")
    if evals:
        ax.plot(*zip(*evals, strict=True), label="eval split", marker="o")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (answer tokens)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def _report(cfg: TrainConfig, m: dict[str, Any], history: list[dict[str, Any]]) -> str:
    losses = [h["loss"] for h in history if "loss" in h]
    first, last = (losses[0], losses[-1]) if losses else (float("nan"), float("nan"))
    rows = "\n".join(f"| {k} | {v} |" for k, v in cfg.model_dump().items())
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    resumed = f" (resumed at step {m['resumed_from_step']})" if m.get("resumed_from_step") else ""
    eval_line = (
        f"- eval-split loss (last): {m['eval_loss']} on {m['eval_examples']} examples\n"
        if m.get("eval_loss") is not None
        else "- no eval split\n"
    )
    return (
        "# Training report\n\n"
        f"- student: `{cfg.student}`, backend `{m['backend']}` on {m['device']} "
        f"({m['precision']})\n"
        f"- {m['examples']} examples, {m['steps']} steps{resumed}, {m['epochs']} epochs in "
        f"{m['seconds']} s wall time ({m['tokens_per_second']} tokens/s)\n"
        f"- loss: first step {first:.3f}, last step {last:.3f}, mean {m['train_loss']}\n"
        + eval_line
        + f"- peak memory: {m['peak_memory_mb']} MB "
        f"({'GPU allocated' if m['device'] != 'cpu' else 'process RSS'})\n"
        f"- adapter: {m['adapter_bytes'] / 2**20:.1f} MB\n"
        f"- versions: {versions}\n\n"
        "![loss](loss.png)\n\n"
        "| setting | value |\n| --- | --- |\n" + rows + "\n"
    )
