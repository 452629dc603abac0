"""The `distill` command line. Errors from distill print one line and exit non-zero."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from distill import __version__
from distill.errors import DistillError

if TYPE_CHECKING:
    from distill.recipe import Recipe

app = typer.Typer(
    help="Turn your own documents into a small, fast model of your own.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)

RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML file, e.g. recipes/quickstart.yaml.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a recipe field: --set train.epochs=1 (repeatable)."),
]

ResumeOpt = Annotated[
    bool,
    typer.Option("--resume", help="Continue an interrupted training run from its last checkpoint."),
]
AcceptOpt = Annotated[
    bool,
    typer.Option(
        "--accept-unreviewed",
        help="Train even when the review spot-check is incomplete or rejects too much "
        "(recorded in the manifest and the dataset card).",
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"distill {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Turn your own documents into a small, fast model of your own."""


def _load(recipe: Path, overrides: list[str] | None):
    from distill.recipe import load_recipe

    return load_recipe(recipe, overrides)


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

    r = _load(recipe, set_)
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

    r = _load(recipe, set_)
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

    r = _load(recipe, set_)
    if mode not in (None, "hybrid", "dense", "bm25"):
        raise UserError(f"--mode must be hybrid, dense or bm25, not '{mode}'")
    run = RunFolder(r.run_path)
    if not run.is_done("ingest"):
        raise InputError(f"no index for '{r.name}' yet; run `distill ingest {recipe}` first")
    hits = Retriever(run.root / "ingest", r.retrieval).retrieve(query, k, mode=mode)
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

    r = _load(recipe, set_)
    run = RunFolder(r.run_path)
    if not run.is_done("ingest"):
        run_pipeline(r, only="ingest")
    est = estimate_run(r, run)
    typer.echo(json.dumps(est, indent=2) if json_ else render(est))


def _stage_command(
    name: str, summary: str, group: typer.Typer = app, command_name: str | None = None
) -> None:
    def command(
        recipe: RecipeArg,
        set_: SetOpt = None,
        force: Annotated[bool, typer.Option(help="Rerun even if unchanged.")] = False,
    ) -> None:
        from distill.pipeline import run_pipeline

        r = _load(recipe, set_)
        run_pipeline(r, only=name, force={name} if force else set())

    command.__doc__ = f"{summary}."
    group.command(name=command_name or name)(command)


for _name, _summary in [
    ("ingest", "Read, chunk and embed the documents"),
    ("generate", "Have the teacher write grounded question/answer pairs"),
    ("curate", "Drop bad samples and duplicates; split train/eval by document"),
]:
    _stage_command(_name, _summary)


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

    r = _load(recipe, set_)
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
        from distill.evaluate.report import compare as compare_runs

        typer.echo(compare_runs(*compare))
        return
    if recipe is None:
        raise UserError("give a recipe (distill eval RECIPE) or --compare RUN_A RUN_B")
    from distill.pipeline import run_pipeline

    r = _load(recipe, set_)
    run = run_pipeline(r, only="eval", force={"eval"} if force else set())
    typer.echo(f"report: {run.root / 'eval' / 'report.html'}")


@app.command("publish")
def publish_cmd(
    recipe: RecipeArg,
    kind: Annotated[
        str | None,
        typer.Argument(
            help="dataset or adapter: write that repository's folder and upload it. "
            "Without it, write both folders and upload nothing."
        ),
    ] = None,
    repo_id: Annotated[
        str | None,
        typer.Option(
            "--repo-id",
            help="ORG/NAME on the Hub (default: publish.dataset_repo or publish.adapter_repo).",
        ),
    ] = None,
    private: Annotated[
        bool | None,
        typer.Option(
            "--private/--public",
            help="Make the repository private (or public), new or existing. Without either: "
            "a new one follows publish.private, an existing one keeps its visibility.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Write the folder and stop: upload nothing.")
    ] = False,
    accept_unreviewed: Annotated[
        bool,
        typer.Option(
            "--accept-unreviewed",
            help="Publish a dataset whose human spot-check was skipped or did not pass; "
            "the card says so.",
        ),
    ] = False,
    set_: SetOpt = None,
) -> None:
    """Write the dataset and adapter as Hugging Face Hub repositories (runs/<name>/publish/),
    and with KIND upload one of them.

    The token comes from HF_TOKEN or the Hub's login cache and is never written anywhere.
    Every file is scanned for tokens and API keys first.
    """
    import re

    from distill.errors import UserError
    from distill.pipeline import run_pipeline
    from distill.publish.config import REPO_ID
    from distill.runfolder import RunFolder, RunOptions

    if kind not in (None, "dataset", "adapter"):
        raise UserError(f"publish: KIND is 'dataset' or 'adapter', not '{kind}'")
    if repo_id is not None and not re.fullmatch(REPO_ID, repo_id):
        raise UserError(f"--repo-id '{repo_id}': write it as ORG/NAME (letters, digits, - _ .)")
    if kind is None and (repo_id or private is not None or dry_run):
        raise UserError(
            "--repo-id, --private/--public and --dry-run need a KIND: dataset or adapter"
        )
    r = _load(recipe, set_)
    if kind is None:
        options = RunOptions(accept_unreviewed=accept_unreviewed)
        run_pipeline(r, only="publish", force={"publish"}, options=options)
        return
    from distill.gate import GateClosed
    from distill.publish.hub import upload
    from distill.publish.stage import check_ready, repo_ids, unreviewed_reasons, write
    from distill.runfolder import RunOptions

    if repo_id:
        setattr(r.publish, f"{kind}_repo", repo_id)
    target = repo_ids(r)[0 if kind == "dataset" else 1]
    run = RunFolder(r.run_path)
    check_ready(run, kind)
    reasons = unreviewed_reasons(r, run) if kind == "dataset" else []
    if reasons and not accept_unreviewed and not dry_run:
        raise GateClosed(
            "publish: the dataset has not passed a human spot-check: "
            + "; ".join(reasons)
            + ". Review it (distill review push), or publish anyway with --accept-unreviewed "
            "(the card will say so)"
        )
    write(r, run, kind, RunOptions(accept_unreviewed=accept_unreviewed))
    folder = run.root / "publish" / kind
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    typer.echo(f"wrote {folder}: {len(files)} files, {size / 1e6:.1f} MB")
    where = f"https://huggingface.co/{'datasets/' if kind == 'dataset' else ''}{target}"
    if dry_run:
        typer.echo(f"dry run: nothing uploaded; without --dry-run this goes to {where}")
        if reasons:
            typer.echo(
                "note: uploading this dataset needs --accept-unreviewed: " + "; ".join(reasons)
            )
        return
    if private is None and r.publish.private:
        private = True
    got = upload(
        "dataset" if kind == "dataset" else "adapter",
        folder,
        target,
        private,
        f"distill publish {kind} (recipe {r.name})",
    )
    typer.echo(
        f"uploaded {got['files']} files to {got['url']} (commit {got['commit'][:12]})"
        + (f"; deleted {len(got['deleted'])} no longer published" if got["deleted"] else "")
        + ("" if got["private"] is None else f"; {'private' if got['private'] else 'public'}")
    )


@app.command("export")
def export_cmd(
    recipe: RecipeArg,
    set_: SetOpt = None,
    merge: Annotated[
        bool, typer.Option("--merge", help="Write the student with the adapter merged in.")
    ] = False,
    gguf: Annotated[
        bool, typer.Option("--gguf", help="Write a GGUF file with llama.cpp's converter.")
    ] = False,
    gguf_type: Annotated[
        str, typer.Option(help="GGUF tensor type: f16, bf16, q8_0 or f32.")
    ] = "f16",
    adapter_only: Annotated[
        bool,
        typer.Option(
            "--adapter-only", help="With --gguf: convert the adapter alone (llama.cpp --lora)."
        ),
    ] = False,
) -> None:
    """Export the trained adapter: merged safetensors and/or GGUF, in runs/<name>/export/.

    Always prints how to load the adapter with PEFT and serve it with vLLM or llama.cpp.
    """
    from distill.export import export, usage
    from distill.runfolder import RunFolder

    r = _load(recipe, set_)
    made = export(
        r, merge_weights=merge, to_gguf=gguf, outtype=gguf_type, adapter_only=adapter_only
    )
    for kind, path in made.items():
        typer.echo(f"{kind}: {path}")
    typer.echo(usage(r, RunFolder(r.run_path)))


review_app = typer.Typer(
    help="Human review in Argilla: the review stage, and a local Argilla server.",
    no_args_is_help=True,
)
app.add_typer(review_app, name="review")


_stage_command(
    "review",
    "Run the review stage (auto: record no human review; argilla: push, then pull)",
    review_app,
    "run",
)


def _need_argilla(r: Recipe) -> None:
    from distill.errors import UserError

    if r.review.mode != "argilla":
        raise UserError("review.mode is 'auto' (no humans); set review.mode: argilla to review")


@review_app.command("push")
def review_push(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Send the spot-check sample to Argilla (creates or updates; ids are sample ids)."""
    from distill.review.stage import push
    from distill.runfolder import RunFolder

    r = _load(recipe, set_)
    _need_argilla(r)
    got = push(r, RunFolder(r.run_path))
    typer.echo(
        f"pushed {got['records']} records to Argilla dataset '{got['dataset']}' "
        f"({got['sample']} sampled, {got['low_score']} low-score)"
    )
    typer.echo(f"review them at {got['url']}")
    typer.echo(f"then run: distill review pull {recipe}")


@review_app.command("status")
def review_status(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Show the spot-check's review progress, overall and per task and source document."""
    from distill.errors import InputError
    from distill.gate import render_status
    from distill.review.stage import pull
    from distill.runfolder import RunFolder

    r = _load(recipe, set_)
    _need_argilla(r)
    run = RunFolder(r.run_path)
    if not (run.root / "review" / "spot_check.parquet").exists():
        raise InputError(f"nothing pushed yet; run `distill review push {recipe}` first")
    _, _, stats = pull(r, run)
    typer.echo(render_status(stats, r.review))


@review_app.command("pull")
def review_pull(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Apply the reviewers' submitted answers: rejects leave training, corrections replace
    answers. Writes review/ and the manifest's review statistics."""
    from distill.gate import render_status, review_stats
    from distill.pipeline import run_pipeline

    r = _load(recipe, set_)
    _need_argilla(r)
    run = run_pipeline(r, only="review", force={"review"})
    typer.echo(render_status(review_stats(run), r.review))


@review_app.command("serve")
def review_serve(
    port: Annotated[int, typer.Option(help="Argilla's port on 127.0.0.1.")] = 6900,
    redis_port: Annotated[int, typer.Option(help="Redis's port on 127.0.0.1.")] = 6379,
) -> None:
    """Start a local Argilla server (no Elasticsearch needed), Redis and a worker.

    The first start installs argilla-server 2.8.0 in its own virtual environment
    (about a minute). Prints the address and the owner's and annotator's credentials.
    """
    from distill.review.server import serve, state_dir

    got = serve(port, redis_port)
    typer.echo(f"Argilla is running at {got['url']} (state in {state_dir()})")
    typer.echo(f"  owner:     {got['owner']['username']} / {got['owner']['password']}")
    typer.echo(f"  annotator: {got['annotator']['username']} / {got['annotator']['password']}")
    typer.echo(f"  API key:   {got['api_key']}")
    typer.echo("Stop it with: distill review stop")


@review_app.command("stop")
def review_stop() -> None:
    """Stop the local Argilla server, its worker and Redis started by `review serve`."""
    from distill.review.server import stop

    stopped = stop()
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


def main() -> int:
    # Nothing may reach a hub at run time unless the user turns it back on.
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Deprecation notices from inside transformers/TRL/PEFT are for their callers'
    # developers, not for someone running a recipe.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl|peft)\.")
    from rich.markup import escape

    from distill.redact import redact
    from distill.ui import console

    try:
        # Standalone mode: usage errors print click's one-line message and exit 2.
        app()
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        console.print(
            "interrupted; finished stages are kept, rerun to continue "
            "(training continues from its last checkpoint with `distill train RECIPE --resume`)"
        )
        return 130
    except DistillError as e:
        for line in redact(str(e)).splitlines() or [type(e).__name__]:
            console.print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
