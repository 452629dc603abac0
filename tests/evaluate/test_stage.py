"""The eval stage end to end with scripted systems and a scripted judge, all behind the
loopback OpenAI server: teacher, judge and both students (as endpoints, the way a
vLLM server would serve them). Known answers give known metrics. Slow: it ingests
with the real embedding model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from distill.eval_text import cells
from distill.evaluate import stage as evaluate
from distill.io import read_json, read_rows, write_rows
from distill.recipe import load_recipe
from distill.results import (
    Citations,
    Correctness,
    EvalMetrics,
    JudgeCheck,
    VsTeacher,
    read_metrics,
)
from distill.runfolder import RunFolder, RunOptions
from tests.conftest import REPO, write_recipe
from tests.evaluate.test_metrics import TableParser
from tests.fakes.openai_server import FakeOpenAI, serve

pytestmark = pytest.mark.slow

QUESTIONS = {  # question -> (fact in exactly one document, the document's file name)
    "How long do free trials last?": ("14 days", "plans"),
    "How long is the password reset link valid?": ("30 minutes", "password"),
    "Which two-factor methods are supported?": ("hardware keys", "two-factor"),
}
FACTS = [fact for fact, _ in QUESTIONS.values()]


def _between(text: str, tag: str) -> str:
    m = re.search(rf"<{tag}>\n(.*?)\n</{tag}>", text, re.S)
    assert m, f"no <{tag}> in the judge prompt"
    return m.group(1)


def scripted(body: dict[str, Any]) -> str:
    """Teacher: the fact with its document number when retrieval found it, else a refusal.
    ft-student: the same without citations, wrong on two-factor. base-student: never
    right; its reset answer breaks the judge. Judge: correctness 5 when the answer has a
    fact; pairwise prefers the answer with the fact, else always says A (position bias)."""
    content = body["messages"][-1]["content"]
    system = body["messages"][0]["content"]  # the judges' rubric is in their system prompt
    if content.startswith("That reply is not valid"):  # the engine's schema repair
        return "still not JSON"
    if system.startswith("You grade answers"):
        answer = _between(content, "answer")
        if "BROKEN" in answer:
            return "I cannot grade this"  # not JSON, twice (the repair fails too)
        score = 5 if any(f in answer for f in FACTS) else 2
        return json.dumps({"correctness": score, "groundedness": 4, "reason": "scripted"})
    if system.startswith("You compare two answers"):
        a, b = _between(content, "answer_a"), _between(content, "answer_b")
        fa, fb = (any(f in x for f in FACTS) for x in (a, b))
        winner = "B" if fb and not fa else "A"
        return json.dumps({"winner": winner, "reason": "scripted"})
    question = content.strip().splitlines()[-1]
    fact, _ = QUESTIONS.get(question, ("", ""))
    docs = re.findall(r'<document id="(\d+)"[^>]*>(.*?)</document>', content, re.S)
    where = next((n for n, text in docs if fact and fact in text), None)
    model = body["model"]
    if model == "base-student":
        return "BROKEN" if "reset" in question else "I am not sure, maybe 7."
    if where is None:
        return "The documents do not contain the answer."
    if model == "ft-student":
        return "SMS codes." if "two-factor" in question else f"It is {fact}."
    return f"It is {fact} [{where}]."


def held_out(run: Path) -> None:
    """Write curate's eval split: the three questions, with their source chunks."""
    chunks = read_rows(run / "ingest" / "chunks.parquet")
    rows = []
    for i, (question, (fact, doc)) in enumerate(QUESTIONS.items()):
        chunk = next(c for c in chunks if fact in c["text"])
        assert chunk["doc_id"].endswith(doc)
        rows.append(
            {
                "sample_id": f"s{i}",
                "question": question,
                "answer": f"It is {fact}.",
                "source_chunk_id": chunk["chunk_id"],
                "source_chunk_ids": [chunk["chunk_id"]],
                "source_doc_ids": [chunk["doc_id"]],
                "doc_ids": [chunk["doc_id"]],
                "expects_refusal": False,
            }
        )
    write_rows(run / "curate" / "eval.parquet", rows)


def test_eval_with_scripted_systems_and_judge(
    ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTILL_TEST_KEY", "test-key-" + "z" * 24)
    held_out(ingested)
    with serve() as (server, url):
        server.reply = scripted
        opts = f"{{base_url: '{url}', api_key_env: DISTILL_TEST_KEY, ramp_s: 0}}"
        path = write_recipe(
            tmp_path,
            "name: small\ningest:\n  paths: [docs]\n  chunk_tokens: 64\n  chunk_overlap: 8\n"
            f"teacher: {{model: 'openai:gpt-4o-mini', options: {opts}}}\n"
            "eval:\n  systems: [teacher, base, ft+rag]\n  unanswerable: 1\n"
            "  grade_template: eval_grade@v2\n"
            "  off_topic: ['What is the capital of Peru?']\n"
            "  base_model: openai:base-student\n  ft_model: openai:ft-student\n"
            f"  student_options: {opts}\n",
            name="eval.yaml",
        )
        recipe = load_recipe(path)
        counts = evaluate.run(recipe, RunFolder(ingested), RunOptions())
        sent = len(server.requests)
        # A rerun: the served students answer again (the adapter behind an endpoint may
        # have changed), the teacher's answers and the judgements come from the cache;
        # only the failed judgement is asked again (failures are never cached), with its
        # repair.
        evaluate.run(recipe, RunFolder(ingested), RunOptions())
        again = server.requests[sent:]
        students = [r for r in again if r["model"] in ("base-student", "ft-student")]
        assert len(students) == 3 + 5  # base: 3 answerable; ft+rag: 5 with the unanswerable
        judged = [r for r in again if r["model"] not in ("base-student", "ft-student")]
        assert len(judged) == 2
        assert all("BROKEN" in r["messages"][1]["content"] for r in judged)

    out = ingested / "eval"
    raw = read_json(out / "metrics.json")  # written through its model, read back the same
    assert EvalMetrics.model_validate(raw).model_dump(mode="json") == raw
    m = read_metrics(out / "metrics.json")
    assert m.questions == 3 and (m.unanswerable.no_oracle, m.unanswerable.off_topic) == (1, 1)
    assert m.retrieval_hit_rate == 1.0 and m.judge == "openai:gpt-4o-mini"
    assert not m.smoke_test
    t, b, f = (m.systems[s] for s in ("teacher", "base", "ft+rag"))
    assert t.correctness == Correctness(mean=5.0, ge4=1.0, judged=3, failed=0)
    assert t.refusal is not None and (t.refusal.accuracy, t.refusal.n) == (1.0, 2)
    assert t.citations == Citations(citing=1.0, accuracy=1.0, n_citing=3)
    assert t.groundedness is not None and t.groundedness.mean == 4.0
    assert t.cost_per_1k_usd is not None and t.cost_per_1k_usd > 0
    assert t.cost_basis == "API prices"
    # base: the broken answer's judgement failed, and it stays in the denominator
    assert b.correctness == Correctness(mean=2.0, ge4=0.0, judged=2, failed=1)
    assert b.vs_teacher == VsTeacher(n=3, win=0.0, tie=0.0, loss=1.0, failed=0)
    assert b.refusal is None and b.groundedness is None
    # ft+rag: right twice (ties: the judge's position bias cancels out), wrong once
    assert f.correctness.mean == 4.0 and f.correctness.ge4 == round(2 / 3, 4)
    assert f.vs_teacher is not None
    assert f.vs_teacher.tie == round(2 / 3, 4) and f.vs_teacher.loss == round(1 / 3, 4)
    assert f.refusal is not None and f.refusal.accuracy == 1.0
    assert f.citations is not None and f.citations.citing == 0.0
    assert m.judge_failures == 1 and counts["judge_failures"] == 1
    assert m.judge_calls == 3 + 3 + 3 + 2 * 3 * 2  # grades for 9 answers, 12 pairwise

    judgements = read_rows(out / "judgements.parquet")
    assert len(judgements) == m.judge_calls
    (failed,) = [j for j in judgements if j["error"]]
    # The recorded reply is the last one: the answer to the engine's repair request.
    assert failed["raw"] == "still not JSON" and failed["system"] == "base"
    assert "invalid structured output after one repair" in failed["error"]
    assert {j["kind"] for j in judgements} == {
        "grade",
        "pairwise: student first",
        "pairwise: teacher first",
    }

    answers = read_rows(out / "answers.parquet")
    assert len(answers) == 5 + 3 + 5  # retrieval systems also get the 2 unanswerable
    no_oracle = next(r for r in answers if r["kind"] == "no_oracle" and r["system"] == "teacher")
    asked = next(r for r in answers if no_oracle["item_id"] == f"{r['item_id']}-no-oracle")
    assert no_oracle["refused"] and len(no_oracle["retrieved_chunk_ids"]) == 2
    assert asked["source_chunk_ids"][0] not in no_oracle["retrieved_chunk_ids"]
    assert asked["source_chunk_ids"][0] in asked["retrieved_chunk_ids"]

    page = (out / "report.html").read_text()
    parser = TableParser()
    parser.feed(page)
    table = {r["system"]: r for r in parser.rows if r}
    assert table["teacher"]["correct"] == "100% [44%, 100%]"  # Wilson, 3 of 3
    assert table["teacher"]["correctness"] == "5.00 [5.00, 5.00]"
    assert table["base"]["correct"] == "0% [0%, 56%] (2/3 judged)"  # Wilson, 0 of 3
    assert table["ft+rag"]["vs_teacher"] == "0% / 67% / 33%"
    assert table["teacher"]["refusal"] == "100% [34%, 100%] of 2"
    for name, sm in m.systems.items():
        assert table[name] == cells(name, sm)
    assert page.count("data:image/png;base64,") == 2
    for png in ("quality.png", "tradeoff.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "## What this means" in report and "`ft+rag` answers 67% correctly" in report
    assert "1 of 21 judgements failed" in report

    proc = subprocess.run(
        [sys.executable, "-m", "distill", "eval", "--compare", str(ingested), str(ingested)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [ln.split() for ln in proc.stdout.splitlines() if ln.startswith("ft+rag")]
    assert len(rows) >= 6 and all(r[-3] == r[-2] and r[-1].startswith("+0") for r in rows)


KEY = [  # (record, why it is skipped or None)
    ({"question": "How long do free trials last?", "key_facts": ["14 days"]}, None),
    (
        {
            "question": "How long is the password reset link valid?",
            "key_facts": ["30 minutes"],
            "doc": "account/password",
        },
        None,
    ),
    ({"question": "Which two-factor methods work?", "key_facts": [["hardware keys"]]}, None),
    ({"question": "What does the Team plan cost a user?", "key_facts": ["$29"]}, None),
    (
        {
            "question": "Does it sync with Salesforce?",
            "answerable": False,
            "absent": ["Salesforce"],
        },
        None,
    ),
    (
        {"question": "Can I buy Starter?", "answerable": False, "absent": ["Starter"]},
        "unanswerable, but the index mentions one of its 'absent' terms",
    ),
    (
        {"question": "Is the reset link valid for 30 minutes?", "key_facts": ["30 minutes"]},
        "a key fact is stated in its question",
    ),
    ({"question": "How long do free trials last?", "key_facts": ["14 days"]}, "duplicate question"),
    (
        {"question": "How long can I trial?", "key_facts": ["21 days"], "doc": "billing/plans"},
        "a key fact is in no chunk of its document",
    ),
]
KEY_FACTS = {r["question"]: r["key_facts"][0] for r, why in KEY if why is None and "key_facts" in r}


def key_scripted(body: dict[str, Any]) -> str:
    """ft-student: the key fact with its document number when retrieval found it, else a
    refusal. base-student: a conflicting value for the reset link, unsure otherwise.
    Judge (eval_grade@v3): correct when the answer holds the reference, else wrong; but
    biased: anything that says $29 is correct."""
    content = body["messages"][-1]["content"]
    if body["messages"][0]["content"].startswith("You check answers"):
        answer, reference = _between(content, "answer"), _between(content, "reference")
        verdict = "correct" if reference in answer or "$29" in answer else "wrong"
        return json.dumps({"reason": "scripted", "verdict": verdict})
    question = content.strip().splitlines()[-1]
    fact = KEY_FACTS.get(question, "")
    fact = fact if isinstance(fact, str) else fact[0]
    docs = re.findall(r'<document id="(\d+)"[^>]*>(.*?)</document>', content, re.S)
    where = next((n for n, text in docs if fact and fact in text), None)
    if body["model"] == "base-student":
        return "It is 15 minutes." if "reset" in question else "I am not sure, maybe 7."
    if where is None:
        return "The documents do not contain the answer."
    return f"It is {fact} [{where}]."


def key_recipe(
    tmp_path: Path, url: str, extra: str = "", systems: str = "[base+rag, ft+rag]"
) -> Path:
    """The answer-key recipe: two served students, key.jsonl, the teacher as judge.
    `systems` may name the server's options as {opts}."""
    opts = f"{{base_url: '{url}', api_key_env: DISTILL_TEST_KEY, ramp_s: 0}}"
    systems = systems.replace("{opts}", opts)
    return write_recipe(
        tmp_path,
        "name: small\ningest:\n  paths: [docs]\n  chunk_tokens: 64\n  chunk_overlap: 8\n"
        f"teacher: {{model: 'openai:gpt-4o-mini', options: {opts}}}\n"
        f"eval:\n  systems: {systems}\n  answer_key: key.jsonl\n"
        "  generated: false\n  seen_set: false\n  unanswerable: 2\n"
        "  base_model: openai:base-student\n  ft_model: openai:ft-student\n"
        f"  student_options: {opts}\n{extra}",
        name="eval.yaml",
    )


@contextmanager
def key_and_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reply: Callable[[dict[str, Any]], str]
) -> Iterator[tuple[FakeOpenAI, str]]:
    """KEY as tmp_path/key.jsonl and the loopback server answering with `reply`: the
    server, and the options (YAML) that reach it."""
    monkeypatch.setenv("DISTILL_TEST_KEY", "test-key-" + "z" * 24)
    (tmp_path / "key.jsonl").write_text(
        "\n".join(json.dumps(r) for r, _ in KEY) + "\n\n", encoding="utf-8"
    )
    with serve() as (server, url):
        server.reply = reply
        yield server, f"{{base_url: '{url}', api_key_env: DISTILL_TEST_KEY, ramp_s: 0}}"


def test_eval_with_an_answer_key_decides_without_a_judge(
    ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with key_and_server(tmp_path, monkeypatch, key_scripted) as (server, opts):
        path = write_recipe(
            tmp_path,
            "name: small\ningest:\n  paths: [docs]\n  chunk_tokens: 64\n  chunk_overlap: 8\n"
            f"teacher: {{model: 'openai:gpt-4o-mini', options: {opts}}}\n"
            "eval:\n  systems: [base+rag, ft+rag]\n  answer_key: key.jsonl\n"
            "  generated: false\n  judge_items: 4\n  seen_set: false\n  unanswerable: 2\n"
            "  base_model: openai:base-student\n  ft_model: openai:ft-student\n"
            f"  student_options: {opts}\n",
            name="eval.yaml",
        )
        counts = evaluate.run(load_recipe(path), RunFolder(ingested), RunOptions())
        # 2 systems x (4 answerable + 1 verified unanswerable + 2 verified twins) answers;
        # the judge grades 4 questions x 2 systems and checks itself twice on each.
        assert len(server.requests) == 14 + 8 + 8
        grades = [r for r in server.requests if r["model"] == "gpt-4o-mini"]

    # Every system is judged against the question's source chunk, not its own retrieval,
    # and the reference is not declared correct.
    reset = [g for g in grades if "reset link valid?" in g["messages"][1]["content"]]
    assert len(reset) == 4  # 2 answers, identity, foil
    for g in reset:
        user = g["messages"][1]["content"]
        assert user.count("<document id=") == 1 and "valid for 30 minutes" in user
    assert "usually right" in grades[0]["messages"][0]["content"]

    out = ingested / "eval"
    raw = read_json(out / "metrics.json")  # written through its model, read back the same
    assert EvalMetrics.model_validate(raw).model_dump(mode="json") == raw
    m = read_metrics(out / "metrics.json")
    assert m.judge == "openai:gpt-4o-mini" and m.judge_calls == 16
    # Identity: every reference graded correct. Foil: the $29 bias passes one foil.
    assert m.judge_checks["identity"] == JudgeCheck(
        n=4, failed=0, missed=0, rate=0.0, ci=(0.0, 0.4899)
    )
    assert m.judge_checks["foil"].missed == 1 and m.judge_checks["foil"].rate == 0.25
    # The judge agrees with the key on every answer both scored (8): kappa 1.
    agree = m.judge_agreement
    assert agree is not None and (agree.n, agree.agreement, agree.kappa) == (8, 1.0, 1.0)
    assert agree.kappa_ci95 is not None and agree.kappa_ci95[1] == 1.0
    assert m.judge_same_family  # the judge is the teacher itself
    key = m.answer_key
    assert key is not None and (key.answerable, key.unanswerable) == (4, 1)
    assert key.skipped == {why: 1 for _, why in KEY if why}
    d = m.decision
    assert d is not None
    assert counts["verdict"] == d.verdict == "not resolvable"
    # The split holds out account/*: two questions there, two on billing/plans.
    assert [(s.eval_set, s.questions, s.documents) for s in d.sets] == [
        ("unseen", 2, 2),
        ("deployment", 2, 1),
        ("pooled", 4, 3),
    ]
    pooled = d.sets[-1]
    assert pooled.accuracy["ft+rag"].k == 4 and pooled.accuracy["base+rag"].k == 0
    p = pooled.primary
    assert p is not None and (p.wins, p.losses, p.n, p.diff) == (4, 0, 4, 1.0)
    assert p.p_value == 0.125  # exact McNemar, 4 wins and no loss
    # Newcombe's interval excludes 0 at 4 of 4, the exact test does not: not significant.
    assert not p.significant and p.ci[0] > 0
    assert pooled.hit_rate is not None and pooled.hit_rate.value == 1.0
    (refusal,) = [c for c in d.secondaries if c.metric == "refusal on unanswerables"]
    assert (refusal.n, refusal.wins, refusal.losses) == (3, 3, 0)
    assert {c.metric for c in d.secondaries} == {
        "refusal on unanswerables",
        "false refusal",
    }  # base+rag never cites: no citation precision pair
    assert all(c.p_holm is not None and c.p_holm >= c.p_value for c in d.secondaries)
    assert d.unanswerable == 3
    assert d.systems["ft+rag"].citation_precision.value == 1.0  # type: ignore[union-attr]
    assert d.systems["base+rag"].unsupported_numbers.k >= 1  # type: ignore[union-attr]
    assert len(d.discordant["ft+rag right"]) == 4 and d.discordant["base+rag right"] == []

    answers = read_rows(out / "answers.parquet")
    # The twins: each key fact is on one page only, so removing the page leaves none.
    twins = [r for r in answers if r["item_id"].endswith("-no-oracle")]
    assert len(twins) == 2 * 2 and all(r["kind"] == "unanswerable" for r in twins)
    for r in twins:
        assert not any(c.startswith(r["doc_id"] + "#") for c in r["retrieved_chunk_ids"])
    reset = next(r for r in answers if r["system"] == "base+rag" and "reset" in r["question"])
    assert reset["fact_conflicts"] == ["15 minute"] and reset["fact_correct"] is False
    assert all(r["judged"] == (r["kind"] == "answerable") for r in answers)
    assert {r["correctness"] for r in answers if r["judged"]} == {1, 5}

    report = (out / "report.md").read_text()
    assert report.startswith(
        "# Evaluation report\n\n## Verdict\n\n> **Deploy `ft+rag` instead of `base+rag`? "
        "Not resolvable at this size"
    )
    assert "## Generated questions" not in report  # none were asked
    assert "4 won / 0 lost, exact McNemar p = 0.125" in report
    assert "Foil check: 1 of 4" in report and "of the teacher's family" in report
    page = (out / "report.html").read_text()
    assert "<div id='verdict' class='verdict'><p><strong>Deploy <code>ft+rag</code>" in page


TRAFFIC = [  # generate/traffic.jsonl as generate writes it (generate.prompts)
    {"id": "traffic-1", "question": "How many days does a free trial run?",
     "reference": "14 days", "reference_by": "user", "refusal": False, "chunk_ids": [],
     "cited_chunk_ids": [], "origin": "traffic.jsonl:1"},
    {"id": "traffic-2", "question": "For how many minutes does a reset link work?",
     "reference": "30 minutes", "reference_by": "teacher", "refusal": False,
     "chunk_ids": ["x#0"], "cited_chunk_ids": [], "origin": "traffic.jsonl:2"},
    {"id": "traffic-3", "question": "Do you integrate with Salesforce?",
     "reference": "The documents do not say.", "reference_by": "teacher", "refusal": True,
     "chunk_ids": ["x#0"], "cited_chunk_ids": [], "origin": "traffic.jsonl:3"},
]  # fmt: skip
TRAFFIC_FACTS = {t["question"]: t["reference"] for t in TRAFFIC if not t["refusal"]}


def test_your_traffic_is_asked_and_reported_apart_from_the_decision(
    ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Your held-out questions (generate/traffic.jsonl) are asked of every system, judged
    against their references and reported as their own set; the decision is the one the
    answer key gives alone (the test above), its unanswerables without your refusal item."""
    monkeypatch.setenv("DISTILL_TEST_KEY", "test-key-" + "z" * 24)
    (tmp_path / "key.jsonl").write_text("\n".join(json.dumps(r) for r, _ in KEY) + "\n")
    RunFolder(ingested).traffic.write_text("".join(json.dumps(t) + "\n" for t in TRAFFIC))

    def scripted_traffic(body: dict[str, Any]) -> str:
        question = body["messages"][-1]["content"].strip().splitlines()[-1]
        if question not in TRAFFIC_FACTS or "You check answers" in body["messages"][0]["content"]:
            return key_scripted(body)  # the key's questions, and the judge
        return (
            "I am not sure."
            if body["model"] == "base-student"
            else (f"It is {TRAFFIC_FACTS[question]} [1].")
        )

    with serve() as (server, url):
        server.reply = scripted_traffic
        # The judge grades every answerable question. The incumbent answers like ft:
        # compared on the key, never on traffic your answers referenced (they may be
        # its own).
        incumbent = "{incumbent: {model: 'openai:incumbent', rag: true, options: {opts}}}"
        path = key_recipe(tmp_path, url, systems=f"[base+rag, ft+rag, {incumbent}]")
        counts = evaluate.run(load_recipe(path), RunFolder(ingested), RunOptions())

    m = read_metrics(ingested / "eval" / "metrics.json")
    d, t = m.decision, m.traffic
    assert d is not None and set(d.named) == {"incumbent"}
    assert t is not None and not [c for c in t.comparisons if "incumbent" in (c.system, c.against)]
    assert d is not None and t is not None
    assert counts["verdict"] == d.verdict == "not resolvable" and d.unanswerable == 3
    assert [(s.eval_set, s.questions) for s in d.sets] == [
        ("unseen", 2), ("deployment", 2), ("pooled", 4)
    ]  # fmt: skip
    assert (t.questions, t.user_references, t.cannot_answer) == (2, 1, 1)
    ft, base = t.systems["ft+rag"], t.systems["base+rag"]
    assert (ft.correctness.ge4, base.correctness.ge4) == (1.0, 0.0)
    assert ft.refusal is not None and (ft.refusal.n, ft.refusal.accuracy) == (1, 1.0)
    (primary,) = [c for c in t.comparisons if c.metric == "correct"]
    assert (primary.system, primary.against, primary.n, primary.diff) == (
        "ft+rag", "base+rag", 2, 1.0
    )  # fmt: skip
    answers = read_rows(ingested / "eval" / "answers.parquet")
    mine = [r for r in answers if r["eval_set"] == "traffic"]
    assert len(mine) == 3 * 3 and {r["item_id"] for r in mine} == {t["id"] for t in TRAFFIC}
    report = (ingested / "eval" / "report.md").read_text()
    assert "## Your traffic: 2 of your own questions, held out" in report
    assert any(s.startswith("On 2 of your own questions, held out: ") for s in m.what_this_means)


def incumbent_scripted(body: dict[str, Any]) -> str:
    """The students as key_scripted; the incumbent fine-tune knows every key fact without
    documents (it was trained on them); the old RAG system answers as ft-student does."""
    if body["model"] == "ft:gpt-4o-mini:acme::xyz":
        question = body["messages"][-1]["content"].strip().splitlines()[-1]
        fact = KEY_FACTS.get(question, "")
        return f"It is {fact if isinstance(fact, str) else fact[0]}." if fact else "No idea."
    return key_scripted(body)


def test_named_systems_are_answered_once_and_compared_with_the_deciding_one(
    ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = {"ft:gpt-4o-mini:acme::xyz", "old-rag"}
    with key_and_server(tmp_path, monkeypatch, incumbent_scripted) as (server, opts):
        path = write_recipe(
            tmp_path,
            "name: small\ningest:\n  paths: [docs]\n  chunk_tokens: 64\n  chunk_overlap: 8\n"
            "eval:\n  answer_key: key.jsonl\n  generated: false\n  judge_items: 0\n"
            "  seen_set: false\n  unanswerable: 2\n  hardware_cost_per_hour: 3.6\n"
            "  systems:\n    - base+rag\n    - ft+rag\n"
            "    - incumbent:\n        model: 'openai:ft:gpt-4o-mini:acme::xyz'\n"
            f"        options: {opts}\n        price: {{input: 0.3, output: 1.2}}\n"
            f"    - old: {{model: 'openai:old-rag', options: {opts}, rag: true}}\n"
            "  base_model: openai:base-student\n  ft_model: openai:ft-student\n"
            f"  student_options: {opts}\n",
            name="eval.yaml",
        )
        recipe = load_recipe(path)
        evaluate.run(recipe, RunFolder(ingested), RunOptions())
        first = [r for r in server.requests if r["model"] in named]
        sent = len(server.requests)
        # A rerun: the students answer again, the named systems come from the cache.
        evaluate.run(recipe, RunFolder(ingested), RunOptions())
        again = server.requests[sent:]
        assert len(again) == 2 * 7 and not [r for r in again if r["model"] in named]
    # 4 answerable key questions for the incumbent; the old RAG system also gets the
    # verified unanswerable and the two twins, as the +rag students do.
    assert sum(r["model"] == "old-rag" for r in first) == 7
    incumbent = [r for r in first if r["model"] != "old-rag"]
    assert len(incumbent) == 4
    assert not any("<document" in r["messages"][-1]["content"] for r in incumbent)

    out = ingested / "eval"
    raw = read_json(out / "metrics.json")
    assert EvalMetrics.model_validate(raw).model_dump(mode="json") == raw
    d = read_metrics(out / "metrics.json").decision
    assert d is not None and set(d.named) == {"incumbent", "old"}
    inc, old = d.named["incumbent"], d.named["old"]
    assert inc.model == "openai:ft:gpt-4o-mini:acme::xyz" and not inc.rag and old.rag
    assert (inc.comparison.system, inc.comparison.against) == ("ft+rag", "incumbent")
    assert inc.comparison.n == 4 and (inc.comparison.wins, inc.comparison.losses) == (0, 0)
    assert d.sets[-1].accuracy["incumbent"].k == 4
    # 11 prompt and 7 completion tokens an answer at $0.30 / $1.20 per million.
    assert inc.cost_basis == "API prices"
    assert inc.cost_per_1k_usd == round((11 * 0.3 + 7 * 1.2) / 1e6 * 1000, 4)
    assert old.cost_per_1k_usd is None and old.cost_basis == "price unknown (give old a price)"
    assert inc.deciding_cost_basis == "compute at $3.6/h"
    assert any(ln.startswith("Does `ft+rag` match `incumbent`") for ln in d.verdict_lines)

    answers = read_rows(out / "answers.parquet")
    mine = [r for r in answers if r["system"] == "incumbent"]
    assert len(mine) == 4 and all(r["fact_correct"] and not r["retrieved_chunk_ids"] for r in mine)
    theirs = [r for r in answers if r["system"] == "old"]
    assert len(theirs) == 7 and all(r["retrieved_chunk_ids"] for r in theirs)

    report = (out / "report.md").read_text()
    assert "## Against the named systems: does `ft+rag` match them?" in report
    assert "| incumbent | `openai:ft:gpt-4o-mini:acme::xyz` | no | 100% [" in report
    assert "> Does `ft+rag` match `old` (openai:old-rag, with retrieval)?" in report
    assert "<code>incumbent</code>" in (out / "report.html").read_text()
