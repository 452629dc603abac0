"""`distill review calibrate`: the eval judge measured against humans in Argilla.

Without a server: the blinded, stratified, paired, seeded pick; kappa and agreement on
tables worked out by hand; the one-line errors. Against the real local Argilla server
(slow): push, labels submitted as the annotator through the REST API (as the web UI
sends them), pull through `review calibrate --pull` and `review pull`, the reported
kappas and paired differences equal to the hand-computed ones; and one record labelled
in the web UI (headless Chromium) that the pull then sees."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from distill import tables
from distill.agreement import agreement, cohen_kappa
from distill.io import read_json, read_rows, write_json, write_rows
from distill.review.calibration import blinded, record_id
from distill.review.calibration_stats import human_label, select, strata, summarize
from tests.conftest import write_recipe

A, B = "ft+rag", "base+rag"
SYSTEM_NAMES = ("ft+rag", "base+rag", "teacher", "system")


def answer(item: int, system: str, **over: Any) -> dict[str, Any]:
    """A full eval Answer row (answerable, judged correct, states its key facts)."""
    row: dict[str, Any] = {
        "item_id": f"item{item:03d}",
        "eval_set": "key",
        "kind": "answerable",
        "system": system,
        "local": True,
        "priced": False,
        "question": f"How long does feature {item} last?",
        "reference": f"{item} days",
        "answer": f"It lasts {item} days [1].",
        "answer_error": None,
        "latency_s": 0.1,
        "compute_s": 0.1,
        "output_tokens": 9,
        "cost_usd": 0.0,
        "retrieved_chunk_ids": [f"chunk{item}"],
        "source_chunk_ids": [f"chunk{item}"],
        "cited": [1],
        "cited_chunk_ids": [f"chunk{item}"],
        "refused": False,
        "correctness": 5,
        "groundedness": 5,
        "grade_reason": "states the fact",
        "grade_error": None,
        "vs_teacher": None,
        "pairwise": None,
        "pairwise_error": None,
        "similarity": None,
        "token_f1": None,
        "support": None,
        "doc_id": f"doc{item}",
        "key_facts": json.dumps([f"{item} days"]),
        "fact_found": [True],
        "fact_conflicts": [],
        "fact_correct": True,
        "fact_recall": 1.0,
        "retrieval_hit": True,
        "cited_right": 1,
        "numbers": 1,
        "unsupported_numbers": 0,
        "prompt_tokens": 100,
        "judged": True,
    }
    row.update(over)
    return row


def chunk(item: int) -> dict[str, Any]:
    return {
        "chunk_id": f"chunk{item}",
        "doc_id": f"doc{item}",
        "source": f"doc{item}.md",
        "title": f"Doc {item}",
        "heading_path": f"Doc {item} > Limits",
        "text": f"Feature {item} lasts {item} days. <b>bold</b>",
        "n_tokens": 9,
        "position": 0,
    }


# --- the pick, without a server --------------------------------------------------


def pool(n_items: int = 40) -> list[dict[str, Any]]:
    """Both deciding systems answer every item, with the same strata for both, plus
    rows the pick must never take: the teacher, unanswerable items, failed answers."""
    out = []
    for i in range(n_items):
        judged = i % 5 != 4
        grade = {0: 5, 1: 4, 2: 2, 3: 1}.get(i % 5)
        fact = None if i % 7 == 6 else i % 3 != 0
        for s in (A, B):
            out.append(answer(i, s, judged=judged, correctness=grade, fact_correct=fact))
        out.append(answer(i, "teacher"))
    out += [answer(100 + i, A, kind="unanswerable") for i in range(5)]
    out += [answer(100 + i, B, kind="off_topic") for i in range(5)]
    out += [answer(200 + i, A, answer_error="timeout", answer="") for i in range(5)]
    return out


def test_the_pick_is_half_and_half_paired_stratified_and_seeded() -> None:
    rows_ = pool()
    picked = select(rows_, (A, B), 20, seed=0)
    assert len(picked) == 20
    assert Counter(r["system"] for r in picked) == {A: 10, B: 10}
    assert all(r["kind"] == "answerable" and not r["answer_error"] for r in picked)
    items = {s: {r["item_id"] for r in picked if r["system"] == s} for s in (A, B)}
    assert items[A] == items[B]  # every pick a pair: both answers to the same questions
    # Spread evenly over the strata a system has (9 here: judge x key-fact check),
    # not in proportion: 9 strata, 10 picks -> one stratum twice, the rest once.
    available = Counter(strata(r) for r in rows_ if r["system"] == A and r["kind"] == "answerable")
    got = Counter(strata(r) for r in picked if r["system"] == A)
    assert len(available) == 9 and sorted(got.values()) == [1] * 8 + [2]
    again = select(list(reversed(rows_)), (A, B), 20, seed=0)
    assert sorted(r["item_id"] for r in again) == sorted(r["item_id"] for r in picked)
    other = select(rows_, (A, B), 20, seed=1)
    assert {r["item_id"] for r in other} != {r["item_id"] for r in picked}


def test_rare_grades_are_taken_and_unpaired_answers_fill_in() -> None:
    # The judge passes 27 of A's 30 answers; B answered only items 5-12.
    rows_ = [answer(i, A, correctness=5 if i >= 3 else 2) for i in range(30)]
    rows_ += [answer(i, B) for i in range(5, 13)]
    picked = select(rows_, (A, B), 20, seed=3)
    assert Counter(r["system"] for r in picked) == {A: 10, B: 8}  # all B has
    a = [r for r in picked if r["system"] == A]
    assert sum(r["correctness"] == 2 for r in a) == 3  # all three, not a proportional 1
    # A's 7 passed answers all pair with B's; B's 8th and A's 3 failures are single.
    paired = {r["item_id"] for r in a} & {r["item_id"] for r in picked if r["system"] == B}
    assert len(paired) == 7
    small = select(rows_, (A, B), 200, seed=3)
    assert Counter(r["system"] for r in small) == {A: 30, B: 8}


def test_a_record_shows_no_system_grade_or_score() -> None:
    r = answer(7, A, correctness=2, fact_correct=False)
    rec = blinded(r, record_id(r, "salt"), {"chunk7": chunk(7)})
    assert set(rec["fields"]) == {"question", "answer", "reference", "source"}
    assert rec["metadata"] == {} and rec["suggestions"] == []
    text = json.dumps(rec).lower()
    for name in SYSTEM_NAMES:
        assert name not in text
    assert "Feature 7 lasts 7 days." in rec["fields"]["source"]
    assert "<b>" not in rec["fields"]["source"]  # inert: the UI could render it as HTML
    # The id is opaque: salted, and the same only for the same salt, item, system, answer.
    assert rec["id"] == record_id(r, "salt") != record_id(r, "other salt")
    assert record_id(r, "salt") != record_id({**r, "system": B}, "salt")
    assert rec["id"].startswith("c") and len(rec["id"]) == 21


# --- agreement on hand-worked tables -----------------------------------------------


def table(yy: int, yn: int, ny: int, nn: int) -> list[tuple[bool, bool]]:
    return [(True, True)] * yy + [(True, False)] * yn + [(False, True)] * ny + [(False, False)] * nn


def test_kappa_on_known_tables() -> None:
    assert cohen_kappa(table(10, 0, 0, 10)) == 1.0
    # po = 35/50 = .7; pe = .5*.6 + .5*.4 = .5; kappa = (.7 - .5) / (1 - .5) = .4
    assert cohen_kappa(table(20, 5, 10, 15)) == pytest.approx(0.4)
    assert cohen_kappa(table(0, 5, 5, 0)) == pytest.approx(-1.0)
    # Both raters say yes every time: chance agreement is 1, kappa is undefined, not 1.
    assert cohen_kappa(table(8, 0, 0, 0)) is None and cohen_kappa([]) is None
    got = agreement(table(20, 5, 10, 15), seed=0)
    assert (got["n"], got["agreement"], got["kappa"]) == (50, 0.7, 0.4)
    lo, hi = got["kappa_ci95"]
    assert 0.1 < lo < 0.4 < hi < 0.7
    assert agreement(table(20, 5, 10, 15), seed=0) == got  # seeded
    assert agreement([], seed=0) == {"n": 0, "agreement": None, "kappa": None, "kappa_ci95": None}


def test_several_reviewers_and_drafts() -> None:
    def resp(verdict: str, ref: str = "no", status: str = "submitted") -> dict[str, Any]:
        return {
            "user": "u",
            "status": status,
            "values": {"verdict": verdict, "reference_wrong": ref},
        }

    assert human_label([resp("correct", status="draft")]) is None
    assert human_label([resp("correct"), resp("wrong", "yes")]) == {
        "verdict": "wrong",  # a tie goes to the worse verdict
        "reference_wrong": True,  # anyone's flag counts
        "reviewers": 2,
    }
    two = human_label([resp("correct"), resp("correct"), resp("partial")])
    assert two is not None and two["verdict"] == "correct"


def key(item: int, system: str, correctness: int | None, fact: bool | None, **kw: Any) -> dict:
    return {
        "record_id": f"r{item}{system}",
        "item_id": f"i{item}",
        "eval_set": "key",
        "system": system,
        "judged": kw.get("judged", True),
        "correctness": correctness,
        "fact_correct": fact,
    }


def lab(verdict: str, ref: bool = False) -> dict[str, Any]:
    return {"verdict": verdict, "reference_wrong": ref, "reviewers": 1}


def test_a_judge_not_run_is_reported_as_such_and_a_failed_grade_never_passes() -> None:
    keys = [key(i, s, None, True, judged=False) for i in range(3) for s in (A, B)]
    labels = {k["record_id"]: lab("correct") for k in keys}
    got = summarize(keys, labels, (A, B), seed=0)
    assert got["judge"] == {"status": "not run"}  # not an agreement of 0
    assert got["key_facts"]["agreement"] == 1.0 and got["key_facts"]["kappa"] is None
    assert got["paired"]["judge"] is None and got["paired"]["items"] == 3
    # Judged, but the grade failed: counted as not correct against a human "correct".
    keys = [key(0, A, None, True), key(1, A, 5, True), key(2, A, 1, False)]
    verdicts = ("correct", "correct", "wrong")
    labels = {k["record_id"]: lab(v) for k, v in zip(keys, verdicts, strict=True)}
    got = summarize(keys, labels, (A, B), seed=0)
    assert got["judge"]["n"] == 3 and got["judge"]["failed_grades"] == 1
    assert got["judge"]["agreement"] == pytest.approx(2 / 3, abs=1e-4)
    every = summarize([key(0, A, None, True)], {"r0" + A: lab("wrong")}, (A, B), seed=0)
    assert every["judge"]["status"] == "failed"


# --- errors, without a server ------------------------------------------------------


def distill(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "distill", *args], cwd=cwd, capture_output=True, text=True
    )


def test_errors_are_one_line_with_the_fix(tmp_path: Path) -> None:
    base = "name: cal\ningest:\n  paths: [docs]\n"
    recipe = write_recipe(tmp_path, base + "review:\n  mode: argilla\n")
    auto = write_recipe(tmp_path, base, "auto.yaml")
    cases = [
        (("calibrate", str(auto)), "set review.mode: argilla"),
        (("calibrate", str(recipe)), "run `distill eval RECIPE` first"),
        (("calibrate", str(recipe), "--pull"), "run `distill review calibrate RECIPE` first"),
    ]
    for args, fix in cases:
        got = distill(tmp_path, "review", *args)
        errors = [ln for ln in got.stderr.splitlines() if ln.startswith("error:")]
        assert got.returncode == 2 and "Traceback" not in got.stderr, got.stderr
        assert len(errors) == 1 and fix in errors[0], got.stderr


# --- against the real local Argilla server (slow) ----------------------------------

# item: (A's judge grade, A's key-fact check, A's human verdict, A's reference flag,
#        the same for B); judged=False for items 6 and 7 (outside the judge's sample),
# None for a grade that failed, "-" for a record nobody labels.
PLAN = {
    0: ((5, True, "correct", "no"), (5, True, "partial", "no")),
    1: ((4, True, "correct", "no"), (2, False, "wrong", "no")),
    2: ((5, True, "partial", "no"), (None, False, "partial", "no")),
    3: ((4, False, "correct", "yes"), (1, False, "wrong", "no")),
    4: ((2, False, "correct", "no"), (5, True, "correct", "no")),
    5: ((5, True, "correct", "no"), (4, True, "-", "-")),
    6: ((None, True, "correct", "no"), (None, False, "wrong", "no")),
    7: ((None, None, "partial", "no"), (None, None, "correct", "yes")),
}


def calibration_run(cwd: Path, name: str) -> Path:
    """A recipe and the eval stage's outputs for PLAN: answers of both deciding systems
    (and rows the pick must skip), and the chunks they came from."""
    recipe = write_recipe(
        cwd,
        f"name: {name}\ningest:\n  paths: [docs]\nreview:\n  mode: argilla\n"
        "  calibration_items: 16\neval:\n  seed: 7\n",
        f"{name}.yaml",
    )
    run = cwd / "runs" / name
    answers = []
    for i, plan in PLAN.items():
        for s, (grade, fact, _, _) in zip((A, B), plan, strict=True):
            answers.append(
                answer(i, s, correctness=grade, fact_correct=fact, judged=i < 6)
                | ({"key_facts": "[]", "eval_set": "generated"} if fact is None else {})
            )
        answers.append(answer(i, "teacher"))
    answers.append(answer(50, A, answer_error="HTTP 500", answer=""))
    answers.append(answer(51, B, kind="unanswerable"))
    tables.write(run / "eval" / "answers.parquet", answers, tables.Answer)
    tables.write(run / "ingest" / "chunks.parquet", [chunk(i) for i in range(52)], tables.Chunk)
    return recipe


def annotate(server: dict, server_id: Any, verdict: str, reference_wrong: str) -> None:
    """Submit a label as the annotator, the way the web UI does."""
    import requests

    token = requests.post(
        f"{server['url']}/api/v1/token",
        data={"username": "annotator", "password": server["annotator"]["password"]},
        timeout=10,
    ).json()["access_token"]
    values = {"verdict": {"value": verdict}, "reference_wrong": {"value": reference_wrong}}
    resp = requests.post(
        f"{server['url']}/api/v1/records/{server_id}/responses",
        json={"values": values, "status": "submitted"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert resp.status_code == 201, resp.text


def records(server: dict, dataset: str) -> tuple[Any, dict[str, Any]]:
    import argilla as rg

    client = rg.Argilla(api_url=server["url"], api_key=server["api_key"])
    ds = client.datasets(name=dataset, workspace="argilla")
    assert ds is not None
    return client, {r.id: r for r in ds.records(with_suggestions=True, with_responses=True)}


@pytest.mark.slow
def test_round_trip_reports_the_hand_computed_agreement(
    argilla_server: dict, tmp_path: Path
) -> None:
    recipe = calibration_run(tmp_path, "cal")
    run = tmp_path / "runs" / "cal"
    pushed = distill(tmp_path, "review", "calibrate", str(recipe))
    assert pushed.returncode == 0, pushed.stderr
    assert "pushed 16 blinded records to Argilla dataset 'cal-calibration'" in pushed.stdout
    assert "8 ft+rag, 8 base+rag; 8 questions with both answers" in pushed.stdout

    client, recs = records(argilla_server, "cal-calibration")
    ds = client.datasets(name="cal-calibration", workspace="argilla")
    assert [q.name for q in ds.settings.questions] == ["verdict", "reference_wrong"]
    assert [f.name for f in ds.settings.fields] == ["question", "answer", "reference", "source"]
    assert list(ds.settings.metadata) == [] and "correct**:" in ds.settings.guidelines
    keys = {k["record_id"]: k for k in read_rows(run / "calibration" / "records.parquet")}
    assert set(recs) == set(keys) and len(recs) == 16
    assert {(k["item_id"], k["system"]) for k in keys.values()} == {
        (f"item{i:03d}", s) for i in PLAN for s in (A, B)
    }
    for rid, r in recs.items():  # blind, as the server holds it
        fields = {f: r.fields[f] for f in ("question", "answer", "reference", "source")}
        seen = json.dumps([rid, fields, dict(r.metadata or {})]).lower()
        assert not [n for n in SYSTEM_NAMES if n in seen], seen
        assert not list(r.suggestions)
    again = distill(tmp_path, "review", "calibrate", str(recipe))  # idempotent
    assert again.returncode == 0, again.stderr
    other, after = records(argilla_server, "cal-calibration")
    other.http_client.close()  # its keep-alive connections would outlive the test
    assert set(after) == set(recs)

    for rid, k in keys.items():
        i = int(k["item_id"].removeprefix("item"))
        _, _, verdict, ref = PLAN[i][(A, B).index(k["system"])]
        if verdict != "-":
            annotate(argilla_server, recs[rid]._server_id, verdict, ref)
    client.http_client.close()

    pulled = distill(tmp_path, "review", "calibrate", str(recipe), "--pull")
    assert pulled.returncode == 0, pulled.stderr
    got = read_json(run / "calibration" / "agreement.json")
    assert (got["records"], got["labelled"], got["unlabelled"]) == (16, 15, 1)
    assert got["verdicts"] == {"correct": 8, "partial": 4, "wrong": 3}
    assert got["reference_wrong"] == 2 and got["reference_wrong_share"] == round(2 / 15, 4)
    # Judge (grade >= 4; the failed grade of item 2's B counts as not correct) against
    # human "correct" on the 11 labelled, judged records: yes-yes 5, yes-no 2, no-yes 1,
    # no-no 3. po = 8/11, pe = (7*6 + 4*5)/121 = 62/121, kappa = (88-62)/(121-62) = 26/59.
    judge = got["judge"]
    assert (judge["status"], judge["n"], judge["failed_grades"]) == ("ok", 11, 1)
    assert judge["agreement"] == round(8 / 11, 4) and judge["kappa"] == round(26 / 59, 4)
    lo, hi = judge["kappa_ci95"]
    assert lo < judge["kappa"] < hi
    # Key-fact check on the 13 labelled records with key facts: 5, 2, 2, 4.
    # po = 9/13, pe = (7*7 + 6*6)/169 = 85/169, kappa = (117-85)/(169-85) = 8/21.
    facts = got["key_facts"]
    assert (facts["n"], facts["agreement"]) == (13, round(9 / 13, 4))
    assert facts["kappa"] == round(8 / 21, 4)
    # Items 0-4 have both answers labelled and graded. Judge: A 4/5, B 2/5; humans:
    # A 4/5, B 1/5; key facts: A 3/5, B 2/5.
    assert got["paired"] == {
        "items": 5,
        "judge": 0.4,
        "humans": 0.6,
        "key_facts": 0.2,
        "key_facts_items": 5,
    }
    out = " ".join(pulled.stdout.split())
    assert "15 of 16 records labelled, 1 not yet" in out
    assert "8 correct, 4 partial, 3 wrong; reference wrong: 2 (13%)" in out
    assert f"kappa {26 / 59:.2f} [95% {lo:.2f}, {hi:.2f}], agreement 73% on 11 records" in out
    assert "ft+rag - base+rag, share correct, on 5 items both labelled: judge +40 pts, " in out
    assert "humans +60 pts, key-fact check +20 pts" in out

    # `review pull` (the spot-check) also pulls the calibration once one was pushed.
    fake_curate(run)
    (run / "calibration" / "agreement.json").unlink()
    both = distill(tmp_path, "review", "pull", str(recipe))
    assert both.returncode == 0, both.stderr
    assert "spot-check: 0 records" in both.stdout and "15 of 16 records labelled" in both.stdout
    assert read_json(run / "calibration" / "agreement.json")["paired"]["humans"] == 0.6


def fake_curate(run: Path) -> None:
    """A finished curate stage with no samples: enough for the review stage to run."""
    write_rows(run / "curate" / "train.parquet", [])
    write_rows(run / "curate" / "eval.parquet", [])
    write_json(run / "manifest.json", {"stages": {"curate": {"status": "done"}}})


def select_label(page: Any, option: str) -> None:
    """Tick a label (a second click would untick it; copied from
    integration/test_review_loop.py)."""
    if not page.locator(f"#{option}").is_checked():
        page.locator(f'label[for="{option}"]').click()


@pytest.mark.slow
def test_a_reviewer_labels_a_record_in_the_web_ui(argilla_server: dict, tmp_path: Path) -> None:
    """Headless Chromium (Debian's package) driven by Playwright: the annotator signs
    in, opens the calibration dataset, marks one answer correct with a right reference,
    submits; the pull sees that label on that record."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "the browser test needs Debian's chromium: apt-get install -y chromium"
    recipe = calibration_run(tmp_path, "calui")
    pushed = distill(tmp_path, "review", "calibrate", str(recipe))
    assert pushed.returncode == 0, pushed.stderr
    url = next(w for w in pushed.stdout.split() if w.endswith("/annotation-mode"))
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{argilla_server['url']}/sign-in")
        page.get_by_label("Username").fill("annotator")
        page.get_by_label("Password").fill(argilla_server["annotator"]["password"])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/")
        page.goto(url)
        page.locator('[aria-label="Question: verdict"]').wait_for()
        question = page.locator(".text_field_component").nth(0).inner_text()
        body = page.locator("body").inner_text().lower()
        assert not [n for n in SYSTEM_NAMES[:3] if n in body]  # blind in the page too
        select_label(page, "verdict_correct")
        select_label(page, "reference_wrong_no")
        page.locator("button.button--submit").click()
        page.get_by_text("Submitted").first.wait_for()
        browser.close()

    pulled = distill(tmp_path, "review", "calibrate", str(recipe), "--pull")
    assert pulled.returncode == 0, pulled.stderr
    got = read_json(tmp_path / "runs" / "calui" / "calibration" / "agreement.json")
    assert (got["labelled"], got["unlabelled"]) == (1, 15)
    (label,) = got["labels"]
    assert (label["human"], label["reference_wrong"]) == ("correct", False)
    n = int(label["item_id"].removeprefix("item"))
    assert f"How long does feature {n} last?" in question  # the record the browser showed

    # A smaller pick: the unanswered records it drops leave Argilla, the answered one stays.
    fewer = ["--set", "review.calibration_items=2"]
    smaller = distill(tmp_path, "review", "calibrate", str(recipe), *fewer)
    assert smaller.returncode == 0, smaller.stderr
    keys = {k["record_id"] for k in read_rows(tmp_path / "runs/calui/calibration/records.parquet")}
    client, recs = records(argilla_server, "calui-calibration")
    client.http_client.close()
    assert len(keys) == 2 and set(recs) == keys | {label["record_id"]}
    assert f"deleted {16 - len(recs)} unanswered records" in smaller.stdout
