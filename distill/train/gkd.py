"""On-policy distillation: TRL's GKDTrainer against a local teacher that shares the
student's tokenizer, with SFT's LoRA settings, chat template and masking rules.

At each step, with probability `gkd.lmbda`, the student samples its own answers to the
step's training prompts and learns to match the teacher's next-token distribution on
them (the generalized JSD of the GKD paper, `gkd.beta`); otherwise it matches the
teacher on the curated answers. The rows are tokenized by distill/train/data.py (the
loss covers the answers and their EOS only); the prompt each sample is drawn from is
everything before the last answer, as inference renders it.

A teacher with another tokenizer is refused with a message: token-level distillation
needs one vocabulary (GOLD's cross-tokenizer alignment is not built in).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from distill.errors import InputError, UserError
from distill.models import inference_dtype, load_causal_lm, resolve_causal_lm
from distill.train.backends import _cuda
from distill.train.config import TrainConfig
from distill.train.data import _final_answer, encode_rows, stop_ids
from distill.train.trainer import (
    _metrics,
    checkpoints_to_resume,
    common_args,
    load_student,
    one_row_a_step_on_cpu,
    pass_metrics,
    progress_callback,
    run_pass,
)


class Collator:
    """Left-padded batches of encoded rows, with the prompts GKD samples from: the keys
    TRL's ChatML collator gives GKDTrainer, built from SFT's masks."""

    def __init__(self, pad_id: int, max_length: int) -> None:
        self.pad_id, self.max_length = pad_id, max_length

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        ids, labels, prompts = [], [], []
        for e in examples:
            start, _ = _final_answer(e)
            seq = list(e["input_ids"])[: self.max_length]
            mask = list(e["assistant_masks"])[: self.max_length]
            ids.append(seq)
            labels.append([t if m else -100 for t, m in zip(seq, mask, strict=True)])
            prompts.append(list(e["input_ids"])[:start])

        def left(rows: list[list[int]], value: int) -> Any:
            width = max(len(r) for r in rows)
            return torch.tensor([[value] * (width - len(r)) + r for r in rows], dtype=torch.long)

        def ones(rows: list[list[int]]) -> list[list[int]]:
            return [[1] * len(r) for r in rows]

        return {
            "input_ids": left(ids, self.pad_id),
            "attention_mask": left(ones(ids), 0),
            "labels": left(labels, -100),
            "prompts": left(prompts, self.pad_id),
            "prompt_attention_mask": left(ones(prompts), 0),
        }


def load_teacher(cfg: TrainConfig, student_tok: Any) -> Any:
    """The teacher model, refused with a message unless it shares the student's
    tokenizer."""
    from transformers import AutoTokenizer

    assert cfg.gkd.teacher is not None
    tok = AutoTokenizer.from_pretrained(resolve_causal_lm(cfg.gkd.teacher).path)
    if tok.get_vocab() != student_tok.get_vocab():
        raise UserError(
            f"train.gkd.teacher {cfg.gkd.teacher} has another tokenizer than the student "
            f"{cfg.student} ({len(tok)} and {len(student_tok)} tokens): on-policy "
            "distillation compares their next-token distributions, so it needs one "
            "vocabulary; pick a teacher of the student's family, or use method sft or dpo"
        )
    model, _ = load_causal_lm(cfg.gkd.teacher, cfg.precision)
    model.eval()
    return model


def _experimental() -> Any:
    """trl.experimental.gkd, imported without its 'APIs here are unstable' warning: the
    pin in pyproject.toml is what keeps the API this module was written against."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import trl.experimental.gkd as gkd
    return gkd


def gkd_args(cfg: TrainConfig, checkpoints: Path, cuda: bool, bf16: bool) -> Any:
    GKDConfig = _experimental().GKDConfig

    g = cfg.gkd
    return GKDConfig(
        num_train_epochs=g.epochs,
        max_steps=g.max_steps or -1,
        learning_rate=g.learning_rate,
        lmbda=g.lmbda,
        beta=g.beta,
        temperature=g.temperature,
        max_new_tokens=g.max_new_tokens,
        **one_row_a_step_on_cpu(cfg, cuda),
        eval_strategy="no",
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        **common_args(cfg, GKDConfig, checkpoints, cuda, bf16),
    )


def train_gkd(
    cfg: TrainConfig,
    rows: list[dict[str, Any]],
    out: Path,
    *,
    start_adapter: Path | None = None,
    resume: bool = False,
    callbacks: list[Any] | None = None,
) -> dict[str, Any]:
    """GKD on the training prompts from the base student or `start_adapter`; the adapter
    is saved to out/adapter (atomically). Returns the pass's metrics."""
    student = load_student(cfg, start_adapter)
    teacher = load_teacher(cfg, student.tok)
    import torch
    from datasets import Dataset, disable_progress_bars

    GKDTrainer = _experimental().GKDTrainer
    disable_progress_bars()
    encoded = encode_rows(student.tok, rows, stop_ids(student.tok, student.model))
    encoded = [e for e in encoded if _final_answer(e)[0] < cfg.max_seq_length]
    if not encoded:
        raise InputError(
            f"train: every training prompt fills train.max_seq_length ({cfg.max_seq_length} "
            "tokens); raise it"
        )
    cuda = _cuda()
    bf16 = inference_dtype(cfg.precision) == torch.bfloat16
    checkpoints = out / "gkd_checkpoints"
    settings = {
        "config": cfg.model_dump(mode="json"),
        "start": str(start_adapter),
        "train": [r.get("messages") for r in rows],
    }
    last = checkpoints_to_resume(settings, checkpoints, resume)
    trainer = GKDTrainer(
        model=student.model,
        teacher_model=teacher,
        args=gkd_args(cfg, checkpoints, cuda, bf16),
        data_collator=Collator(student.tok.pad_token_id, cfg.max_seq_length),
        train_dataset=Dataset.from_list(encoded),
        processing_class=student.tok,
        peft_config=student.peft_config,
        callbacks=[progress_callback(), *(callbacks or [])],
    )
    result, seconds, resumed = run_pass(trainer, student, out, checkpoints, last, resume)
    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    return {
        "backend": student.backend,
        "start": "sft adapter" if start_adapter else "base student",
        "teacher": cfg.gkd.teacher,
        "examples": len(encoded),
        **_metrics(trainer, result, seconds, resumed),
        "first_loss": round(float(losses[0]), 4) if losses else None,
        "last_loss": round(float(losses[-1]), 4) if losses else None,
        **pass_metrics(student, out, cfg),
        "log_history": history,
    }
