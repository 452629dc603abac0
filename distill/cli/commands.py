"""The pipeline's commands: init, doctor, validate, fields, run, search, estimate, one
command per stage, train and eval."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from distill.cli.app import AcceptOpt, RecipeArg, ResumeOpt, SetOpt, app, load


@app.command()
def init(
    docs: Annotated[Path, typer.Argument(help="The folder (or file) of your documents.")],
    teacher: Annotated[
        str | None,
        typer.Option(help="The teacher, PROVIDER:MODEL (default: the offline Qwen 0.5B)."),
    ] = None,
    student: Annotated[
        str | None, typer.Option(help="The student (default: smollm2-135m-instruct).")
    ] = None,
    out: Annotated[Path, typer.Option("-o", "--out", help="Where to write the recipe.")] = Path(
        "recipe.yaml"
    ),
    force: Annotated[bool, typer.Option(help="Replace an existing recipe file.")] = False,
) -> None:
    """Write a commented recipe for DOCS, sized from it: ingests the corpus (local,
    free), sizes generation and the split, and estimates the teacher's requests and cost.
    `distill run RECIPE` accepts it as it is."""
    from distill.scaffold import init as scaffold

    got = scaffold(docs, out, teacher, student, force)
    typer.echo(
        f"wrote {got['recipe']}: {got['documents']} documents, {got['chunks']} chunks; "
        f"{got['samples_per_chunk']} sample(s) per chunk, {got['eval_fraction']:.0%} of the "
        f"documents held out; generate: {got['requests']:,} requests, {got['cost']}"
    )
    for problem in got["problems"]:
        typer.echo(f"before `distill run`: {problem}", err=True)
    typer.echo(f"next: distill run {out}")


@app.command()
def doctor() -> None:
    """What this machine has for distill, one line each with the fix where something is
    missing: Python and torch, bf16, CUDA and unsloth, llama.cpp, Redis and Argilla,
    which API key variables are set (names only), free disk, the model cache."""
    from distill.doctor import report

    lines, code = report()
    for line in lines:
        typer.echo(line)
    raise typer.Exit(code)


@app.command()
def validate(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Check a recipe and print it with every default filled in.

    Also runs the checks `distill run` makes before its first stage that need no network:
    teacher and judge specs and options, API keys present (names only), offline model
    packages and local model files, prompt templates, the student.
    """
    import yaml

    from distill.preflight import check
    from distill.redact import scrub

    r = load(recipe, set_)
    check(r)
    typer.echo(yaml.safe_dump(scrub(r.model_dump(mode="json")), sort_keys=False).rstrip())
    typer.echo(f"# {recipe}: valid", err=True)


@app.command()
def fields() -> None:
    """List every recipe key with its type, default and meaning (Markdown)."""
    from distill.recipe import describe_fields

    typer.echo(describe_fields())


@app.command()
def run(
    recipe: RecipeArg,
    set_: SetOpt = None,
    force: Annotated[
        list[str] | None, typer.Option(help="Rerun this stage even if unchanged (repeatable).")
    ] = None,
    only: Annotated[str | None, typer.Option(help="Run just this stage.")] = None,
    until: Annotated[str | None, typer.Option(help="Stop after this stage.")] = None,
    accept_unreviewed: AcceptOpt = False,
    resume: ResumeOpt = False,
) -> None:
    """Run the whole pipeline: ingest, generate, curate, review, train, eval, publish.

    Stages whose inputs and settings are unchanged since the last run are skipped
    (the review stage with `review.mode: argilla` always pulls the latest answers).
    """
    from distill.pipeline import run_pipeline
    from distill.runfolder import RunOptions

    r = load(recipe, set_)
    folder = run_pipeline(
        r,
        only=only,
        until=until,
        force=set(force or []),
        options=RunOptions(accept_unreviewed=accept_unreviewed, resume=resume),
    )
    typer.echo(f"run folder: {folder.root}")


@app.command()
def search(
    recipe: RecipeArg,
    query: Annotated[str, typer.Argument(help="What to search for.")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="How many chunks to show.")] = 5,
    mode: Annotated[
        str | None, typer.Option(help="hybrid, dense or bm25 (default: the recipe's).")
    ] = None,
    set_: SetOpt = None,
) -> None:
    """Search the recipe's ingested chunks and print them ranked, with their scores."""
    from distill.errors import InputError, UserError
    from distill.retrieval import Retriever
    from distill.runfolder import RunFolder

    r = load(recipe, set_)
    if mode not in (None, "hybrid", "dense", "bm25"):
        raise UserError(f"--mode must be hybrid, dense or bm25, not '{mode}'")
    run = RunFolder(r.run_path)
    if not run.is_done("ingest"):
        raise InputError(f"no index for '{r.name}' yet; run `distill ingest {recipe}` first")
    hits = Retriever(run.ingest_dir, r.retrieval).retrieve(query, k, mode=mode)
    for rank, (chunk, score) in enumerate(hits, start=1):
        snippet = " ".join(chunk["text"].split())
        snippet = snippet[:160] + ("…" if len(snippet) > 160 else "")
        typer.echo(f"{rank:>2}. {score:.4f}  {chunk['doc_id']}  [{chunk['heading_path']}]")
        typer.echo(f"    {snippet}")
    if not hits:
        typer.echo("no matching chunks")


@app.command()
def estimate(
    recipe: RecipeArg,
    set_: SetOpt = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Predict the generate stage's requests, tokens and cost before anything is spent.

    Runs ingest first if it has not run (local, free); sends nothing to the teacher.
    """
    import json

    from distill.generate.estimate import estimate as estimate_run
    from distill.generate.estimate import render
    from distill.pipeline import run_pipeline
    from distill.runfolder import RunFolder

    r = load(recipe, set_)
    run = RunFolder(r.run_path)
    if not run.is_done("ingest"):
        run_pipeline(r, only="ingest")
    est = estimate_run(r, run)
    typer.echo(json.dumps(est, indent=2) if json_ else render(est))


def stage_command(
    name: str, summary: str, group: typer.Typer = app, command_name: str | None = None
) -> None:
    def command(
        recipe: RecipeArg,
        set_: SetOpt = None,
        force: Annotated[bool, typer.Option(help="Rerun even if unchanged.")] = False,
    ) -> None:
        from distill.pipeline import run_pipeline

        r = load(recipe, set_)
        run_pipeline(r, only=name, force={name} if force else set())

    command.__doc__ = f"{summary}."
    group.command(name=command_name or name)(command)


for _name, _summary in [
    ("ingest", "Read, chunk and embed the documents"),
    ("generate", "Have the teacher write grounded question/answer pairs"),
    ("curate", "Drop bad samples and duplicates; split train/eval by document"),
]:
    stage_command(_name, _summary)


@app.command()
def train(
    recipe: RecipeArg,
    set_: SetOpt = None,
    force: Annotated[bool, typer.Option(help="Rerun even if unchanged.")] = False,
    accept_unreviewed: AcceptOpt = False,
    resume: ResumeOpt = False,
) -> None:
    """Train the LoRA adapter on the student."""
    from distill.pipeline import run_pipeline
    from distill.runfolder import RunOptions

    r = load(recipe, set_)
    force_ = {"train"} if force else set()
    options = RunOptions(accept_unreviewed=accept_unreviewed, resume=resume)
    run_pipeline(r, only="train", force=force_, options=options)


@app.command("eval")
def eval_cmd(
    recipe: Annotated[
        Path | None, typer.Argument(help="Recipe YAML file (not needed with --compare).")
    ] = None,
    set_: SetOpt = None,
    force: Annotated[bool, typer.Option(help="Rerun even if unchanged.")] = False,
    compare: Annotated[
        tuple[Path, Path] | None,
        typer.Option(
            "--compare",
            help="Print the difference between two runs' eval results (run folders or recipes).",
        ),
    ] = None,
) -> None:
    """Compare teacher, base and fine-tuned student on held-out questions.

    Writes runs/<name>/eval/: report.md, report.html, metrics.json, answers.parquet and
    the plots. With --compare RUN_A RUN_B, prints the difference between two runs instead.
    """
    from distill.errors import UserError

    if compare is not None:
        from distill.evaluate.compare import compare as compare_runs

        typer.echo(compare_runs(*compare))
        return
    if recipe is None:
        raise UserError("give a recipe (distill eval RECIPE) or --compare RUN_A RUN_B")
    from distill.pipeline import run_pipeline

    r = load(recipe, set_)
    run = run_pipeline(r, only="eval", force={"eval"} if force else set())
    typer.echo(f"report: {run.root / 'eval' / 'report.html'}")
