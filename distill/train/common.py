"""What every training pass (SFT, DPO, on-policy distillation) shares: loading the
student with its LoRA, running a TRL trainer with checkpoints that belong to these
settings and this data (so --resume cannot finish another run), saving the adapter
atomically, the arguments every pass takes from the recipe alike, and the figures every
pass reports."""

from __future__ import annotations

import dataclasses
import json
import resource
import shutil
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

from distill import distributed
from distill.errors import UserError
from distill.io import atomic_dir, hash_json
from distill.models import inference_dtype, resolve_causal_lm
from distill.train.backends import (
    GPU_PACKAGES,
    TRAINING_PACKAGES,
    choose_backend,
    cuda_available,
    load_trl,
    load_unsloth,
    lora_config,
)
from distill.train.config import TrainConfig
from distill.train_results import Figures, Machine
from distill.ui import console


def progress_callback() -> Any:
    from transformers import TrainerCallback

    from distill.ui import progress

    class RichProgress(TrainerCallback):
        bar: Any = None
        loss = eval_loss = ""

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
            if self.bar is not None and logs and ("loss" in logs or "eval_loss" in logs):
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


def reset_peak_memory() -> bool:
    """Start this process's peak-RSS count afresh (Linux: /proc/self/clear_refs), so the
    train stage reports its own peak, not that of a stage before it in `distill run`.
    False where the platform cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_memory_mb(cuda: bool, since_reset: bool = False) -> float:
    if cuda:
        import torch

        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if since_reset:  # VmHWM: the peak since reset_peak_memory(), in kB
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 2**10, 1)
    # ru_maxrss is in KiB on Linux (bytes on macOS): the process's peak since it began.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


@dataclasses.dataclass
class Student:
    """The student loaded for a training pass, and what the pass reports of it."""

    backend: str
    ref: str  # the recipe's student
    resolved: Any  # models.ResolvedModel
    model: Any
    tok: Any
    peft_config: Any  # None: `model` is already wrapped (Unsloth, or a loaded adapter)
    own_peak: bool


def load_student(ref: str, cfg: TrainConfig, start_adapter: Path | None = None) -> Student:
    """The student `ref` with a LoRA to train: fresh, or `start_adapter`'s weights (the
    SFT adapter a DPO pass continues from) loaded into one with the same settings."""
    backend = choose_backend(cfg)
    own_peak = reset_peak_memory()
    # TRL reads the model's old checkpointing flag, which transformers 5 deprecates.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
    if not cuda_available() and metadata.version("trl").startswith("1.15."):
        # Found with the gpu extra's set: TRL 1.15 always swaps in a fused LM head built
        # on Triton kernels, which cannot run without a GPU.
        raise UserError(
            "trl 1.15 (the gpu extra's pin) trains on a CUDA GPU only; on this CPU "
            "install trl 1.16 or later: pip install -U 'trl>=1.16'"
        )
    resolved = resolve_causal_lm(ref)
    if cfg.load_in_4bit and not cuda_available():
        raise UserError("train.load_in_4bit needs a CUDA GPU (bitsandbytes); set it to false")
    # Unsloth patches transformers and TRL, so it loads before they are imported here.
    if backend == "unsloth":
        model, tok = load_unsloth(cfg, resolved.path)
        peft_config = None
    else:
        model, tok = load_trl(ref, cfg)
        peft_config = lora_config(cfg)
    if start_adapter is not None:
        model = _with_adapter(model, peft_config, start_adapter)
        peft_config = None
    return Student(backend, ref, resolved, model, tok, peft_config, own_peak)


def _with_adapter(model: Any, peft_config: Any, adapter: Path) -> Any:
    """`model` wrapped (if it is not yet) with a trainable LoRA holding `adapter`'s weights."""
    from peft import get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    if peft_config is not None:
        model = get_peft_model(model, peft_config)
    state = load_file(str(adapter / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(model, state)
    missing = [k for k in getattr(result, "unexpected_keys", []) if "lora" in k]
    if missing:
        raise UserError(
            f"the adapter in {adapter} does not fit train's LoRA settings "
            f"({len(missing)} weights unused, e.g. {missing[0]}); train it again"
        )
    return model


def run_pass(
    trainer: Any,
    student: Student,
    out: Path,
    checkpoints: Path,
    last: str | None,
    resume: bool,
) -> tuple[Any, float, int | None]:
    """Train, save the adapter to out/adapter atomically, remove the checkpoints; return
    (the train result, seconds, the step resumed from or None)."""
    from transformers import PrinterCallback

    # Our progress bar replaces the trainer's printed log dicts.
    trainer.remove_callback(PrinterCallback)
    if cuda_available():
        import torch

        torch.cuda.reset_peak_memory_stats()
    start_step = int(Path(last).name.rsplit("-", 1)[1]) if resume and last is not None else 0
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last if resume else None)
    seconds = time.perf_counter() - t0
    if distributed.is_main():  # one writer; the others read the adapter once it is there
        with atomic_dir(out / "adapter") as tmp:
            trained: Any = trainer.model
            # Only the trained adapter: a DPO pass also holds a frozen "ref" copy of it.
            trained.save_pretrained(tmp, selected_adapters=["default"])
            student.tok.save_pretrained(tmp)
            _portable_adapter_config(
                tmp / "adapter_config.json", student.resolved.hub_id or student.ref
            )
        shutil.rmtree(checkpoints, ignore_errors=True)
    distributed.barrier()
    return result, seconds, (start_step if resume else None)


def pass_metrics(student: Student, out: Path, cfg: TrainConfig) -> Machine:
    """What every pass reports beside its own figures: memory, adapter, device, versions."""
    import torch

    cuda = cuda_available()
    bf16 = inference_dtype(cfg.precision) == torch.bfloat16
    return Machine(
        peak_memory_mb=peak_memory_mb(cuda, student.own_peak),
        adapter_bytes=(out / "adapter" / "adapter_model.safetensors").stat().st_size,
        device=torch.cuda.get_device_name() if cuda else "cpu",
        precision=("4-bit NF4 + " if cfg.load_in_4bit else "")
        + ("bfloat16 mixed" if bf16 else "float32"),
        versions=training_versions(),
    )


def checkpoints_to_resume(settings: Any, checkpoints: Path, resume: bool) -> str | None:
    """The checkpoint to resume from (None: start over, the folder emptied and stamped
    with `settings`, the JSON of what the checkpoints belong to)."""
    from transformers.trainer_utils import get_last_checkpoint

    settings = hash_json(settings)
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
        if distributed.is_main():
            shutil.rmtree(checkpoints, ignore_errors=True)
            checkpoints.mkdir(parents=True)
            (checkpoints / "settings.sha256").write_text(settings)
    distributed.barrier()  # every process starts from the same folder
    return last if resume else None


def one_row_a_step_on_cpu(cfg: TrainConfig, cuda: bool) -> dict[str, Any]:
    """A pass's batch arguments: `batch_size` rows a device step on a GPU; on the CPU one
    row (a DPO pair, a GKD prompt) a step, the batch made up by accumulation: the same
    rows per update, without the padded batch's memory."""
    if cuda:
        return {
            "per_device_train_batch_size": cfg.batch_size,
            "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        }
    return {
        "per_device_train_batch_size": 1,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps * cfg.batch_size,
    }


def common_args(
    cfg: TrainConfig, config_cls: Any, checkpoints: Path, cuda: bool, bf16: bool
) -> dict[str, Any]:
    """The training arguments every pass (SFT, DPO) takes from the recipe alike."""
    return {
        "output_dir": str(checkpoints),
        "lr_scheduler_type": cfg.lr_scheduler,
        # transformers 5 reads a float in [0, 1) here as a share of the steps (its
        # `warmup_ratio` is deprecated), so the ratio goes in as it is.
        "warmup_steps": cfg.warmup_ratio,
        "max_length": cfg.max_seq_length,
        "seed": cfg.seed,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": cfg.save_steps,
        "save_total_limit": 2,
        "report_to": [],
        "disable_tqdm": True,
        "use_cpu": not cuda,
        "bf16": bf16,
        # transformers renamed gradient_checkpointing (5.2x); TRL still sets the old name.
        _checkpointing_arg(config_cls): cfg.gradient_checkpointing,
        "dataloader_num_workers": 0,
        # Several processes (DDP): every LoRA weight is used in each forward pass.
        "ddp_find_unused_parameters": False,
    }


def pass_figures(
    trainer: Any, result: Any, seconds: float, resumed_from: int | None, tokens: int | None = None
) -> Figures:
    """Steps, losses and throughput of a finished run (a resumed one counts its own steps);
    `tokens`: those of one epoch, when the dataset's own lengths do not say (DPO's pairs)."""
    start_step = resumed_from or 0
    state = trainer.state
    if tokens is None:
        tokens = sum(sum(x) for x in _lengths(trainer.train_dataset))
    steps_now = state.global_step - start_step
    share = steps_now / max(state.global_step, 1)
    return Figures(
        steps=state.global_step,
        resumed_from_step=resumed_from,
        epochs=round(float(state.epoch or 0), 2),
        train_loss=round(float(result.training_loss), 4),
        seconds=round(seconds, 1),
        tokens_per_second=round(tokens * float(state.epoch or 0) * share / seconds, 1),
    )


def last_eval_loss(history: list[dict[str, Any]]) -> float | None:
    """The last eval-split loss the trainer logged, or None."""
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    return round(float(evals[-1]), 4) if evals else None


def training_versions() -> dict[str, str]:
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
