"""The review loop against the real local Argilla server, through the CLI: push the
spot-check, re-push idempotently, annotator answers through the REST API (as the web
UI sends them), pull with accept / reject / edit, status, and the training gate both
ways (slow: a real server, real ingest and a one-step real training run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distill.io import read_json, read_rows, write_rows
from distill.review.records import inert
from tests.conftest import CORPUS, REPO, write_recipe

pytestmark = pytest.mark.slow

RECIPE = f"""name: loop
teacher: 'fake:'
split:
  eval_fraction: 0.2
  seen_eval_fraction: 0  # every training sample can be spot-checked
ingest:
  paths: [{CORPUS}]
  chunk_tokens: 128
  chunk_overlap: 16
generate:
  max_chunks: 30
  neighbours: 1
review:
  mode: argilla
  sample_count: 6
  low_score_cap: 2
train:
  max_steps: 1
  batch_size: 2
  max_seq_length: 384
"""


@pytest.fixture(scope="module")
def loop(argilla_server: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A run curated with the fake teacher; two training samples get low judge scores."""
    from distill.pipeline import run_pipeline
    from distill.recipe import load_recipe

    cwd = tmp_path_factory.mktemp("loop")
    recipe = write_recipe(cwd, RECIPE)
    old = Path.cwd()
    os.chdir(cwd)
    try:
        run_pipeline(load_recipe(recipe), until="curate")
    finally:
        os.chdir(old)
    run = cwd / "runs" / "loop"
    path = run / "curate" / "train.parquet"
    train = read_rows(path)
    # The stratified pick does not read scores: the two low ones are outside it, so the
    # spot-check is 6 sampled + 2 low-score whatever the generated data.
    from distill.recipe import load_recipe as load
    from distill.review.stage import spot_check

    sampled = {e["sample_id"] for e in spot_check(train, load(recipe).review)}
    low = [s["sample_id"] for s in train if s["sample_id"] not in sampled][:2]
    for s in train:
        s["groundedness"], s["quality"] = (2, 2) if s["sample_id"] in low else (5, 5)
    write_rows(path, train)
    yield {"cwd": cwd, "recipe": recipe, "run": run, "low": set(low)}


def sid(record_id: str) -> str:
    """The sample id of an Argilla record id (gate.record_id: sample id, content hash)."""
    return record_id.rsplit("-", 1)[0]


def cli(loop: dict, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "distill", *args],
        cwd=loop["cwd"],
        capture_output=True,
        text=True,
        check=False,
    )


def dataset(server: dict) -> Any:
    import argilla as rg

    client = rg.Argilla(api_url=server["url"], api_key=server["api_key"])
    ds = client.datasets(name="loop-spot-check", workspace="argilla")
    assert ds is not None
    return client, ds


def answer(server: dict, server_id: Any, values: dict[str, Any]) -> None:
    """Submit a response as the annotator, the way the web UI does."""
    import requests

    token = requests.post(
        f"{server['url']}/api/v1/token",
        data={"username": "annotator", "password": server["annotator"]["password"]},
        timeout=10,
    ).json()["access_token"]
    resp = requests.post(
        f"{server['url']}/api/v1/records/{server_id}/responses",
        json={"values": {k: {"value": v} for k, v in values.items()}, "status": "submitted"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert resp.status_code == 201, resp.text


def test_push_creates_the_dataset_with_records_metadata_and_suggestions(
    argilla_server: dict, loop: dict
) -> None:
    got = cli(loop, "review", "push", str(loop["recipe"]))
    assert got.returncode == 0, got.stderr
    assert "pushed 8 records" in got.stdout and "6 sampled, 2 low-score" in got.stdout
    assert "/annotation-mode" in got.stdout
    client, ds = dataset(argilla_server)
    assert [f.name for f in ds.settings.fields] == ["instruction", "response", "context"]
    assert [q.name for q in ds.settings.questions] == [
        "verdict",
        "corrected_response",
        "quality",
        "issues",
    ]
    assert {m.name for m in ds.settings.metadata} >= {"task", "source_doc", "reason", "support"}
    assert ds.settings.guidelines == (REPO / "review" / "guidelines.md").read_text().strip()
    spot = read_rows(loop["run"] / "review" / "spot_check.parquet")
    records = {r.id: r for r in ds.records(with_suggestions=True)}
    assert set(records) == {s["record_id"] for s in spot} and len(records) == 8
    train = {s["sample_id"]: s for s in read_rows(loop["run"] / "curate" / "train.parquet")}
    for rid, rec in records.items():
        s = train[sid(rid)]
        low = sid(rid) in loop["low"]
        assert rec.metadata["reason"] == ("low_score" if low else "sample")
        assert rec.metadata["task"] == s["task"] and rec.metadata["groundedness"] in (2, 5)
        assert rec.suggestions["verdict"].value == ("reject" if low else "accept")
        assert rec.suggestions["quality"].value == (2 if low else 5)
        assert rec.fields["response"] == inert(s["messages"][-1]["content"])
        assert f"[1] {s['chunk_ids'][0]}" in rec.fields["context"]
    client.http_client.close()


def test_push_twice_updates_and_keeps_answers(argilla_server: dict, loop: dict) -> None:
    client, ds = dataset(argilla_server)
    first = next(iter(ds.records))
    answer(argilla_server, first._server_id, {"verdict": "accept", "quality": 4})
    got = cli(loop, "review", "push", str(loop["recipe"]))
    assert got.returncode == 0, got.stderr
    records = list(ds.records(with_responses=True))
    assert len(records) == 8
    kept = next(r for r in records if r.id == first.id)
    assert [x.value for x in kept.responses["verdict"]] == ["accept"]
    client.http_client.close()


def test_run_stops_at_the_gate_before_review(loop: dict) -> None:
    got = cli(loop, "run", str(loop["recipe"]))
    assert got.returncode == 4, got.stderr
    err = " ".join((got.stdout + got.stderr).split())
    # The one answered record is the first pushed, one of the 6 randomly sampled.
    assert "1 of 6 randomly sampled records reviewed (17%)" in err
    assert "the gate needs at least 6" in err and "--accept-unreviewed" in err
    assert "Traceback" not in got.stderr
    manifest = read_json(loop["run"] / "manifest.json")
    assert manifest["review_gate"]["passed"] is False
    assert manifest["stages"]["review"]["counts"]["reviewed"] == 1
    assert "train" not in manifest["stages"] or manifest["stages"]["train"].get("status") != "done"


def test_pull_applies_reject_edit_accept_and_the_gate_both_ways(
    argilla_server: dict, loop: dict
) -> None:
    from distill.review_gate import training_rows
    from distill.runfolder import RunFolder

    client, ds = dataset(argilla_server)
    records = {r.id: r for r in ds.records(with_responses=True)}
    pending = sorted(rid for rid, r in records.items() if not r.responses)
    sampled = [rid for rid in pending if sid(rid) not in loop["low"]]
    low = sorted(rid for rid in pending if sid(rid) in loop["low"])
    rejected = [sampled[0], sampled[1], low[0]]
    edited = sampled[2]
    for rid in pending:
        if rid in rejected:
            values: dict[str, Any] = {"verdict": "reject", "issues": ["hallucination"]}
        elif rid == edited:
            values = {"verdict": "accept", "corrected_response": "A reviewer's answer."}
        else:
            values = {"verdict": "accept", "quality": 5}
        answer(argilla_server, records[rid]._server_id, values)
    client.http_client.close()

    got = cli(loop, "review", "pull", str(loop["recipe"]))
    assert got.returncode == 0, got.stderr
    out = " ".join(got.stdout.split())
    assert "reviewed 8 of 8 (100%): 4 accepted, 3 rejected, 1 edited" in out
    assert "reject rate on the random sample: 33% (max 20%)" in out
    assert "training gate: closed" in out

    rejected, edited = [sid(rid) for rid in rejected], sid(edited)
    run = RunFolder(loop["run"])
    decisions = {d["sample_id"]: d for d in read_rows(loop["run"] / "review" / "decisions.parquet")}
    assert {k for k, d in decisions.items() if d["status"] == "rejected"} == set(rejected)
    assert decisions[edited]["human_edited"] and decisions[edited]["reviewers"] == ["annotator"]
    out_rows = read_rows(loop["run"] / "review" / "rejected.parquet")
    assert {r["sample_id"] for r in out_rows} == set(rejected)
    assert all(r["issues"] == ["hallucination"] for r in out_rows)
    rows = {s["sample_id"]: s for s in training_rows(run)}
    assert not set(rejected) & set(rows)
    assert rows[edited]["messages"][-1]["content"] == "A reviewer's answer."
    assert rows[edited]["human_edited"] and rows[edited]["review_status"] == "edited"
    # The exports hold exactly what trains: rejects out, the correction in.
    export = loop["run"] / "review" / "exports" / "train.openai.jsonl"
    lines = [json.loads(x) for x in export.read_text().splitlines()]
    assert len(lines) == len(rows)
    answers = [x["messages"][-1]["content"] for x in lines]
    assert "A reviewer's answer." in answers
    curated = {s["sample_id"]: s for s in read_rows(loop["run"] / "curate" / "train.parquet")}
    exported = [x["messages"] for x in lines]
    assert not [rid for rid in rejected if list(curated[rid]["messages"]) in exported]
    counts = run.stage("review")["counts"]
    assert (counts["accepted"], counts["rejected"], counts["edited"]) == (4, 3, 1)
    assert sum(v["records"] for v in counts["by_task"].values()) == 8

    status = cli(loop, "review", "status", str(loop["recipe"]))
    assert status.returncode == 0 and "source document" in status.stdout

    closed = cli(loop, "train", str(loop["recipe"]))
    assert closed.returncode == 4
    assert "rejected 33% of the reviewed random sample" in " ".join(closed.stderr.split())

    forced = cli(loop, "train", str(loop["recipe"]), "--accept-unreviewed")
    assert forced.returncode == 0, forced.stdout[-2000:] + forced.stderr[-2000:]
    gate = read_json(loop["run"] / "manifest.json")["review_gate"]
    assert gate["overridden"] and not gate["passed"] and "33%" in gate["reasons"][0]
    assert (loop["run"] / "train" / "adapter" / "adapter_model.safetensors").exists()

    opened = cli(
        loop, "train", str(loop["recipe"]), "--force", "--set", "review.max_reject_rate=0.5"
    )
    assert opened.returncode == 0, opened.stdout[-2000:] + opened.stderr[-2000:]
    gate = read_json(loop["run"] / "manifest.json")["review_gate"]
    assert gate["passed"] and not gate["overridden"] and gate["human_reviewed"]


# A field's text and its <img> count, shadow roots included.
DEEP_TEXT = """el => {
  const parts = []; let images = 0;
  const walk = n => {
    if (n.shadowRoot) walk(n.shadowRoot);
    for (const c of n.childNodes) {
      if (c.nodeType === 3) parts.push(c.textContent);
      else if (c.nodeType === 1 && c.tagName !== 'STYLE') {
        if (c.tagName === 'IMG') images += 1;
        walk(c);
      }
    }
  };
  walk(el);
  return [parts.join(''), images];
}"""


def select(page: Any, option: str) -> None:
    """Tick a label in the form; the judge's suggestion may have ticked it already, and
    a second click would untick it."""
    if not page.locator(f"#{option}").is_checked():
        page.locator(f'label[for="{option}"]').click()


def test_an_annotator_rejects_and_corrects_in_the_web_ui(argilla_server: dict, loop: dict) -> None:
    """Headless Chromium (Debian's package) driven by Playwright: sign in as the
    annotator, reject one record and correct another; `review pull` sees both."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "the browser test needs Debian's chromium: apt-get install -y chromium"
    ui = ["--set", "review.dataset=loop-ui", "--set", "review.sample_count=2"]
    ui += ["--set", "review.low_score_cap=0"]
    # Hostile documents: markup that would run if the UI rendered the context as HTML,
    # and a Markdown table that should read as aligned columns.
    chunks_path = loop["run"] / "ingest" / "chunks.parquet"
    original = read_rows(chunks_path)
    hostile = (
        '\n\n<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
        "\n\n| Plan | Price |\n| --- | --- |\n| Starter | $12 |\n| Enterprise | custom |"
    )
    write_rows(chunks_path, [{**c, "text": c["text"] + hostile} for c in original])
    try:
        pushed = cli(loop, "review", "push", str(loop["recipe"]), *ui)
    finally:
        write_rows(chunks_path, original)
    assert pushed.returncode == 0, pushed.stderr
    url = next(w for w in pushed.stdout.split() if w.endswith("/annotation-mode"))
    correction = "The reviewer's corrected answer."
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
        shown, seconds, actions = [], {}, {}
        for verdict in ("reject", "accept"):
            page.locator('[aria-label="Question: verdict"]').wait_for()
            fields = page.locator(".text_field_component")
            instruction = fields.nth(0)  # the request first, then the answer, then the context
            page.wait_for_function(
                "([el, seen]) => !seen.includes(el.innerText)",
                arg=[instruction.element_handle(), shown],
            )
            t0 = time.perf_counter()
            shown.append(instruction.inner_text())
            # Argilla 2.8 renders a field that looks like HTML in an un-sandboxed
            # same-origin iframe: distill sends '<' as '＜', so no field is HTML.
            context, images = fields.nth(2).evaluate(DEEP_TEXT)
            assert "\uff1cscript>window.__pwned = 1\uff1c/script>" in context  # inert text
            assert "Starter     $12" in context  # the table's columns aligned
            assert images == 0 and page.locator(".text_field_component iframe").count() == 0
            assert [f.evaluate("window.__pwned") for f in page.frames] == [None] * len(
                page.frames
            )  # nothing in a document ran, in the page or in any frame
            n = 0
            select(page, f"verdict_{verdict}")
            n += 1
            if verdict == "reject":
                select(page, "issues_unclear_question")
                n += 1
            if verdict == "accept":
                box = '[aria-label="Question: corrected_response"] [contenteditable="true"]'
                page.locator(box).fill(correction)
                n += 1 + len(correction)  # a click into the box and the keys
            page.locator("button.button--submit").click()
            n += 1
            page.wait_for_function(
                "([el, before]) => el.innerText !== before || document.body.innerText"
                ".includes('Submitted')",
                arg=[instruction.element_handle(), shown[-1]],
            )
            seconds[verdict], actions[verdict] = time.perf_counter() - t0, n
        page.get_by_text("Submitted").first.wait_for()
        browser.close()
    # A reject is 3 clicks from record open to submit (shown with pytest -s, for README).
    assert actions["reject"] == 3 and seconds["reject"] < 30, seconds
    sys.stderr.write(f"\nreviewer timing (s): {seconds}, actions: {actions}\n")

    pulled = cli(loop, "review", "pull", str(loop["recipe"]), *ui)
    assert pulled.returncode == 0, pulled.stderr
    assert "1 accepted" not in pulled.stdout and "0 accepted, 1 rejected, 1 edited" in pulled.stdout
    train = {s["sample_id"]: s for s in read_rows(loop["run"] / "curate" / "train.parquet")}
    decisions = read_rows(loop["run"] / "review" / "decisions.parquet")
    by_status = {d["status"]: d for d in decisions}
    assert "unclear_question" in by_status["rejected"]["issues"]
    assert by_status["edited"]["corrected_answer"] == correction
    for d, text in zip((by_status["rejected"], by_status["edited"]), shown, strict=True):
        assert train[d["sample_id"]]["question"] in text  # the record the browser showed
