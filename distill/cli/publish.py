"""`distill publish` (the Hub) and `distill export` (merged weights, GGUF)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from distill.cli.app import RecipeArg, SetOpt, app, load

if TYPE_CHECKING:
    from distill.recipe import Recipe


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
            help="Make the repository private (or public), new or existing. Without either, "
            "publish.private decides: true makes it private, new or existing; false makes a "
            "new one public and leaves an existing one's visibility as it is.",
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
    from distill.runfolder import RunOptions

    if kind not in (None, "dataset", "adapter"):
        raise UserError(f"publish: KIND is 'dataset' or 'adapter', not '{kind}'")
    if repo_id is not None and not re.fullmatch(REPO_ID, repo_id):
        raise UserError(f"--repo-id '{repo_id}': write it as ORG/NAME (letters, digits, - _ .)")
    if kind is None and (repo_id or private is not None or dry_run):
        raise UserError(
            "--repo-id, --private/--public and --dry-run need a KIND: dataset or adapter"
        )
    r = load(recipe, set_)
    if kind is None:
        options = RunOptions(accept_unreviewed=accept_unreviewed)
        run_pipeline(r, only="publish", force={"publish"}, options=options)
        return
    if repo_id:
        setattr(r.publish, f"{kind}_repo", repo_id)
    _publish_one(r, kind, private, dry_run, accept_unreviewed)


def _publish_one(
    r: Recipe, kind: str, private: bool | None, dry_run: bool, accept_unreviewed: bool
) -> None:
    """Write one repository's folder and upload it (unless a dry run)."""
    from distill.publish.hub import upload
    from distill.publish.stage import check_ready, repo_ids, unreviewed_reasons, write
    from distill.review_gate import GateClosed
    from distill.runfolder import RunFolder, RunOptions

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
    folder = run.published(kind)
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
    ollama: Annotated[
        bool,
        typer.Option(
            "--ollama",
            help="Also write an Ollama Modelfile beside the GGUF (implies --gguf; with "
            "--adapter-only: FROM the student's GGUF, ADAPTER the LoRA GGUF).",
        ),
    ] = False,
) -> None:
    """Export the trained adapter: merged safetensors and/or GGUF (and an Ollama
    Modelfile), in runs/<name>/export/.

    Always prints how to load the adapter with PEFT and serve it with vLLM, llama.cpp,
    Ollama or `distill serve`.
    """
    from distill.export import export, usage
    from distill.runfolder import RunFolder

    r = load(recipe, set_)
    made = export(
        r,
        merge_weights=merge,
        to_gguf=gguf,
        outtype=gguf_type,
        adapter_only=adapter_only,
        ollama=ollama,
    )
    for kind, path in made.items():
        typer.echo(f"{kind}: {path}")
    typer.echo(usage(r, RunFolder(r.run_path)))
