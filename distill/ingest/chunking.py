"""Heading-aware token chunks: a document's sections (by Markdown headings), each cut
into windows of at most ingest.chunk_tokens tokens, ingest.chunk_overlap of them shared
with the window before, on sentence and paragraph boundaries where possible."""

from __future__ import annotations

import re
from typing import Any, Protocol

from distill.ingest.config import IngestConfig
from distill.io import sha256_text
from distill.tables import Chunk, Document

MARKDOWN_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


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
        m = None if in_fence else MARKDOWN_HEADING.match(line)
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
    for path, body in split_sections(doc["text"], doc["title"]):
        heading = " > ".join(path)
        for text in chunk_text(body, counter, cfg.chunk_tokens, cfg.chunk_overlap):
            out.append(
                Chunk(
                    chunk_id=f"{doc['doc_id']}#{sha256_text(heading + chr(10) + text)[:10]}",
                    doc_id=doc["doc_id"],
                    source=doc["source"],
                    title=doc["title"],
                    heading_path=heading,
                    text=text,
                    n_tokens=counter.count(text),
                    position=len(out),
                )
            )
    return out
