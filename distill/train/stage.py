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

import dataclasses
import importlib.util
import json
import resource
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from distill.errors import InputError, MissingExtraError, UserError
from distill.gate import training_rows
from distill.io import atomic_dir, hash_json, read_rows, save_figure, write_json, write_text
from distill.models import inference_dtype, load_causal_lm, resolve_causal_lm
from distill.recipe import Recipe
from distill.runfolder import RunFolder, RunOptions
from distill.train.config import TrainConfig
from distill.train.data import encode_rows, stop_ids
from distill.ui import console

TRAINING_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets")
GPU_PACKAGES = ("unsloth", "bitsandbytes")


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def choose_backend(cfg: TrainConfig) -> str:
    """'unsloth' or 'trl' for this machine; `auto` picks Unsloth when it can run."""
    if cfg.backend != "auto":
        return cfg.backend
    return "unsloth" if _cuda() and importlib.util.find_spec("unsloth") else "trl"


def _lora_config(cfg: TrainConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )


def _load_unsloth(cfg: TrainConfig, path: str) -> tuple[Any, Any]:
    try:
        from unsloth import FastLanguageModel
    except ImportError as e:
        raise MissingExtraError("unsloth (train.backend: unsloth)", "'distill[gpu]'") from e
    except NotImplementedError as e:  # Unsloth raises this when there is no GPU.
        raise UserError(f"train.backend 'unsloth' needs a GPU ({e}); use 'trl' on CPU") from e
    model, tok = FastLanguageModel.from_pretrained(
        model_name=path,
        max_seq_length=cfg.max_seq_length,
        load_in_4bit=cfg.load_in_4bit,
        dtype=None,
    )
    model = FastLanguageModel.get_peft_model(
        model,
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules,
        bias="none",
        use_gradient_checkpointing="unsloth" if cfg.gradient_checkpointing else False,
        random_state=cfg.seed,
    )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def _load_trl(cfg: TrainConfig) -> tuple[Any, Any]:
    if not cfg.load_in_4bit:
        model, tok = load_causal_lm(cfg.student)
        model.train()
        return model, tok
    if not _cuda():
        raise UserError("train.load_in_4bit needs a CUDA GPU (bitsandbytes); set it to false")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise MissingExtraError("bitsandbytes (train.load_in_4bit)", "'distill[gpu]'")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    path = resolve_causal_lm(cfg.student).path
    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=quant, device_map="auto")
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def _progress_callback() -> Any:
    from transformers import TrainerCallback

    from distill.ui import progress

    class RichProgress(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.bar = progress()
            self.bar.start()
            self.task = self.bar.add_task("training steps", total=state.max_steps)
            self.bar.update(self.task, completed=state.global_step)
            self.loss = self.eval_loss = ""

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.bar.update(self.task, completed=state.global_step)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                self.loss = f"loss {logs['loss']:.3f}"
            if logs and "eval_loss" in logs:
                self.eval_loss = f", eval {logs['eval_loss']:.3f}"
            if logs and ("loss" in logs or "eval_loss" in logs):
                desc = f"training steps ({self.loss}{self.eval_loss})"
                self.bar.update(self.task, description=desc)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.bar.stop()

    return RichProgress()


def _checkpointing_arg(config_cls: Any) -> str:
    names = {f.name for f in dataclasses.fields(config_cls)}
    return (
        "activation_checkpointing"
        if "activation_checkpointing" in names
        else ("gradient_checkpointing")
    )


def _portable_adapter_config(path: Path, base: str) -> None:
    """Point the adapter at the base model's hub id instead of a local cache folder."""
    cfg = json.loads(path.read_text())
    cfg["base_model_name_or_path"] = base
    path.write_text(json.dumps(cfg, indent=2) + "\n")


def _peak_memory_mb(cuda: bool) -> float:
    if cuda:
        import torch

        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def train_adapter(
    cfg: TrainConfig,
    rows: list[dict[str, Any]],
    out: Path,
    *,
    eval_rows: list[dict[str, Any]] | None = None,
    resume: bool = False,
    callbacks: list[Any] | None = None,
) -> dict[str, Any]:
    """Train a LoRA adapter on `rows` and save it to out/adapter (atomically); return
    metrics. Checkpoints go to out/checkpoints; `resume` continues from the last one."""
    backend = choose_backend(cfg)
    if not _cuda() and metadata.version("trl").startswith("1.15."):
        # Found with the gpu extra's set: TRL 1.15 always swaps in a fused LM head built
        # on Triton kernels, which cannot run without a GPU.
        raise UserError(
            "trl 1.15 (the gpu extra's pin) trains on a CUDA GPU only; on this CPU "
            "install trl 1.16 or later: pip install -U 'trl>=1.16'"
        )
    resolved = resolve_causal_lm(cfg.student)
    if cfg.load_in_4bit and not _cuda():
        raise UserError("train.load_in_4bit needs a CUDA GPU (bitsandbytes); set it to false")
    # Unsloth patches transformers and TRL, so it loads before they are imported here.
    if backend == "unsloth":
        model, tok = _load_unsloth(cfg, resolved.path)
        peft_config = None
    else:
        model, tok = _load_trl(cfg)
        peft_config = _lora_config(cfg)

    import torch
    from datasets import Dataset, disable_progress_bars
    from transformers import PrinterCallback
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig, SFTTrainer

    disable_progress_bars()
    stops = stop_ids(tok, model)
    train_ds = Dataset.from_list(encode_rows(tok, rows, stops))
    eval_ds = Dataset.from_list(encode_rows(tok, eval_rows, stops)) if eval_rows else None
    cuda = _cuda()
    bf16 = inference_dtype(cfg.precision) == torch.bfloat16
    checkpoints = out / "checkpoints"
    # Checkpoints belong to these settings *and* this data: resuming over other training
    # rows would finish a run that matches neither.
    settings = hash_json(
        {
            "config": cfg.model_dump(mode="json"),
            "train": [r.get("messages") for r in rows],
            "eval": [r.get("messages") for r in eval_rows or []],
        }
    )
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if resume:
        if last is None:
            raise UserError(
                f"nothing to resume: no checkpoint in {checkpoints}; train without --resume"
            )
        stamp = checkpoints / "settings.sha256"
        if not stamp.exists() or stamp.read_text() != settings:
            raise UserError(
                "the checkpoints were written with other train settings or other training "
                "data; train without --resume"
            )
        console.print(f"  resuming from {Path(last).name}")
    else:
        if last is not None:
            console.print(
                f"  starting over; {Path(last).name} of an earlier run is discarded "
                "(`distill train RECIPE --resume` continues from it)"
            )
        shutil.rmtree(checkpoints, ignore_errors=True)
        checkpoints.mkdir(parents=True)
        (checkpoints / "settings.sha256").write_text(settings)

    checkpointing: dict[str, Any] = {_checkpointing_arg(SFTConfig): cfg.gradient_checkpointing}
    # TRL flattens a packed batch into one sequence. Without FlashAttention (the CPU)
    # that means a dense batch x batch attention mask, so on the CPU each packed row
    # goes alone and the batch is made up by accumulation: same rows per update.
    batch, accumulate = cfg.batch_size, cfg.gradient_accumulation_steps
    if cfg.packing and not cuda:
        batch, accumulate = 1, cfg.batch_size * cfg.gradient_accumulation_steps
    args = SFTConfig(
        output_dir=str(checkpoints),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=accumulate,
        max_length=cfg.max_seq_length,
        packing=cfg.packing,
        packing_strategy="bfd",
        seed=cfg.seed,
        logging_steps=1,
        eval_strategy="steps" if eval_ds is not None else "no",
        eval_steps=cfg.eval_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        report_to=[],
        disable_tqdm=True,
        use_cpu=not cuda,
        bf16=bf16,
        # transformers renamed gradient_checkpointing (5.2x); TRL still sets the old name.
        **checkpointing,
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tok,
        peft_config=peft_config,
        callbacks=[_progress_callback(), *(callbacks or [])],
    )
    # Our progress bar replaces the trainer's printed log dicts.
    trainer.remove_callback(PrinterCallback)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start_step = 0
    if resume and last is not None:
        start_step = int(Path(last).name.rsplit("-", 1)[1])
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last if resume else None)
    seconds = time.perf_counter() - t0
    with atomic_dir(out / "adapter") as tmp:
        trained: Any = trainer.model
        trained.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        _portable_adapter_config(tmp / "adapter_config.json", resolved.hub_id or cfg.student)
    shutil.rmtree(checkpoints, ignore_errors=True)
    state = trainer.state
    tokens = sum(sum(x) for x in _lengths(trainer.train_dataset))
    steps_now = state.global_step - start_step
    share = steps_now / max(state.global_step, 1)
    history = state.log_history
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    return {
        "backend": backend,
        "examples": len(rows),
        "eval_examples": len(eval_rows or []),
        "steps": state.global_step,
        "resumed_from_step": start_step if resume else None,
        "epochs": round(float(state.epoch or 0), 2),
        "train_loss": round(float(result.training_loss), 4),
        "eval_loss": round(float(evals[-1]), 4) if evals else None,
        "seconds": round(seconds, 1),
        "tokens_per_second": round(tokens * float(state.epoch or 0) * share / seconds, 1),
        "peak_memory_mb": _peak_memory_mb(cuda),
        "adapter_bytes": (out / "adapter" / "adapter_model.safetensors").stat().st_size,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "precision": ("4-bit NF4 + " if cfg.load_in_4bit else "")
        + ("bfloat16 mixed" if bf16 else "float32"),
        "versions": _versions(),
        "log_history": history,
    }


def _versions() -> dict[str, str]:
    """The exact versions this adapter was trained with (GPU packages when present)."""
    out = {}
    for name in TRAINING_PACKAGES + GPU_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name in TRAINING_PACKAGES:
                out[name] = "not installed"
    return out


def _lengths(dataset: Any) -> list[list[int]]:
    """Per-row attention lengths of the prepared dataset (packed rows count their
    real tokens only)."""
    cols = dataset.column_names
    if "seq_lengths" in cols:
        return [list(x) for x in dataset["seq_lengths"]]
    return [[len(x)] for x in dataset["input_ids"]]


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
