"""Ingest: read documents, split them into heading-aware token chunks, embed them.

Outputs in `ingest/`: documents.parquet, chunks.parquet, index/ (see
distill.retrieval) and report.md with every file's outcome. A file that cannot be
read is skipped with its reason; it never stops the run.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill import tables
from distill.errors import InputError
from distill.ingest.chunking import HFTokenCounter, TokenCounter, chunk_document
from distill.ingest.discover import discover
from distill.ingest.readers import dataset_documents, precheck, read_documents
from distill.io import sha256_bytes, write_text
from distill.recipe import Recipe
from distill.runfolder import RunFolder, RunOptions
from distill.tables import Chunk, Document


@dataclass
class FileOutcome:
    source: str
    status: str  # ok | skipped
    reason: str = ""
    chunks: int = 0
    doc_ids: tuple[str, ...] = ()
    collapsed: int = 0  # its chunks that repeated an earlier chunk (collapse_repeats)


_DIGITS = re.compile(r"\d+")


def collapse_repeats(
    chunks: list[Chunk], file_of: dict[str, str]
) -> tuple[list[Chunk], Counter[str]]:
    """The chunks with every repeat of an earlier chunk of the same input file left out
    (the same words, case, spacing and numbers aside), and how many each document lost.
    A document that is one passage pasted thousands of times (or a JSONL file of one
    record repeated) then costs what its information costs: its repeats are never
    embedded, sent to the teacher or paid for, only to be removed by curation's dedup
    afterwards. Per file, so what a file gives depends on that file alone (and an
    unchanged file's chunks can be reused as they are)."""
    seen: set[tuple[str, str]] = set()
    kept: list[Chunk] = []
    lost: Counter[str] = Counter()
    for c in chunks:
        text = _DIGITS.sub("0", " ".join(c["text"].lower().split()))
        key = (file_of.get(c["doc_id"], c["doc_id"]), text)
        if key in seen:
            lost[c["doc_id"]] += 1
            continue
        seen.add(key)
        kept.append(c)
    return kept, lost


def input_files(recipe: Recipe) -> dict[str, str]:
    """Source path -> sha256 of every file ingest would read (for the run fingerprint)."""
    files = discover(recipe.ingest, recipe.base_dir)[0] if recipe.ingest.paths else []
    for spec in recipe.ingest.datasets:  # local datasets: hash their files too
        local = recipe.base_dir / spec.path
        files += sorted(p for p in local.rglob("*") if p.is_file()) if local.is_dir() else []
        files += [local] if local.is_file() else []
    base = recipe.base_dir.resolve()
    return {Path(os.path.relpath(p, base)).as_posix(): _file_sha(p) for p in files}


def _file_sha(path: Path) -> str:
    """A file's sha256, or what kept it from being read (a dangling link, no permission):
    ingest skips such a file with its reason, and the fingerprint notes the same."""
    try:
        return sha256_bytes(path.read_bytes())
    except OSError as e:
        return f"unreadable: {e.strerror or type(e).__name__}"


def _previous(
    out_dir: Path, settings: dict[str, Any]
) -> tuple[dict[str, list[Document]], dict[str, list[Chunk]]]:
    """The last ingest's documents by file and chunks by doc id, if made with `settings`."""
    from distill.io import read_json

    try:
        if read_json(out_dir / "settings.json") != settings:
            return {}, {}
        docs: dict[str, list[Document]] = {}
        old = tables.read(out_dir / "documents.parquet", Document)
        if len({d["doc_id"] for d in old}) < len(old):
            return {}, {}  # two documents with one id (an older distill): read all afresh
        for d in old:
            docs.setdefault(d["file"], []).append(d)
        chunks: dict[str, list[Chunk]] = {}
        for c in tables.read(out_dir / "chunks.parquet", Chunk):
            chunks.setdefault(c["doc_id"], []).append(c)
        return docs, chunks
    except (OSError, ValueError, KeyError):
        return {}, {}


def run(recipe: Recipe, folder: RunFolder, options: RunOptions) -> dict[str, Any]:
    """Read, chunk and embed the corpus into `ingest/`; return counts for the manifest.

    Incremental: a file (or dataset) whose content and the chunking settings are
    unchanged since the last ingest is neither re-read nor re-chunked, and its chunks
    are not re-embedded.
    """
    # Long on purpose: the incremental read (the `add` closure shares its state) and
    # the writes are one pass; split, they would pass a dozen locals around.
    from distill.io import write_json
    from distill.models import load_tokenizer
    from distill.retrieval import build_index
    from distill.ui import console, track

    out_dir = folder.stage_dir("ingest")
    cfg = recipe.ingest
    files, root = discover(cfg, recipe.base_dir) if cfg.paths else ([], recipe.base_dir)
    tokenizer = cfg.tokenizer or recipe.student
    settings = {
        "tokenizer": tokenizer,
        "jsonl": cfg.jsonl.model_dump(),
        **cfg.model_dump(include={"chunk_tokens", "chunk_overlap"}),
    }
    old_docs, old_chunks = _previous(out_dir, settings)
    counter: TokenCounter | None = None
    docs: list[Document] = []
    chunks: list[Chunk] = []
    outcomes: list[FileOutcome] = []
    reused = 0
    # A document's id is its path without the extension, unless two inputs share that
    # path (a.md beside a.txt): then both keep their extension ("a.md", "a.txt"). The
    # rule reads the whole file list, so an id never depends on which file came first
    # or on which was re-read and which reused.
    stems = Counter(p.relative_to(root).with_suffix("").as_posix() for p in files)

    def doc_id(raw: str, path: Path | None) -> str:
        """The id of a document read (or stored) as `raw` from `path`, by that rule."""
        if path is None:
            return raw  # a dataset's record
        stem = path.relative_to(root).with_suffix("").as_posix()
        if raw not in (stem, stem + path.suffix):
            return raw  # one of a JSONL file's records
        return stem + path.suffix if stems[stem] > 1 else stem

    def add(file: str, sha: str, read: Any, label: str, path: Path | None = None) -> None:
        nonlocal counter, reused
        old = old_docs.get(file, [])
        if (
            old
            and all(d["sha256"] == sha for d in old)
            and all(d["doc_id"] == doc_id(d["doc_id"], path) for d in old)
        ):
            new_docs = old
            new_chunks = [c for d in old for c in old_chunks.get(d["doc_id"], [])]
            reused += len(old)
        else:
            try:
                parsed = read()
            except (ValueError, OSError) as e:
                outcomes.append(FileOutcome(label, "skipped", _reason(e)))
                return
            except Exception as e:  # noqa: BLE001 - a parser's own error skips its file only
                outcomes.append(FileOutcome(label, "skipped", f"unreadable ({_reason(e, True)})"))
                return
            counter = counter or HFTokenCounter(load_tokenizer(tokenizer))
            new_docs, new_chunks = [], []
            for doc in parsed:
                doc["doc_id"] = doc_id(doc["doc_id"], path)
                new_docs.append(doc)
                new_chunks += chunk_document(doc, counter, cfg)
        docs.extend(new_docs)
        chunks.extend(new_chunks)
        ids = tuple(d["doc_id"] for d in new_docs)
        outcomes.append(FileOutcome(label, "ok", chunks=len(new_chunks), doc_ids=ids))

    base = recipe.base_dir.resolve()
    for path in track(files, "reading files"):
        file = Path(os.path.relpath(path, base)).as_posix()
        label = str(path.relative_to(root))
        try:
            why, data = precheck(path, cfg), b""
            if why is None:
                data = path.read_bytes()
        except OSError as e:
            why = _reason(e)
        if why is not None:
            outcomes.append(FileOutcome(label, "skipped", why))
            continue
        add(
            file,
            sha256_bytes(data),
            lambda path=path: read_documents(path, root, recipe.base_dir, cfg),
            label,
            path,
        )
    for spec in cfg.datasets:
        parsed = dataset_documents(spec, recipe.base_dir)
        file = f"dataset:{spec.path}:{spec.split}"
        add(file, parsed[0]["sha256"] if parsed else "", lambda parsed=parsed: parsed, file)
    if not chunks:
        reasons = "; ".join(f"{o.source}: {o.reason}" for o in outcomes[:5])
        raise InputError(f"ingest: no usable text in {len(outcomes)} input(s) ({reasons})")

    chunks, lost = collapse_repeats(chunks, {d["doc_id"]: d["file"] for d in docs})
    for o in outcomes:
        o.collapsed = sum(lost[d] for d in o.doc_ids)
        o.chunks -= o.collapsed
    twice = [i for i, n in Counter(d["doc_id"] for d in docs).items() if n > 1]
    if twice:
        files_of = sorted({d["file"] for d in docs if d["doc_id"] == twice[0]})
        raise InputError(
            f"ingest: {' and '.join(files_of)} both give the document id '{twice[0]}'; "
            "rename one of them"
        )
    tables.write(folder.documents, docs, Document, unique="doc_id")
    tables.write(folder.chunks, chunks, Chunk, unique="chunk_id")
    embedded = build_index(
        chunks, cfg.embedding_model, cfg.embedding_batch_size, out_dir, previous=out_dir / "index"
    )
    write_json(out_dir / "settings.json", settings)
    write_text(out_dir / "report.md", _report(root, outcomes, chunks))
    skipped = [o for o in outcomes if o.status != "ok"]
    for o in skipped:
        console.print(f"  [yellow]skipped[/] {o.source}: {o.reason}")
    for o in outcomes:
        if o.collapsed:
            console.print(
                f"  [yellow]collapsed[/] {o.source}: {o.collapsed} chunks repeat earlier "
                f"ones (kept {o.chunks})"
            )
    console.print(
        f"  {len(outcomes) - len(skipped)} of {len(outcomes)} inputs read, {len(skipped)} skipped "
        f"(reasons in {out_dir / 'report.md'}); {len(chunks)} chunks, {embedded} embedded"
    )
    return {
        "inputs": len(outcomes),
        "documents": len(docs),
        "unchanged_documents": reused,
        "skipped": len(skipped),
        "chunks": len(chunks),
        "collapsed_chunks": sum(lost.values()),
        "embedded_chunks": embedded,
        "corpus_tokens": sum(c["n_tokens"] for c in chunks),
    }


def _reason(e: BaseException, typed: bool = False) -> str:
    """An exception as a one-line skip reason."""
    if isinstance(e, OSError) and e.strerror:
        return f"cannot read it ({e.strerror})"
    text = " ".join(str(e).split()) or type(e).__name__
    text = f"{type(e).__name__}: {text}" if typed else text
    return text if len(text) <= 200 else text[:200] + "…"


def _report(root: Path, outcomes: list[FileOutcome], chunks: list[Chunk]) -> str:
    sizes = sorted(c["n_tokens"] for c in chunks)
    lines = [
        "# Ingest report",
        "",
        f"- corpus root: {root}",
        f"- files: {len(outcomes)} ({sum(o.status == 'ok' for o in outcomes)} read, "
        f"{sum(o.status != 'ok' for o in outcomes)} skipped)",
        f"- chunks: {len(chunks)}; tokens per chunk: min {sizes[0]}, "
        f"median {sizes[len(sizes) // 2]}, max {sizes[-1]}",
        "",
        "| file | outcome | chunks |",
        "| --- | --- | --- |",
    ]
    for o in outcomes:
        outcome = "ok" if o.status == "ok" else f"skipped: {o.reason}"
        if o.collapsed:
            outcome += f"; {o.collapsed} repeated chunks collapsed (the same text again)"
        lines.append(f"| {o.source} | {outcome} | {o.chunks} |")
    return "\n".join(lines) + "\n"
