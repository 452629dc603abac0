"""Train: a LoRA adapter on the student with TRL: SFT, DPO, on-policy distillation.

One training config, two loaders. `trl` loads the student with transformers and
wraps it with PEFT LoRA (CPU or GPU); `unsloth` loads and wraps it with Unsloth's
FastLanguageModel (CUDA GPU, the `gpu` extra); `auto` picks Unsloth when it can run.
Either way the same TRL trainers run with the same arguments, so the CPU path
exercises nearly all of the GPU path.

`train.method`:
- `sft`: SFTTrainer on the curated samples. Examples are token ids with an assistant
  mask built from the student's own chat template (distill/train/data.py): the loss
  covers the answers and their EOS only. The eval split's loss is logged every
  `eval_steps`.
- `dpo`: the base student answers each training prompt; pairs of (the chosen answer,
  the student's clearly worse one) are built (distill/train/preferences.py) and
  DPOTrainer trains a fresh LoRA on them against the base student.
- `sft_then_dpo`: SFT as above (its adapter kept in train/sft_adapter), then the SFT
  student's own answers make the pairs and DPO continues from its adapter against it.
- `gkd` / `sft_then_gkd`: on-policy distillation against `train.gkd.teacher`
  (distill/train/gkd.py): TRL's GKDTrainer when it shares the student's tokenizer,
  GOLDTrainer when it does not; or against `train.gkd.served_teacher`'s top-k; or,
  with `train.gkd.capture`, against the teacher's top-k captured once into
  train/teacher_logprobs/ (distill/train/capture.py).

A checkpoint is written every `save_steps` to train/checkpoints/ (dpo_checkpoints/),
and `distill train --resume` continues a killed run from the last one (the
checkpoints are removed once the adapter is saved).

Outputs in `train/`: adapter/ (adapter_model.safetensors, adapter_config.json,
tokenizer), log.json (the trainer's log history), metrics.json, loss.png, report.md;
with DPO also sft_adapter/, candidates.parquet (every sampled answer, graded),
preferences.parquet and preferences.trl.jsonl (TRL's prompt/chosen/rejected format),
dpo_log.json; with GKD gkd_log.json, gkd.png, and teacher_logprobs/ with a capture.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from distill import distributed, tables
from distill.errors import InputError
from distill.io import adapter_id, hash_json, read_json, read_rows, write_json, write_text
from distill.recipe import Recipe
from distill.review_gate import training_rows
from distill.runfolder import RunFolder, RunOptions
from distill.tables import Candidate, Preference
from distill.train.common import peak_memory_mb, reset_peak_memory
from distill.train.config import TrainConfig
from distill.train.report import loss_plot, report
from distill.train.sft import train_adapter
from distill.train_results import DpoMetrics, GkdPass, PairStats, SftPass, TrainMetrics

# Each method's passes, in order: a combined method runs SFT first and continues from
# its adapter (TRL's pairing of SFTTrainer with DPOTrainer or GKDTrainer).
METHODS: dict[str, tuple[str, ...]] = {
    "sft": ("sft",),
    "dpo": ("dpo",),
    "gkd": ("gkd",),
    "sft_then_dpo": ("sft", "dpo"),
    "sft_then_gkd": ("sft", "gkd"),
}


def passes(method: str) -> tuple[bool, str | None]:
    """(SFT first?, the pass after it or instead of it: 'dpo', 'gkd' or None)."""
    steps = METHODS[method]
    return steps[0] == "sft", next((s for s in steps if s != "sft"), None)


def _sft_stamp(student: str, cfg: TrainConfig, rows: list[dict[str, Any]]) -> str:
    return hash_json(
        {
            "student": student,
            "config": cfg.model_dump(mode="json"),
            "train": [r["messages"] for r in rows],
        }
    )


def _plan(
    student: str, cfg: TrainConfig, rows: list[dict[str, Any]], out: Path, resume: bool
) -> tuple[bool, bool]:
    """(skip SFT, resume the second pass) for `--resume`: a second pass resumes from its
    checkpoints; SFT is skipped when its adapter of these settings and rows is kept
    (a crash came after it), so building the pairs or the second pass starts again."""
    sft_first, then = passes(cfg.method)
    if not (resume and then):
        return False, False
    stamp = out / "sft_adapter" / "settings.sha256"
    kept = stamp.exists() and stamp.read_text() == _sft_stamp(student, cfg, rows)
    # SFT is skipped only on its own stamp: checkpoints of the second pass say nothing
    # about rows reviewers rejected since. Without the kept adapter the second pass
    # starts over (its start changes); its checkpoints check their own stamp.
    resume_then = _has_checkpoint(out / f"{then}_checkpoints") and (kept or not sft_first)
    return sft_first and kept, resume_then


def run(recipe: Recipe, folder: RunFolder, options: RunOptions) -> dict[str, Any]:
    """The method's passes, in every process alike (under accelerate launch or torchrun
    each trains on its share of each batch); process 0 alone builds DPO's pairs and
    writes every file, and the others wait for it at the barriers."""
    rows = training_rows(folder)
    if not rows:
        raise InputError("train: no samples left after curation and review")
    cfg = recipe.train
    out = folder.stage_dir("train")
    sft_first, then = passes(cfg.method)
    # Process 0's plan in every process (the others must run the same passes).
    skip_sft, resume_then = distributed.share(_plan(recipe.student, cfg, rows, out, options.resume))
    main = distributed.is_main()
    sft: SftPass | None = None
    if sft_first and not skip_sft:
        eval_rows = read_rows(folder.curated("eval"))
        sft = train_adapter(
            recipe.student, cfg, rows, out, eval_rows=eval_rows, resume=options.resume
        )
        if main:
            write_json(out / "log.json", sft.log_history)
            loss_plot(sft.log_history, out / "loss.png")
            if then:
                shutil.rmtree(out / "sft_adapter", ignore_errors=True)
                (out / "adapter").rename(out / "sft_adapter")
                # For --resume after a crash in what follows: SFT need not run again.
                write_json(out / "sft_adapter" / "metrics.json", sft.model_dump())
                stamp = _sft_stamp(recipe.student, cfg, rows)
                write_text(out / "sft_adapter" / "settings.sha256", stamp)
    elif sft_first and main:
        sft = SftPass.model_validate(read_json(out / "sft_adapter" / "metrics.json"))
    dpo: DpoMetrics | None = None
    gkd: GkdPass | None = None
    if then:
        start = out / "sft_adapter" if sft_first else None
        if then == "dpo":
            dpo = _dpo(recipe, rows, out, start, resume_then, main=main)
        else:
            eval_rows = read_rows(folder.curated("eval"))
            gkd = _gkd(recipe, rows, eval_rows, out, start, resume_then, main=main)
    if not main:
        return {}
    metrics = TrainMetrics(method=cfg.method, examples=len(rows), sft=sft, dpo=dpo, gkd=gkd)
    write_json(folder.train_metrics, metrics.model_dump())
    write_text(out / "report.md", report(recipe.student, cfg, metrics, out))
    return _summary(metrics)


def _summary(m: TrainMetrics) -> dict[str, Any]:
    """The stage's counts in the manifest (and the line `distill run` prints)."""
    first = m.first
    summary = {
        "backend": first.backend,
        "examples": m.examples,
        "steps": first.steps,
        "train_loss": first.train_loss,
        "eval_loss": m.eval_loss,
        "tokens_per_second": first.tokens_per_second,
        "peak_memory_mb": m.peak_memory_mb,
    }
    if m.dpo:
        summary.update(pairs=m.dpo.pairs, dpo_steps=m.dpo.steps, dpo_margin=m.dpo.last_margin)
    if m.gkd:
        summary.update(gkd_steps=m.gkd.steps, gkd_loss=m.gkd.last_loss)
    return summary


def _gkd(
    recipe: Recipe,
    rows: list[dict[str, Any]],
    eval_rows: list[dict[str, Any]],
    out: Path,
    start: Path | None,
    resume: bool,
    *,
    main: bool = True,
) -> GkdPass | None:
    """The GKD pass; its result in process 0, None in the others."""
    from distill.train.gkd import train_gkd

    distributed.barrier()  # every process waits for the SFT adapter's move
    gkd = train_gkd(
        recipe.student,
        recipe.train,
        rows,
        out,
        start_adapter=start,
        resume=resume,
        eval_rows=eval_rows,
    )
    if not main:
        return None
    write_json(out / "gkd_log.json", gkd.log_history)
    title = "GKD loss (generalized JSD to the teacher)"
    if gkd.trainer == "GOLD":
        title = "GOLD loss (ULD to the teacher, across tokenizers)"
    elif gkd.capture is not None:
        title = "GKD loss (generalized JSD to the captured teacher's top-k)"
    elif gkd.trainer != "GKD":
        title = "GKD loss (generalized JSD to the served teacher's top-k)"
    loss_plot(gkd.log_history, out / "gkd.png", title)
    return gkd


def _has_checkpoint(path: Path) -> bool:
    return path.is_dir() and any(p.name.startswith("checkpoint-") for p in path.iterdir())


def _dpo(
    recipe: Recipe,
    rows: list[dict[str, Any]],
    out: Path,
    start: Path | None,
    resume: bool,
    *,
    main: bool = True,
) -> DpoMetrics | None:
    """Build the pairs (or, resuming, reuse them: process 0) and run the DPO pass; its
    result beside the pairs' stats in process 0, None in the others."""
    from distill.train.dpo import train_dpo

    cfg = recipe.train
    pairs_path = out / "preferences.parquet"
    # Process 0 alone builds (or reuses) the pairs; the others read what it wrote.
    stats = _pairs(recipe, rows, out, start, resume) if main else None
    distributed.barrier()  # every process waits for the SFT adapter's move and the pairs
    pairs = tables.read(pairs_path, Preference)
    dpo = train_dpo(recipe.student, cfg, pairs, out, start_adapter=start, resume=resume)
    if stats is None:
        return None
    write_json(out / "dpo_log.json", dpo.log_history)
    dpo_series = (("loss", "DPO loss"), ("rewards/margins", "reward margin"))
    loss_plot(dpo.log_history, out / "dpo.png", "", dpo_series)
    # DPO's `pairs` (those that fit) over the built ones, which become `pairs_built`.
    merged = {**stats.model_dump(), **dpo.model_dump()}
    return DpoMetrics(**merged, pairs_built=stats.pairs)


def _pairs(
    recipe: Recipe, rows: list[dict[str, Any]], out: Path, start: Path | None, resume: bool
) -> PairStats:
    """Build the pairs into out/, or on --resume keep those built from these rows, from
    this start adapter's weights (not its path) and with these settings; their stats."""
    stamp = hash_json(
        {
            "student": recipe.student,
            "config": recipe.train.model_dump(mode="json"),
            "train": [r["messages"] for r in rows],
            "start": adapter_id(start),
        }
    )
    stamped = out / "preferences.sha256"
    kept = (out / "preferences.parquet").exists() and stamped.exists()
    if resume and kept and stamped.read_text() == stamp:
        return PairStats.model_validate(read_json(out / "preferences.json"))
    _, stats = _build_pairs(recipe, rows, out, start)
    write_text(stamped, stamp)
    return stats


def _build_pairs(
    recipe: Recipe, rows: list[dict[str, Any]], out: Path, start: Path | None
) -> tuple[list[Preference], PairStats]:
    from distill.models import load_causal_lm
    from distill.train import preferences

    own = reset_peak_memory()
    model, tok = load_causal_lm(recipe.student, recipe.train.precision)
    if start is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(start))
    written_by = "sft student" if start is not None else "base student"
    pairs, cands, counts = preferences.build(recipe, rows, model, tok, written_by, out)
    del model
    stats = PairStats(**counts.model_dump(), pairs_peak_memory_mb=peak_memory_mb(False, own))
    tables.write(out / "candidates.parquet", cands, Candidate)
    tables.write(out / "preferences.parquet", pairs, Preference)
    write_text(out / "preferences.trl.jsonl", "".join(trl_line(p) + "\n" for p in pairs))
    write_json(out / "preferences.json", stats.model_dump())
    return pairs, stats


def trl_line(p: Preference) -> str:
    """A pair in TRL's conversational preference format (prompt / chosen / rejected)."""
    return json.dumps(tables.trl_preference(p), ensure_ascii=False)
