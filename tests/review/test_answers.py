"""Importing a filled spot-check file on hostile input: every row that cannot count is
refused and counted with its reason and row, a file that cannot be read is one line,
and kept answers merge per reviewer (no Argilla server)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from distill.errors import InputError
from distill.review import answers
from distill.review.answers import import_file
from distill.review.files import export
from tests.review.conftest import FileRun, sample


def exported(run: FileRun) -> list[dict[str, Any]]:
    path = export(run.recipe(), run.folder, "jsonl", None, "r.yaml")["path"]
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def jsonl(path: Path, rows: list[Any]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_each_bad_row_is_refused_and_counted_with_its_reason(file_run: FileRun) -> None:
    rows = exported(file_run)
    a, b, c, d, e, f, g = rows
    a["decision"] = "accept"
    b.update(decision="maybe")
    c.update(decision="accept", content_sha="0" * 16)  # the text changed since the export
    d.update(decision="edit")  # no corrected answer
    e.update(decision="accept", quality="9")
    f.update(decision="reject", issues="hallucination, typo")
    g.update(corrected_answer="Better.")  # an answer, but no decision
    unknown = {**a, "sample_id": "ffffffffffffffff"}
    mangled = {**a, "sample_id": "1.23457E+15"}
    bad_sha = {**a, "sample_id": b["sample_id"], "content_sha": "4.5e+13"}
    blank = {**a, "sample_id": e["sample_id"], "decision": "  "}
    path = jsonl(
        file_run.path.parent / "hostile.jsonl",
        [a, b, "{not json", "[1, 2]", c, d, e, f, g, unknown, mangled, bad_sha, blank, ""],
    )
    report = import_file(file_run.recipe(), file_run.folder, path)
    assert report.rows == 13 and report.imported == 1 and report.blank == 1
    assert report.outcomes == {"accepted": 1}
    r = report.refused
    assert r["bad decision (use accept, reject, edit or skip)"] == ["line 2 (maybe)"]
    assert r["lines that are not JSON"][0].startswith("line 3 (Expecting property name")
    assert r["rows that are not a JSON object"] == ["line 4"]
    changed = next(k for k in r if k.startswith("content changed since the export"))
    assert r[changed] == [f"line 5 ({c['sample_id']})"]
    assert r["edit without a corrected_answer"] == ["line 6"]
    assert r["quality that is not a whole number from 1 to 5"] == ["line 7 (9)"]
    issue = next(k for k in r if k.startswith("unknown issue (use hallucination"))
    assert r[issue] == ["line 8 (typo)"]
    assert r["answers without a decision (write accept, reject, edit or skip)"] == ["line 9"]
    assert r["unknown sample_id"] == ["line 10 (ffffffffffffffff)"]
    as_number = [k for k in r if "turned it into a number" in k]
    assert [r[k] for k in sorted(as_number)] == [["line 12 (4.5e+13)"], ["line 11 (1.23457E+15)"]]
    assert report.not_taken == 11
    text = "\n".join(report.lines())
    assert text.startswith("hostile.jsonl: 13 rows; 1 answers imported (1 accepted)")
    assert "not imported: 11 rows" in text and "1 without a decision" in text
    kept = answers.load(file_run.folder)
    assert [(k["sample_id"], k["user"], k["status"]) for k in kept] == [
        (a["sample_id"], "hostile", "submitted")
    ]


def test_a_sample_left_out_of_the_spot_check_is_not_unknown(file_run: FileRun) -> None:
    rows = exported(file_run)
    picked = {r["sample_id"] for r in rows}
    outside = next(s for s in (sample(i) for i in range(1, 17)) if s["sample_id"] not in picked)
    row = {**rows[0], "sample_id": outside["sample_id"], "decision": "accept"}
    report = import_file(
        file_run.recipe(), file_run.folder, jsonl(file_run.path.parent / "o.jsonl", [row])
    )
    (reason,) = report.refused
    assert reason.startswith("samples not in the spot-check as it is now")


def test_a_decision_on_text_written_again_is_refused(file_run: FileRun) -> None:
    """Exported, then curate wrote the sample again: its row no longer applies."""
    rows = exported(file_run)
    for r in rows:
        r["decision"] = "reject"
    train = [sample(i) for i in range(1, 17)]
    for s in train[:2]:
        s.update(groundedness=3, quality=3)
    target = next(s for s in train if s["sample_id"] == rows[0]["sample_id"])
    target["messages"][-1]["content"] = "Rewritten by the teacher."
    file_run.train(train)
    report = import_file(
        file_run.recipe(), file_run.folder, jsonl(file_run.path.parent / "x.jsonl", rows)
    )
    assert report.imported == 6 and report.not_taken == 1
    (reason,) = report.refused
    assert reason.startswith("content changed since the export")


def spreadsheet_csv(rows: list[dict[str, Any]], delimiter: str) -> bytes:
    """A CSV as a spreadsheet saves it: a byte-order mark, CRLF, its own column order
    with a column added, header names in title case, quoted newlines in cells."""
    buf = io.StringIO(newline="")
    names = ["Notes", "Decision", "Sample ID", "content_sha", "Corrected Answer", "Quality"]
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(names)
    for r in rows:
        writer.writerow(
            [r.get("notes", ""), r["decision"], r["sample_id"], r["content_sha"],
             r.get("corrected_answer", ""), r.get("quality", "")]
        )  # fmt: skip
    writer.writerow([""] * len(names))  # an empty row the sheet kept
    return b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8")


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_a_csv_edited_in_a_spreadsheet_reads_back(file_run: FileRun, delimiter: str) -> None:
    rows = exported(file_run)
    for r in rows:
        r["decision"] = "Accept"
    rows[0].update(decision="EDIT", corrected_answer="'- first\r\n- second", quality="4.0")
    rows[1].update(notes='two\nlines, and "quotes"', decision="reject")
    path = file_run.path.parent / "sheet.csv"
    path.write_bytes(spreadsheet_csv(rows, delimiter))
    report = import_file(file_run.recipe(), file_run.folder, path)
    assert report.rows == 7 and not report.refused, report.lines()
    assert report.outcomes == {"accepted": 5, "edited": 1, "rejected": 1}
    kept = {k["sample_id"]: k for k in answers.load(file_run.folder)}
    edited = kept[rows[0]["sample_id"]]["values"]
    # The quote export puts before a formula-like start does not reach training.
    assert edited == {"verdict": "accept", "corrected_response": "- first\n- second", "quality": 4}


def test_duplicate_ids_count_once_when_they_agree_and_not_at_all_when_not(
    file_run: FileRun,
) -> None:
    rows = exported(file_run)
    a, b = ({**r, "decision": "accept"} for r in rows[:2])
    other = {**b, "decision": "reject"}
    carol = {**b, "decision": "reject", "reviewer": "carol"}  # another reviewer: no duplicate
    path = jsonl(file_run.path.parent / "dup.jsonl", [a, a, b, other, carol])
    report = import_file(file_run.recipe(), file_run.folder, path)
    assert report.outcomes == {"accepted": 1, "rejected": 1}
    assert report.refused == {
        "repeats of a row with the same answer (counted once)": ["line 2 (as line 1)"],
        "rows of one sample_id and reviewer with different answers": [
            f"line 3 and line 4 ({b['sample_id']})"
        ],
    }
    users = {(k["sample_id"], k["user"]) for k in answers.load(file_run.folder)}
    assert users == {(a["sample_id"], "dup"), (b["sample_id"], "carol")}


def test_answers_merge_per_reviewer_and_replace_forgets(file_run: FileRun) -> None:
    rows = exported(file_run)
    recipe, folder, where = file_run.recipe(), file_run.folder, file_run.path.parent
    first = [{**r, "decision": "accept"} for r in rows[:3]]
    import_file(recipe, folder, jsonl(where / "alice.jsonl", first))
    later = [{**rows[0], "decision": "reject"}, {**rows[1], "decision": ""}]
    import_file(recipe, folder, jsonl(where / "alice.jsonl", later))
    import_file(recipe, folder, jsonl(where / "b.jsonl", first[:1]), reviewer="bob")
    kept = {(k["sample_id"], k["user"]): k["values"].get("verdict") for k in answers.load(folder)}
    ids = [r["sample_id"] for r in rows]
    # alice's first answer replaced, her second kept (a blank changes nothing), bob's added
    assert kept == {
        (ids[0], "alice"): "reject",
        (ids[1], "alice"): "accept",
        (ids[2], "alice"): "accept",
        (ids[0], "bob"): "accept",
    }
    assert len(answers.responses(folder)) == 3
    import_file(recipe, folder, jsonl(where / "b.jsonl", first[:1]), reviewer="bob", replace=True)
    assert [(k["user"], k["source"]) for k in answers.load(folder)] == [("bob", "b.jsonl")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty; export the spot-check"),
        (b"sample_id,content_sha,decision\n\xff\xfe,x,accept\n", r"is not UTF-8 text \(byte 31\)"),
        (b"sample_id;decision\nx;accept\n", "no column content_sha"),
        (
            b"sample_id,content_sha,decision,Decision\nx,y,accept,reject\n",
            "column decision appears twice",
        ),
        (
            b'sample_id,content_sha,decision\n"x,y,accept\nz,w,reject\n',
            "not a readable CSV at line 3 .unexpected end of data.; a quote left open",
        ),
    ],
)
def test_a_file_that_cannot_be_read_is_one_line(
    file_run: FileRun, content: bytes, message: str
) -> None:
    path = file_run.path.parent / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as err:
        import_file(file_run.recipe(), file_run.folder, path)
    assert "\n" not in str(err.value)
    assert not file_run.folder.imported_answers.exists()


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_exported_file_imported_unfilled_changes_nothing(file_run: FileRun, fmt: str) -> None:
    path = export(file_run.recipe(), file_run.folder, fmt, None, "r.yaml")["path"]  # type: ignore[arg-type]
    report = import_file(file_run.recipe(), file_run.folder, path)
    assert (report.rows, report.blank, report.imported, report.not_taken) == (7, 7, 0, 0)
    assert answers.load(file_run.folder) == []
