"""Rewrite the docs' generated blocks (`make docs`); `--check` only says which are stale.

- docs/recipes.md's key reference, from the config models;
- README.md's command block, the output of `distill --help`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from distill.recipe import describe_fields

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "docs" / "recipes.md"
README = ROOT / "README.md"
BLOCK = re.compile(r"(<!-- fields:start -->\n).*?(<!-- fields:end -->)", re.S)
CLI_BLOCK = re.compile(r"(<!-- cli:start -->\n).*?(<!-- cli:end -->)", re.S)
# The help is rendered for a terminal this wide, whatever the one running this is.
HELP_WIDTH = 88


def _fill(block: re.Pattern[str], text: str, body: str) -> str:
    new, n = block.subn(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text)
    if n != 1:
        raise ValueError(f"{n} blocks match {block.pattern!r}; the file needs exactly one")
    return new


def synced(text: str) -> str:
    """docs/recipes.md's text with its key reference regenerated."""
    return _fill(BLOCK, text, describe_fields())


def cli_help() -> str:
    """`distill --help`, as a terminal HELP_WIDTH columns wide shows it (plain text)."""
    import typer

    from distill.cli import app

    command = typer.main.get_command(app)
    ctx = command.context_class(
        command, info_name="distill", terminal_width=HELP_WIDTH, max_content_width=HELP_WIDTH
    )
    return command.get_help(ctx)


def synced_readme(text: str) -> str:
    """README.md's text with its command block regenerated."""
    return _fill(CLI_BLOCK, text, "```\n" + cli_help().rstrip() + "\n```")


# Each synced file, how to regenerate it, and what is stale when it differs.
FILES: list[tuple[Path, Callable[[str], str], str]] = [
    (RECIPES, synced, "docs/recipes.md's key reference"),
    (README, synced_readme, "README.md's command block"),
]


def main(check: bool) -> str | None:
    """Rewrite every generated block, or with `check` name the stale ones in one line."""
    stale = []
    for path, sync, what in FILES:
        text = path.read_text(encoding="utf-8")
        try:
            new = sync(text)
        except ValueError as e:
            return f"{what}: {e}"
        if new == text:
            continue
        if check:
            stale.append(what)
        else:
            path.write_text(new, encoding="utf-8")
    if not stale:
        return None
    verb = "is" if len(stale) == 1 else "are"
    return f"{' and '.join(stale)} {verb} stale: run `make docs`"


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
