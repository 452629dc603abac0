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

The files live in runs/NAME/calibration/, not review/: the review stage's folder is
hashed into training's fingerprint, and labelling the eval must not retrain the model.
"""

from __future__ import annotations

import random
import secrets
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict

from distill import tables
from distill.agreement import agreement
from distill.errors import InputError, UserError
from distill.io import hash_json, read_rows, write_json
from distill.recipe import Recipe
from distill.review import argilla as argilla_io
from distill.review.stage import aligned_tables, inert
from distill.runfolder import RunFolder

VERDICTS = {"correct": "Correct", "partial": "Partial", "wrong": "Wrong"}
WORSE_FIRST = ("wrong", "partial", "correct")  # a tie between reviewers goes to the worse
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


# --- selection -----------------------------------------------------------------


def judge_pass(r: dict[str, Any]) -> bool | None:
    """The judge's "correct" (grade >= 4); None outside its sample. A judged answer whose
    grade failed is not correct: a failure is never a pass."""
    if not r["judged"]:
        return None
    return r["correctness"] is not None and r["correctness"] >= 4


def strata(r: dict[str, Any]) -> tuple[str, str]:
    j = judge_pass(r)
    fact = r["fact_correct"]
    return (
        "not_judged" if j is None else "correct" if j else "not_correct",
        "no_key_facts" if fact is None else "states_facts" if fact else "misses_facts",
    )


def _eligible(r: dict[str, Any], systems: Sequence[str]) -> bool:
    return r["kind"] == "answerable" and not r["answer_error"] and r["system"] in systems


def _quotas(sizes: Counter[tuple[str, str]], k: int, rng: random.Random) -> dict[Any, int]:
    """k spread as evenly over the strata as their sizes allow (one at a time, round robin)."""
    quota = dict.fromkeys(sizes, 0)
    order = sorted(sizes)
    rng.shuffle(order)  # which strata get the remainder
    while k > 0 and any(quota[c] < sizes[c] for c in order):
        for c in order:
            if k > 0 and quota[c] < sizes[c]:
                quota[c] += 1
                k -= 1
    return quota


def select(
    answers: list[dict[str, Any]], systems: tuple[str, str], n: int, seed: int
) -> list[dict[str, Any]]:
    """The answers to calibrate on: up to n//2 per system (the first gets an odd one),
    spread evenly over strata, both systems' answers to one item where possible."""
    a, b = systems
    Item = tuple[str, str]  # (eval_set, item_id): one question
    pool: dict[str, dict[Item, dict[str, Any]]] = {a: {}, b: {}}
    for r in sorted(answers, key=lambda r: (r["eval_set"], r["item_id"], r["system"])):
        if _eligible(r, systems):
            pool[r["system"]].setdefault((r["eval_set"], r["item_id"]), r)
    want = {a: min((n + 1) // 2, len(pool[a])), b: min(n // 2, len(pool[b]))}
    # The same seeded order of strata for both systems: the same strata get the
    # remainder, so pairs can fill them.
    quota = {
        s: _quotas(Counter(strata(r) for r in pool[s].values()), want[s], random.Random(seed))
        for s in pool
    }
    rng = random.Random(hash_json(["calibration", seed]))
    tiebreak = {i: rng.random() for i in sorted(set(pool[a]) | set(pool[b]))}
    picked: dict[str, dict[Item, dict[str, Any]]] = {a: {}, b: {}}
    count: dict[str, Counter[tuple[str, str]]] = {a: Counter(), b: Counter()}

    def need(s: str, item: Item) -> int:
        cell = strata(pool[s][item])
        return max(0, quota[s][cell] - count[s][cell])

    def take(s: str, item: Item) -> None:
        picked[s][item] = pool[s][item]
        count[s][strata(pool[s][item])] += 1

    # Pairs first, while each of the two answers fills a stratum its system still needs.
    pairs = sorted(set(pool[a]) & set(pool[b]), key=tiebreak.__getitem__)
    while len(picked[a]) < want[a] and len(picked[b]) < want[b]:
        open_ = [i for i in pairs if i not in picked[a] and need(a, i) and need(b, i)]
        if not open_:
            break
        best = max(open_, key=lambda i: (need(a, i) + need(b, i), -tiebreak[i]))
        take(a, best)
        take(b, best)
    # Then single answers: a needed stratum first, then one that completes a pair.
    for s, other in ((a, b), (b, a)):
        while len(picked[s]) < want[s]:
            rest = [i for i in pool[s] if i not in picked[s]]
            take(s, max(rest, key=lambda i: (need(s, i) > 0, i in picked[other], -tiebreak[i])))
    return [r for s in systems for r in picked[s].values()]


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


# --- agreement -----------------------------------------------------------------


def human_label(responses: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One record's label from its submitted responses (None: none yet). Several
    reviewers: the most common verdict, a tie going to the worse; the reference is
    flagged when anyone flags it."""
    done = [r for r in responses if r["status"] == "submitted" and r["values"].get("verdict")]
    if not done:
        return None
    votes = Counter(str(r["values"]["verdict"]) for r in done)
    top = max(votes.values())
    return {
        "verdict": next(v for v in WORSE_FIRST if votes[v] == top),
        "reference_wrong": any(r["values"].get("reference_wrong") == "yes" for r in done),
        "reviewers": len(done),
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _share(xs: list[bool]) -> float:
    return sum(xs) / len(xs)


def summarize(
    keys: list[dict[str, Any]],
    labels: dict[str, dict[str, Any] | None],
    systems: tuple[str, str],
    seed: int,
) -> dict[str, Any]:
    """What the reviewers' labels say about the judge and the key-fact check."""
    done = [(k, lab) for k in keys if (lab := labels.get(k["record_id"]))]
    human = {k["record_id"]: lab["verdict"] == "correct" for k, lab in done}
    judged = [k for k in keys if k["judged"]]
    judge_pairs = [(bool(judge_pass(k)), human[k["record_id"]]) for k, _ in done if k["judged"]]
    if not judged:
        judge: dict[str, Any] = {"status": "not run"}  # eval.judge_items 0, or outside its sample
    elif all(k["correctness"] is None for k in judged):
        judge = {"status": "failed", "judged": len(judged)}  # no grade came back at all
    else:
        judge = {
            "status": "ok" if judge_pairs else "no labels yet",
            **agreement(judge_pairs, seed),
            "failed_grades": sum(k["judged"] and k["correctness"] is None for k, _ in done),
        }
    fact_pairs = [
        (bool(k["fact_correct"]), human[k["record_id"]])
        for k, _ in done
        if k["fact_correct"] is not None
    ]
    if all(k["fact_correct"] is None for k in keys):
        facts: dict[str, Any] = {"status": "not run"}  # no answer-key items in the sample
    else:
        facts = {"status": "ok" if fact_pairs else "no labels yet", **agreement(fact_pairs, seed)}
    verdicts = Counter(lab["verdict"] for _, lab in done)
    flagged = sum(lab["reference_wrong"] for _, lab in done)
    return {
        "systems": list(systems),
        "records": len(keys),
        "labelled": len(done),
        "unlabelled": len(keys) - len(done),
        "verdicts": {v: verdicts[v] for v in VERDICTS},
        "reference_wrong": flagged,
        "reference_wrong_share": _r(flagged / len(done)) if done else None,
        "judge": judge,
        "key_facts": facts,
        "paired": _paired(done, human, systems, judge["status"] == "ok"),
        "labels": [
            {
                "record_id": k["record_id"],
                "item_id": k["item_id"],
                "system": k["system"],
                "human": lab["verdict"],
                "reference_wrong": lab["reference_wrong"],
                "judge_correctness": k["correctness"] if k["judged"] else None,
                "fact_correct": k["fact_correct"],
            }
            for k, lab in done
        ],
    }


def _paired(
    done: list[tuple[dict[str, Any], dict[str, Any]]],
    human: dict[str, bool],
    systems: tuple[str, str],
    judge_ran: bool,
) -> dict[str, Any]:
    """system_a - system_b in share correct on the items both answers of which are
    labelled (and graded, when the judge ran): judge, humans and key facts on the same
    items (the key-fact check on those of them with key facts)."""
    a, b = systems
    by_item: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for k, _ in done:
        by_item.setdefault((k["eval_set"], k["item_id"]), {})[k["system"]] = k
    pairs = [
        (d[a], d[b])
        for _, d in sorted(by_item.items())
        if a in d and b in d and (not judge_ran or (d[a]["judged"] and d[b]["judged"]))
    ]

    def diff(of: Any, among: list[tuple[dict[str, Any], dict[str, Any]]]) -> float | None:
        if not among:
            return None
        return _r(_share([of(x) for x, _ in among]) - _share([of(y) for _, y in among]))

    with_facts = [(x, y) for x, y in pairs if None not in (x["fact_correct"], y["fact_correct"])]
    return {
        "items": len(pairs),
        "judge": diff(judge_pass, pairs) if judge_ran else None,
        "humans": diff(lambda k: human[k["record_id"]], pairs),
        "key_facts": diff(lambda k: k["fact_correct"], with_facts),
        "key_facts_items": len(with_facts),
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


def _agree_line(name: str, m: dict[str, Any]) -> str:
    if m["status"] == "not run":
        return f"{name}: not run on these answers (no grades to compare)"
    if m["status"] == "failed":
        return f"{name}: every grade failed ({m['judged']} answers): nothing to compare"
    if m["status"] == "no labels yet":
        return f"{name}: no labelled records with a value yet"
    kappa = "undefined (one class only)" if m["kappa"] is None else f"{m['kappa']:.2f}"
    if m["kappa_ci95"]:
        kappa += f" [95% {m['kappa_ci95'][0]:.2f}, {m['kappa_ci95'][1]:.2f}]"
    failed = m.get("failed_grades")
    tail = f" (failed grades counted as not correct: {failed})" if failed else ""
    return f"{name}: kappa {kappa}, agreement {m['agreement']:.0%} on {m['n']} records{tail}"


def render(s: dict[str, Any]) -> str:
    """The pull's summary, a few lines for the terminal."""
    pts = lambda x: "n/a" if x is None else f"{x * 100:+.0f} pts"  # noqa: E731
    v, p = s["verdicts"], s["paired"]
    lines = [
        f"calibration ('{s['dataset']}'): {s['labelled']} of {s['records']} records labelled, "
        f"{s['unlabelled']} not yet" + (f" ({s['discarded']} discarded)" if s["discarded"] else ""),
    ]
    if s["labelled"]:
        lines.append(
            f"  humans: {v['correct']} correct, {v['partial']} partial, {v['wrong']} wrong; "
            f"reference wrong: {s['reference_wrong']} ({s['reference_wrong_share']:.0%})"
        )
    lines.append("  " + _agree_line("judge (grade >= 4) vs humans (correct)", s["judge"]))
    lines.append("  " + _agree_line("key-fact check vs humans (correct)", s["key_facts"]))
    a, b = s["systems"]
    judge = "judge not run" if s["judge"]["status"] != "ok" else f"judge {pts(p['judge'])}"
    lines.append(
        f"  {a} - {b}, share correct, on {p['items']} items both labelled: {judge}, "
        f"humans {pts(p['humans'])}, key-fact check {pts(p['key_facts'])}"
        + (f" (on {p['key_facts_items']})" if p["key_facts_items"] != p["items"] else "")
    )
    return "\n".join(lines)
