"""The spot-check as a file that any labelling tool or a spreadsheet can carry.

`export` writes the records Argilla would get (the same pick, `stage.picked`) as JSONL or
CSV: the sample id and content hash, what a reviewer reads (the instruction, the answer,
its citations, the context: the text as it trains, not made inert as Argilla's), the
judge's scores, and empty answer columns; the instructions go in a companion Markdown
note. In a CSV, a cell of document text that a spreadsheet would run as a formula (it
starts with = + - @) gets a leading ' .

`parse` reads a filled copy back (JSONL, a JSON array, or CSV as a spreadsheet saves it:
a byte-order mark, CRLF, ; or tab between cells, quoted newlines, extra columns) as one
row per record with where it stands in the file; distill.review.answers checks each.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from distill.errors import InputError, UserError
from distill.io import write_text
from distill.recipe import Recipe
from distill.review.argilla import ISSUES, guidelines
from distill.review.records import citations, fields
from distill.runfolder import RunFolder

Format = Literal["jsonl", "csv"]
FORMATS: tuple[Format, ...] = ("jsonl", "csv")
# Answer columns beside the record; `reviewer` is optional (default: the file's name).
ANSWERS = ("decision", "corrected_answer", "quality", "issues", "reviewer")
COLUMNS = (
    "sample_id",
    "content_sha",
    "reason",
    "instruction",
    "answer",
    *ANSWERS,
    "citations",
    "context",
    "task",
    "source_doc",
    "judge_groundedness",
    "judge_quality",
)
REQUIRED = ("sample_id", "content_sha", "decision")
_TEXT = ("instruction", "answer", "citations", "context", "task", "source_doc")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def rows(recipe: Recipe, folder: RunFolder) -> list[dict[str, Any]]:
    """One row per spot-check record, in the pick's order, answer columns empty."""
    from distill.review.stage import chunks_by_id, picked

    entries, by_id = picked(recipe, folder)
    chunks = chunks_by_id(folder)
    out = []
    for e in entries:
        s = by_id[e["sample_id"]]
        f = fields(s, chunks)
        out.append(
            {
                "sample_id": e["sample_id"],
                "content_sha": e["content_sha"],
                "reason": e["reason"],
                "instruction": f["instruction"],
                "answer": f["response"],
                **dict.fromkeys(ANSWERS, ""),
                "citations": "\n".join(citations(s, chunks)),
                "context": f["context"],
                "task": e["task"],
                "source_doc": e["source_doc"],
                "judge_groundedness": s.get("groundedness"),
                "judge_quality": s.get("quality"),
            }
        )
    return out


def _cell(key: str, value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text, not a formula (document text is untrusted)."""
    if value is None:
        return ""
    if key in _TEXT and isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


def render(records: list[dict[str, Any]], fmt: Format) -> str:
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows({k: _cell(k, v) for k, v in r.items()} for r in records)
    return buf.getvalue()


def note(recipe: Recipe, file: Path, recipe_arg: str) -> str:
    """The companion note: the reviewer guidelines, then how to fill in the file."""
    cfg = recipe.review
    issues = ", ".join(ISSUES)
    return f"""{guidelines(recipe)}

## Filling in {file.name}

Each row is one training sample of `{recipe.name}`'s spot-check. Read `instruction` and
`answer` (the last assistant turn of the conversation), check them against `context`
(the passages the teacher was given; `citations` are the ones the answer cites), then
fill in:

- `decision`: `accept`, `reject`, `edit`, or `skip` for one you cannot judge (it stays
  unreviewed). Leave it blank for a record you have not reviewed yet.
- `corrected_answer`: with `edit`, the corrected answer; it replaces the answer in
  training. With `reject`, an optional note on why.
- `quality` (optional): 1 (useless) to 5 (as good as an expert's answer).
- `issues` (optional): any of {issues},
  separated by commas.
- `reviewer` (optional): your name; blank rows take the file's name, so two reviewers'
  copies under two names count as two reviewers (one reject wins, then a correction).

Keep `sample_id` and `content_sha` as they are: they say which sample, as it read when
exported, a decision is about; a row whose sample was written again since is refused.
Other columns may be edited, reordered or removed, and columns added: they are not read
back. In the CSV, document text that starts with = + - or @ begins with ' so that a
spreadsheet shows it instead of running it as a formula; save it as CSV (UTF-8).

Training waits until {cfg.required_share:.0%} of the rows with `reason` = `sample` (at
least {cfg.min_sample_reviewed}, or all of them when fewer) have a decision, and refuses
when more than {cfg.max_reject_rate:.0%} of them are rejected; `low_score` rows are
applied but not counted. Then:

    distill review import {recipe_arg} {file}
"""


def export(
    recipe: Recipe, folder: RunFolder, fmt: Format, out: Path | None, recipe_arg: str
) -> dict[str, Any]:
    """Write the spot-check to `out` (default runs/NAME/review_file/spot_check.FMT) and its
    note beside it; the pick is also written to review/spot_check.parquet, as push does."""
    from distill.io import write_rows
    from distill.review.stage import picked

    path = out or folder.review_file_dir / f"spot_check.{fmt}"
    if path.is_dir():
        path = path / f"spot_check.{fmt}"
    # import tells the formats apart by the name: a .csv of JSON Lines would not read back
    named = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}.get(path.suffix.lower(), fmt)
    if named != fmt:
        raise UserError(f"--out {path} is named for {named}, not {fmt}; rename it or pass --format")
    records = rows(recipe, folder)
    companion = path.with_name(f"{path.stem}.instructions.md")
    write_text(path, render(records, fmt))
    write_text(companion, note(recipe, path, recipe_arg))
    write_rows(folder.spot_check, picked(recipe, folder)[0])
    reasons = Counter(r["reason"] for r in records)
    return {
        "records": len(records),
        "sample": reasons["sample"],
        "low_score": reasons["low_score"],
        "path": path,
        "note": companion,
    }


# --- reading a filled copy back ----------------------------------------------------


def _text(path: Path) -> str:
    if not path.is_file():
        raise InputError(f"no file at {path}")
    try:  # utf-8-sig: a spreadsheet's CSV UTF-8 starts with a byte-order mark
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(
            f"{path} is not UTF-8 text (byte {e.start}); save it as CSV UTF-8 or JSON Lines"
        ) from None
    if not text.strip():
        raise InputError(f"{path} is empty; export the spot-check with `distill review export`")
    return text


def _csv_rows(path: Path, text: str) -> Iterator[tuple[str, Any]]:
    """(where, row) per record; a spreadsheet's row numbers (the header is row 1)."""
    head = text.splitlines()[0]
    # Spreadsheets in some locales save with ; or a tab.
    delim = max(",;\t", key=lambda d: len(set(REQUIRED) & {_key(h) for h in head.split(d)}))
    # Document text in a cell can pass csv's default field limit (128 KiB).
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 26))
    # strict: a quote left open would otherwise swallow every row after it into one cell.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim, strict=True)
    try:
        header = [_key(h) for h in next(reader)]
        _check_header(path, header)
        for n, cells in enumerate(reader, start=2):
            if not any(c.strip() for c in cells):
                continue
            yield f"row {n}", dict(zip(header, cells, strict=False))
    except csv.Error as e:
        raise InputError(
            f"{path}: not a readable CSV at line {reader.line_num} ({e}); a quote left open? "
            "Fix it or export again"
        ) from None


def _key(name: str) -> str:
    return name.strip().strip('"').lower().replace(" ", "_")


def _check_header(path: Path, header: list[str]) -> None:
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputError(
            f"{path}: no column {', '.join(missing)}; the file needs "
            f"{', '.join(REQUIRED)} as `distill review export` wrote them"
        )
    twice = sorted({c for c in header if c in (*REQUIRED, *ANSWERS) and header.count(c) > 1})
    if twice:
        raise InputError(f"{path}: column {', '.join(twice)} appears twice; keep one")


def _json_rows(path: Path, text: str) -> Iterator[tuple[str, Any]]:
    if text.lstrip().startswith("["):  # a JSON array, as some tools export
        try:
            items = json.loads(text)
        except ValueError as e:
            raise InputError(f"{path}: not valid JSON ({e}); export it again") from None
        yield from ((f"item {n}", item) for n, item in enumerate(items, start=1))
        return
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield f"line {n}", json.loads(line)
        except ValueError as e:
            yield f"line {n}", NotJson(str(e))


class NotJson(str):
    """A JSON Lines line that does not parse (the parser's message)."""


def parse(path: Path) -> tuple[Format, Iterator[tuple[str, Any]]]:
    """The file's format, and (where, row) for each of its records: JSON Lines (or a JSON
    array) by a .jsonl/.json name or a first character of { or [, else CSV."""
    text = _text(path)
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson") or (
        suffix not in (".csv", ".tsv", ".txt") and text.lstrip()[:1] in ("[", "{")
    ):
        return "jsonl", _json_rows(path, text)
    return "csv", _csv_rows(path, text)
