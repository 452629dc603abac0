"""The run folder's paths between stages: reading one creates nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.runfolder import CURATED, RunFolder


def test_reading_a_path_creates_no_folder_and_the_writer_call_does(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    paths = [
        run.ingest_dir,
        run.documents,
        run.chunks,
        run.split_file,
        run.samples,
        run.generated_key,
        *(run.curated(part) for part in CURATED),
        run.spot_check,
        run.review_stats,
        run.decisions,
        run.human_rejected,
        run.exports_dir,
        run.adapter_dir,
        run.train_metrics,
        run.preferences,
        run.answers,
        run.eval_metrics,
        run.published("adapter"),
        run.export_dir,
        run.lora_gguf("r"),
    ]
    assert len(set(paths)) == len(paths)  # no two contracts share a file
    assert all(p.is_relative_to(run.root) for p in paths)
    assert not run.root.exists()
    assert run.stage_dir("curate") == run.curated("eval").parent
    assert run.curated("eval").parent.is_dir()
    assert sorted(p.name for p in run.root.iterdir()) == ["curate"]


def test_an_unknown_curated_part_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no curated part 'held_out': one of train, eval"):
        RunFolder(tmp_path).curated("held_out")
