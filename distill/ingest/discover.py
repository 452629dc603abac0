"""Which files a recipe's ingest.paths name: globs, folders, exclusions, and links
that lead nowhere."""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from distill.errors import InputError
from distill.ingest.config import IngestConfig

_GLOB_CHARS = set("*?[")


def discover(cfg: IngestConfig, base_dir: Path) -> tuple[list[Path], Path]:
    """Expand `paths` (files, folders, globs) minus `exclude`; return files and their root."""
    found: list[Path] = []
    out: list[Path] = []  # links out of their corpus folder: kept as links, skipped later
    for pattern in cfg.paths:
        full = base_dir / pattern
        if _GLOB_CHARS & set(pattern):
            matches = [p for p in sorted(base_dir.glob(pattern)) if p.is_file()]
        elif full.is_dir():
            matches = [p for p in sorted(full.rglob("*")) if p.is_file() or dangling(p)]
            if not cfg.follow_links:
                matches = [p for p in matches if not _links_out(p, full)]
                out.extend(p for p in sorted(full.rglob("*")) if _links_out(p, full))
        elif full.is_file():
            matches = [full]
        else:
            raise InputError(
                f"ingest.paths: '{pattern}' does not exist (paths are relative to {base_dir})"
            )
        if not matches:
            raise InputError(f"ingest.paths: '{pattern}' matches no file (relative to {base_dir})")
        found.extend(matches)
    files = sorted(
        {
            (p.absolute() if dangling(p) else p.resolve())
            for p in found
            if not p.name.startswith(".")
        }
        | {p.absolute() for p in out if not p.name.startswith(".")}
    )
    files = [p for p in files if not _excluded(p, base_dir, cfg.exclude)]
    if not files:
        raise InputError("ingest: every file is excluded; check ingest.paths and ingest.exclude")
    root = Path(_common_root(files))
    return files, root


def _links_out(path: Path, folder: Path) -> bool:
    """A symbolic link in `folder` whose target is a file outside it."""
    if not path.is_symlink() or not path.is_file():
        return False
    return not path.resolve().is_relative_to(folder.resolve())


def link_out(path: Path) -> bool:
    """Is this discovered file a link kept unresolved (one out of its corpus folder)?"""
    return path.is_symlink() and path.exists()


def dangling(path: Path) -> bool:
    """A symbolic link whose target does not exist."""
    return path.is_symlink() and not path.exists()


def _excluded(path: Path, base_dir: Path, patterns: list[str]) -> bool:
    try:
        rel = path.relative_to(base_dir.resolve()).as_posix()
    except ValueError:
        rel = path.as_posix()
    return any(fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(path.name, pat) for pat in patterns)


def _common_root(files: list[Path]) -> str:
    if len(files) == 1:
        return str(files[0].parent)
    return os.path.commonpath([str(f.parent) for f in files])
