"""The DPO pass: TRL's DPOTrainer on the run's preference pairs, with SFT's LoRA
settings, chat template and masking rules.

The pairs are tokenized here by distill/train/data.py's rules (each answer is what SFT
would train on for it: its text and the EOS that closes the turn), so TRL's own
tokenization is skipped. The reference model is the policy before DPO: the base
student (its LoRA disabled) for `method: dpo`, a frozen copy of the SFT adapter for
`sft_then_dpo` (TRL adds it as a second adapter). Checkpoints go to
train/dpo_checkpoints; the adapter to train/adapter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill.errors import InputError
from distill.io import adapter_id
from distill.models import inference_dtype
from distill.tables import Preference
from distill.train.backends import cuda_available
from distill.train.common import (
    checkpoints_to_resume,
    common_args,
    load_student,
    one_row_a_step_on_cpu,
    pass_figures,
    pass_metrics,
    progress_callback,
    run_pass,
)
from distill.train.config import TrainConfig
from distill.train.data import encode_pair, stop_ids
from distill.train.trl_private import pretokenized_dpo_trainer
from distill.train_results import DpoPass


def encode_pairs(
    tok: Any, pairs: list[Preference], stops: set[int], max_length: int
) -> list[dict[str, list[int]]]:
    """The pairs as token ids; a pair whose prompt alone fills max_length (nothing of its
    answers would be left to train on) is left out."""
    out = []
    for p in pairs:
        enc = encode_pair(tok, p["prompt"], p["chosen"], p["rejected"], stops, p["pair_id"])
        if len(enc["prompt_ids"]) < max_length:
            out.append(enc)
    return out


def dpo_args(cfg: TrainConfig, checkpoints: Path, cuda: bool, bf16: bool) -> Any:
    from trl import DPOConfig

    d = cfg.dpo
    losses: list[str] = [d.loss_type]
    weights = [1.0]
    if d.sft_weight > 0:
        losses, weights = [d.loss_type, "sft"], [1.0, d.sft_weight]
    return DPOConfig(
        num_train_epochs=d.epochs,
        max_steps=d.max_steps or -1,
        learning_rate=d.learning_rate,
        beta=d.beta,
        loss_type=losses,
        loss_weights=weights,
        **one_row_a_step_on_cpu(cfg, cuda),
        eval_strategy="no",
        **common_args(cfg, DPOConfig, checkpoints, cuda, bf16),
    )


def train_dpo(
    student_ref: str,
    cfg: TrainConfig,
    pairs: list[Preference],
    out: Path,
    *,
    start_adapter: Path | None = None,
    resume: bool = False,
    callbacks: list[Any] | None = None,
) -> DpoPass:
    """DPO on `pairs` from the base student or `start_adapter`; the adapter is saved to
    out/adapter (atomically). Returns the pass's result."""
    if not pairs:
        raise InputError(
            "train: no preference pairs (no student answer was clearly worse than the "
            "chosen one); see train/candidates.parquet, or use train.method: sft"
        )
    student = load_student(student_ref, cfg, start_adapter)
    import torch
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()
    encoded = encode_pairs(
        student.tok, pairs, stop_ids(student.tok, student.model), cfg.max_seq_length
    )
    if not encoded:
        raise InputError(
            f"train: every preference pair's prompt fills train.max_seq_length "
            f"({cfg.max_seq_length} tokens); raise it"
        )
    cuda = cuda_available()
    bf16 = inference_dtype(cfg.precision) == torch.bfloat16
    checkpoints = out / "dpo_checkpoints"
    settings = {
        "student": student_ref,
        "config": cfg.model_dump(mode="json"),
        "start": adapter_id(start_adapter),  # its weights: a retrained SFT adapter differs
        "pairs": [[p["prompt"], p["chosen"], p["rejected"]] for p in pairs],
    }
    last = checkpoints_to_resume(settings, checkpoints, resume)
    trainer = pretokenized_dpo_trainer()(
        model=student.model,
        ref_model=None,
        args=dpo_args(cfg, checkpoints, cuda, bf16),
        train_dataset=Dataset.from_list(encoded),
        processing_class=student.tok,
        peft_config=student.peft_config,
        callbacks=[progress_callback(), *(callbacks or [])],
    )
    result, seconds, resumed = run_pass(trainer, student, out, checkpoints, last, resume)
    history = trainer.state.log_history
    steps = [h for h in history if "rewards/margins" in h]
    tokens = sum(
        2 * len(e["prompt_ids"]) + len(e["chosen_ids"]) + len(e["rejected_ids"]) for e in encoded
    )
    return DpoPass(
        backend=student.backend,
        start="sft adapter" if start_adapter else "base student",
        pairs=len(encoded),
        pairs_left_out=len(pairs) - len(encoded),
        beta=cfg.dpo.beta,
        first_margin=round(float(steps[0]["rewards/margins"]), 4) if steps else None,
        last_margin=round(float(steps[-1]["rewards/margins"]), 4) if steps else None,
        last_accuracy=round(float(steps[-1]["rewards/accuracies"]), 4) if steps else None,
        **pass_figures(trainer, result, seconds, resumed, tokens).model_dump(),
        **pass_metrics(student, out, cfg).model_dump(),
        log_history=history,
    )
