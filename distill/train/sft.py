"""Supervised fine-tuning: TRL's SFTTrainer on the curated rows, the loss on the
answers only (distill.train.data), packed rows, the eval split's loss every
`eval_steps`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill.models import inference_dtype
from distill.train.backends import cuda_available
from distill.train.common import (
    checkpoints_to_resume,
    common_args,
    last_eval_loss,
    load_student,
    pass_figures,
    pass_metrics,
    progress_callback,
    run_pass,
)
from distill.train.config import TrainConfig
from distill.train.data import encode_rows, stop_ids
from distill.train_results import SftPass


def train_adapter(
    student_ref: str,
    cfg: TrainConfig,
    rows: list[dict[str, Any]],
    out: Path,
    *,
    eval_rows: list[dict[str, Any]] | None = None,
    resume: bool = False,
    callbacks: list[Any] | None = None,
) -> SftPass:
    """Train a LoRA adapter of the student `student_ref` on `rows` and save it to
    out/adapter (atomically); return its result. Checkpoints go to out/checkpoints;
    `resume` continues from the last one."""
    student = load_student(student_ref, cfg)
    model, tok = student.model, student.tok

    import torch
    from datasets import Dataset, disable_progress_bars
    from trl import SFTTrainer

    disable_progress_bars()
    stops = stop_ids(tok, model)
    train_ds = Dataset.from_list(encode_rows(tok, rows, stops))
    eval_ds = Dataset.from_list(encode_rows(tok, eval_rows, stops)) if eval_rows else None
    cuda = cuda_available()
    bf16 = inference_dtype(cfg.precision) == torch.bfloat16
    checkpoints = out / "checkpoints"
    # Checkpoints belong to these settings *and* this data: resuming over other training
    # rows would finish a run that matches neither.
    settings = {
        "student": student_ref,
        "config": cfg.model_dump(mode="json"),
        "train": [r.get("messages") for r in rows],
        "eval": [r.get("messages") for r in eval_rows or []],
    }
    last = checkpoints_to_resume(settings, checkpoints, resume)
    args = sft_config(cfg, checkpoints, eval_ds is not None, cuda, bf16)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tok,
        peft_config=student.peft_config,
        callbacks=[progress_callback(), *(callbacks or [])],
    )
    result, seconds, resumed = run_pass(trainer, student, out, checkpoints, last, resume)
    history = trainer.state.log_history
    return SftPass(
        backend=student.backend,
        examples=len(rows),
        eval_examples=len(eval_rows or []),
        eval_loss=last_eval_loss(history),
        **pass_figures(trainer, result, seconds, resumed).model_dump(),
        **pass_metrics(student, out, cfg).model_dump(),
        log_history=history,
    )


def sft_config(cfg: TrainConfig, checkpoints: Path, evaluates: bool, cuda: bool, bf16: bool) -> Any:
    """TRL's SFTConfig for the recipe's train section."""
    from trl import SFTConfig

    # TRL flattens a packed batch into one sequence. Without FlashAttention (the CPU)
    # that means a dense batch x batch attention mask, so on the CPU each packed row
    # goes alone and the batch is made up by accumulation: same rows per update.
    batch, accumulate = cfg.batch_size, cfg.gradient_accumulation_steps
    eval_batch = cfg.batch_size
    if cfg.packing and not cuda:  # the eval pass too: 4 packed rows flattened cost ~1 GB
        batch, accumulate = 1, cfg.batch_size * cfg.gradient_accumulation_steps
        eval_batch = 1
    return SFTConfig(
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=eval_batch,
        gradient_accumulation_steps=accumulate,
        packing=cfg.packing,
        packing_strategy="bfd",
        eval_strategy="steps" if evaluates else "no",
        eval_steps=cfg.eval_steps,
        **common_args(cfg, SFTConfig, checkpoints, cuda, bf16),
    )
