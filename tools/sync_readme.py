"""Rewrite README.md's recipe reference from the config models (`make docs`)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from distill.recipe import describe_fields

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"(<!-- fields:start -->\n).*?(<!-- fields:end -->)", re.S)


def synced(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + describe_fields().rstrip() + "\n" + m.group(2), text)


if __name__ == "__main__":
    text = README.read_text(encoding="utf-8")
    new = synced(text)
    if "--check" in sys.argv:
        sys.exit(0 if new == text else "README.md's recipe reference is stale: run `make docs`")
    README.write_text(new, encoding="utf-8")
