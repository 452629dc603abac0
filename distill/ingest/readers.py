"""Readers: one file (or dataset) in, Documents out, as Markdown-ish text.

A file that is not what its name says, is empty or binary, is mostly one character or
has no main content raises ValueError with the reason; ingest skips it."""

from __future__ import annotations

import json
import os
import re
import zlib
from pathlib import Path
from typing import Any

from distill.errors import InputError
from distill.ingest.chunking import MARKDOWN_HEADING
from distill.ingest.config import DatasetSource, IngestConfig, JsonlConfig
from distill.ingest.discover import dangling, link_out
from distill.io import sha256_bytes, sha256_text
from distill.tables import Document

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
    if dangling(path):
        return f"dangling symbolic link (its target {os.readlink(path)} does not exist)"
    if link_out(path):
        return (
            f"a symbolic link out of the corpus folder (to {os.readlink(path)}); "
            "set ingest.follow_links: true to read it"
        )
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
    title = _title(text, path.stem)
    return [
        Document(
            doc_id=rel,
            source=source,
            file=source,
            title=title,
            text=text,
            format=fmt,
            sha256=sha,
            metadata="{}",
        )
    ]


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
    # The reuse key: the data and the fields read from it (a changed text_field must
    # not keep the text read under the old one).
    sha = sha256_text(json.dumps([ds._fingerprint, spec.model_dump(mode="json")]))
    docs = []
    for n, row in enumerate(ds):
        doc = _record_document(row, n, prefix, f"{file}#{n}", file, sha, "dataset", spec)
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
        m = MARKDOWN_HEADING.match(line)
        if m and len(m[1]) == 1:
            return m[2].strip()
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return first[:80] if 0 < len(first) <= 80 else fallback.replace("-", " ").replace("_", " ")
