"""The Typer app, and the arguments and options its commands share."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from distill import __version__

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


def load(recipe: Path, overrides: list[str] | None) -> Recipe:
    """The recipe at `recipe` with `--set` overrides."""
    from distill.recipe import load_recipe

    return load_recipe(recipe, overrides)
