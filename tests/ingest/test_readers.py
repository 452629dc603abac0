"""Every input format, from fixtures the tests write themselves and from the example corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.errors import InputError
from distill.ingest.chunking import WhitespaceCounter, chunk_document
from distill.ingest.config import DatasetSource, IngestConfig
from distill.ingest.readers import dataset_documents, html_to_text, read_document, read_documents
from tests.conftest import CORPUS

CFG = IngestConfig(paths=["."], jsonl={"text_field": "body", "id_field": "id", "title_field": "t"})

CHROME_HTML = """<!doctype html><html><head><title>Exports | Acme Help</title>
<style>.x{color:red}</style><script>var TRACKER_SECRET = 1;</script></head>
<body><header><a href="/">ACME-NAV-HOME</a> <a href="/pricing">ACME-NAV-PRICING</a></header>
<nav class="sidebar"><ul><li>SIDEBAR-LINK-ONE</li><li>SIDEBAR-LINK-TWO</li></ul></nav>
<main><article><h1>Exporting data</h1>
<p>Admins can export every ticket as CSV or JSON from Settings, Data, Export. Exports
larger than 2 GB are split into several files so that each download stays manageable.</p>
<h2>Retention</h2>
<p>Export links expire after 7 days. Deleted tickets are kept for 90 days before they are
removed for good, and they can be restored during that time by an administrator.</p>
<table><tr><th>Format</th><th>Limit</th></tr><tr><td>CSV</td><td>2 GB</td></tr></table>
</article></main>
<footer>FOOTER-COPYRIGHT Acme Inc. <a href="/cookies">COOKIE-POLICY-LINK</a></footer>
</body></html>"""


def read(tmp_path: Path, name: str, data: str | bytes) -> list:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return read_documents(path, tmp_path, tmp_path, CFG)


def test_html_chrome_never_reaches_chunks(tmp_path: Path) -> None:
    (doc,) = read(tmp_path, "exports.html", CHROME_HTML)
    chunks = chunk_document(doc, WhitespaceCounter(), IngestConfig(paths=["."], chunk_tokens=40))
    text = "\n".join(c["text"] + c["heading_path"] for c in chunks)
    for chrome in ("ACME-NAV", "SIDEBAR-LINK", "FOOTER-COPYRIGHT", "COOKIE-POLICY", "TRACKER"):
        assert chrome not in text
    assert doc["title"] == "Exporting data"
    assert "expire after 7 days" in text and "CSV" in text
    assert {c["heading_path"] for c in chunks} == {"Exporting data", "Exporting data > Retention"}


def test_real_pdf_is_read(tmp_path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 8, "Refund policy\nAnnual plans are refunded pro rata within 30 days.")
    pdf.add_page()
    pdf.multi_cell(0, 8, "Monthly plans are not refunded.")
    pdf.output(str(tmp_path / "refunds.pdf"))
    (doc,) = read_documents(tmp_path / "refunds.pdf", tmp_path, tmp_path, CFG)
    assert doc["format"] == "pdf" and doc["title"] == "Refund policy"
    assert "pro rata within 30 days" in doc["text"] and "Monthly plans" in doc["text"]


def test_rst_sections_become_heading_paths(tmp_path: Path) -> None:
    rst = (
        "Billing\n=======\n\nIntro text.\n\nRefunds\n-------\n\nWithin *30 days*.\n\n"
        "- item one\n- item two\n\nVAT\n---\n\nAdded at checkout.\n\n.. note:: Careful.\n"
    )
    (doc,) = read(tmp_path, "billing.rst", rst)
    assert doc["title"] == "Billing"
    chunks = chunk_document(doc, WhitespaceCounter(), IngestConfig(paths=["."]))
    paths = {c["heading_path"]: c["text"] for c in chunks}
    assert paths["Billing > Refunds"].startswith("Within 30 days.")
    assert "- item two" in paths["Billing > Refunds"]
    assert paths["Billing > VAT"].startswith("Added at checkout.")


def test_jsonl_records_become_documents_with_metadata(tmp_path: Path) -> None:
    lines = [
        {"id": "faq-1", "t": "Trials", "body": "Trials last 14 days.", "lang": "en"},
        {"id": "faq-2", "body": "  "},  # empty text: not a document
        {"id": "faq-3", "body": "Refunds take 5 days.", "tags": ["billing"]},
    ]
    docs = read(tmp_path, "faq.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    assert [d["doc_id"] for d in docs] == ["faq/faq-1", "faq/faq-3"]
    assert [d["source"] for d in docs] == ["faq.jsonl#L1", "faq.jsonl#L3"]
    assert docs[0]["title"] == "Trials" and docs[0]["file"] == "faq.jsonl"
    assert json.loads(docs[0]["metadata"]) == {"id": "faq-1", "t": "Trials", "lang": "en"}
    assert json.loads(docs[1]["metadata"])["tags"] == ["billing"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"body": "ok"}\nnot json\n', "line 2 is not JSON"),
        ('["a list"]\n', "line 1 is not a JSON object"),
        ('{"text": "wrong field"}\n', "no record has a non-empty 'body' field"),
    ],
)
def test_bad_jsonl_is_skipped_with_a_reason(tmp_path: Path, content: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        read(tmp_path, "bad.jsonl", content)


def test_local_datasets_saved_and_parquet(tmp_path: Path) -> None:
    import datasets

    rows = {"text": ["First row about SSO.", "Second row about SAML."], "url": ["a", "b"]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "saved"))
    docs = dataset_documents(DatasetSource(path="saved"), tmp_path)
    assert [d["doc_id"] for d in docs] == ["saved/0", "saved/1"]
    assert json.loads(docs[1]["metadata"]) == {"url": "b"} and docs[1]["format"] == "dataset"
    (tmp_path / "pq").mkdir()
    datasets.Dataset.from_dict(rows).to_parquet(str(tmp_path / "pq" / "train.parquet"))
    docs = dataset_documents(DatasetSource(path="pq", id_field="url"), tmp_path)
    assert [d["doc_id"] for d in docs] == ["pq/a", "pq/b"]
    with pytest.raises(InputError, match="has no column 'body'"):
        dataset_documents(DatasetSource(path="pq", text_field="body"), tmp_path)
    with pytest.raises(InputError, match="cannot load 'nowhere-to-be-found'"):
        dataset_documents(DatasetSource(path="nowhere-to-be-found"), tmp_path)


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
