"""The recipe's `train` section: the student, LoRA and the training loop."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from distill.config import DEFAULT_STUDENT, StrictModel


class TrainConfig(StrictModel):
    backend: Literal["auto", "trl", "unsloth"] = Field(
        "auto",
        description="'unsloth' (CUDA GPU, the `gpu` extra), 'trl' (TRL + PEFT, CPU or GPU), or "
        "'auto': Unsloth when a CUDA GPU and Unsloth are present, else TRL. Both run the same "
        "TRL SFTTrainer with the same settings; Unsloth only loads and wraps the model.",
    )
    student: str = Field(
        DEFAULT_STUDENT, description="Student model: hub id, local folder, .gguf file or alias."
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
