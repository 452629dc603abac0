"""On-policy distillation: TRL's GKDTrainer against a local teacher that shares the
student's tokenizer, with SFT's LoRA settings, chat template and masking rules.

At each step, with probability `gkd.lmbda`, the student samples its own answers to the
step's training prompts and learns to match the teacher's next-token distribution on
them (the generalized JSD of the GKD paper, `gkd.beta`); otherwise it matches the
teacher on the curated answers. The rows are tokenized by distill/train/data.py (the
loss covers the answers and their EOS only); the prompt each sample is drawn from is
everything before the last answer, as inference renders it.

A teacher with another tokenizer (a Qwen teacher for a SmolLM2 student) goes through
TRL's GOLDTrainer instead, with its ULD loss: the teacher reads the same text in its own
tokens, the two tokenizations are aligned by byte offsets, and the sorted next-token
probabilities are matched where one vocabulary cannot be mapped onto the other. GOLD
takes the rows as conversations and masks the final assistant turn and its end-of-turn
(the same span SFT's masks cover); the teacher reads the prompt as the student's chat
template renders it, so a teacher trained on the same chat format (ChatML for SmolLM2
and Qwen) reads it best.

With `gkd.capture` (lmbda 0: the curated answers only), the teacher's top-k on the rows
is captured once before the student loads (distill/train/capture.py) and the pass reads
it in place of the teacher, loaded or served.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from distill.errors import InputError
from distill.io import adapter_id
from distill.models import inference_dtype, load_causal_lm, resolve_causal_lm
from distill.train.backends import cuda_available
from distill.train.capture import Captured
from distill.train.capture import prepare as prepare_capture
from distill.train.capture_store import row_key
from distill.train.common import (
    checkpoints_to_resume,
    common_args,
    last_eval_loss,
    load_student,
    one_row_a_step_on_cpu,
    pass_figures,
    pass_metrics,
    progress_callback,
    run_pass,
)
from distill.train.config import TrainConfig
from distill.train.data import encode_rows, final_answer_span, stop_ids
from distill.train.scoring import TokenScorer
from distill.train.served import (
    CapturedCollator,
    captured_trainer,
    make_trainer,
    teacher_stand_in,
)
from distill.train.trl_private import trl_experimental
from distill.train_results import GkdPass


class Collator:
    """Left-padded batches of encoded rows, with the prompts GKD samples from: the keys
    TRL's ChatML collator gives GKDTrainer, built from SFT's masks."""

    def __init__(self, pad_id: int, max_length: int) -> None:
        self.pad_id, self.max_length = pad_id, max_length

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        ids, labels, prompts = [], [], []
        for e in examples:
            start, _ = final_answer_span(e)
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


def load_teacher(cfg: TrainConfig, student_tok: Any) -> tuple[Any, bool]:
    """(the teacher model, whether it shares the student's tokenizer: GKD if so, else
    GOLD)."""
    assert cfg.gkd.teacher is not None
    model, tok = load_causal_lm(cfg.gkd.teacher, cfg.precision)
    model.eval()
    return model, tok.get_vocab() == student_tok.get_vocab()


def _shared_args(
    cfg: TrainConfig, config_cls: Any, checkpoints: Path, cuda: bool, bf16: bool
) -> Any:
    """What GKD's and GOLD's arguments take alike from train.gkd and the recipe."""
    g = cfg.gkd
    return {
        "num_train_epochs": g.epochs,
        "max_steps": g.max_steps or -1,
        "learning_rate": g.learning_rate,
        "lmbda": g.lmbda,
        "beta": g.beta,
        "temperature": g.temperature,
        **one_row_a_step_on_cpu(cfg, cuda),
        "eval_strategy": "no",
        "per_device_eval_batch_size": 1,
        **common_args(cfg, config_cls, checkpoints, cuda, bf16),
    }


def gkd_args(cfg: TrainConfig, checkpoints: Path, cuda: bool, bf16: bool) -> Any:
    GKDConfig = trl_experimental("gkd").GKDConfig
    return GKDConfig(
        max_new_tokens=cfg.gkd.max_new_tokens,
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        **_shared_args(cfg, GKDConfig, checkpoints, cuda, bf16),
    )


def gold_args(
    cfg: TrainConfig, teacher_path: str, checkpoints: Path, cuda: bool, bf16: bool
) -> Any:
    """GOLD's arguments: the GKD settings, with the ULD loss across the two tokenizers."""
    GOLDConfig = trl_experimental("gold").GOLDConfig
    return GOLDConfig(
        max_completion_length=cfg.gkd.max_new_tokens,
        use_uld_loss=True,
        teacher_tokenizer_name_or_path=teacher_path,
        packing=False,
        **_shared_args(cfg, GOLDConfig, checkpoints, cuda, bf16),
    )


def train_gkd(
    student_ref: str,
    cfg: TrainConfig,
    rows: list[dict[str, Any]],
    out: Path,
    *,
    start_adapter: Path | None = None,
    resume: bool = False,
    eval_rows: list[dict[str, Any]] | None = None,
    callbacks: list[Any] | None = None,
) -> GkdPass:
    """On-policy distillation on the training prompts from the base student or
    `start_adapter`: GKD when the teacher shares the student's tokenizer, else GOLD. The
    adapter is saved to out/adapter (atomically). With `eval_rows`, the distillation
    loss on their curated answers (off-policy) is measured before and after. Returns
    the pass's result. A served teacher (`gkd.served_teacher`) is asked for its top-k
    log-probabilities (distill/train/scoring.py, distill/train/served.py). With
    `gkd.capture`, the teacher's top-k on the rows is captured first where the capture
    lacks them, and the pass reads it instead of the teacher (distill/train/capture.py)."""
    captured = None
    if cfg.gkd.capture is not None:
        measured = eval_rows if cfg.gkd.measure_eval else []
        captured = prepare_capture(student_ref, cfg, [*rows, *(measured or [])], out)
    student = load_student(student_ref, cfg, start_adapter)
    by = None if captured else cfg.gkd.served_teacher
    scorer: AbstractContextManager[TokenScorer | None] = (
        nullcontext() if by is None else TokenScorer(by.model, by.options, student.tok)
    )
    with scorer as served:
        return _train_gkd(
            cfg,
            student,
            rows,
            out,
            start_adapter=start_adapter,
            resume=resume,
            eval_rows=eval_rows,
            callbacks=callbacks,
            served=served,
            captured=captured,
        )


def _train_gkd(
    cfg: TrainConfig,
    student: Any,
    rows: list[dict[str, Any]],
    out: Path,
    *,
    start_adapter: Path | None,
    resume: bool,
    eval_rows: list[dict[str, Any]] | None,
    callbacks: list[Any] | None,
    served: TokenScorer | None,
    captured: Captured | None = None,
) -> GkdPass:
    """train_gkd's pass on a loaded student; `served`: the served teacher's client, open
    for the whole pass; `captured`: the teacher's capture (neither: a local teacher,
    loaded here)."""
    if not cfg.gkd.measure_eval:
        eval_rows = None
    if served is not None or captured is not None:
        teacher, same_vocabulary = teacher_stand_in(student.model.config), True
    else:
        teacher, same_vocabulary = load_teacher(cfg, student.tok)
    import torch
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()
    stops = stop_ids(student.tok, student.model)
    encoded = encode_rows(student.tok, rows, stops)
    kept = [i for i, e in enumerate(encoded) if final_answer_span(e)[0] < cfg.max_seq_length]
    if not kept:
        raise InputError(
            f"train: every training prompt fills train.max_seq_length ({cfg.max_seq_length} "
            "tokens); raise it"
        )
    if served is not None:
        served.check_tokenizer(list(encoded[kept[0]]["input_ids"]))
    cuda = cuda_available()
    bf16 = inference_dtype(cfg.precision) == torch.bfloat16
    checkpoints = out / "gkd_checkpoints"
    settings = {
        "student": student.ref,
        "config": cfg.model_dump(mode="json"),
        "start": adapter_id(start_adapter),  # its weights: a retrained SFT adapter differs
        "train": [r.get("messages") for r in rows],
    }
    last = checkpoints_to_resume(settings, checkpoints, resume)
    common = {
        "model": student.model,
        "teacher_model": teacher,
        "processing_class": student.tok,
        "peft_config": student.peft_config,
        "callbacks": [progress_callback(), *(callbacks or [])],
    }
    if same_vocabulary:
        evals = encode_rows(student.tok, eval_rows or [], stops)
        fits = [e for e in evals if final_answer_span(e)[0] < cfg.max_seq_length]
        train = [encoded[i] for i in kept]
        gkd_trainer = trl_experimental("gkd").GKDTrainer
        collator: Any = Collator(student.tok.pad_token_id, cfg.max_seq_length)
        if captured is not None:
            train, fits = keyed(train), keyed(fits)
            captured.require([e["row_key"] for e in train + fits])
            collator = CapturedCollator(collator, captured.store, cfg.max_seq_length)
            gkd_trainer = captured_trainer(gkd_trainer)
        elif served is not None:
            gkd_trainer = make_trainer(gkd_trainer)
        trainer = gkd_trainer(
            args=gkd_args(cfg, checkpoints, cuda, bf16),
            data_collator=collator,
            train_dataset=Dataset.from_list(train),
            eval_dataset=Dataset.from_list(fits) if fits else None,
            **common,
        )
    else:
        # GOLD tokenizes the conversations itself, for both tokenizers.
        teacher_path = resolve_causal_lm(cfg.gkd.teacher or "").path
        fits = [{"messages": r["messages"]} for r in eval_rows or []]
        trainer = trl_experimental("gold").GOLDTrainer(
            args=gold_args(cfg, teacher_path, checkpoints, cuda, bf16),
            train_dataset=Dataset.from_list([{"messages": rows[i]["messages"]} for i in kept]),
            eval_dataset=Dataset.from_list(fits) if fits else None,
            **common,
        )
    if served is not None:
        trainer.served = served
    before = _eval_loss(trainer) if fits else None
    result, seconds, resumed = run_pass(trainer, student, out, checkpoints, last, resume)
    if served is not None:
        served.check_coverage(final=True)
    after = _eval_loss(trainer) if fits else None
    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    return GkdPass(
        backend=student.backend,
        start="sft adapter" if start_adapter else "base student",
        teacher=_teacher_name(cfg, served, captured),
        trainer=_trainer_name(served, captured) if same_vocabulary else "GOLD",
        served=served.report() if served else None,
        capture=captured.figures if captured else None,
        examples=len(kept),
        **pass_figures(trainer, result, seconds, resumed).model_dump(),
        eval_loss=last_eval_loss(history),
        first_loss=round(float(losses[0]), 4) if losses else None,
        last_loss=round(float(losses[-1]), 4) if losses else None,
        eval_examples=len(fits),
        eval_loss_before=before,
        eval_loss_after=after,
        **pass_metrics(student, out, cfg).model_dump(),
        log_history=history,
    )


def _teacher_name(
    cfg: TrainConfig, served: TokenScorer | None, captured: Captured | None
) -> str | None:
    if captured is not None:
        return captured.teacher
    return served.spec if served else cfg.gkd.teacher


def _trainer_name(served: TokenScorer | None, captured: Captured | None) -> str:
    if captured is not None:
        return "GKD (captured teacher, top-k)"
    return "GKD (served teacher, top-k)" if served else "GKD"


def keyed(encoded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Encoded rows with the key their capture is stored under."""
    return [{**e, "row_key": row_key(e)} for e in encoded]


def _eval_loss(trainer: Any) -> float:
    """The distillation loss on the eval rows' curated answers (no sampling), in eval
    mode; the trainer's log history does not keep it."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # our progress bar, not printed dicts
    logged = len(trainer.state.log_history)
    loss = trainer.evaluate()["eval_loss"]
    del trainer.state.log_history[logged:]
    return round(float(loss), 4)
