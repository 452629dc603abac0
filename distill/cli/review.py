"""`distill review`: the review stage, push/status/pull, export/import of the spot-check
as a file, and a local Argilla server."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from distill.cli.app import RecipeArg, SetOpt, app, load
from distill.cli.commands import stage_command

if TYPE_CHECKING:
    from distill.recipe import Recipe
    from distill.runfolder import RunFolder


review_app = typer.Typer(
    help="Human review: the review stage, in Argilla or through a file (export, import).",
    no_args_is_help=True,
)
app.add_typer(review_app, name="review")


stage_command(
    "review",
    "Run the review stage (auto: record no human review; argilla: push, then pull; "
    "file: read the imported answers)",
    review_app,
    "run",
)


def _need_argilla(r: Recipe) -> None:
    from distill.errors import UserError

    if r.review.mode == "file":
        raise UserError(
            "review.mode is 'file': this command needs Argilla (review.mode: argilla); the "
            "spot-check travels as a file with `distill review export` and `distill review import`"
        )
    if r.review.mode != "argilla":
        raise UserError("review.mode is 'auto' (no humans); set review.mode: argilla to review")


def _need_reviewers(r: Recipe) -> None:
    from distill.errors import UserError

    if r.review.mode == "auto":
        raise UserError(
            "review.mode is 'auto' (no humans); set review.mode: file to review in a file "
            "(or argilla)"
        )


@review_app.command("push")
def review_push(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Send the spot-check sample to Argilla (creates or updates; ids are sample ids)."""
    from distill.review.stage import push
    from distill.runfolder import RunFolder

    r = load(recipe, set_)
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
    from distill.review.stage import pull
    from distill.review_gate import render_status
    from distill.runfolder import RunFolder

    r = load(recipe, set_)
    _need_reviewers(r)
    run = RunFolder(r.run_path)
    if not run.spot_check.exists():
        how = "export" if r.review.mode == "file" else "push"
        raise InputError(f"nothing {how}ed yet; run `distill review {how} {recipe}` first")
    _, _, stats = pull(r, run)
    typer.echo(render_status(stats, r.review))


@review_app.command("pull")
def review_pull(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Apply the reviewers' submitted answers (Argilla's, and those imported from files):
    rejects leave training, corrections replace answers. Writes review/ and the manifest's
    review statistics; with a calibration pushed (`review calibrate`), also reads its
    labels and reports the judge's agreement."""
    from distill.pipeline import run_pipeline
    from distill.review import calibration
    from distill.review_gate import render_status, review_stats

    r = load(recipe, set_)
    _need_reviewers(r)
    run = run_pipeline(r, only="review", force={"review"})
    typer.echo(render_status(review_stats(run), r.review))
    if r.review.mode == "argilla" and calibration.pushed(run):
        typer.echo("")
        _calibration_pull(r, run)


def _calibration_pull(r: Recipe, run: RunFolder) -> None:
    from distill.review import calibration
    from distill.review.calibration_stats import render

    typer.echo(render(calibration.pull(r, run)))
    typer.echo(f"written: {calibration.report_path(run)}")


@review_app.command("export")
def review_export(
    recipe: RecipeArg,
    fmt: Annotated[
        Literal["csv", "jsonl"],
        typer.Option("--format", help="csv (a spreadsheet) or jsonl (a labelling tool)."),
    ] = "csv",
    out: Annotated[
        Path | None,
        typer.Option(help="Where to write it (default: runs/NAME/review_file/spot_check.FMT)."),
    ] = None,
    set_: SetOpt = None,
) -> None:
    """Write the spot-check Argilla would get to a file any labelling tool or a
    spreadsheet can carry, with empty decision columns and a note on filling them in."""
    from distill.review.files import export
    from distill.runfolder import RunFolder

    r = load(recipe, set_)
    _need_reviewers(r)
    got = export(r, RunFolder(r.run_path), fmt, out, str(recipe))
    typer.echo(
        f"wrote {got['records']} spot-check records to {got['path']} "
        f"({got['sample']} sampled, {got['low_score']} low-score)"
    )
    typer.echo(f"how to fill it in: {got['note']}")
    typer.echo(f"then run: distill review import {recipe} {got['path']}")


@review_app.command("import")
def review_import(
    recipe: RecipeArg,
    file: Annotated[Path, typer.Argument(help="The filled copy of an exported spot-check.")],
    reviewer: Annotated[
        str | None,
        typer.Option(
            help="Whose answers these are, for rows with no reviewer (default: the file's name)."
        ),
    ] = None,
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Forget every answer imported before this file."),
    ] = False,
    set_: SetOpt = None,
) -> None:
    """Read a filled spot-check file back: its decisions gate training as Argilla's do.
    Rows that cannot count are listed with their reason; then the review stage runs."""
    from distill.pipeline import run_pipeline
    from distill.review.answers import import_file
    from distill.review_gate import render_status, review_stats
    from distill.runfolder import RunFolder

    r = load(recipe, set_)
    _need_reviewers(r)
    report = import_file(r, RunFolder(r.run_path), file, reviewer=reviewer, replace=replace)
    for line in report.lines():
        typer.echo(line)
    run = run_pipeline(r, only="review", force={"review"})
    typer.echo(render_status(review_stats(run), r.review))


@review_app.command("calibrate")
def review_calibrate(
    recipe: RecipeArg,
    set_: SetOpt = None,
    pull: Annotated[
        bool,
        typer.Option("--pull", help="Read the labels submitted so far and report the agreement."),
    ] = False,
) -> None:
    """Measure the eval judge against humans: send blinded eval answers of the two
    deciding systems to Argilla (review.calibration_items); --pull reports agreement."""
    from distill.review import calibration
    from distill.runfolder import RunFolder

    r = load(recipe, set_)
    _need_argilla(r)
    run = RunFolder(r.run_path)
    if pull:
        _calibration_pull(r, run)
        return
    got = calibration.push(r, run)
    counts = ", ".join(f"{n} {s}" for s, n in got["by_system"].items())
    typer.echo(
        f"pushed {got['records']} blinded records to Argilla dataset '{got['dataset']}' "
        f"({counts}; {got['paired_items']} questions with both answers)"
    )
    if got["dropped"]:
        typer.echo(f"deleted {got['dropped']} unanswered records of an earlier pick")
    n = got["records"]
    typer.echo(f"label them at {got['url']} (about {n // 3}-{n // 2} minutes: 20-30 s a record)")
    typer.echo(f"then run: distill review calibrate {recipe} --pull (or distill review pull)")


@review_app.command("serve")
def review_serve(
    port: Annotated[int, typer.Option(help="Argilla's port on 127.0.0.1.")] = 6900,
) -> None:
    """Start a local Argilla server (no Elasticsearch needed), Redis and a worker.

    The first start installs argilla-server 2.8.0 in its own virtual environment
    (about a minute). Redis listens on a unix socket in the server's state folder
    (mode 0700), not on a TCP port. Prints the address and the owner's and
    annotator's credentials.
    """
    from distill.review.server import serve, state_dir

    got = serve(port)
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
