"""Publish: the dataset and the adapter as Hugging Face Hub repositories.

The stage writes both folders, exactly as they would be uploaded:
- publish/dataset/: data/train-*.parquet and data/eval-*.parquet (plus, when asked,
  a `rejected` config with the reasons and a `corpus` config with the chunks),
  README.md (dataset card with YAML metadata) and recipe.yaml (the resolved recipe,
  secrets removed); loads with `datasets.load_dataset("publish/dataset")`;
- publish/adapter/: adapter_model.safetensors, adapter_config.json, the tokenizer
  files and README.md (model card with the eval decision table); loads with PEFT.

`distill publish RECIPE dataset|adapter --repo-id ORG/NAME` writes the folder again
for that repository and uploads it (distill.publish.hub). Before anything is written to disk
as final, both folders are scanned for tokens and API keys; one found stops the stage.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from distill import __version__, tables
from distill.errors import UserError
from distill.io import atomic_dir, read_rows, write_rows
from distill.models import resolve_causal_lm
from distill.publish.cards import (
    OTHER_LICENSE,
    dataset_card,
    license_text,
    model_card,
    review_text,
)
from distill.publish.secrets import refuse_secrets
from distill.recipe import Recipe
from distill.redact import redact, scrub
from distill.results import read_metrics
from distill.review_gate import gate_reasons, review_stats, training_rows
from distill.runfolder import RunFolder, RunOptions
from distill.tables import CuratedSample, Preference, trl_preference
from distill.train_results import read_train_metrics

PREFERENCE_COLUMNS = (
    "pair_id",
    "sample_id",
    "task",
    "chosen_by",
    "rejected_by",
    "rejected_correctness",
    "judge",
    "why",
)
DATASET_COLUMNS = (
    "sample_id",
    "messages",
    "question",
    "answer",
    "task",
    "source_chunk_id",
    "chunk_ids",
    "doc_ids",
    "teacher",
    "template",
    "template_sha",
    "review_status",
    "human_edited",
)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)


def repo_ids(recipe: Recipe) -> tuple[str, str]:
    """(dataset repo, adapter repo), from the recipe or the defaults."""
    p = recipe.publish
    return (
        p.dataset_repo or f"{recipe.name}-dataset",
        p.adapter_repo or f"{recipe.name}-lora",
    )


# -- the stage


def run(recipe: Recipe, folder: RunFolder, options: RunOptions) -> dict[str, Any]:
    """The stage: both folders."""
    dataset_repo, adapter_repo = repo_ids(recipe)
    counts = write(recipe, folder, "dataset", options)
    write(recipe, folder, "adapter", options)
    return {**counts, "dataset": dataset_repo, "adapter": adapter_repo}


NEEDS = {"dataset": ("ingest", "generate", "curate", "review"), "adapter": ("train", "eval")}


def check_ready(folder: RunFolder, kind: str) -> None:
    """One line naming the first stage the folder needs that has not run."""
    from distill.errors import InputError

    for stage in NEEDS[kind]:
        if not folder.is_done(stage):
            raise InputError(
                f"publish {kind}: the {stage} stage has not run; run `distill run RECIPE` first"
            )


def write(recipe: Recipe, folder: RunFolder, kind: str, options: RunOptions) -> dict[str, Any]:
    """Write publish/<kind>/ as it would be uploaded; refuse (and remove it) when it holds
    a credential."""
    check_ready(folder, kind)
    dataset_repo, adapter_repo = repo_ids(recipe)
    dest = folder.stage_dir("publish") / kind
    if kind == "dataset":
        return write_dataset(recipe, folder, dest, dataset_repo, options)
    write_adapter(recipe, folder, dest, (adapter_repo, dataset_repo), options)
    return {}


def _dataset_rows(
    rows: Sequence[Mapping[str, Any]], extra: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    return [
        {
            **{k: r.get(k) for k in DATASET_COLUMNS + extra},
            "review_status": r.get("review_status", "not_reviewed"),
            "human_edited": bool(r.get("human_edited")),
        }
        for r in rows
    ]


def _preference_row(p: Preference) -> dict[str, Any]:
    """A pair in TRL's conversational preference format, with why it exists: the
    config loads straight into DPOTrainer."""
    fields: dict[str, Any] = dict(p)
    return {**trl_preference(p), **{k: fields[k] for k in PREFERENCE_COLUMNS}}


def _reviewer_reason(row: dict[str, Any]) -> str:
    issues = ", ".join(row.get("issues") or []) or "rejected"
    notes = row.get("reviewer_notes")
    text = " / ".join(notes) if isinstance(notes, list) else (notes or "")
    return f"{issues}: {text}" if text else issues


def unreviewed_reasons(recipe: Recipe, folder: RunFolder) -> list[str]:
    """Why the dataset has not passed a human spot-check (empty: it has)."""
    stats = review_stats(folder)
    if not stats.get("human_reviewed"):  # review.mode auto
        return ["the spot-check was skipped (review.mode is auto: no person checked it)"]
    return gate_reasons(stats, recipe.review)


def _review_text(recipe: Recipe, folder: RunFolder, options: RunOptions) -> str:
    return review_text(folder, unreviewed_reasons(recipe, folder), options.accept_unreviewed)


def write_dataset(
    recipe: Recipe, folder: RunFolder, dest: Path, repo_id: str, options: RunOptions
) -> dict[str, int]:
    cfg = recipe.publish
    train = training_rows(folder)
    held = tables.read(folder.curated("eval"), CuratedSample)
    seen_path = folder.curated("eval_seen")
    seen = tables.read(seen_path, CuratedSample) if seen_path.exists() else []
    rejected: list[dict[str, Any]] = []
    if cfg.include_rejected:
        rejected = [
            {**r, "rejected_by": "curation"}
            for r in tables.read(folder.curated("rejected"), CuratedSample)
        ]
        human = folder.human_rejected
        if human.exists():
            rejected += [
                {**r, "rejected_by": "reviewer", "reject_reason": _reviewer_reason(r)}
                for r in read_rows(human)
            ]
    prefs_path = folder.preferences
    # Pairs belong to the dataset only if this run's training used them (DPO).
    prefs = (
        tables.read(prefs_path, Preference)
        if prefs_path.exists() and recipe.train.method.endswith("dpo")
        else []
    )
    # Only pairs whose sample is in the published rows with the same final answer: a
    # sample reviewers rejected or corrected after the pairs were built leaves its pairs
    # out (retrain to rebuild them).
    finals = {r["sample_id"]: r["messages"][-1]["content"] for r in train}
    stale = [p for p in prefs if finals.get(p["sample_id"]) != p["chosen"]]
    prefs = [p for p in prefs if finals.get(p["sample_id"]) == p["chosen"]]
    if stale:
        from distill.ui import console

        console.print(
            f"  [yellow]{len(stale)} preference pair(s) left out: their sample was rejected "
            "or corrected in review after the pairs were built (retrain to rebuild them)"
        )
    with atomic_dir(dest) as tmp:
        write_rows(tmp / "data" / "train-00000-of-00001.parquet", _dataset_rows(train))
        if prefs:
            write_rows(
                tmp / "preferences" / "preferences-00000-of-00001.parquet",
                [_preference_row(p) for p in prefs],
            )
        write_rows(tmp / "data" / "eval-00000-of-00001.parquet", _dataset_rows(held))
        if seen:
            write_rows(tmp / "data" / "eval_seen-00000-of-00001.parquet", _dataset_rows(seen))
        if rejected:
            write_rows(
                tmp / "rejected" / "rejected-00000-of-00001.parquet",
                _dataset_rows(rejected, ("reject_reason", "rejected_by")),
            )
        if cfg.include_corpus:
            chunks = read_rows(folder.chunks)
            write_rows(tmp / "corpus" / "chunks-00000-of-00001.parquet", chunks)
        recipe_data = scrub(recipe.model_dump(mode="json"))
        (tmp / "recipe.yaml").write_text(
            "# The resolved recipe this dataset was made with (distill "
            f"{__version__}); secrets removed.\n" + yaml.safe_dump(recipe_data, sort_keys=False),
            encoding="utf-8",
        )
        if (text := license_text(recipe)) is not None:
            (tmp / OTHER_LICENSE).write_text(text, encoding="utf-8")
        (tmp / "README.md").write_text(
            redact(
                dataset_card(
                    recipe,
                    folder,
                    repo_id,
                    {
                        "train": train,
                        "eval": held,
                        "eval_seen": seen,
                        "rejected": rejected,
                        "preferences": prefs,
                    },
                    _review_text(recipe, folder, options),
                )
            ),
            encoding="utf-8",
        )
        refuse_secrets(tmp, "dataset")
    return {
        "train": len(train),
        "eval": len(held),
        "eval_seen": len(seen),
        "rejected": len(rejected),
        "preferences": len(prefs),
        "preferences_left_out": len(stale),
    }


def write_adapter(
    recipe: Recipe, folder: RunFolder, dest: Path, repos: tuple[str, str], options: RunOptions
) -> None:
    """`repos`: (the adapter's repository, the dataset's)."""
    adapter = folder.adapter_dir
    metrics = read_metrics(folder.eval_metrics)
    measured = metrics.adapter_sha256
    actual = folder.adapter_id
    if measured is not None and measured != actual:
        raise UserError(
            "publish adapter: the adapter was retrained after eval measured it, so the "
            "card's table would describe another adapter; run `distill eval RECIPE` first"
        )
    train_metrics = read_train_metrics(folder.train_metrics)
    student = resolve_causal_lm(recipe.student)
    with atomic_dir(dest) as tmp:
        for f in adapter.iterdir():
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
        if not any((tmp / n).exists() for n in ("tokenizer.json", "tokenizer.model")):
            for name in TOKENIZER_FILES:  # the student's own tokenizer
                src = Path(student.path) / name
                if src.exists():
                    shutil.copy2(src, tmp / name)
        if (text := license_text(recipe)) is not None:
            (tmp / OTHER_LICENSE).write_text(text, encoding="utf-8")
        (tmp / "README.md").write_text(
            redact(
                model_card(
                    recipe,
                    folder,
                    repos,
                    (student.hub_id or recipe.student, student.note),
                    (metrics, train_metrics),
                    _review_text(recipe, folder, options),
                )
            ),
            encoding="utf-8",
        )
        refuse_secrets(tmp, "adapter")
