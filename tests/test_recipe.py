from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from distill.errors import RecipeError
from distill.recipe import load_recipe
from tests.conftest import REPO, write_recipe

MINIMAL = "name: demo\ningest:\n  paths: [docs]\n"


def test_minimal_recipe_gets_defaults(tmp_path: Path) -> None:
    r = load_recipe(write_recipe(tmp_path, MINIMAL))
    assert r.name == "demo"
    assert r.train.backend == "auto"
    assert r.generate.teacher.startswith("local:")
    assert r.base_dir == tmp_path
    assert r.run_path == Path("runs/demo")


def test_quickstart_recipe_is_valid() -> None:
    r = load_recipe(REPO / "recipes" / "quickstart.yaml")
    assert r.name == "quickstart"
    assert "ft+rag" in r.eval.systems


def test_unknown_key_names_path_and_known_keys(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, MINIMAL + "train:\n  epochz: 3\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    (problem,) = e.value.problems
    assert problem.startswith("train.epochz: unknown key")
    assert "epochs" in problem and "lora_r" in problem
    assert str(path) in str(e.value)


def test_wrong_type_and_range_each_get_a_line(tmp_path: Path) -> None:
    body = MINIMAL + "train:\n  epochs: many\n  lora_r: 0\ncurate:\n  eval_fraction: 1.5\n"
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe(tmp_path, body))
    keys = sorted(p.split(":")[0] for p in e.value.problems)
    assert keys == ["curate.eval_fraction", "train.epochs", "train.lora_r"]
    assert any("'many'" in p for p in e.value.problems)


def test_missing_required_fields(tmp_path: Path) -> None:
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe(tmp_path, "ingest: {}\n"))
    assert sorted(p.split(":")[0] for p in e.value.problems) == ["ingest", "name"]
    assert any("give at least one of paths and datasets" in p for p in e.value.problems)


def test_overlap_must_be_smaller_than_chunk(tmp_path: Path) -> None:
    body = MINIMAL + "  chunk_tokens: 64\n  chunk_overlap: 64\n"
    with pytest.raises(RecipeError, match="chunk_overlap must be smaller"):
        load_recipe(write_recipe(tmp_path, body))


def test_set_overrides_parse_values_as_yaml(tmp_path: Path) -> None:
    r = load_recipe(
        write_recipe(tmp_path, MINIMAL),
        ["train.epochs=1", "eval.systems=[base, ft]", "generate.max_chunks=5", "name=other"],
    )
    assert r.train.epochs == 1.0
    assert r.eval.systems == ["base", "ft"]
    assert r.generate.max_chunks == 5
    assert r.name == "other"


def test_set_override_errors(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, MINIMAL)
    with pytest.raises(RecipeError, match="expected KEY.PATH=VALUE"):
        load_recipe(path, ["train.epochs"])
    with pytest.raises(RecipeError, match="--set name.x: .name. is not a section"):
        load_recipe(path, ["name.x=1"])
    with pytest.raises(RecipeError, match="train.nope: unknown key"):
        load_recipe(path, ["train.nope=1"])
    with pytest.raises(RecipeError, match="the value is not valid YAML.*quote it"):
        load_recipe(path, ["eval.off_topic=[Is it free?]"])


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="line 3: not valid YAML"):
        load_recipe(write_recipe(tmp_path, "name: x\ningest: [\n"))
    with pytest.raises(RecipeError, match="file not found"):
        load_recipe(tmp_path / "absent.yaml")
    with pytest.raises(RecipeError, match="top level must be a mapping"):
        load_recipe(write_recipe(tmp_path, "- a\n- b\n"))


def test_cli_validate_prints_one_line_per_problem_without_traceback(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, "name: bad name\ningest:\n  chunk_tokens: 0\n  extra: 1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "distill", "validate", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 3
    assert all(str(path) in ln for ln in lines)
    assert any("ingest.extra: unknown key" in ln for ln in lines)


def test_cli_validate_good_recipe_prints_resolved(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()  # validate checks that ingest.paths match files
    (tmp_path / "docs" / "a.md").write_text("# A\n\nSome text.\n")
    proc = subprocess.run(
        [sys.executable, "-m", "distill", "validate", str(write_recipe(tmp_path, MINIMAL)),
         "--set", "train.lora_r=4"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "lora_r: 4" in proc.stdout
