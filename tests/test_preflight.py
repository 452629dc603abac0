"""Preflight: a bad recipe fails in seconds, before ingest, with every
problem on its own line, and `distill validate` runs the same checks."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from distill.errors import UserError
from distill.pipeline import run_pipeline
from distill.preflight import problems
from distill.recipe import load_recipe

GOOD = "name: r\ningest: {paths: [docs]}\nteacher: 'fake:'\n"

# recipe text -> a phrase of the problem it must report
BAD = {
    "teacher: 'nosuchprovider:model'": "unknown teacher 'nosuchprovider:model'",
    "teacher: 'gpt-4o'": "unknown teacher 'gpt-4o'",
    "teacher: 'openai:'": "'openai:' needs a model",
    "teacher: 'openai:gpt-4o'": "needs an API key in $OPENAI_API_KEY",
    "teacher: 'anthropic:claude-x'": "needs an API key in $ANTHROPIC_API_KEY",
    "teacher: {model: 'openai:m', options: {api_key_env: MY_KEY}}": "$MY_KEY",
    "teacher: {model: 'openai:m', options: {concurency: 2}}": "concurency",
    "teacher: 'local:nosuchmodel'": "is not an offline alias",
    "teacher: 'local:./missing.gguf'": "GGUF file not found",
    "generate: {question_template: nosuch@v1}": "nosuch@v1 not found",
    "generate: {answer_template: qa_answer@v99}": "qa_answer@v99 not found",
    "curate: {judge: 'nosuch:x'}": "curate.judge: unknown teacher",
    "eval: {judge: 'local:qwen9'}": "eval.judge model 'qwen9'",
    "eval: {base_model: 'openai:vllm-base'}": "eval.base_model 'openai:vllm-base' needs",
    "eval: {answer_key: no-key.jsonl}": "eval.answer_key: no file",
    "eval: {systems: [ft+rag, {incumbent: 'openai:ft:gpt-4o-mini:acme::xyz'}]}": (
        "eval.systems incumbent 'openai:ft:gpt-4o-mini:acme::xyz' needs an API key"
    ),
    "eval: {systems: [ft+rag, {old: {model: 'nosuch:x', rag: true}}]}": (
        "eval.systems old: unknown teacher 'nosuch:x'"
    ),
    "eval: {judge_items: 0, systems: [teacher, ft+rag]}": "eval.pairwise needs the judge",
    "generate: {eval_key: {template: nokey@v1}}": "nokey@v1 not found",
    "generate: {prompts: {path: no-traffic.jsonl}}": "generate.prompts.path: ",
    "student: ./no-such-folder": "./no-such-folder does not exist",
    "student: 'not a model'": "'not a model' is not an offline alias",
    "student: 'local:not a model'": "'not a model' is not an offline alias",
    "ingest: {paths: [nowhere]}": "ingest.paths: 'nowhere'",
    "ingest: {paths: [docs], embedding_model: ./no-embedder}": "no-embedder does not exist",
    "review: {mode: argilla, api_url: 'http://127.0.0.1:9'}": "ARGILLA_API_KEY",
    # DPO's pair judge and the GKD teacher (and its key) are checked too.
    "train: {method: dpo, preferences: {judge: 'local:qwen9'}}": "train.preferences.judge",
    "train: {method: sft_then_dpo, preferences: {judge: 'openai:gpt-x'}}": "$OPENAI_API_KEY",
    "train: {method: gkd, gkd: {teacher: ./no-teacher}}": "./no-teacher does not exist",
    "train: {method: gkd, gkd: {teacher: 'local:./no-teacher'}}": "./no-teacher does not exist",
    "train: {method: gkd, gkd: {served_teacher: {model: 'openai:t', options: "
    "{base_url: 'http://127.0.0.1:9/v1', api_key_env: MY_KEY}}}}": "needs an API key in $MY_KEY",
    # A capture named in place of a teacher must be there.
    "train: {method: gkd, gkd: {lmbda: 0, capture: {path: ./no-capture}}}": "holds no capture",
}


def _recipe(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "docs").mkdir(exist_ok=True)
    (tmp_path / "docs" / "a.md").write_text("# A\n\nSome text about plans and prices here.\n")
    lines = {ln.split(":", 1)[0]: ln for ln in GOOD.splitlines()}
    key = extra.split(":", 1)[0]
    lines[key] = extra
    path = tmp_path / "recipe.yaml"
    path.write_text("\n".join(lines.values()) + "\n")
    return path


@pytest.mark.parametrize(("extra", "phrase"), list(BAD.items()))
def test_each_bad_recipe_is_one_clear_problem(
    extra: str, phrase: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "MY_KEY", "ARGILLA_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("ARGILLA_API_URL", raising=False)
    found = problems(load_recipe(_recipe(tmp_path, extra)))
    assert len(found) == 1, found
    assert phrase in found[0] and "\n" not in found[0]


def test_an_api_judge_beside_a_local_teacher_is_checked_with_its_own_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """eval.judge with no judge_options was checked with the teacher's options: a local
    teacher's llama.cpp settings rejected an API judge that runs fine."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-judge-123456")
    text = (
        "name: r\ningest: {paths: [docs]}\n"
        "teacher: {model: 'local:smollm2-135m-instruct', options: {n_ctx: 2048}}\n"
        "eval: {judge: 'openai:gpt-judge', systems: [base+rag, ft+rag]}\n"
    )
    _recipe(tmp_path, "name: r")
    (tmp_path / "recipe.yaml").write_text(text)
    assert problems(load_recipe(tmp_path / "recipe.yaml"), ["eval"]) == []
    monkeypatch.delenv("OPENAI_API_KEY")
    found = problems(load_recipe(tmp_path / "recipe.yaml"), ["eval"])
    assert len(found) == 1 and "eval.judge 'openai:gpt-judge' needs" in found[0]


def test_a_good_recipe_has_no_problem(tmp_path: Path) -> None:
    assert problems(load_recipe(_recipe(tmp_path, "name: r"))) == []


def test_run_fails_before_ingest_and_validate_says_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    path = _recipe(tmp_path, "teacher: 'nosuchprovider:model'")
    recipe = load_recipe(path)
    t0 = time.perf_counter()
    with pytest.raises(UserError, match="unknown teacher"):
        run_pipeline(recipe)
    assert time.perf_counter() - t0 < 10
    assert not (tmp_path / "runs" / "r" / "ingest").exists()  # nothing ran
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    got = subprocess.run(
        [sys.executable, "-m", "distill", "validate", str(path)],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert got.returncode == 2
    assert got.stderr.count("error:") == 1 and "unknown teacher" in got.stderr
    assert "Traceback" not in got.stderr
    # Several problems: one line each, all of them.
    many = _recipe(tmp_path, "student: ./gone")
    many.write_text(many.read_text().replace("'fake:'", "'openai:gpt-4o'"))
    got = subprocess.run(
        [sys.executable, "-m", "distill", "validate", str(many)],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert got.returncode == 2 and got.stderr.count("error:") == 3, got.stderr
    assert "2 problems stop this recipe" in got.stderr


def test_only_the_stages_that_run_are_checked(tmp_path: Path) -> None:
    recipe = load_recipe(_recipe(tmp_path, "teacher: 'openai:gpt-4o'"))
    assert problems(recipe, ["ingest"]) == []  # ingest needs no API key
    assert len(problems(recipe, ["generate"])) == 1


def test_a_prompt_a_local_teacher_cannot_hold_is_a_warning_before_it_runs(
    tmp_path: Path,
) -> None:
    from distill.preflight import context_warnings

    def recipe(extra: str) -> Path:
        _recipe(tmp_path, "name: r")
        text = (
            "name: r\ningest: {paths: [docs]" + extra + "}\n"
            "teacher: {model: 'local:smollm2-135m-instruct', options: {n_ctx: 4096}}\n"
        )
        (tmp_path / "recipe.yaml").write_text(text)
        return tmp_path / "recipe.yaml"

    assert context_warnings(load_recipe(recipe(""))) == []  # 256-token chunks fit
    (warning,) = context_warnings(load_recipe(recipe(", chunk_tokens: 1024")))
    assert "more than its context (n_ctx 4096)" in warning and "raise" in warning
    assert problems(load_recipe(recipe(", chunk_tokens: 1024"))) == []  # a warning, not a stop
