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


def test_generated_docs_match_the_code(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """docs/recipes.md's key reference and README.md's command block are what `make docs`
    writes from the config models and from `distill --help`; `--check` names a stale one."""
    import tools.sync_docs as sync

    text = sync.RECIPES.read_text(encoding="utf-8")
    assert sync.synced(text) == text, "docs/recipes.md's key reference is stale: run `make docs`"
    for key in ("chunk_overlap", "teacher_options", "max_repetition", "eval_fraction", "systems"):
        assert f"| `{key}` |" in text

    readme = sync.README.read_text(encoding="utf-8")
    assert sync.synced_readme(readme) == readme, (
        "README.md's command block is stale: run `make docs`"
    )
    assert "<!-- cli:start -->\n```\nUsage: distill [OPTIONS] COMMAND [ARGS]..." in readme
    # The block is the real help: every command the CLI has is listed in it.
    out = distill("--help").stdout
    commands = [ln.split()[0] for ln in out.split("Commands:")[1].splitlines() if ln.strip()]
    assert commands and all(f"\n  {c}  " in sync.cli_help() for c in commands)

    stale = tmp_path / "README.md"
    stale.write_text("# x\n<!-- cli:start -->\nold help\n<!-- cli:end -->\n", encoding="utf-8")
    monkeypatch.setattr(sync, "FILES", [(stale, sync.synced_readme, "README.md's command block")])
    assert sync.main(check=True) == "README.md's command block is stale: run `make docs`"
    assert "old help" in stale.read_text(encoding="utf-8")  # --check writes nothing
    assert sync.main(check=False) is None and sync.main(check=True) is None
    assert "old help" not in stale.read_text(encoding="utf-8")


def test_export_names_a_missing_converter(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from distill.errors import UserError
    from distill.export import converter_dir

    monkeypatch.setenv("DISTILL_LLAMA_CPP", str(tmp_path))
    with pytest.raises(UserError, match="has no convert_hf_to_gguf.py"):
        converter_dir()
    (tmp_path / "convert_hf_to_gguf.py").write_text("# stand-in\n")
    assert converter_dir() == tmp_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "publish: KIND is 'dataset' or 'adapter', not 'nope'"),
        (["dataset", "--repo-id", "my org/x"], "--repo-id 'my org/x': write it as ORG/NAME"),
        (["--dry-run"], "--repo-id, --private/--public and --dry-run need a KIND"),
        (["dataset", "--dry-run"], "publish dataset: the ingest stage has not run"),
        (["adapter", "--dry-run"], "publish adapter: the train stage has not run"),
    ],
)
def test_publish_mistakes_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    recipe = write_recipe(tmp_path, "name: t\ningest:\n  paths: [docs]\n")
    proc = distill("publish", str(recipe), *args, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr


def test_eval_needs_a_recipe_or_two_runs(tmp_path: Path) -> None:
    proc = distill("eval", cwd=tmp_path)
    assert (
        proc.returncode == 2 and "give a recipe (distill eval RECIPE) or --compare" in proc.stderr
    )
    proc = distill("eval", "--compare", str(tmp_path), str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and f"no eval results in {tmp_path}" in proc.stderr


def test_publish_help_says_what_the_recipe_does_to_visibility() -> None:
    """Without --private/--public, publish.private: true makes an existing repository
    private too (what the code does); the help used to say it kept its visibility."""
    out = distill("publish", "--help").stdout
    text = " ".join(out.replace("│", " ").split())
    assert "publish.private decides: true makes it private, new or existing" in text
    assert "an existing one keeps its visibility" not in text
