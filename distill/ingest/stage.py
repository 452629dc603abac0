"""Ingest: read documents, split them into heading-aware token chunks, embed them.

Outputs in `ingest/`: documents.parquet, chunks.parquet, index/ (see
distill.retrieval) and report.md with every file's outcome. A file that cannot be
read is skipped with its reason; it never stops the run.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from distill.errors import InputError
from distill.io import sha256_bytes, sha256_text, write_rows, write_text
from distill.recipe import DatasetSource, IngestConfig, JsonlConfig, Recipe
from distill.runfolder import RunFolder, RunOptions

READERS_BY_SUFFIX = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".rst": "rst",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".jsonl": "jsonl",
}
FORMAT_NAMES = {
    "markdown": "Markdown",
    "text": "plain text",
    "rst": "reStructuredText",
    "html": "HTML",
    "jsonl": "JSON Lines",
    "pdf": "a PDF",
}
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_GLOB_CHARS = set("*?[")


@dataclass
class Document:
    doc_id: str
    source: str  # where a reader finds it: a path, path#L<line>, or dataset:<path>:<split>#<row>
    file: str  # the file or dataset it came from (documents are re-read per file)
    title: str
    text: str
    format: str
    sha256: str  # of the whole file or dataset, so an unchanged file is never re-read
    metadata: str = "{}"  # JSON: a JSONL record's or dataset row's other fields


@dataclass
class Chunk:
    chunk_id: str
    doc_id: str
    source: str
    title: str
    heading_path: str
    text: str
    n_tokens: int
    position: int


@dataclass
class FileOutcome:
    source: str
    status: str  # ok | skipped
    reason: str = ""
    chunks: int = 0


class TokenCounter(Protocol):
    """What chunking needs from a tokenizer."""

    def count(self, text: str) -> int: ...
    def spans(self, text: str) -> list[tuple[int, int]]: ...


class HFTokenCounter:
    """Token counts and character spans from a (fast) Hugging Face tokenizer."""

    def __init__(self, tokenizer: Any) -> None:
        self.tok = tokenizer

    def count(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def spans(self, text: str) -> list[tuple[int, int]]:
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
        return [tuple(s) for s in enc["offset_mapping"]]


class WhitespaceCounter:
    """Words as tokens: for tests and as a fallback."""

    def count(self, text: str) -> int:
        return len(text.split())

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in re.finditer(r"\S+", text)]


# ---------------------------------------------------------------- discovery


def discover(cfg: IngestConfig, base_dir: Path) -> tuple[list[Path], Path]:
    """Expand `paths` (files, folders, globs) minus `exclude`; return files and their root."""
    found: list[Path] = []
    for pattern in cfg.paths:
        full = base_dir / pattern
        if _GLOB_CHARS & set(pattern):
            matches = [p for p in sorted(base_dir.glob(pattern)) if p.is_file()]
        elif full.is_dir():
            matches = [p for p in sorted(full.rglob("*")) if p.is_file() or _dangling(p)]
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
            (p.absolute() if _dangling(p) else p.resolve())
            for p in found
            if not p.name.startswith(".")
        }
    )
    files = [p for p in files if not _excluded(p, base_dir, cfg.exclude)]
    if not files:
        raise InputError("ingest: every file is excluded; check ingest.paths and ingest.exclude")
    root = Path(_common_root(files))
    return files, root


def _dangling(path: Path) -> bool:
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


# ---------------------------------------------------------------- readers


# What a file is by its first bytes, whatever its name says.
MAGIC = (
    (b"PK\x03\x04", "a zip archive (or .docx/.xlsx/.epub)"),
    (b"PK\x05\x06", "an empty zip archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x28\xb5\x2f\xfd", "a zstd archive"),
    (b"%PDF-", "a PDF"),
    (b"\x7fELF", "an executable (ELF)"),
    (b"\xcf\xfa\xed\xfe", "an executable (Mach-O)"),
    (b"\xca\xfe\xba\xbe", "a Java class or Mach-O file"),
    (b"\x00asm", "a WebAssembly module"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"PAR1", "a Parquet file"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office document (OLE)"),
    (b"OggS", "an Ogg media file"),
    (b"ID3", "an MP3 file"),
    (b"fLaC", "a FLAC file"),
)


def sniff(data: bytes) -> str | None:
    """What the bytes are, when their first bytes say so (None: no known signature)."""
    for magic, what in MAGIC:
        if data.startswith(magic):
            return what
    if data[257:262] == b"ustar":
        return "a tar archive"
    if data[:4] == b"RIFF" and data[8:12] in (b"WAVE", b"AVI ", b"WEBP"):
        return "a RIFF media file"
    return None


def precheck(path: Path, cfg: IngestConfig) -> str | None:
    """Why a discovered file is skipped before it is read (None: read it)."""
    if _dangling(path):
        return f"dangling symbolic link (its target {os.readlink(path)} does not exist)"
    size = path.stat().st_size
    if size > cfg.max_file_mb * 1e6:
        return f"larger than ingest.max_file_mb ({size / 1e6:.0f} MB > {cfg.max_file_mb:g} MB)"
    return None


def low_information(text: str) -> str | None:
    """Why a text holds almost no information (one character repeated, a line pasted
    thousands of times), or None. Prose compresses to about a third; this is < 2%."""
    if len(text) < 2000:
        return None
    sample = text[:1_000_000].encode("utf-8", "replace")
    ratio = len(zlib.compress(sample, 6)) / len(sample)
    if ratio < 0.02:
        return f"almost no information (it compresses to {ratio:.1%} of its size)"
    return None


def read_documents(path: Path, root: Path, base_dir: Path, cfg: IngestConfig) -> list[Document]:
    """Read one file into Documents (text as Markdown-ish). Raises ValueError with a reason."""
    fmt = READERS_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"unsupported file type '{path.suffix or path.name}'")
    data = path.read_bytes()
    if not data.strip():
        raise ValueError("empty file")
    what = sniff(data)
    if fmt == "pdf" and b"%PDF-" not in data[:1024]:
        raise ValueError(f"{what}, not a PDF" if what else "not a PDF (no %PDF- header)")
    if fmt != "pdf" and what is not None:
        raise ValueError(f"{what}, not {FORMAT_NAMES[fmt]}, by its first bytes")
    rel = path.relative_to(root).with_suffix("").as_posix()
    source = Path(os.path.relpath(path, base_dir.resolve())).as_posix()
    sha = sha256_bytes(data)
    if fmt == "pdf":
        text = _read_pdf(path)
    else:
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise ValueError("UTF-16 text: save it as UTF-8")
        if b"\x00" in data[:8192]:
            raise ValueError("binary file")
        try:
            raw = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise ValueError(f"not UTF-8 text (byte {e.start})") from e
        if fmt == "jsonl":
            return _jsonl_documents(raw, rel, source, sha, cfg)
        text = {"html": html_to_text, "rst": rst_to_text}.get(fmt, lambda t: t)(raw)
    text = _normalise(text)
    if not text.strip():
        raise ValueError("no text content")
    if all(ln.lstrip().startswith("#") for ln in text.splitlines() if ln.strip()):
        raise ValueError("no text beyond its headings")
    why = low_information(text)
    if why:
        raise ValueError(why)
    return [Document(rel, source, source, _title(text, path.stem), text, fmt, sha)]


def read_document(path: Path, root: Path, base_dir: Path) -> Document:
    """Read a single-document file (not JSONL)."""
    (doc,) = read_documents(path, root, base_dir, IngestConfig(paths=["."]))
    return doc


def _record_document(
    record: dict[str, Any],
    number: int,
    doc_prefix: str,
    source: str,
    file: str,
    sha: str,
    fmt: str,
    fields: JsonlConfig | DatasetSource,
) -> Document | None:
    text = record.get(fields.text_field)
    if not isinstance(text, str) or not text.strip():
        return None
    rid = record.get(fields.id_field) if fields.id_field else None
    title = record.get(fields.title_field) if fields.title_field else None
    meta = {k: v for k, v in record.items() if k != fields.text_field}
    return Document(
        doc_id=f"{doc_prefix}/{rid if rid is not None else number}",
        source=source,
        file=file,
        title=str(title) if title else _title(text, f"{doc_prefix} {number}"),
        text=_normalise(text),
        format=fmt,
        sha256=sha,
        metadata=json.dumps(meta, default=str, sort_keys=True),
    )


def _jsonl_documents(
    raw: str, rel: str, source: str, sha: str, cfg: IngestConfig
) -> list[Document]:
    docs = []
    for n, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"line {n} is not JSON ({e.msg})") from e
        if not isinstance(record, dict):
            raise ValueError(f"line {n} is not a JSON object")
        doc = _record_document(record, n, rel, f"{source}#L{n}", source, sha, "jsonl", cfg.jsonl)
        if doc:
            docs.append(doc)
    if not docs:
        raise ValueError(f"no record has a non-empty '{cfg.jsonl.text_field}' field")
    return docs


def dataset_documents(spec: DatasetSource, base_dir: Path) -> list[Document]:
    """Rows of a Hugging Face dataset (hub id or local path) as Documents."""
    import datasets

    local = base_dir / spec.path
    target = str(local) if local.exists() else spec.path
    try:
        if local.is_dir() and (local / "dataset_info.json").exists():
            ds = datasets.load_from_disk(target)
            ds = ds[spec.split] if isinstance(ds, datasets.DatasetDict) else ds
        else:
            ds = datasets.load_dataset(target, split=spec.split)
    except Exception as e:  # datasets raises many types for "cannot load"
        raise InputError(
            f"ingest.datasets: cannot load '{spec.path}' ({type(e).__name__}: {e})"
        ) from e
    if spec.text_field not in ds.column_names:
        raise InputError(
            f"ingest.datasets: '{spec.path}' has no column '{spec.text_field}' "
            f"(columns: {', '.join(ds.column_names)})"
        )
    file = f"dataset:{spec.path}:{spec.split}"
    prefix = spec.path.strip("/").replace(":", "_")
    docs = []
    for n, row in enumerate(ds):
        doc = _record_document(
            row, n, prefix, f"{file}#{n}", file, ds._fingerprint, "dataset", spec
        )
        if doc:
            docs.append(doc)
    return docs


def _read_pdf(path: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, OSError) as e:
        raise ValueError(f"unreadable PDF ({type(e).__name__}: {e})") from e
    # Each PDF page becomes paragraphs; line breaks inside a paragraph are kept.
    return "\n\n".join(p.strip() for p in pages if p.strip())


_DROP_TAGS = "script, style, noscript, nav, header, footer, aside, form, template, svg"
_BLOCK = {"p", "li", "pre", "blockquote", "dt", "dd", "tr", "caption", "figcaption"}
_HEADINGS = {f"h{i}": i for i in range(1, 7)}


def html_to_text(html: str) -> str:
    """Main content of an HTML page as Markdown (headings as '#' lines).

    trafilatura finds the main content and drops navigation, headers, footers and
    scripts; pages it finds nothing in fall back to the <main>/<article>/<body> walk.
    """
    import trafilatura

    text = trafilatura.extract(
        html,
        output_format="markdown",
        include_tables=True,
        include_links=False,
        include_images=False,
        include_comments=False,
        favor_recall=True,
    )
    if text and text.strip():
        if not text.lstrip().startswith("# "):
            # Not trafilatura.extract_metadata: it also hunts for dates, 5x the cost.
            from selectolax.lexbor import LexborHTMLParser

            node = LexborHTMLParser(html).css_first("title")
            if node is not None and node.text(strip=True):
                text = f"# {node.text(strip=True)}\n\n{text}"
    else:
        text = _html_walk(html)
    if not _has_sentence(text):
        raise ValueError(
            "no main content (no sentence of 6 or more words outside headings: a navigation "
            "or index page?)"
        )
    return text


def _has_sentence(text: str) -> bool:
    return any(
        len(line.split()) >= 6
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )


def _html_walk(html: str) -> str:
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    title_node = tree.css_first("title")
    page_title = title_node.text(strip=True) if title_node else ""
    for node in tree.css(_DROP_TAGS):
        node.decompose()
    root = tree.css_first("main") or tree.css_first("article") or tree.body
    blocks: list[str] = []
    if root is not None:
        _walk(root, blocks)
    if page_title and not any(b.startswith("# ") for b in blocks):
        blocks.insert(0, f"# {page_title}")
    return "\n\n".join(blocks)


def _walk(node: Any, blocks: list[str]) -> None:
    for child in node.iter(include_text=True):
        tag = child.tag
        if tag == "-text":
            text = " ".join((child.text_content or "").split())
            if text:
                blocks.append(text)
        elif tag in _HEADINGS:
            blocks.append("#" * _HEADINGS[tag] + " " + " ".join(child.text().split()))
        elif tag == "tr":
            cells = [" ".join(c.text().split()) for c in child.css("th, td")]
            blocks.append("| " + " | ".join(cells) + " |")
        elif tag in _BLOCK and not child.css_first("p, li, pre, table, ul, ol, div"):
            text = " ".join(child.text().split())
            if text:
                blocks.append(("- " if tag == "li" else "") + text)
        elif tag not in ("-comment",):
            _walk(child, blocks)


def rst_to_text(rst: str) -> str:
    """reStructuredText as Markdown-ish text, sections as '#' headings (via docutils)."""
    from docutils import nodes
    from docutils.core import publish_doctree

    tree = publish_doctree(
        rst,
        settings_overrides={"report_level": 5, "halt_level": 5, "file_insertion_enabled": False},
    )
    blocks: list[str] = []

    def walk(node: Any, depth: int) -> None:
        for child in node.children:
            if isinstance(child, nodes.section):
                title = child.next_node(nodes.title)
                blocks.append("#" * min(depth, 6) + " " + (title.astext() if title else ""))
                walk(child, depth + 1)
            elif isinstance(child, nodes.title):
                if node is tree:  # the document title docutils lifted out of its section
                    blocks.append("# " + child.astext())
            elif isinstance(child, nodes.system_message | nodes.comment):
                continue
            elif isinstance(child, nodes.list_item):
                blocks.append("- " + " ".join(child.astext().split()))
            elif isinstance(child, nodes.literal_block):
                blocks.append(child.astext())
            elif isinstance(child, nodes.paragraph | nodes.line_block | nodes.term):
                blocks.append(" ".join(child.astext().split()))
            elif isinstance(child, nodes.Element):
                walk(child, depth)

    has_title = bool(tree.children) and isinstance(tree.children[0], nodes.title)
    walk(tree, 2 if has_title else 1)
    return "\n\n".join(b for b in blocks if b.strip())


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _title(text: str, fallback: str) -> str:
    for line in text.splitlines():
        m = _HEADING.match(line)
        if m and len(m[1]) == 1:
            return m[2].strip()
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return first[:80] if 0 < len(first) <= 80 else fallback.replace("-", " ").replace("_", " ")


# ---------------------------------------------------------------- chunking


def split_sections(text: str, title: str) -> list[tuple[list[str], str]]:
    """Split Markdown into (heading path, body) sections; headings inside code fences ignored."""
    sections: list[tuple[list[str], list[str]]] = []
    stack: list[tuple[int, str]] = []
    body: list[str] = []
    in_fence = False

    def flush() -> None:
        path = [h for _, h in stack] or [title]
        sections.append((path, body.copy()))
        body.clear()

    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        m = None if in_fence else _HEADING.match(line)
        if m:
            flush()
            level = len(m[1])
            stack = [(lvl, h) for lvl, h in stack if lvl < level] + [(level, m[2].strip())]
        else:
            body.append(line)
    flush()
    return [
        (path, "\n".join(lines).strip()) for path, lines in sections if "\n".join(lines).strip()
    ]


def chunk_text(text: str, counter: TokenCounter, max_tokens: int, overlap: int) -> list[str]:
    """Pack paragraphs into chunks of at most `max_tokens`; split longer paragraphs by tokens.

    A chunk that continues a section starts with the last `overlap` tokens of the previous one.
    """
    paras = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    chunks: list[str] = []
    current: list[str] = []
    size = 0

    def tail(chunk: str) -> str:
        if overlap == 0:
            return ""
        spans = counter.spans(chunk)
        return chunk[spans[-overlap][0] :] if len(spans) > overlap else ""

    def flush() -> str:
        nonlocal size
        chunk = "\n\n".join(current)
        if chunk:
            chunks.append(chunk)
        current.clear()
        size = 0
        return chunk

    for para in paras:
        n = counter.count(para)
        if n > max_tokens:
            flush()
            spans = counter.spans(para)
            step = max_tokens - overlap
            for start in range(0, len(spans), step):
                window = spans[start : start + max_tokens]
                chunks.append(para[window[0][0] : window[-1][1]])
                if start + max_tokens >= len(spans):
                    break
            continue
        if current and size + n > max_tokens:
            seed = tail(flush())
            if seed and counter.count(seed) + n <= max_tokens:
                current.append(seed)
                size = counter.count(seed)
        current.append(para)
        size += n
    flush()
    return chunks


def chunk_document(doc: Document, counter: TokenCounter, cfg: IngestConfig) -> list[Chunk]:
    out: list[Chunk] = []
    for path, body in split_sections(doc.text, doc.title):
        heading = " > ".join(path)
        for text in chunk_text(body, counter, cfg.chunk_tokens, cfg.chunk_overlap):
            out.append(
                Chunk(
                    chunk_id=f"{doc.doc_id}#{sha256_text(heading + chr(10) + text)[:10]}",
                    doc_id=doc.doc_id,
                    source=doc.source,
                    title=doc.title,
                    heading_path=heading,
                    text=text,
                    n_tokens=counter.count(text),
                    position=len(out),
                )
            )
    return out


# ---------------------------------------------------------------- the stage


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


def _previous(out_dir: Path, settings: dict[str, Any]) -> tuple[dict[str, list], dict[str, list]]:
    """The last ingest's documents by file and chunks by doc id, if made with `settings`."""
    from distill.io import read_json, read_rows

    try:
        if read_json(out_dir / "settings.json") != settings:
            return {}, {}
        docs: dict[str, list] = {}
        for d in read_rows(out_dir / "documents.parquet"):
            docs.setdefault(d["file"], []).append(d)
        chunks: dict[str, list] = {}
        for c in read_rows(out_dir / "chunks.parquet"):
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
    from distill.io import write_json
    from distill.models import load_tokenizer
    from distill.retrieval import build_index
    from distill.ui import console, track

    out_dir = folder.stage_dir("ingest")
    cfg = recipe.ingest
    files, root = discover(cfg, recipe.base_dir) if cfg.paths else ([], recipe.base_dir)
    tokenizer = cfg.tokenizer or recipe.train.student
    settings = {
        "tokenizer": tokenizer,
        "jsonl": cfg.jsonl.model_dump(),
        **cfg.model_dump(include={"chunk_tokens", "chunk_overlap"}),
    }
    old_docs, old_chunks = _previous(out_dir, settings)
    counter: TokenCounter | None = None
    docs: list[dict[str, Any]] = []
    chunks: list[dict[str, Any]] = []
    outcomes: list[FileOutcome] = []
    seen_ids: set[str] = set()
    reused = 0

    def add(file: str, sha: str, read: Any, label: str) -> None:
        nonlocal counter, reused
        old = old_docs.get(file, [])
        if old and all(d["sha256"] == sha for d in old):
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
                if doc.doc_id in seen_ids:  # a.md and a.html in one folder
                    doc.doc_id = f"{doc.doc_id}.{doc.format}"
                new_docs.append(asdict(doc))
                new_chunks += [asdict(c) for c in chunk_document(doc, counter, cfg)]
        seen_ids.update(d["doc_id"] for d in new_docs)
        docs.extend(new_docs)
        chunks.extend(new_chunks)
        outcomes.append(FileOutcome(label, "ok", chunks=len(new_chunks)))

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
        )
    for spec in cfg.datasets:
        parsed = dataset_documents(spec, recipe.base_dir)
        file = f"dataset:{spec.path}:{spec.split}"
        add(file, parsed[0].sha256 if parsed else "", lambda parsed=parsed: parsed, file)
    if not chunks:
        reasons = "; ".join(f"{o.source}: {o.reason}" for o in outcomes[:5])
        raise InputError(f"ingest: no usable text in {len(outcomes)} input(s) ({reasons})")

    write_rows(out_dir / "documents.parquet", docs)
    write_rows(out_dir / "chunks.parquet", chunks)
    embedded = build_index(
        chunks, cfg.embedding_model, cfg.embedding_batch_size, out_dir, previous=out_dir / "index"
    )
    write_json(out_dir / "settings.json", settings)
    write_text(out_dir / "report.md", _report(root, outcomes, chunks))
    skipped = [o for o in outcomes if o.status != "ok"]
    for o in skipped:
        console.print(f"  [yellow]skipped[/] {o.source}: {o.reason}")
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


def _report(root: Path, outcomes: list[FileOutcome], chunks: list[dict[str, Any]]) -> str:
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
        lines.append(f"| {o.source} | {outcome} | {o.chunks} |")
    return "\n".join(lines) + "\n"
