"""Loading the student for training: Unsloth on a CUDA GPU (its own fast kernels and
4-bit loading), else transformers + PEFT LoRA for TRL's SFTTrainer."""

from __future__ import annotations

import importlib.util
from typing import Any

from distill.errors import MissingExtraError, UserError
from distill.models import load_causal_lm, resolve_causal_lm
from distill.train.config import TrainConfig

TRAINING_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets")

GPU_PACKAGES = ("unsloth", "bitsandbytes")


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def choose_backend(cfg: TrainConfig) -> str:
    """'unsloth' or 'trl' for this machine; `auto` picks Unsloth when it can run."""
    if cfg.backend != "auto":
        return cfg.backend
    return "unsloth" if cuda_available() and importlib.util.find_spec("unsloth") else "trl"


def lora_config(cfg: TrainConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )


def load_unsloth(cfg: TrainConfig, path: str) -> tuple[Any, Any]:
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


def load_trl(ref: str, cfg: TrainConfig) -> tuple[Any, Any]:
    if not cfg.load_in_4bit:
        model, tok = load_causal_lm(ref)
        model.train()
        return model, tok
    if not cuda_available():
        raise UserError("train.load_in_4bit needs a CUDA GPU (bitsandbytes); set it to false")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise MissingExtraError("bitsandbytes (train.load_in_4bit)", "'distill[gpu]'")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    path = resolve_causal_lm(ref).path
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
