"""Calibration: the eval judge measured against humans, blind, in Argilla.

`push` picks `review.calibration_items` answers from eval's answers.parquet: answerable
items with an answer (no error), only from the two deciding systems (`eval.deciding`),
half from each. Within a system the pick is spread evenly over strata of the judge's
grade (correct, not correct, not judged) and the key-fact check (states every fact,
does not, no key facts), as far as the answers allow, so a judge that passes nearly
everything still meets its rare "not correct" cases. Items both systems answered are
taken as pairs (both answers), so the judge's paired difference can be set beside the
humans'. Seeded by `eval.seed`.

Reviewers see the question, the answer, the reference and the question's source
chunks, all plain text; no system name, grade or score anywhere (fields, metadata,
record id, suggestions), and the records in a shuffled order. The record id is a salted
hash; the key back to (item, system, key-fact check, judge grade) stays in the run
folder: calibration/records.parquet.

`pull` reads the submitted labels and writes calibration/agreement.json: the human
verdicts, Cohen's kappa (seeded bootstrap interval) of human "correct" against the
judge's (grade >= 4) and against the key-fact check, and the deciding pair's paired
difference as judge, humans and key facts each see it.

The pick and the figures are distill.review.calibration_stats; this module pushes and
pulls. The files live in runs/NAME/calibration/, not review/: the review stage's
folder is hashed into training's fingerprint, and labelling the eval must not retrain
the model.
"""

from __future__ import annotations

import random
import secrets
import warnings
from pathlib import Path
from typing import Any, TypedDict

from distill import tables
from distill.errors import InputError, UserError
from distill.io import hash_json, read_rows, write_json
from distill.recipe import Recipe
from distill.review import argilla as argilla_io
from distill.review.calibration_stats import VERDICTS, human_label, select, strata, summarize
from distill.review.records import aligned_tables, inert
from distill.runfolder import RunFolder

YES_NO = {"yes": "Yes", "no": "No"}
QUESTIONS = ("verdict", "reference_wrong")
FIELDS = (
    ("question", "Question"),
    ("answer", "Answer to grade"),
    ("reference", "Reference answer"),
    ("source", "Source document (the question was written from it; plain text)"),
)
GUIDELINES = """# Grading answers against their source

Each record is a question, an answer to grade, a reference answer, and the passages of
the document the question was written from. Which system wrote the answer is hidden on
purpose; some questions appear twice, with two different answers: grade each on its own.

**Verdict**

- **correct**: the answer states every fact the question asks for, and nothing in it
  contradicts the source. Other wording than the reference, or extra detail the source
  supports, is fine.
- **partial**: part of what is asked is there and right, but a fact asked for is missing
  or too vague; nothing stated contradicts the source.
- **wrong**: a fact it states contradicts the source, none of what is asked is there, it
  answers another question, or it refuses although the source has the answer.

The source decides: when the reference and the source disagree, grade against the source.

**The reference is wrong**: answer *yes* when the reference itself is wrong or misses
what the question asks (against the source); otherwise *no*.
"""


class CalibrationKey(TypedDict):
    """One pushed record and what it stands for (kept local, never sent to Argilla)."""

    record_id: str
    item_id: str
    eval_set: str
    system: str
    judged: bool  # in the eval judge's sample
    correctness: int | None  # the judge's grade; None when not judged or the grade failed
    fact_correct: bool | None  # the key-fact check; None without key facts
    judge_stratum: str
    fact_stratum: str
    salt: str


def key_path(folder: RunFolder) -> Path:
    return folder.root / "calibration" / "records.parquet"


def report_path(folder: RunFolder) -> Path:
    return folder.root / "calibration" / "agreement.json"


def dataset_name(recipe: Recipe) -> str:
    return f"{recipe.review.dataset or recipe.name}-calibration"


# --- records -------------------------------------------------------------------


def record_id(r: dict[str, Any], salt: str) -> str:
    """Opaque: a salted hash, so an id cannot be recomputed from what a reviewer sees.
    The answer is in it: a new answer to the same item is a new record."""
    return "c" + hash_json([salt, r["item_id"], r["system"], r["answer"]])[:20]


def _source(r: dict[str, Any], chunks: dict[str, dict[str, Any]]) -> str:
    parts = []
    for n, cid in enumerate(r["source_chunk_ids"] or [], start=1):
        c = chunks.get(cid)
        if c is not None:
            head = f"[{n}]" + (f" {c['heading_path']}" if c.get("heading_path") else "")
            parts.append(head + "\n" + aligned_tables(c["text"].strip()))
    return "\n\n".join(parts) or "(no source passage recorded: grade against the reference)"


def blinded(r: dict[str, Any], rid: str, chunks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One Argilla record: text fields only; no system, grade, metadata or suggestion."""
    fields = {
        "question": r["question"],
        "answer": r["answer"].strip() or "(empty answer)",
        "reference": r["reference"].strip() or "(no reference)",
        "source": _source(r, chunks),
    }
    return {
        "id": rid,
        "fields": {k: inert(v) for k, v in fields.items()},
        "metadata": {},
        "suggestions": [],
    }


# --- Argilla -------------------------------------------------------------------


def settings(recipe: Recipe) -> Any:
    import argilla as rg

    return rg.Settings(
        guidelines=GUIDELINES,
        fields=[rg.TextField(name=n, title=t, use_markdown=False) for n, t in FIELDS],
        questions=[
            rg.LabelQuestion(name="verdict", title="Is the answer correct?", labels=VERDICTS),
            rg.LabelQuestion(
                name="reference_wrong",
                title="The reference is wrong (against the source)",
                labels=YES_NO,
            ),
        ],
        allow_extra_metadata=False,
    )


def open_dataset(conn: argilla_io.Connection, recipe: Recipe, *, create: bool) -> Any:
    """The recipe's calibration dataset (created with its settings when `create`)."""
    import argilla as rg

    name, workspace = dataset_name(recipe), recipe.review.workspace
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK warns when something does not exist
        if conn.client.workspaces(workspace) is None:
            raise UserError(
                f"Argilla has no workspace '{workspace}'; create it or set review.workspace"
            )
        ds = conn.client.datasets(name=name, workspace=workspace)
    if ds is not None:
        have = {q.name for q in ds.settings.questions}
        if have != set(QUESTIONS):
            raise UserError(
                f"Argilla dataset '{name}' exists with other questions ({sorted(have)}); "
                "set review.dataset to another name"
            )
        return ds
    if not create:
        raise UserError(
            f"Argilla has no dataset '{name}' in workspace '{workspace}'; "
            "run `distill review calibrate RECIPE` first"
        )
    ds = rg.Dataset(name=name, workspace=workspace, settings=settings(recipe), client=conn.client)
    ds.create()
    return ds


def _drop_stale(conn: argilla_io.Connection, ds: Any, keep: set[str]) -> int:
    """Delete records of an earlier pick that nobody has answered (they would only cost
    reviewers time); answered ones stay, and pull ignores them."""
    stale, offset = [], 0
    while True:
        batch = conn.client.api.records.list(
            ds.id, offset=offset, limit=500, with_suggestions=False
        )
        stale += [r for r in batch if str(r.external_id) not in keep and not r.responses]
        if len(batch) < 500:
            break
        offset += 500
    if stale:
        conn.client.api.records.delete_many(ds.id, stale)
    return len(stale)


def _answers(folder: RunFolder) -> list[dict[str, Any]]:
    path = folder.answers
    if not path.exists() or folder.stage("eval").get("status", "done") != "done":
        raise InputError("no finished eval answers yet; run `distill eval RECIPE` first")
    return read_rows(path)


def push(recipe: Recipe, folder: RunFolder) -> dict[str, Any]:
    """Pick the calibration records, create or update them in Argilla, keep the key."""
    systems = recipe.eval.deciding
    picked = select(_answers(folder), systems, recipe.review.calibration_items, recipe.eval.seed)
    have = {s: sum(r["system"] == s for r in picked) for s in systems}
    missing = [s for s in systems if not have[s]]
    if missing:
        raise InputError(
            f"eval answers have no answerable, non-error answer from {missing[0]!r} "
            f"(eval.deciding is {list(systems)}); run `distill eval RECIPE` with both systems"
        )
    old = read_rows(key_path(folder)) if key_path(folder).exists() else []
    salt = old[0]["salt"] if old else secrets.token_hex(16)  # stable ids across pushes
    chunks_path = folder.chunks
    chunks = {c["chunk_id"]: c for c in read_rows(chunks_path)} if chunks_path.exists() else {}
    keys: list[CalibrationKey] = []
    items = []
    for r in picked:
        rid = record_id(r, salt)
        judge, fact = strata(r)
        keys.append(
            CalibrationKey(
                record_id=rid,
                item_id=r["item_id"],
                eval_set=r["eval_set"],
                system=r["system"],
                judged=bool(r["judged"]),
                correctness=r["correctness"],
                fact_correct=r["fact_correct"],
                judge_stratum=judge,
                fact_stratum=fact,
                salt=salt,
            )
        )
        items.append(blinded(r, rid, chunks))
    # Shuffled, so neither the order nor the neighbours tell the systems apart.
    random.Random(hash_json(["calibration-order", recipe.eval.seed])).shuffle(items)
    conn = argilla_io.connect(recipe)
    try:
        ds = open_dataset(conn, recipe, create=True)
        argilla_io.log_records(conn, ds, items)
        dropped = _drop_stale(conn, ds, {k["record_id"] for k in keys})
        url = argilla_io.ui_url(conn, ds)
    finally:
        conn.close()
    tables.write(key_path(folder), keys, CalibrationKey)
    a, b = systems
    return {
        "records": len(keys),
        "by_system": have,
        "paired_items": len(
            {(k["eval_set"], k["item_id"]) for k in keys if k["system"] == a}
            & {(k["eval_set"], k["item_id"]) for k in keys if k["system"] == b}
        ),
        "dropped": dropped,
        "dataset": dataset_name(recipe),
        "url": url,
    }


def pushed(folder: RunFolder) -> bool:
    return key_path(folder).exists()


def pull(recipe: Recipe, folder: RunFolder) -> dict[str, Any]:
    """Read the submitted labels; write calibration/agreement.json; return its content."""
    if not pushed(folder):
        raise InputError(
            "no calibration records pushed yet; run `distill review calibrate RECIPE` first"
        )
    keys = read_rows(key_path(folder))
    conn = argilla_io.connect(recipe)
    try:
        ds = open_dataset(conn, recipe, create=False)
        got = {x["id"]: x["responses"] for x in argilla_io.answers(conn, ds)}
    finally:
        conn.close()
    missing = [k["record_id"] for k in keys if k["record_id"] not in got]
    if missing:
        raise UserError(
            f"{len(missing)} calibration records are not in Argilla dataset "
            f"'{dataset_name(recipe)}'; run `distill review calibrate RECIPE` to push them again"
        )
    labels = {k["record_id"]: human_label(got[k["record_id"]]) for k in keys}
    a, b = list(dict.fromkeys(k["system"] for k in keys))  # eval.deciding at the push
    out = summarize(keys, labels, (a, b), recipe.eval.seed)
    out["dataset"] = dataset_name(recipe)
    out["discarded"] = sum(
        labels[k["record_id"]] is None
        and any(r["status"] == "discarded" for r in got[k["record_id"]])
        for k in keys
    )
    write_json(report_path(folder), out)
    return out
