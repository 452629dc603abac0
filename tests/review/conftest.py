"""A run folder curated by hand for the review-file tests: no model, no server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from distill.io import write_rows
from distill.recipe import Recipe, load_recipe
from distill.runfolder import RunFolder
from tests.conftest import write_recipe

RECIPE = """name: files
run_dir: {runs}
teacher: 'fake:'
ingest:
  paths: [docs]
review:
  mode: {mode}
  sample_count: 6
  low_score_cap: 2
  max_reject_rate: 0.2
"""


def chunk(i: int) -> dict[str, Any]:
    """Chunk i of document i % 3 (ingest's Chunk row)."""
    doc = f"Doc {i % 3}"
    row = dict(chunk_id=f"c{i}", doc_id=f"d{i % 3}", source=f"doc{i % 3}.md", title=doc)
    row.update(heading_path=f"{doc} > Part {i}", text=f"Part {i}: the plan costs ${i} a month.")
    return {**row, "n_tokens": 12, "position": i}


def sample(i: int, **extra: Any) -> dict[str, Any]:
    answer = f"It costs ${i} a month [1]."
    return {
        "sample_id": f"{i:016x}",
        "task": "qa" if i % 2 else "raft",
        "source_doc_ids": [f"d{i % 3}"],
        "question": f"What does plan {i} cost?",
        "answer": answer,
        "messages": [
            {"role": "system", "content": "Answer from the documents."},
            {"role": "user", "content": f"[1] Part {i}\n\nWhat does plan {i} cost?"},
            {"role": "assistant", "content": answer},
        ],
        "chunk_ids": [f"c{i}", f"c{i + 1}"],
        "citations": [1],
        "groundedness": 5,
        "quality": 5,
        **extra,
    }


@dataclass
class FileRun:
    path: Path  # the recipe
    folder: RunFolder

    def recipe(self, *overrides: str) -> Recipe:
        return load_recipe(self.path, list(overrides))

    def train(self, rows: list[dict[str, Any]]) -> None:
        write_rows(self.folder.curated("train"), rows)


def make_run(tmp_path: Path, mode: str = "file") -> FileRun:
    path = write_recipe(tmp_path, RECIPE.format(runs=tmp_path / "runs", mode=mode))
    folder = RunFolder(tmp_path / "runs" / "files")
    train = [sample(i) for i in range(1, 17)]
    # Two low judge scores: the spot-check's low-score extras (unless sampled).
    for s in train[:2]:
        s.update(groundedness=3, quality=3)
    write_rows(folder.chunks, [chunk(i) for i in range(0, 20)])
    write_rows(folder.curated("train"), train)
    write_rows(folder.curated("eval"), [sample(99)])
    folder.stage_dir("curate")
    folder.update_stage("curate", status="done", output_hash="curated")
    return FileRun(path, folder)


@pytest.fixture
def file_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FileRun:
    monkeypatch.chdir(tmp_path)
    return make_run(tmp_path)
