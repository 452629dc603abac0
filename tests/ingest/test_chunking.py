from __future__ import annotations

from pathlib import Path

import pytest

from distill.errors import InputError
from distill.ingest.chunking import WhitespaceCounter, chunk_document, chunk_text, split_sections
from distill.ingest.config import IngestConfig
from distill.ingest.discover import discover
from distill.ingest.readers import html_to_text, read_document
from tests.conftest import CORPUS

W = WhitespaceCounter()


def test_short_paragraphs_are_packed_up_to_the_limit() -> None:
    text = "\n\n".join(f"p{i} " + "w " * 9 for i in range(6))  # 10 words each
    chunks = chunk_text(text, W, max_tokens=25, overlap=0)
    assert [W.count(c) for c in chunks] == [20, 20, 20]
    assert chunks[0].startswith("p0") and "p1" in chunks[0] and "p2" not in chunks[0]


def test_overlap_repeats_the_tail_of_the_previous_chunk() -> None:
    text = "\n\n".join(" ".join(f"p{i}w{j}" for j in range(10)) for i in range(4))
    chunks = chunk_text(text, W, max_tokens=25, overlap=3)
    assert len(chunks) >= 2
    assert all(W.count(c) <= 25 for c in chunks)
    assert chunks[1].split()[:3] == chunks[0].split()[-3:]


def test_long_paragraph_is_split_by_token_windows() -> None:
    para = " ".join(f"t{i}" for i in range(100))
    chunks = chunk_text(para, W, max_tokens=30, overlap=5)
    assert all(W.count(c) <= 30 for c in chunks)
    assert chunks[0].split()[-5:] == chunks[1].split()[:5]
    words = {w for c in chunks for w in c.split()}
    assert words == {f"t{i}" for i in range(100)}  # nothing lost


def test_sections_carry_heading_paths_and_ignore_fenced_hashes() -> None:
    text = (
        "# Billing\n\nIntro.\n\n## Refunds\n\nWithin 30 days.\n\n"
        "```\n# not a heading\n```\n\n## VAT\n\nAdded.\n"
    )
    sections = split_sections(text, "Billing")
    assert [p for p, _ in sections] == [["Billing"], ["Billing", "Refunds"], ["Billing", "VAT"]]
    assert "# not a heading" in sections[1][1]


def test_chunks_never_straddle_sections_and_ids_are_stable(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A\n\n## One\n\nalpha beta\n\n## Two\n\ngamma delta\n")
    doc = read_document(tmp_path / "a.md", tmp_path, tmp_path)
    cfg = IngestConfig(paths=["."], chunk_tokens=50, chunk_overlap=0)
    chunks = chunk_document(doc, W, cfg)
    assert [c["heading_path"] for c in chunks] == ["A > One", "A > Two"]
    assert [c["text"] for c in chunks] == ["alpha beta", "gamma delta"]
    assert chunks[0]["chunk_id"].startswith("a#")
    assert [c["chunk_id"] for c in chunk_document(doc, W, cfg)] == [c["chunk_id"] for c in chunks]


def test_html_keeps_main_content_only() -> None:
    html = (CORPUS / "integrations" / "webhooks.html").read_text()
    text = html_to_text(html)
    assert text.startswith("# ")
    assert "## " in text
    low = text.lower()
    assert "cookie" not in low and "copyright" not in low and "function" not in low
    assert "retry" in low or "retries" in low


def test_pdf_text_is_extracted(tmp_path: Path) -> None:
    pdf = next(CORPUS.rglob("*.pdf"))
    doc = read_document(pdf, CORPUS, CORPUS)
    assert doc["format"] == "pdf"
    assert len(doc["text"].split()) > 100
    assert doc["title"].lower().startswith("refund")


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.md", b"  \n", "empty file"),
        ("binary.txt", b"\x00\x01\x02abc", "binary file"),
        ("latin.md", "caf\xe9 cr\xe8me".encode("latin-1"), "not UTF-8"),
        ("broken.pdf", b"%PDF-1.4 this is not really a pdf", "unreadable PDF"),
        ("image.png", b"\x89PNG", "unsupported file type"),
    ],
)
def test_bad_files_raise_a_reason(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    (tmp_path / name).write_bytes(data)
    with pytest.raises(ValueError, match=reason):
        read_document(tmp_path / name, tmp_path, tmp_path)


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
