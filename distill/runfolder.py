"""The run folder `runs/<name>/` and its manifest.json.

The manifest holds the resolved recipe, versions, model ids, input and template
hashes, and per stage: status (running | done | failed | interrupted), start and
end times, duration, counts, tokens, the fingerprint of its inputs and the hash
of its outputs. It is rewritten atomically after every change of state, under a lock
and from what is on disk then (`RunFolder.change`), so concurrent commands merge.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from distill import __version__
from distill.io import adapter_id, read_json, write_json
from distill.redact import scrub

STAGES = ("ingest", "generate", "curate", "review", "train", "eval", "publish")
TRACKED_PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "trl",
    "accelerate",
    "datasets",
    "sentence-transformers",
    "pydantic",
)


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    out = {"distill": __version__}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


@dataclass(frozen=True)
class RunOptions:
    """Choices of one invocation that are not recipe settings: every stage gets them."""

    resume: bool = False  # train: continue from the last checkpoint (--resume)
    # train and publish despite a closed review gate; recorded in the manifest and cards
    accept_unreviewed: bool = False


CURATED = ("train", "eval", "eval_seen", "rejected")


class RunFolder:
    """One recipe's run folder. A stage creates its own folder with `stage_dir(name)`
    and writes there; what flows between stages (docs/ARCHITECTURE.md, "The rows that
    flow") is named once, below, as read-only paths that create nothing."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifest_path = root / "manifest.json"
        self.manifest: dict[str, Any] = (
            read_json(self.manifest_path) if self.manifest_path.exists() else {"stages": {}}
        )

    def stage_dir(self, name: str) -> Path:
        """The writer's call: stage `name`'s own folder, created if missing."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ingest
    @property
    def ingest_dir(self) -> Path:
        """The index (read by `Retriever`), with the reading report."""
        return self.root / "ingest"

    @property
    def documents(self) -> Path:
        return self.root / "ingest" / "documents.parquet"

    @property
    def chunks(self) -> Path:
        return self.root / "ingest" / "chunks.parquet"

    # generate
    @property
    def split_file(self) -> Path:
        """The split by document, chosen before any request (`Split.load`)."""
        return self.root / "generate" / "split.json"

    @property
    def samples(self) -> Path:
        return self.root / "generate" / "samples.parquet"

    @property
    def generated_key(self) -> Path:
        """The answer key generate writes (eval_key) and eval reads."""
        return self.root / "generate" / "eval_key.jsonl"

    @property
    def traffic(self) -> Path:
        """Your held-out questions with their references (generate.prompts), eval's
        `traffic` set."""
        return self.root / "generate" / "traffic.jsonl"

    # curate
    def curated(self, part: str) -> Path:
        """Curate's rows: `train`, `eval` (held-out documents), `eval_seen`, `rejected`."""
        if part not in CURATED:
            raise ValueError(f"no curated part {part!r}: one of {', '.join(CURATED)}")
        return self.root / "curate" / f"{part}.parquet"

    # review
    @property
    def spot_check(self) -> Path:
        return self.root / "review" / "spot_check.parquet"

    @property
    def review_stats(self) -> Path:
        return self.root / "review" / "stats.json"

    @property
    def decisions(self) -> Path:
        return self.root / "review" / "decisions.parquet"

    @property
    def human_rejected(self) -> Path:
        """The training rows reviewers rejected."""
        return self.root / "review" / "rejected.parquet"

    @property
    def exports_dir(self) -> Path:
        """The curated rows in the formats `review.exports` names (written by review)."""
        return self.root / "review" / "exports"

    @property
    def review_file_dir(self) -> Path:
        """`distill review export`'s files unless --out says otherwise, and the answers
        `distill review import` brought in: outside review/, as they are the review stage's
        input (like Argilla's records), not its output."""
        return self.root / "review_file"

    @property
    def imported_answers(self) -> Path:
        return self.root / "review_file" / "answers.json"

    # train
    @property
    def adapter_dir(self) -> Path:
        return self.root / "train" / "adapter"

    @property
    def adapter_id(self) -> str | None:
        """The trained adapter's id (`io.adapter_id`); None: none trained."""
        return adapter_id(self.adapter_dir)

    @property
    def train_metrics(self) -> Path:
        return self.root / "train" / "metrics.json"

    @property
    def preferences(self) -> Path:
        return self.root / "train" / "preferences.parquet"

    # eval
    @property
    def answers(self) -> Path:
        return self.root / "eval" / "answers.parquet"

    @property
    def eval_metrics(self) -> Path:
        return self.root / "eval" / "metrics.json"

    # publish
    def published(self, kind: str) -> Path:
        """The Hub repository publish writes: `dataset` or `adapter`."""
        return self.root / "publish" / kind

    # export (`distill export`)
    @property
    def export_dir(self) -> Path:
        return self.root / "export"

    def lora_gguf(self, name: str) -> Path:
        """The adapter as a LoRA GGUF for llama.cpp (`name`: the recipe's)."""
        return self.root / "export" / f"{name}-lora-f16.gguf"

    def stage(self, name: str) -> dict[str, Any]:
        return self.manifest["stages"].get(name, {})

    def is_done(self, name: str) -> bool:
        return self.stage(name).get("status") == "done" and (self.root / name).is_dir()

    def update_stage(self, name: str, **fields: Any) -> None:
        self.change(lambda m: m["stages"].setdefault(name, {}).update(fields))

    def change(self, edit: Callable[[dict[str, Any]], object]) -> None:
        """Apply `edit` to the manifest as it is on disk now, under a lock on the run
        folder, and write it: two commands on one run (`export` while `eval` runs) each
        keep the other's changes (writing a copy read at start lost them)."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".manifest.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if self.manifest_path.exists():
                    self.manifest = read_json(self.manifest_path)
                self.manifest.setdefault("stages", {})
                edit(self.manifest)
                self.manifest["updated_at"] = now()
                # Credentials in the recipe (a key in a base_url, say) never reach the disk.
                write_json(self.manifest_path, scrub(self.manifest))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
