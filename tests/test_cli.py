from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from distill import __version__
from tests.conftest import write_recipe


def distill(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "distill", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


def test_version_and_help_list_every_stage() -> None:
    assert distill("--version").stdout.strip() == f"distill {__version__}"
    out = distill("--help").stdout
    for command in (
        "run",
        "validate",
        "ingest",
        "generate",
        "curate",
        "review",
        "train",
        "eval",
        "publish",
    ):
        assert f"  {command}" in out, command


def test_stage_without_its_inputs_says_what_to_run(tmp_path: Path, small_corpus: Path) -> None:
    recipe = write_recipe(tmp_path, "name: t\ningest:\n  paths: [docs]\n")
    proc = distill("train", str(recipe), cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "needs the output of 'curate'" in proc.stderr and "--until curate" in proc.stderr


def test_missing_corpus_is_one_clear_line(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, "name: t\ningest:\n  paths: [nowhere]\n")
    proc = distill("run", str(recipe), cwd=tmp_path)
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [
        f"error: ingest.paths: 'nowhere' does not exist (paths are relative to {tmp_path})"
    ]


def test_unknown_option_is_a_usage_error() -> None:
    proc = distill("run", "x.yaml", "--bogus")
    assert proc.returncode == 2
    assert "No such option: --bogus" in proc.stderr


def test_readme_recipe_reference_matches_the_config_models() -> None:
    from tools.sync_readme import README, synced

    text = README.read_text(encoding="utf-8")
    assert synced(text) == text, "README.md's recipe reference is stale: run `make docs`"
    for key in ("chunk_overlap", "teacher_options", "max_repetition", "precision", "systems"):
        assert f"| `{key}` |" in text


def test_export_names_a_missing_converter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from distill.errors import UserError
    from distill.export import converter_dir

    monkeypatch.setenv("DISTILL_LLAMA_CPP", str(tmp_path))
    with pytest.raises(UserError, match="has no convert_hf_to_gguf.py"):
        converter_dir()
    (tmp_path / "convert_hf_to_gguf.py").write_text("# stand-in\n")
    assert converter_dir() == tmp_path
