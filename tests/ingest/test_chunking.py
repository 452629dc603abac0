"""Chunking: paragraphs packed up to the token limit, overlap, sections with their heading
paths, and stable chunk ids."""

from __future__ import annotations

from pathlib import Path

from distill.ingest.chunking import WhitespaceCounter, chunk_document, chunk_text, split_sections
from distill.ingest.config import IngestConfig
from distill.ingest.readers import read_document

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
