"""Rewrite docs/recipes.md's key reference from the config models (`make docs`)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from distill.recipe import describe_fields

RECIPES = Path(__file__).resolve().parent.parent / "docs" / "recipes.md"
BLOCK = re.compile(r"(<!-- fields:start -->\n).*?(<!-- fields:end -->)", re.S)


def synced(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + describe_fields().rstrip() + "\n" + m.group(2), text)


if __name__ == "__main__":
    text = RECIPES.read_text(encoding="utf-8")
    new = synced(text)
    if "--check" in sys.argv:
        sys.exit(0 if new == text else "docs/recipes.md's key reference is stale: run `make docs`")
    RECIPES.write_text(new, encoding="utf-8")
