"""`distill run`: call the stages in order, skipping those whose inputs are unchanged.

A stage's fingerprint hashes its own config section, the output hashes of the
stages it reads, and any extra inputs (the recipe's top-level settings it reads:
teacher, student, split, retrieval; corpus file hashes, prompt template text, model
ids). A stage reruns when its fingerprint changes or when forced; a rerun that
reproduces the same outputs leaves later stages skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.markup import escape

from distill import distributed
from distill.errors import DistillError, InputError, UserError
from distill.io import hash_json, hash_tree, sha256_file
from distill.recipe import Recipe
from distill.runfolder import STAGES, RunFolder, RunOptions, now, package_versions
from distill.ui import console

StageFn = Callable[[Recipe, RunFolder, RunOptions], dict[str, Any]]


@dataclass(frozen=True)
class Stage:
    name: str
    upstream: tuple[str, ...]
    fn: StageFn
    extra: Callable[[Recipe], dict[str, Any]] = field(default=lambda r: {})
    # Reruns every time: its input lives outside the run folder (reviewers' answers).
    volatile: Callable[[Recipe], bool] = field(default=lambda r: False)
    # Checked before the stage runs (the review gate before training).
    before: Callable[[Recipe, RunFolder, RunOptions], None] | None = None


def _templates(recipe: Recipe) -> dict[str, str]:
    from distill.prompts import load_templates

    return {t.ref: t.sha for t in load_templates(recipe).all()}


def _template_sha(recipe: Recipe, ref: str) -> str:
    from distill.prompts import recipe_template

    return recipe_template(recipe, ref).sha


def _prompts_file(recipe: Recipe) -> dict[str, str]:
    """Your questions file's hash (generate.prompts): an edited file reruns generate. No
    key without one, so other recipes keep their fingerprints."""
    cfg = recipe.generate.prompts
    if cfg is None:
        return {}
    path = recipe.base_dir / cfg.path
    return {"prompts_file": sha256_file(path) if path.is_file() else "missing"}


def _eval_templates(recipe: Recipe) -> dict[str, str]:
    from distill.evaluate.grading import judge_templates

    return {t.ref: t.sha for t in judge_templates(recipe)}


def default_stages() -> dict[str, Stage]:
    """The seven stages, imported lazily so `distill --help` stays fast."""
    from distill.curate import stage as curate
    from distill.evaluate import stage as evaluate
    from distill.generate import stage as generate
    from distill.ingest import stage as ingest
    from distill.publish import stage as publish
    from distill.review import stage as review
    from distill.train import stage as train

    return {
        "ingest": Stage(
            "ingest",
            (),
            ingest.run,
            lambda r: {
                "files": ingest.input_files(r),
                "tokenizer": r.ingest.tokenizer or r.student,
            },
        ),
        "generate": Stage(
            "generate",
            ("ingest",),
            generate.run,
            lambda r: {
                "templates": _templates(r),
                "retrieval": r.retrieval.model_dump(),
                "teacher": r.teacher.model_dump(mode="json"),
                # The split is chosen before generation (distill.split).
                "split": r.split.documents(),
                **_prompts_file(r),
            },
        ),
        "curate": Stage(
            "curate",
            ("generate",),
            curate.run,
            lambda r: {
                # What curate reads from other stages' settings, and its judge's template.
                "student": r.student,
                "split": r.split.model_dump(),
                "max_seq_length": r.train.max_seq_length,
                "embedding_model": r.ingest.embedding_model,
                "judge_template": _template_sha(r, r.curate.judge_template)
                if r.curate.judge
                else None,
            },
        ),
        "review": Stage(
            # argilla and file: the reviewers' answers live outside the stage's inputs
            "review",
            ("curate",),
            review.run,
            volatile=lambda r: r.review.mode != "auto",
        ),
        "train": Stage("train", ("curate", "review"), train.run, _train_extra, before=check_gate),
        "eval": Stage(
            "eval",
            ("ingest", "curate", "train"),
            evaluate.run,
            lambda r: {
                "teacher": r.teacher.model,
                "teacher_options": r.teacher.options,
                "templates": _templates(r),
                "judge_templates": _eval_templates(r),
                "student": r.student,
                "retrieval": r.retrieval.model_dump(),
            },
        ),
        "publish": Stage(
            "publish",
            ("curate", "review", "train", "eval"),
            publish.run,
            lambda r: {"description": r.description, "recipe": r.name},
        ),
    }


def _train_extra(r: Recipe) -> dict[str, Any]:
    """The student; DPO's pairs depend on who grades them, and with which rubric."""
    if not r.train.method.endswith("dpo"):
        return {"student": r.student}
    from distill.train.preferences import judge_spec

    spec, options = judge_spec(r)
    rubric = _template_sha(r, r.train.preferences.grade_template)
    return {
        "student": r.student,
        "pairs_judge": spec,
        "pairs_judge_options": options,
        "rubric": rubric,
    }


# Options added after run folders existed: left out of the hash while unset, so a run
# made before them keeps its fingerprint (a new, unused option reruns nothing).
UNSET_NOT_HASHED: dict[str, tuple[str, ...]] = {
    "generate": ("prompts",),
    "train": ("gkd.capture",),
}


def fingerprint(stage: Stage, recipe: Recipe, folder: RunFolder, extra: dict[str, Any]) -> str:
    config = recipe.stage_config(stage.name).model_dump(mode="json")
    for dotted in UNSET_NOT_HASHED.get(stage.name, ()):
        *parents, key = dotted.split(".")
        section = config
        for p in parents:
            section = section[p]
        if section.get(key) is None:
            del section[key]
    return hash_json(
        {
            "stage": stage.name,
            "config": config,
            "upstream": {u: folder.stage(u).get("output_hash") for u in stage.upstream},
            "extra": extra,
        }
    )


def select(only: str | None, until: str | None) -> list[str]:
    for name in (only, until):
        if name is not None and name not in STAGES:
            raise UserError(f"unknown stage '{name}'; stages are: {', '.join(STAGES)}")
    if only:
        return [only]
    return list(STAGES[: STAGES.index(until) + 1]) if until else list(STAGES)


def run_pipeline(
    recipe: Recipe,
    *,
    only: str | None = None,
    until: str | None = None,
    force: set[str] | None = None,
    stages: dict[str, Stage] | None = None,
    options: RunOptions | None = None,
) -> RunFolder:
    """Run the selected stages of `recipe`; return the run folder.

    Before training, the review gate is checked (distill.review_gate);
    `options.accept_unreviewed` overrides a closed gate, and the manifest records it;
    `options.resume` continues training from its last checkpoint."""
    options = options or RunOptions()
    if not distributed.is_main():
        console.quiet = True  # one process speaks for all
    force = force or set()
    unknown = force - set(STAGES)
    if unknown:
        raise UserError(
            f"--force: unknown stage {sorted(unknown)}; stages are: {', '.join(STAGES)}"
        )
    custom = stages  # stand-in stages (tests, library use) need no preflight
    stages = stages or default_stages()
    run = RunFolder(recipe.run_path)
    header = {
        "recipe": recipe.model_dump(mode="json"),
        "recipe_dir": str(recipe.base_dir),
        "versions": package_versions(),
        "models": {
            "teacher": recipe.teacher.model,
            "student": recipe.student,
            "embedding_model": recipe.ingest.embedding_model,
        },
    }
    if distributed.is_main():  # process 0 alone writes the run folder
        run.change(lambda m: (m.update(header), m.setdefault("created_at", now())))
    console.print(f"[bold]distill[/] run [cyan]{recipe.name}[/] → {run.root}")
    selected = select(only, until)
    if distributed.world_size() > 1:
        if selected != ["train"]:
            raise UserError(
                f"{distributed.world_size()} processes: only `distill train` runs under "
                "accelerate launch or torchrun; run the other stages with one process"
            )
        if not distributed.is_main():  # a worker trains its share; process 0 keeps the books
            told = distributed.share(None)  # process 0's verdict: train, skip, or why not
            if told["error"] is not None:
                distributed.finish()
                raise _Relayed(told["error"], told["exit_code"])
            if told["train"]:
                stages["train"].fn(recipe, run, options)
            distributed.finish()
            return run
        try:
            _main_loop(recipe, run, selected, stages, force, options, custom, tell=True)
        except BaseException as e:  # the others wait for a verdict: never leave them waiting
            if not getattr(e, "told", False):
                code = e.exit_code if isinstance(e, DistillError) else 1
                distributed.share({"train": False, "error": str(e), "exit_code": code})
                distributed.finish()
            raise
        distributed.finish()
        return run
    _main_loop(recipe, run, selected, stages, force, options, custom, tell=False)
    return run


class _Relayed(DistillError):
    """Process 0's error, raised in the other processes with its exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _main_loop(
    recipe: Recipe,
    run: RunFolder,
    selected: list[str],
    stages: dict[str, Stage],
    force: set[str],
    options: RunOptions,
    custom: dict[str, Stage] | None,
    tell: bool,
) -> None:
    """The stages in order: checked, skipped when unchanged, else run. `tell`: process 0
    of several tells the others whether training runs, once it knows."""

    def told(train: bool) -> None:
        if tell:
            distributed.share({"train": train, "error": None, "exit_code": 0})

    # A stage's extra inputs (corpus file hashes, template hashes) are read once: the
    # preflight's look at what will rerun and the run itself share them.
    extras: dict[str, dict[str, Any]] = {}
    if custom is None:
        from distill.preflight import check

        # Every problem a stage about to run would hit, in seconds, before the first.
        check(recipe, _to_run(selected, stages, recipe, run, force, extras), network=True)
    for name in selected:
        stage = stages[name]
        for up in stage.upstream:
            if not run.is_done(up):
                raise InputError(
                    f"stage '{name}' needs the output of '{up}', which has not run; "
                    f"run `distill run RECIPE --until {up}` first"
                )
        extra = extras[name] if name in extras else stage.extra(recipe)
        fp = fingerprint(stage, recipe, run, extra)
        unchanged = run.is_done(name) and run.stage(name).get("fingerprint") == fp
        if unchanged and name not in force and not stage.volatile(recipe):
            console.print(f"[dim]• {name:<9} unchanged, skipped (--force {name} to rerun)[/]")
            told(False)
            continue
        if stage.before is not None:
            stage.before(recipe, run, options)
        told(True)
        try:
            _run_stage(stage, recipe, run, options, fp, extra)
        except BaseException as e:
            e.told = True  # type: ignore[attr-defined]  # the others train already
            raise


def _to_run(
    selected: list[str],
    stages: dict[str, Stage],
    recipe: Recipe,
    folder: RunFolder,
    force: set[str],
    extras: dict[str, dict[str, Any]],
) -> list[str]:
    """The selected stages from the first one that will not be skipped as unchanged (a
    rerun stage changes what follows it)."""
    for i, name in enumerate(selected):
        stage = stages[name]
        if name in force or stage.volatile(recipe) or not folder.is_done(name):
            return selected[i:]
        try:
            extras[name] = stage.extra(recipe)
            fp = fingerprint(stage, recipe, folder, extras[name])
        except Exception:  # noqa: BLE001 - the stage itself will say what is wrong
            return selected[i:]
        if folder.stage(name).get("fingerprint") != fp:
            return selected[i:]
    return []


def check_gate(recipe: Recipe, folder: RunFolder, options: RunOptions) -> None:
    """The review gate before training; its verdict goes to the manifest's `review_gate`."""
    from distill.review_gate import GateClosed, gate

    try:
        result = gate(recipe, folder, options.accept_unreviewed)
    except GateClosed as e:
        closed = {"passed": False, "overridden": False, "error": str(e)}
        folder.change(lambda m: m.update(review_gate=closed))
        raise
    folder.change(lambda m: m.update(review_gate=result))
    if result["overridden"]:
        console.print(
            "[yellow]! training despite the spot-check (--accept-unreviewed): "
            + escape("; ".join(result["reasons"]))
            + "[/]"
        )


def _run_stage(
    stage: Stage,
    recipe: Recipe,
    folder: RunFolder,
    options: RunOptions,
    fp: str,
    extra: dict[str, Any],
) -> None:
    name = stage.name
    console.print(f"[bold]• {name}[/]")
    folder.update_stage(
        name, status="running", started_at=now(), ended_at=None, error=None, inputs=extra
    )
    t0 = time.perf_counter()
    try:
        counts = stage.fn(recipe, folder, options)
    except KeyboardInterrupt:
        folder.update_stage(name, status="interrupted", ended_at=now())
        raise
    except Exception as e:
        counts = dict(getattr(e, "counts", None) or {})
        tokens = counts.pop("tokens", {})
        folder.update_stage(
            name,
            status="failed",
            ended_at=now(),
            error=f"{type(e).__name__}: {e}",
            **({"counts": counts, "tokens": tokens} if counts else {}),
        )
        raise
    duration = round(time.perf_counter() - t0, 2)
    tokens = counts.pop("tokens", {})
    folder.update_stage(
        name,
        status="done",
        ended_at=now(),
        duration_s=duration,
        counts=counts,
        tokens=tokens,
        fingerprint=fp,
        output_hash=hash_tree(folder.root / name),
    )
    summary = ", ".join(f"{k} {v}" for k, v in counts.items() if not isinstance(v, dict))
    console.print(f"[green]✓ {name:<9}[/] {escape(summary)} [dim]({duration:.1f} s)[/]")
