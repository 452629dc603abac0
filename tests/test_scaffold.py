"""`distill init DOCS`: a commented recipe sized from the corpus, which
`distill run` accepts as it is (slow: ingest loads the tokenizer and MiniLM)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from distill.recipe import load_recipe
from distill.scaffold import sizing

pytestmark = pytest.mark.slow


def test_sizing_follows_the_corpus() -> None:
    from distill.split import split_documents

    small = sizing(documents=4, chunks=12)
    assert small["samples_per_chunk"] == 4 and small["max_chunks"] is None
    # Two documents held out at least: by the split itself, for every seed (the
    # fraction alone missed it for about a quarter of them).
    docs = [f"doc{i}" for i in range(4)]
    for seed in range(200):
        held = split_documents(docs, small["eval_fraction"], seed, small["min_eval_documents"])
        assert 2 <= len(held) <= 3
    big = sizing(documents=3000, chunks=20_000)
    assert big["max_chunks"] == 1500 and big["samples_per_chunk"] == 1
    assert big["eval_fraction"] == 0.2 and big["epochs"] == 2


def test_init_writes_a_recipe_that_runs_as_is(small_corpus: Path, tmp_path: Path) -> None:
    def distill(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "distill", *args], cwd=tmp_path, capture_output=True, text=True
        )

    got = distill("init", str(small_corpus), "--teacher", "fake:", "-o", "recipe.yaml")
    assert got.returncode == 0, got.stderr
    assert "3 documents" in got.stdout and "next: distill run recipe.yaml" in got.stdout
    text = (tmp_path / "recipe.yaml").read_text()
    assert text.startswith("# distill recipe for")
    assert "3 documents" in text and "teacher requests" in text  # measured, in the comments
    assert "# The plan's coverage: every chunk of 3 of 3 documents." in text
    recipe = load_recipe(tmp_path / "recipe.yaml")
    assert recipe.ingest.paths == ["docs"] and recipe.teacher.model == "fake:"
    from distill.runfolder import RunFolder

    chunks = RunFolder(tmp_path / "runs" / recipe.name).stage("ingest")["counts"]["chunks"]
    assert recipe.generate.samples_per_chunk == sizing(3, chunks)["samples_per_chunk"]
    again = distill("init", str(small_corpus), "-o", "recipe.yaml")
    assert again.returncode == 2 and "exists" in again.stderr and "--force" in again.stderr
    ran = distill("run", "recipe.yaml", "--until", "curate")
    assert ran.returncode == 0, ran.stderr
    assert "ingest    unchanged, skipped" in ran.stderr  # init's ingest is reused
    assert (tmp_path / "runs" / recipe.name / "curate" / "train.parquet").exists()
    # A folder name YAML would misread (": ") still writes a valid recipe.
    odd = tmp_path / "notes: v2"
    odd.mkdir()
    (odd / "a.md").write_text("# A\n\nThe export runs nightly at two.\n")
    (odd / "b.md").write_text("# B\n\nImports run every hour on the hour.\n")
    made = distill("init", str(odd), "--teacher", "fake:", "-o", "odd.yaml")
    assert made.returncode == 0, made.stderr
    assert load_recipe(tmp_path / "odd.yaml").description.endswith("notes: v2.")
    # A failed init leaves no recipe behind.
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "blank.md").write_text("   \n")
    failed = distill("init", str(tmp_path / "empty"), "--teacher", "fake:", "-o", "bad.yaml")
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert not (tmp_path / "bad.yaml").exists()
    missing = distill("init", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr + again.stderr
