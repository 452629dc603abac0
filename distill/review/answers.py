"""Reviewers' answers brought in from review files (`distill review import`): each row
checked, then kept in runs/NAME/review_file/answers.json.

A row counts when its sample is in the spot-check as it reads now (the same pick as
Argilla's, `stage.picked`), its content hash is the sample's now, and its decision,
quality and issues are ones Argilla's questions allow; else it is refused and counted with
its reason and row. A blank decision is a record not reviewed yet. Two rows of one
reviewer on one sample count once when they agree and not at all when they do not.

Each answer has the shape of one Argilla response (`{"user", "status", "values"}` with
the questions verdict, corrected_response, quality and issues) and the record id of the
sample as it was reviewed (`review_gate.record_id`: sample id and content hash), so the
review stage's pull decides on them with the same code as on Argilla's answers: an
answer to a sample written again since then matches no record and stays pending.

One answer per reviewer and record: importing a later copy of the same reviewer's file
replaces their earlier answers row by row; other reviewers' answers stay.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.errors import InputError
from distill.io import read_json, write_json
from distill.recipe import Recipe
from distill.review.argilla import ISSUES
from distill.runfolder import RunFolder

# A decision as written, and the Argilla response it stands for: (status, verdict).
DECISIONS = {
    "accept": ("submitted", "accept"),
    "accepted": ("submitted", "accept"),
    "edit": ("submitted", "accept"),
    "edited": ("submitted", "accept"),
    "reject": ("submitted", "reject"),
    "rejected": ("submitted", "reject"),
    "skip": ("discarded", None),
    "skipped": ("discarded", None),
}
_SHA = re.compile(r"[0-9a-f]{16}")
# What a spreadsheet makes of a hex id it took for a number (1.23E+15, 12345).
_NUMBERISH = re.compile(r"[\d.,]+(e[+-]?\d+)?", re.IGNORECASE)
_ISSUE = {**{k: k for k in ISSUES}, **{v.lower(): k for k, v in ISSUES.items()}}
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
_SHOWN = 5  # rows named per reason
AS_TEXT = "a spreadsheet may have turned it into a number: format the column as text"


def load(folder: RunFolder) -> list[dict[str, Any]]:
    path = folder.imported_answers
    if not path.exists():
        return []
    try:
        got = read_json(path)["answers"]
    except (ValueError, KeyError, TypeError):
        raise InputError(
            f"{path} is not the answers file `distill review import` writes; delete it and "
            "import the review files again"
        ) from None
    return list(got)


def responses(folder: RunFolder) -> dict[str, list[dict[str, Any]]]:
    """Imported responses by record id, in the shape of Argilla's."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in load(folder):
        out[a["record_id"]].append({k: a[k] for k in ("user", "status", "values")})
    return dict(out)


def merge(folder: RunFolder, new: list[dict[str, Any]], *, replace: bool = False) -> int:
    """Keep `new` answers (each with record_id, sample_id, content_sha, user, status,
    values, source) over earlier ones of the same reviewer and record; `replace` drops
    every earlier answer first. Returns how many answers are kept in all."""
    kept = {(a["user"], a["record_id"]): a for a in ([] if replace else load(folder))}
    kept.update({(a["user"], a["record_id"]): a for a in new})
    rows = sorted(kept.values(), key=lambda a: (a["sample_id"], a["user"], a["record_id"]))
    write_json(folder.imported_answers, {"answers": rows})
    return len(rows)


# --- checking an imported file's rows ----------------------------------------------


@dataclass
class Report:
    """What an import made of a file: answers by outcome, blanks, rows not taken by reason."""

    file: str
    reviewer: str
    rows: int = 0
    blank: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    refused: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @property
    def imported(self) -> int:
        return sum(self.outcomes.values())

    @property
    def not_taken(self) -> int:
        return sum(map(len, self.refused.values()))

    def lines(self) -> list[str]:
        counts = ", ".join(f"{n} {d}" for d, n in sorted(self.outcomes.items()))
        out = [
            f"{self.file}: {self.rows} rows; {self.imported} answers imported"
            + (f" ({counts})" if counts else "")
            + f" as reviewer '{self.reviewer}' unless a row names another; "
            + f"{self.blank} without a decision (not reviewed yet)"
        ]
        if self.refused:
            out.append(f"not imported: {self.not_taken} rows")
        for reason, where in sorted(self.refused.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            more = f", and {len(where) - _SHOWN} more" if len(where) > _SHOWN else ""
            out.append(f"  {len(where)} {reason}: {'; '.join(where[:_SHOWN])}{more}")
        return out


@dataclass(frozen=True)
class _Refused:
    reason: str
    detail: str = ""


def _str(v: Any) -> str:
    return "" if v is None else str(v).strip()


def _quality(v: Any) -> int | None | _Refused:
    text = _str(v)
    if not text:
        return None
    try:
        q = float(text)
    except ValueError:
        q = math.nan
    if not (1 <= q <= 5 and q == int(q)):  # NaN and infinities fail the first test
        return _Refused("quality that is not a whole number from 1 to 5", text[:40])
    return int(q)


def _issues(v: Any) -> list[str] | _Refused:
    items = v if isinstance(v, list) else re.split(r"[,;|\n]", _str(v))
    out = []
    for item in items:
        name = _str(item).lower()
        if not name:
            continue
        key = _ISSUE.get(name) or _ISSUE.get(name.replace(" ", "_").replace("-", "_"))
        if key is None:
            return _Refused(f"unknown issue (use {', '.join(ISSUES)})", name[:40])
        out.append(key)
    return sorted(set(out))


def _answer(
    row: Any, spot: dict[str, dict[str, Any]], train: set[str], reviewer: str, csv: bool
) -> dict[str, Any] | _Refused | None:
    """One row's answer; a refusal with its reason; None when it has no decision."""
    from distill.review.files import NotJson

    if isinstance(row, NotJson):
        return _Refused("lines that are not JSON", row[:60])
    if not isinstance(row, dict):
        return _Refused("rows that are not a JSON object")
    row = {str(k).strip().lower().replace(" ", "_"): v for k, v in row.items()}
    decision = _str(row.get("decision")).lower()
    fix = _str(row.get("corrected_answer")).replace("\r\n", "\n").replace("\r", "\n")
    if csv and fix.startswith("'") and fix[1:].startswith(_FORMULA):
        fix = fix[1:]  # the quote export put before a formula-like start, copied along
    if not decision:
        if fix or _str(row.get("quality")) or row.get("issues"):
            return _Refused("answers without a decision (write accept, reject, edit or skip)")
        return None
    if decision not in DECISIONS:
        return _Refused("bad decision (use accept, reject, edit or skip)", decision[:40])
    sid = _str(row.get("sample_id"))
    entry = spot.get(sid)
    if entry is None:
        if sid in train:
            return _Refused(
                "samples not in the spot-check as it is now (review settings or the "
                "curated data changed since the export: export again)",
                sid,
            )
        why = f"unknown sample_id ({AS_TEXT})" if _NUMBERISH.fullmatch(sid) else "unknown sample_id"
        return _Refused(why, sid[:40] or "(blank)")
    sha = _str(row.get("content_sha")).lower()
    if not _SHA.fullmatch(sha):
        return _Refused(f"content_sha other than the 16 hex digits exported ({AS_TEXT})", sha[:40])
    if sha != entry["content_sha"]:
        return _Refused(
            "content changed since the export (the sample was written again: export again "
            "and review the new text)",
            sid,
        )
    if decision.startswith("edit") and not fix:
        return _Refused("edit without a corrected_answer")
    quality, issues = _quality(row.get("quality")), _issues(row.get("issues"))
    for bad in (quality, issues):
        if isinstance(bad, _Refused):
            return bad
    status, verdict = DECISIONS[decision]
    values = {"verdict": verdict, "corrected_response": fix, "quality": quality, "issues": issues}
    return {
        "record_id": entry["record_id"],
        "sample_id": sid,
        "content_sha": sha,
        "user": _str(row.get("reviewer")) or reviewer,
        "status": status,
        "values": {k: v for k, v in values.items() if v} if status == "submitted" else {},
    }


def _outcome(a: dict[str, Any]) -> str:
    v = a["values"]
    if a["status"] != "submitted":
        return "skipped"
    if v["verdict"] == "reject":
        return "rejected"
    return "edited" if v.get("corrected_response") else "accepted"


def check(
    rows: Iterable[tuple[str, Any]],
    entries: list[dict[str, Any]],
    train: set[str],
    report: Report,
    *,
    csv: bool,
) -> list[dict[str, Any]]:
    """The answers in `rows` ((where, row) pairs) on the spot-check `entries`; what was
    made of each row goes to `report`."""
    spot = {e["sample_id"]: e for e in entries}
    got: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for where, row in rows:
        report.rows += 1
        a = _answer(row, spot, train, report.reviewer, csv)
        if a is None:
            report.blank += 1
        elif isinstance(a, _Refused):
            report.refused[a.reason].append(f"{where} ({a.detail})" if a.detail else where)
        else:
            got[(a["user"], a["sample_id"])].append((where, a))
    kept = []
    for (_, sid), same in got.items():
        first_where, first = same[0]
        answers = {repr((a["status"], sorted(a["values"].items()))) for _, a in same}
        if len(answers) > 1:
            report.refused["rows of one sample_id and reviewer with different answers"].append(
                f"{' and '.join(w for w, _ in same)} ({sid})"
            )
            continue
        for where, _ in same[1:]:
            report.refused["repeats of a row with the same answer (counted once)"].append(
                f"{where} (as {first_where})"
            )
        kept.append(first)
        report.outcomes[_outcome(first)] += 1
    return kept


def import_file(
    recipe: Recipe,
    folder: RunFolder,
    path: Path,
    *,
    reviewer: str | None = None,
    replace: bool = False,
) -> Report:
    """Check `path`'s rows against the spot-check as it reads now and keep the answers
    (over the same reviewer's earlier ones; `replace`: over every earlier answer)."""
    from distill.review.files import parse
    from distill.review.stage import picked

    entries, by_id = picked(recipe, folder)
    fmt, rows = parse(path)
    report = Report(file=path.name, reviewer=reviewer or path.stem)
    kept = check(rows, entries, set(by_id), report, csv=fmt == "csv")
    source = path.name
    merge(folder, [{**a, "source": source} for a in kept], replace=replace)
    return report
