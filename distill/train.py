"""Train: a LoRA adapter on the student with TRL's SFTTrainer.

Both backends feed the same SFTTrainer with the same config; they differ only in
how the model is loaded and wrapped with LoRA (`trl`: transformers + PEFT, CPU or
GPU; `unsloth`: Unsloth's FastLanguageModel, GPU only). Samples are given in
prompt/completion form, so the loss covers the answer tokens only.

Outputs in `train/`: adapter/ (adapter_model.safetensors, adapter_config.json,
tokenizer), log.json (the trainer's log history) and report.md.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from distill.errors import InputError, MissingExtraError, UserError
from distill.io import atomic_dir, write_json, write_text
from distill.models import inference_dtype, load_causal_lm, resolve_causal_lm
from distill.recipe import Recipe, TrainConfig
from distill.review import training_rows
from distill.runfolder import RunFolder


def to_prompt_completion(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat samples as TRL's conversational prompt/completion records."""
    out = []
    for r in rows:
        msgs = [{"role": m["role"], "content": m["content"]} for m in r["messages"]]
        if not msgs or msgs[-1]["role"] != "assistant":
            raise InputError(f"sample {r['sample_id']} does not end with an assistant answer")
        out.append({"prompt": msgs[:-1], "completion": msgs[-1:]})
    return out


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
        model_name=path, max_seq_length=cfg.max_seq_length, load_in_4bit=False, dtype=None
    )
    model = FastLanguageModel.get_peft_model(
        model,
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules,
        bias="none",
        random_state=cfg.seed,
    )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def _progress_callback(total_steps: int) -> Any:
    from transformers import TrainerCallback

    from distill.ui import progress

    class RichProgress(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.bar = progress()
            self.bar.start()
            self.task = self.bar.add_task("training steps", total=state.max_steps or total_steps)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.bar.update(self.task, completed=state.global_step)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                desc = f"training steps (loss {logs['loss']:.3f})"
                self.bar.update(self.task, description=desc)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.bar.stop()

    return RichProgress()


def train_adapter(cfg: TrainConfig, rows: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    """Train a LoRA adapter on `rows` and save it to `out` (atomically); return metrics."""
    resolved = resolve_causal_lm(cfg.student)
    # Unsloth patches transformers and TRL, so it loads before they are imported here.
    if cfg.backend == "unsloth":
        model, tok = _load_unsloth(cfg, resolved.path)
        peft_config = None
    else:
        model, tok = load_causal_lm(cfg.student)
        peft_config = _lora_config(cfg)

    import torch
    from datasets import Dataset, disable_progress_bars
    from transformers import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    disable_progress_bars()
    dataset = Dataset.from_list(to_prompt_completion(rows))
    use_gpu = torch.cuda.is_available()
    bf16 = inference_dtype(cfg.precision) == torch.bfloat16
    # Checkpointing and resume come with the training issue; the work folder is scratch.
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".work-") as work:
        checkpointing: dict[str, Any] = {_checkpointing_arg(SFTConfig): cfg.gradient_checkpointing}
        args = SFTConfig(
            output_dir=str(work),
            num_train_epochs=cfg.epochs,
            max_steps=cfg.max_steps or -1,
            learning_rate=cfg.learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=0,
            per_device_train_batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            max_length=cfg.max_seq_length,
            completion_only_loss=True,
            seed=cfg.seed,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            use_cpu=not use_gpu,
            bf16=bf16,
            # transformers renamed gradient_checkpointing (5.2x); TRL still sets the old name.
            **checkpointing,
            dataloader_num_workers=0,
        )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tok,
            peft_config=peft_config,
            callbacks=[_progress_callback(0)],
        )
        # Our progress bar replaces the trainer's printed log dicts.
        trainer.remove_callback(PrinterCallback)
        t0 = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - t0
        with atomic_dir(out) as tmp:
            trained: Any = trainer.model
            trained.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            _portable_adapter_config(tmp / "adapter_config.json", resolved.hub_id or cfg.student)
    tokenized: Any = trainer.train_dataset
    n_tokens = sum(len(x) for x in tokenized["input_ids"])
    steps = trainer.state.global_step
    return {
        "examples": len(rows),
        "steps": steps,
        "epochs": round(float(trainer.state.epoch or 0), 2),
        "train_loss": round(float(result.training_loss), 4),
        "seconds": round(seconds, 1),
        "tokens_per_second": round(n_tokens * float(trainer.state.epoch or 0) / seconds, 1),
        "device": "cuda" if use_gpu else "cpu",
        "precision": "bfloat16 mixed" if bf16 else "float32",
        "log_history": trainer.state.log_history,
    }


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


def run(recipe: Recipe, run: RunFolder) -> dict[str, Any]:
    rows = training_rows(run)
    if not rows:
        raise InputError("train: no samples left after curation and review")
    out = run.stage_dir("train")
    metrics = train_adapter(recipe.train, rows, out / "adapter")
    history = metrics.pop("log_history")
    write_json(out / "log.json", history)
    write_json(out / "metrics.json", metrics)
    write_text(out / "report.md", _report(recipe.train, metrics, history))
    return {k: metrics[k] for k in ("examples", "steps", "train_loss", "tokens_per_second")}


def _report(cfg: TrainConfig, m: dict[str, Any], history: list[dict[str, Any]]) -> str:
    losses = [h["loss"] for h in history if "loss" in h]
    first, last = (losses[0], losses[-1]) if losses else (float("nan"), float("nan"))
    rows = "\n".join(f"| {k} | {v} |" for k, v in cfg.model_dump().items())
    return (
        "# Training report\n\n"
        f"- student: `{cfg.student}`, backend `{cfg.backend}` on {m['device']} "
        f"({m['precision']})\n"
        f"- {m['examples']} examples, {m['steps']} steps, {m['epochs']} epochs in {m['seconds']} s "
        f"({m['tokens_per_second']} tokens/s)\n"
        f"- loss: first step {first:.3f}, last step {last:.3f}, mean {m['train_loss']}\n\n"
        "| setting | value |\n| --- | --- |\n" + rows + "\n"
    )
