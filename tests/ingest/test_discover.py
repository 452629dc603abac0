"""Finding the corpus files: globs, excludes, and paths that match nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.errors import InputError
from distill.ingest.config import IngestConfig
from distill.ingest.discover import discover


def test_discover_globs_excludes_and_missing_paths(small_corpus: Path) -> None:
    base = small_corpus.parent
    files, root = discover(IngestConfig(paths=["docs"], exclude=["*/two-factor.md"]), base)
    assert sorted(f.name for f in files) == ["password.md", "plans.md"]
    assert root == small_corpus
    files, _ = discover(IngestConfig(paths=["docs/**/*.md"]), base)
    assert len(files) == 3
    with pytest.raises(InputError, match="'nope' does not exist"):
        discover(IngestConfig(paths=["nope"]), base)
    with pytest.raises(InputError, match="every file is excluded"):
        discover(IngestConfig(paths=["docs"], exclude=["*.md"]), base)
