"""The recipe's `train` section: LoRA, the training loop and the methods' passes (the
student is the recipe's own: `student`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from distill.config import LocalModel, StrictModel
from distill.train.scoring import ServedOptions


class PreferencesConfig(StrictModel):
    """How preference pairs are built for DPO: the student answers each training prompt,
    the judge grades each answer against the teacher's (or the reviewer's) answer, and a
    pair is kept only where the student's answer is clearly worse."""

    judge: str | None = Field(
        None,
        description="Who grades the student's answers; null: eval.judge, else the teacher.",
    )
    judge_options: dict[str, Any] | None = Field(
        None, description="The judge backend's settings; null: those eval's judge uses."
    )
    samples: int = Field(2, ge=1, le=8, description="Student answers sampled per training prompt.")
    temperature: float = Field(
        0.8, gt=0, le=2, description="Sampling temperature of the student's answers."
    )
    max_new_tokens: int = Field(200, ge=8, description="Longest student answer sampled.")
    max_rejected_correctness: int = Field(
        2,
        ge=1,
        le=4,
        description="A student answer graded at most this (correctness 1-5 against the "
        "chosen answer) is 'clearly worse' and becomes the pair's rejected answer.",
    )
    grade_template: str = Field(
        "eval_grade@v2", description="The judge's rubric (the one eval grades with)."
    )


class DpoConfig(StrictModel):
    """TRL's DPOTrainer over the pairs, with the same LoRA settings as SFT."""

    beta: float = Field(
        0.1,
        gt=0,
        description="DPO's beta: how far the policy may leave the "
        "reference (the model before DPO).",
    )
    loss_type: Literal["sigmoid", "ipo", "hinge", "sigmoid_norm", "apo_zero"] = Field(
        "sigmoid", description="TRL's DPO loss (sigmoid: the DPO paper's)."
    )
    sft_weight: float = Field(
        0.0,
        ge=0,
        description="Weight of an SFT loss on the chosen answers added to DPO's (RPO); 0: none.",
    )
    learning_rate: float = Field(5e-5, gt=0, description="Peak learning rate of the DPO pass.")
    epochs: float = Field(1.0, gt=0, description="Passes over the pairs.")
    max_steps: int | None = Field(
        None, ge=1, description="Stop after this many DPO optimizer steps (overrides epochs)."
    )


class ServedTeacherConfig(StrictModel):
    """A GKD teacher answered by a server that shares the student's tokenizer and returns
    top-k log-probabilities (llama-cpp-python's server or vLLM)."""

    model: str = Field(
        description="openai:MODEL: the model's name on that OpenAI-compatible server."
    )
    options: ServedOptions = Field(
        description="The server's settings: base_url, api_key_env, logprobs (echo: "
        "llama-cpp-python; prompt_logprobs: vLLM), top_k."
    )

    @model_validator(mode="after")
    def _openai(self) -> ServedTeacherConfig:
        provider, sep, name = self.model.partition(":")
        if provider != "openai" or not sep or not name:
            raise ValueError(
                f"model {self.model!r}: a served teacher is openai:MODEL (an "
                "OpenAI-compatible server at options.base_url)"
            )
        return self


class CaptureConfig(StrictModel):
    """The teacher's top-k log-probabilities on the curated answers, captured once into a
    folder (distill/train/capture.py) and read by every GKD pass after it instead of the
    teacher: off-policy distillation (gkd.lmbda 0) with no teacher loaded or called."""

    top_k: int = Field(
        20,
        ge=1,
        le=256,
        description="Teacher log-probabilities kept per answer token, beside one tail bucket "
        "for the rest of the vocabulary (a served teacher is asked for this many).",
    )
    bits: Literal[8, 16] = Field(
        8,
        description="How each log-probability is stored: 8 (one byte, square-root companded "
        "over [-20, 0]: within 0.018 nats at -1, 0.04 at -5) or 16 (float16).",
    )
    path: str | None = Field(
        None,
        description="The capture's folder (relative to the cwd, like run_dir); null: the "
        "run's train/teacher_logprobs/. Another run's folder trains a second student (same "
        "tokenizer) from its capture; with no teacher named, the teacher is the one it was "
        "captured from and every row must be in it.",
    )


class GkdConfig(StrictModel):
    """On-policy distillation against a teacher model: TRL's GKDTrainer when the teacher
    shares the student's tokenizer, TRL's GOLDTrainer (ULD loss, tokens aligned by bytes)
    when it does not; or against a served teacher's top-k log-probabilities."""

    teacher: LocalModel | None = Field(
        None,
        description="The teacher model the student learns to match token by token, loaded "
        "in the training process: local:MODEL or MODEL (hub id, local folder, .gguf file or "
        "alias). One sharing the student's tokenizer (e.g. qwen2.5-coder-1.5b-instruct for a "
        "qwen2.5-coder-0.5b-instruct student) trains with GKD; another (a Qwen teacher for a "
        "SmolLM2 student) with GOLD's cross-tokenizer loss.",
    )
    served_teacher: ServedTeacherConfig | None = Field(
        None,
        description="Instead of teacher: a served teacher sharing the student's tokenizer, "
        "matched on its top-k log-probabilities.",
    )
    lmbda: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Share of steps on the student's own sampled answers (on-policy); the "
        "rest use the curated answers.",
    )
    beta: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Generalized JSD interpolation: 0 forward KL, 1 reverse KL, 0.5 JSD.",
    )
    temperature: float = Field(0.9, gt=0, le=2, description="Sampling temperature on-policy.")
    max_new_tokens: int = Field(128, ge=8, description="Longest on-policy answer sampled.")
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate of the GKD pass.")
    epochs: float = Field(1.0, gt=0, description="Passes over the training prompts.")
    max_steps: int | None = Field(
        None, ge=1, description="Stop after this many GKD optimizer steps (overrides epochs)."
    )
    capture: CaptureConfig | None = Field(
        None,
        description="Capture the teacher's top-k log-probabilities on the curated answers "
        "once (the teacher loaded, or served, for that alone) and train from the capture: "
        "needs lmbda 0 (on-policy samples need the teacher live).",
    )
    measure_eval: bool = Field(
        True,
        description="Measure the distillation loss on the eval split's curated answers before "
        "and after the pass (two passes over them with both models; with a served teacher, "
        "one request per answer each time).",
    )


Method = Literal["sft", "dpo", "sft_then_dpo", "gkd", "sft_then_gkd"]


class TrainConfig(StrictModel):
    method: Method = Field(
        "sft",
        description="'sft': supervised fine-tuning on the teacher's answers; 'dpo': DPO from "
        "the base student on pairs of (teacher's answer, the base student's clearly worse "
        "one); 'sft_then_dpo': SFT, then DPO from the SFT adapter on pairs whose rejected "
        "answers the SFT student wrote; 'gkd': on-policy distillation from the base student "
        "against train.gkd.teacher (or served_teacher); 'sft_then_gkd': SFT, then GKD from "
        "its adapter.",
    )
    backend: Literal["auto", "trl", "unsloth"] = Field(
        "auto",
        description="'unsloth' (CUDA GPU, the `gpu` extra), 'trl' (TRL + PEFT, CPU or GPU), or "
        "'auto': Unsloth when a CUDA GPU and Unsloth are present, else TRL. Both run the same "
        "TRL SFTTrainer with the same settings; Unsloth only loads and wraps the model.",
    )
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha (scaling = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="Module names LoRA wraps.",
    )
    epochs: float = Field(2.0, gt=0, description="Passes over the training set.")
    max_steps: int | None = Field(
        None, ge=1, description="Stop after this many optimizer steps (overrides epochs)."
    )
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule after warmup."
    )
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of steps spent warming up.")
    load_in_4bit: bool = Field(
        False, description="QLoRA: load the student in 4-bit NF4 (CUDA GPU only, bitsandbytes)."
    )
    packing: bool = Field(
        False,
        description="Pack several examples into each max_seq_length row (best-fit, each "
        "example attending only to itself): fewer pad tokens, faster on short examples.",
    )
    eval_steps: int = Field(
        20, ge=1, description="Loss on the eval split every this many optimizer steps."
    )
    save_steps: int = Field(
        20, ge=1, description="Checkpoint every this many steps (`distill train --resume`)."
    )
    batch_size: int = Field(8, ge=1, description="Examples per device step.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Steps per optimizer update.")
    max_seq_length: int = Field(512, ge=32, description="Longer examples are truncated.")
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute activations in the backward pass: less memory, ~30% slower. "
        "Turn on for large students on small GPUs.",
    )
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="bfloat16 mixed precision or float32; auto uses bfloat16 where the hardware "
        "has it (about 1.5x faster on such CPUs).",
    )
    seed: int = Field(0, description="Training seed.")
    preferences: PreferencesConfig = Field(
        default_factory=lambda: PreferencesConfig(),
        description="Preference pairs for DPO (method dpo or sft_then_dpo).",
    )
    dpo: DpoConfig = Field(
        default_factory=lambda: DpoConfig(), description="The DPO pass's settings."
    )
    gkd: GkdConfig = Field(
        default_factory=lambda: GkdConfig(), description="The on-policy distillation pass."
    )

    @model_validator(mode="after")
    def _gkd_needs_a_teacher(self) -> TrainConfig:
        g = self.gkd
        if g.teacher and g.served_teacher:
            raise ValueError("train.gkd: give teacher (loaded here) or served_teacher, not both")
        from_capture = g.capture is not None and g.capture.path is not None
        if self.method in ("gkd", "sft_then_gkd") and not (
            g.teacher or g.served_teacher or from_capture
        ):
            raise ValueError(
                f"train.method {self.method} needs train.gkd.teacher: the model the "
                "student learns to match, e.g. qwen2.5-coder-0.5b-instruct (or "
                "train.gkd.served_teacher, or a capture's train.gkd.capture.path)"
            )
        if g.capture is not None and g.lmbda > 0:
            raise ValueError(
                f"train.gkd.capture reads the teacher on the curated answers only, but "
                f"gkd.lmbda {g.lmbda} samples the student's own answers, which need the "
                "teacher live: set train.gkd.lmbda to 0, or drop train.gkd.capture"
            )
        return self
