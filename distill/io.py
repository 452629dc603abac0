"""Atomic writes and content hashes for the run folder.

Every stage output is written to a temporary sibling and renamed into place, so a
crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create private files; outputs get the usual permissions instead.
_FILE_MODE = 0o666 & ~_umask()
_DIR_MODE = 0o777 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _FILE_MODE)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def save_figure(fig: Any, path: Path, **kwargs: Any) -> None:
    """A matplotlib figure written atomically (a crash leaves the old plot or none)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", **kwargs)


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield an empty temporary folder; swap it in for `path` on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, _DIR_MODE)
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically, pretty-printed with sorted keys."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_rows(path: Path, rows: list[dict[str, Any]], schema: pa.Schema | None = None) -> None:
    """Write rows as a Parquet file (a Hugging Face `datasets`-readable table), atomically."""
    table = pa.Table.from_pylist(rows, schema=schema) if rows or schema else pa.table({})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Read a Parquet file written by `write_rows` as a list of dicts."""
    return pq.read_table(path).to_pylist()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode("utf-8"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def adapter_id(adapter: Path | None) -> str | None:
    """Which adapter this is: the sha256 of its weights file (a path or a folder's other
    files say nothing once it is retrained). The one answer train (a start adapter),
    export (what an export was made from), eval (what it measured) and publish (that the
    card describes the adapter it uploads) all use; None: no adapter there."""
    if adapter is None:
        return None
    weights = adapter / "adapter_model.safetensors"
    return sha256_file(weights) if weights.exists() else None


def hash_json(data: Any) -> str:
    """A stable hash of JSON-able data (sorted keys)."""
    return sha256_text(json.dumps(data, sort_keys=True, default=str))


# Reports hold timings, and request caches only grow: neither is an output later stages read.
# Bookkeeping that does not change what a stage produced.
HASH_SKIP = (
    "report.md",
    "cache.sqlite",
    "cache.sqlite-wal",
    "cache.sqlite-shm",
    "batches.json",
)


def hash_tree(root: Path, *, skip: tuple[str, ...] = HASH_SKIP) -> str:
    """Hash every file under `root` (names and contents), except those named in `skip`."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name not in skip and not p.name.startswith("."):
            h.update(p.relative_to(root).as_posix().encode())
            h.update(sha256_file(p).encode())
    return h.hexdigest()
