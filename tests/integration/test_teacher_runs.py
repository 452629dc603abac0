"""Generate through the openai: teacher against the loopback server: a hard kill and
resume, the budget cap, and the estimate against measured tokens (slow: real
tokenizer and embedder)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distill.generate.estimate import estimate
from distill.io import read_rows
from distill.pipeline import run_pipeline
from distill.recipe import load_recipe
from distill.runfolder import RunFolder
from distill.teachers.prices import BudgetExceeded
from tests.conftest import REPO
from tests.fakes.openai_server import serve

pytestmark = pytest.mark.slow
KEY = "test-key-" + "z" * 24


def scripted(body: dict) -> str:
    """A deterministic reply per request: the same request always gets the same text."""
    content = body["messages"][-1]["content"]
    tag = hashlib.sha256(content.encode()).hexdigest()
    if "Write one question" in content:
        return f"How long does step {tag[:6]} take?"
    return f"Step {tag[:6]} takes {int(tag[:4], 16) % 50 + 1} minutes."


def same_samples(run_a: Path, run_b: Path, *ignore: str) -> bool:
    """Two runs wrote the same samples (creation time and `ignore` columns aside)."""
    drop = {"created_at", *ignore}
    a, b = (read_rows(r / "generate" / "samples.parquet") for r in (run_a, run_b))
    strip = [[{k: v for k, v in row.items() if k not in drop} for row in rows] for rows in (a, b)]
    return bool(a) and strip[0] == strip[1]


def openai_overrides(url: str, name: str, **options: object) -> list[str]:
    opts = {"base_url": url, "api_key_env": "DISTILL_TEST_KEY", "ramp_s": 0, **options}
    flow = ", ".join(f"{k}: {v!r}" if isinstance(v, str) else f"{k}: {v}" for k, v in opts.items())
    return [
        f"name={name}",
        "teacher=openai:gpt-4o-mini",
        f"teacher.options={{{flow}}}",
    ]


def test_hard_kill_midway_resumes_without_paying_twice(
    ingested: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 the CLI while requests are in flight; the rerun sends only what has no
    answer yet, no request is answered twice, and the samples equal a clean run's."""
    monkeypatch.setenv("DISTILL_TEST_KEY", KEY)
    recipe_path = ingested.parent.parent / "recipe.yaml"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with serve() as (server, url):
        server.reply = scripted
        server.hold_after = 3  # answer three, then hold everything in flight
        cmd = [sys.executable, "-m", "distill", "run", str(recipe_path), "--until", "generate"]
        for o in openai_overrides(url, "killed", concurrency=2):
            cmd += ["--set", o]
        log = ingested.parent / "killed.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 120
        while server.held < 1 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.held >= 1, log.read_text()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before_kill = server.answered.total()  # 3, or 4 if one arrived just before the hold
        assert 3 <= before_kill < 8
        server.hold_after, server.epoch = None, server.epoch + 1
        server.open.set()  # held requests are dropped unanswered; new ones are answered

        rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        answered = dict(server.answered)
        stage = RunFolder(ingested.parent / "killed").stage("generate")
        assert stage["counts"]["cached_replies"] == before_kill
        assert stage["counts"]["requests_sent"] == 8 - before_kill

        clean = load_recipe(recipe_path, openai_overrides(url, "clean"))
        run_pipeline(clean, until="generate")
    assert len(answered) == 8 and set(answered.values()) == {1}  # 4 questions + 4 answers
    assert len(read_rows(ingested.parent / "killed" / "generate" / "samples.parquet")) == 4
    assert same_samples(ingested.parent / "killed", clean.run_path)


def _count_like_openai(tok):  # type: ignore[no-untyped-def]
    """A server-side token count: a real BPE tokenizer plus the chat format's overhead."""
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"]) + 3


def test_budget_stops_the_stage_and_a_bigger_budget_finishes_it(
    ingested: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distill.models import load_tokenizer

    monkeypatch.setenv("DISTILL_TEST_KEY", KEY)
    recipe_path = ingested.parent.parent / "recipe.yaml"
    price = ["teacher.price={input: 1000, output: 1000}"]  # $0.001 a token
    with serve() as (server, url):
        server.reply = scripted
        server.count_tokens = _count_like_openai(load_tokenizer("smollm2-135m-instruct"))
        capped = load_recipe(
            recipe_path,
            openai_overrides(url, "budget", concurrency=2) + price + ["generate.max_cost_usd=0.9"],
        )
        with pytest.raises(BudgetExceeded, match="raise generate.max_cost_usd"):
            run_pipeline(capped, until="generate")
        stage = RunFolder(capped.run_path).stage("generate")
        assert stage["status"] == "failed"
        assert 0 < stage["counts"]["cost_usd"] <= 0.9
        failures = read_rows(capped.run_path / "generate" / "failures.parquet")
        assert failures and all("budget" in f["reason"] for f in failures)
        first = server.answered.total()

        more = load_recipe(
            recipe_path,
            openai_overrides(url, "budget", concurrency=2) + price + ["generate.max_cost_usd=5"],
        )
        run = run_pipeline(more, only="generate")
    counts = run.stage("generate")["counts"]
    assert counts["samples"] == 4 and counts["cached_replies"] == first
    assert set(server.answered.values()) == {1} and server.answered.total() == 8
    # This run paid only for what the first one had not.
    assert counts["cost_usd"] < counts["cost_of_samples_usd"]


def test_estimate_is_within_ten_percent_of_measured_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the example corpus, the estimate's prompt tokens (4 characters a token) are
    within 10% of what a server counting with a real BPE tokenizer reports."""
    from distill.models import load_tokenizer
    from tests.conftest import CORPUS, write_recipe

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISTILL_TEST_KEY", KEY)
    path = write_recipe(
        tmp_path,
        f"name: est\ningest:\n  paths: ['{CORPUS}']\ngenerate:\n  max_chunks: 24\n"
        "  neighbours: 1\n  max_new_tokens: 96\n",
    )
    with serve() as (server, url):
        server.reply = scripted
        server.count_tokens = _count_like_openai(load_tokenizer("smollm2-135m-instruct"))
        recipe = load_recipe(path, openai_overrides(url, "est", concurrency=8))
        run_pipeline(recipe, until="ingest")
        est = estimate(recipe, RunFolder(recipe.run_path))
        cli = subprocess.run(
            [sys.executable, "-m", "distill", "estimate", str(path)]
            + ["--set", "generate.mode=batch", "--set", "teacher=openai:gpt-4o-mini"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert cli.returncode == 0, cli.stderr
        assert "price table" in cli.stdout and "batch API: half price" in cli.stdout
        total = next(ln for ln in cli.stdout.splitlines() if ln.startswith("total"))
        assert f"{est['total']['input_tokens']:,}" in total and len(server.requests) == 0
        run = run_pipeline(recipe, only="generate")
    stage = run.stage("generate")
    assert stage["counts"]["failures"] == 0 and len(server.requests) == est["total"]["requests"]
    measured = stage["tokens"]["input"]
    predicted = est["total"]["input_tokens"]
    assert abs(predicted - measured) / measured < 0.10, (predicted, measured)
    assert stage["tokens"]["output"] <= est["total"]["output_tokens_max"]


def test_generate_in_batch_mode_costs_half_and_shares_the_cache(
    ingested: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTILL_TEST_KEY", KEY)
    recipe_path = ingested.parent.parent / "recipe.yaml"
    price = ["teacher.price={input: 1000, output: 1000}"]
    with serve() as (server, url):
        server.reply = scripted
        online = load_recipe(recipe_path, openai_overrides(url, "online") + price)
        run_pipeline(online, until="generate")
        batch = load_recipe(
            recipe_path,
            openai_overrides(url, "batch")
            + price
            + ["generate.mode=batch", "generate.batch_poll_s=0.01"],
        )
        run = run_pipeline(batch, until="generate")
        assert len(server.batches) == 2  # questions, then answers
        # Switching mode keeps the cache: the batch run folder, online, asks nothing again.
        as_online = load_recipe(recipe_path, openai_overrides(url, "batch") + price)
        again = run_pipeline(as_online, only="generate", force={"generate"})
        assert len(server.batches) == 2
    counts = run.stage("generate")["counts"]
    assert counts["samples"] == 4 and counts["batches_submitted"] == 2
    assert counts["requests_sent"] == 8 and "half price" in counts["price"]
    online_cost = RunFolder(online.run_path).stage("generate")["counts"]["cost_usd"]
    assert counts["cost_usd"] == pytest.approx(online_cost / 2)
    assert again.stage("generate")["counts"]["cached_replies"] == 8
    assert same_samples(online.run_path, batch.run_path, "cost_usd")


def test_curates_api_judge_is_priced_and_its_spend_is_in_the_manifest(
    ingested: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Curate's judge comes from the teacher factory like every teacher, so an
    API judge is priced by the same rule and what it paid reaches the manifest; a
    rerun answers from the cache and pays nothing."""
    import json

    monkeypatch.setenv("DISTILL_TEST_KEY", KEY)
    verdict = {"groundedness": 5, "quality": 4, "reason": "every claim is in [1]"}
    judge = {"base_url": "", "api_key_env": "DISTILL_TEST_KEY", "ramp_s": 0}
    with serve() as (server, url):
        server.reply = lambda body: json.dumps(verdict)
        judge["base_url"] = url
        flow = ", ".join(
            f"{k}: {v!r}" if isinstance(v, str) else f"{k}: {v}" for k, v in judge.items()
        )
        overrides = [
            "name=judged-api",
            "curate.judge=openai:gpt-4o-mini",
            f"curate.judge_options={{{flow}}}",
        ]
        recipe = load_recipe(ingested.parent.parent / "recipe.yaml", overrides)
        run = run_pipeline(recipe, until="curate")
        counts = run.stage("curate")["counts"]
        judged = len(server.requests)
        again = run_pipeline(recipe, only="curate", force={"curate"})
    # The fake server bills 11 input and 7 output tokens a call at gpt-4o-mini's price.
    per_call = (11 * 0.15 + 7 * 0.60) / 1e6
    assert judged > 0 and counts["judge_cost_usd"] > 0
    assert counts["judge_cost_usd"] == pytest.approx(judged * per_call, abs=1e-6)  # 6 decimals
    assert counts["judge_price"].startswith("price table")
    assert again.stage("curate")["counts"]["judge_cost_usd"] == 0.0  # from the cache
    assert len(server.requests) == judged
