"""Run-folder behaviour with toy stages: skipping, forcing, --only/--until, failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from distill.errors import InputError, UserError
from distill.io import read_json, write_text
from distill.pipeline import Stage, run_pipeline
from distill.recipe import Recipe, load_recipe
from distill.runfolder import STAGES, RunFolder, RunOptions
from tests.conftest import write_recipe


class Toy:
    """Seven stages that each write one file derived from their config and upstream."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail: str | None = None
        self.stages = {
            name: Stage(name, (STAGES[i - 1],) if i else (), self._fn(name))
            for i, name in enumerate(STAGES)
        }

    def _fn(self, name: str) -> Any:
        def fn(recipe: Recipe, folder: RunFolder, options: RunOptions) -> dict[str, Any]:
            self.calls.append(name)
            if self.fail == name:
                raise RuntimeError(f"{name} exploded")
            cfg = recipe.stage_config(name).model_dump_json()
            write_text(folder.stage_dir(name) / "out.txt", cfg)
            return {"items": len(cfg)}

        return fn


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Toy]:
    monkeypatch.chdir(tmp_path)
    path = write_recipe(tmp_path, "name: toy\ningest:\n  paths: [docs]\n")
    return path, Toy()


def test_second_run_skips_everything(setup: tuple[Path, Toy]) -> None:
    path, toy = setup
    run = run_pipeline(load_recipe(path), stages=toy.stages)
    assert toy.calls == list(STAGES)
    manifest = read_json(run.manifest_path)
    assert all(manifest["stages"][s]["status"] == "done" for s in STAGES)
    assert manifest["recipe"]["name"] == "toy"
    assert "torch" in manifest["versions"] and manifest["models"]["student"]
    assert manifest["stages"]["ingest"]["counts"]["items"] > 0
    toy.calls.clear()
    run_pipeline(load_recipe(path), stages=toy.stages)
    assert toy.calls == []


def test_changed_config_reruns_that_stage_and_later_ones(setup: tuple[Path, Toy]) -> None:
    path, toy = setup
    run_pipeline(load_recipe(path), stages=toy.stages)
    toy.calls.clear()
    run_pipeline(load_recipe(path, ["train.epochs=3"]), stages=toy.stages)
    # train's output changed, so eval reruns; the toy eval's output did not, so publish stays.
    assert toy.calls == ["train", "eval"]
    toy.calls.clear()
    run_pipeline(load_recipe(path, ["train.epochs=3", "eval.k=5"]), stages=toy.stages)
    assert toy.calls == ["eval", "publish"]


def test_forced_stage_with_same_output_leaves_later_stages_alone(setup: tuple[Path, Toy]) -> None:
    path, toy = setup
    run_pipeline(load_recipe(path), stages=toy.stages)
    toy.calls.clear()
    run_pipeline(load_recipe(path), stages=toy.stages, force={"curate"})
    assert toy.calls == ["curate"]  # same output hash, so review onwards stay valid


def test_until_and_only(setup: tuple[Path, Toy]) -> None:
    path, toy = setup
    run_pipeline(load_recipe(path), stages=toy.stages, until="curate")
    assert toy.calls == ["ingest", "generate", "curate"]
    with pytest.raises(InputError, match="needs the output of 'review'"):
        run_pipeline(load_recipe(path), stages=toy.stages, only="train")
    toy.calls.clear()
    run_pipeline(load_recipe(path), stages=toy.stages, only="review")
    assert toy.calls == ["review"]
    with pytest.raises(UserError, match="unknown stage 'trian'"):
        run_pipeline(load_recipe(path), stages=toy.stages, only="trian")


def test_failed_stage_is_recorded_and_rerun_resumes_there(setup: tuple[Path, Toy]) -> None:
    path, toy = setup
    toy.fail = "train"
    with pytest.raises(RuntimeError):
        run_pipeline(load_recipe(path), stages=toy.stages)
    run = RunFolder(load_recipe(path).run_path)
    assert run.stage("train")["status"] == "failed"
    assert "train exploded" in run.stage("train")["error"]
    assert run.stage("review")["status"] == "done"
    toy.fail = None
    toy.calls.clear()
    run_pipeline(load_recipe(path), stages=toy.stages)
    assert toy.calls == ["train", "eval", "publish"]


def test_deleted_stage_folder_is_rebuilt(setup: tuple[Path, Toy]) -> None:
    path, toy = setup
    run = run_pipeline(load_recipe(path), stages=toy.stages)
    import shutil

    shutil.rmtree(run.root / "eval")
    toy.calls.clear()
    run_pipeline(load_recipe(path), stages=toy.stages)
    assert toy.calls == ["eval"]


def test_an_unset_new_option_leaves_the_fingerprint_of_older_runs(
    setup: tuple[Path, Toy],
) -> None:
    """generate.prompts and train.gkd.capture came after run folders existed: unset, they
    are not hashed (an older run does not rerun generate or train and what follows); set,
    they are."""
    from distill.io import hash_json
    from distill.pipeline import fingerprint

    path, toy = setup
    recipe = load_recipe(path)
    folder = RunFolder(recipe.run_path)
    stage = toy.stages["generate"]
    config = recipe.generate.model_dump(mode="json")
    assert config.pop("prompts") is None
    older = hash_json(
        {"stage": "generate", "config": config, "upstream": {"ingest": None}, "extra": {}}
    )
    assert fingerprint(stage, recipe, folder, {}) == older
    (path.parent / "q.jsonl").write_text('{"question": "Why?"}\n')
    text = "name: toy\ningest:\n  paths: [docs]\ngenerate:\n  prompts: {path: q.jsonl}\n"
    with_prompts = load_recipe(write_recipe(path.parent, text))
    assert fingerprint(stage, with_prompts, folder, {}) != older
    train = recipe.train.model_dump(mode="json")
    assert train["gkd"].pop("capture") is None
    upstream = {u: None for u in toy.stages["train"].upstream}
    older_train = {"stage": "train", "config": train, "upstream": upstream, "extra": {}}
    assert fingerprint(toy.stages["train"], recipe, folder, {}) == hash_json(older_train)
