"""Hostile and odd input: every file ends read or skipped with its reason,
none stops ingest. Random and truncated bytes under every supported extension, files
that lie about their type, links to nothing, pages with no content, floods of one
character, files over the size limit, parser bombs."""

from __future__ import annotations

import io
import json
import random
import zipfile
from pathlib import Path

import pytest

from distill.ingest.readers import READERS_BY_SUFFIX, html_to_text, low_information, sniff
from distill.io import read_rows
from distill.pipeline import run_pipeline
from distill.recipe import load_recipe

pytestmark = pytest.mark.slow  # loads SmolLM2's tokenizer and MiniLM

GOOD = (
    "# Refunds\n\nAnnual plans are refunded pro rata within 30 days of the request.\n\n"
    "## Monthly plans\n\nMonthly plans are not refunded, but you can cancel at any time.\n"
)


def _pdf_bytes() -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 8, "Refund policy\nAnnual plans are refunded pro rata within 30 days.")
    return bytes(pdf.output())


def _zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("inner.md", GOOD)
    return buf.getvalue()


def hostile_corpus(root: Path) -> dict[str, str | None]:
    """Write the corpus; return file -> a phrase its skip reason must contain (None: read)."""
    rng = random.Random(16)
    expect: dict[str, str | None] = {"good.md": None}
    (root / "good.md").write_text(GOOD)
    for n, ext in enumerate(sorted(set(READERS_BY_SUFFIX))):
        # random bytes, and random bytes after a valid-looking start
        (root / f"random{n}{ext}").write_bytes(rng.randbytes(3000))
        expect[f"random{n}{ext}"] = ""
        (root / f"noise{n}{ext}").write_bytes(b"# Title\n\n" + rng.randbytes(500) + b"\x00")
        expect[f"noise{n}{ext}"] = ""
    pdf = _pdf_bytes()
    cases = {
        "truncated.pdf": (pdf[: len(pdf) // 2], ""),
        "truncated-header.pdf": (pdf[:20], ""),
        "zip-renamed.md": (_zip_bytes(), "a zip archive"),
        "pdf-renamed.md": (pdf, "a PDF, not Markdown"),
        "png-renamed.txt": (b"\x89PNG\r\n\x1a\n" + rng.randbytes(200), "a PNG image"),
        "elf-renamed.html": (b"\x7fELF" + rng.randbytes(200), "an executable"),
        "gzip-renamed.jsonl": (b"\x1f\x8b\x08\x00" + rng.randbytes(100), "a gzip archive"),
        "sqlite-renamed.rst": (b"SQLite format 3\x00" + bytes(200), "an SQLite database"),
        "zip-renamed.pdf": (_zip_bytes(), "a zip archive"),
        "text-renamed.pdf": (GOOD.encode(), "not a PDF"),
        "utf16.txt": (GOOD.encode("utf-16"), "UTF-16 text: save it as UTF-8"),
        "latin1.md": ("Caf\xe9 cr\xe8me ".encode("latin-1") * 20, "not UTF-8"),
        "empty.md": (b"", "empty file"),
        "blank.txt": (b" \n\t\n" * 50, "empty file"),
        "flood.txt": (b"a" * 1_500_000, "almost no information"),
        "flood-lines.md": (b"spam spam spam\n" * 100_000, "almost no information"),
        "nav-only.html": (
            b'<html><body><div class="menu"><a href="/">Home</a> <a>Docs</a> menu</div>'
            b"</body></html>",
            "no main content",
        ),
        "scripts-only.html": (
            b"<html><head><script>alert(1)</script></head><body><script>x()</script></body></html>",
            "",
        ),
        "deep.html": (b"<div>" * 5_000 + b"deep" + b"</div>" * 5_000, ""),
        "truncated.html": (b"<html><body><h1>Billing</h1><p>Plans cost ten dol", ""),
        "deep.jsonl": (b"[" * 100_000 + b"]" * 100_000 + b"\n", ""),
        "truncated.jsonl": (
            b'{"text": "Annual plans are refunded", "id": 1}\n{"text": "Mon',
            "JSON",
        ),
        "array.jsonl": (b"[1, 2, 3]\n", "not a JSON object"),
        "no-text.jsonl": (json.dumps({"body": "x"}).encode() + b"\n", "no record has"),
        "include.rst": (b"Title\n=====\n\n.. include:: /etc/passwd\n", "no text beyond"),
        "raw.rst": (b"Title\n=====\n\n.. raw:: html\n   :file: /etc/passwd\n", "no text beyond"),
        "bad-directive.rst": (b"Title\n=====\n\n.. image::\n\n.. csv-table::\n   :file: x\n", ""),
        "headings-only.md": (b"# One\n\n## Two\n\n### Three\n", "no text beyond its headings"),
        "big.md": (
            b"# Big\n\n" + (b"A sentence of several plain words here.\n" * 60_000),
            "max_file_mb",
        ),
        "nul.md": (b"# Title\n\nText\x00with a NUL byte.\n", "binary"),
    }
    for name, (data, why) in cases.items():
        (root / name).write_bytes(data)
        expect[name] = why
    (root / "dangling.md").symlink_to(root / "nowhere.md")
    expect["dangling.md"] = "dangling symbolic link"
    notes = root.parent / "notes"
    notes.mkdir(exist_ok=True)
    (notes / "passwords.md").write_text("# Passwords\n\nThe admin password is hunter2.\n")
    (root / "secret.md").symlink_to(notes / "passwords.md")
    expect["secret.md"] = "a symbolic link out of the corpus folder"
    return expect


def test_no_file_stops_ingest_and_each_skip_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    corpus = tmp_path / "docs"
    corpus.mkdir()
    expect = hostile_corpus(corpus)
    assert len(expect) >= 40
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(
        "name: hostile\nrun_dir: runs\n"
        "ingest: {paths: [docs], max_file_mb: 2, embedding_model: all-minilm-l6-v2}\n"
        "teacher: 'fake:'\n"
    )
    recipe = load_recipe(recipe_path)
    run_pipeline(recipe, only="ingest")
    report = (tmp_path / "runs" / "hostile" / "ingest" / "report.md").read_text()
    rows = {}
    for line in report.splitlines():
        if line.startswith("| ") and not line.startswith(("| file", "| ---")):
            file, outcome, _ = (c.strip() for c in line.strip("|").split("|"))
            rows[file] = outcome
    assert set(rows) == set(expect)  # every file accounted for, the dangling link too
    for name, why in expect.items():
        outcome = rows[name]
        if why is None:
            assert outcome == "ok", (name, outcome)
        else:
            assert outcome.startswith("skipped: ") and len(outcome) > 12, (name, outcome)
            assert why in outcome, (name, outcome)
            assert "\n" not in outcome and "Traceback" not in outcome
    docs = read_rows(tmp_path / "runs" / "hostile" / "ingest" / "documents.parquet")
    assert [d["doc_id"] for d in docs] == ["good"]


def test_sniff_and_low_information() -> None:
    assert sniff(_zip_bytes()) == "a zip archive (or .docx/.xlsx/.epub)"
    assert sniff(b"x" * 257 + b"ustar\x0000") == "a tar archive"
    assert sniff(GOOD.encode()) is None
    assert low_information("a" * 10_000) is not None
    assert low_information(GOOD * 3) is None  # short: never judged
    prose = Path(__file__).read_text() * 2  # varied text compresses to far more than 2%
    assert low_information(prose) is None


def test_html_without_main_content_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="no main content"):
        html_to_text("<html><body><nav>Home</nav><div>menu</div></body></html>")
    page = "<html><body><h1>Refunds</h1><p>Refunds are issued within 14 days.</p></body></html>"
    assert "issued within 14 days" in html_to_text(page)


def test_a_link_out_of_the_corpus_is_read_only_when_the_recipe_allows_it(tmp_path: Path) -> None:
    from distill.ingest.config import IngestConfig
    from distill.ingest.discover import discover
    from distill.ingest.readers import precheck

    docs, notes = tmp_path / "docs", tmp_path / "notes"
    docs.mkdir()
    notes.mkdir()
    (docs / "good.md").write_text(GOOD)
    (notes / "passwords.md").write_text("# Passwords\n\nThe admin password is hunter2.\n")
    (docs / "secret.md").symlink_to(notes / "passwords.md")
    (docs / "alias.md").symlink_to(docs / "good.md")  # a link inside the folder: read once
    cfg = IngestConfig(paths=["docs"])
    files, _ = discover(cfg, tmp_path)
    why = {p.name: precheck(p, cfg) for p in files}
    assert why["good.md"] is None and "alias.md" not in why
    assert why["secret.md"] is not None and "ingest.follow_links" in why["secret.md"]
    allowed = IngestConfig(paths=["docs"], follow_links=True)
    files, _ = discover(allowed, tmp_path)
    assert notes / "passwords.md" in files and all(precheck(p, allowed) is None for p in files)
