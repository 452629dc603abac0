"""The quickstart recipe, scaled down, with the real offline models (slow)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from distill.io import read_json, read_rows
from distill.results import EvalMetrics, read_metrics
from tests.conftest import REPO

pytestmark = pytest.mark.slow

SCALED_DOWN = [
    # SmolLM2 teaches (fast, through llama.cpp); the quickstart's own judge grades.
    "teacher=local:smollm2-135m-instruct",
    "generate.max_chunks=16",
    "split.eval_fraction=0.5",
    "train.max_steps=3",
    "train.batch_size=4",
    "split.seen_eval_fraction=0.15",  # the generated seen-documents set stays covered
    "eval.max_questions=3",
    "eval.systems=[teacher, base, base+rag, ft+rag]",
    "eval.generated=true",
    "eval.judge_items=2",
    "eval.batch_size=3",
    "eval.unanswerable=1",
    "eval.off_topic=['What is the boiling point of ethanol?']",
]
STAGES = ["ingest", "generate", "curate", "review", "train", "eval", "publish"]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    cwd = tmp_path_factory.mktemp("e2e")
    args = [sys.executable, "-m", "distill", "run", str(REPO / "recipes" / "quickstart.yaml")]
    for s in SCALED_DOWN:
        args += ["--set", s]
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rerun = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    return cwd / "runs" / "quickstart", rerun.stderr


def test_manifest_records_every_stage(quickstart: tuple[Path, str]) -> None:
    run, _ = quickstart
    m = read_json(run / "manifest.json")
    assert [s for s in STAGES if m["stages"][s]["status"] == "done"] == STAGES
    assert m["stages"]["ingest"]["counts"]["documents"] == 20
    assert m["stages"]["generate"]["tokens"]["output"] > 0
    assert m["models"]["teacher"] == "local:smollm2-135m-instruct"
    assert m["versions"]["trl"] and m["recipe"]["generate"]["max_chunks"] == 16
    assert all(len(m["stages"][s]["fingerprint"]) == 64 for s in STAGES)
    files = m["stages"]["ingest"]["inputs"]["files"]
    assert len(files) == 20 and all(len(h) == 64 for h in files.values())
    assert set(m["stages"]["generate"]["inputs"]["templates"]) == {
        "qa_question@v2",
        "instruction@v1",
        "multi_hop_question@v1",
        "follow_up@v1",
        "grounded_answer@v1",
    }


def test_rerun_skips_every_unchanged_stage(quickstart: tuple[Path, str]) -> None:
    _, log = quickstart
    for stage in STAGES:
        assert re.search(rf"• {stage}\s+unchanged, skipped", log), stage
    assert "✓" not in log  # nothing ran again


def test_samples_are_grounded_in_recorded_chunks(quickstart: tuple[Path, str]) -> None:
    run, _ = quickstart
    chunk_ids = {c["chunk_id"] for c in read_rows(run / "ingest" / "chunks.parquet")}
    samples = read_rows(run / "generate" / "samples.parquet")
    failures = read_rows(run / "generate" / "failures.parquet")
    # Every job ends as a sample or as failure rows.
    assert len(samples) + len({f["request_id"] for f in failures}) == 16
    assert len(samples) >= 5
    texts = {c["chunk_id"]: c["text"] for c in read_rows(run / "ingest" / "chunks.parquet")}
    for s in samples:
        assert set(s["chunk_ids"]) <= chunk_ids
        assert (s["source_chunk_id"] in s["chunk_ids"]) == s["oracle_in_context"]
        assert s["expects_refusal"] == (s["task"] == "raft" and not s["oracle_in_context"])
        context = s["messages"][1]["content"]
        for n, cid in enumerate(s["chunk_ids"], start=1):  # numbered documents, in order
            assert f'<document id="{n}"' in context and texts[cid][:40] in context
        assert s["messages"][2] == {"role": "assistant", "content": s["answer"]}
        assert s["template"].startswith("qa_question@v2+instruction@v1")
    assert sum(bool(s["question"]) and bool(s["answer"]) for s in samples) >= 5


def test_no_training_row_carries_a_held_out_document(quickstart: tuple[Path, str]) -> None:
    """The leak-free invariant, over every row: no chunk a training row carries (source,
    neighbours, distractors, partner) names an eval document, in curate's output and in
    the published dataset, and the card says what was checked."""
    from datasets import load_dataset

    run, _ = quickstart
    split = read_json(run / "generate" / "split.json")
    eval_docs, train_docs = set(split["eval_docs"]), set(split["train_docs"])
    assert eval_docs and train_docs and not eval_docs & train_docs
    assert len(eval_docs | train_docs) == 20  # every document has a side
    doc_of = {c["chunk_id"]: c["doc_id"] for c in read_rows(run / "ingest" / "chunks.parquet")}
    train = read_rows(run / "curate" / "train.parquet")
    held = read_rows(run / "curate" / "eval.parquet")
    seen = read_rows(run / "curate" / "eval_seen.parquet")
    assert train and held
    for r in train + seen:
        carried = {doc_of[c] for c in r["chunk_ids"] + r["source_chunk_ids"]}
        assert not carried & eval_docs, r["sample_id"]
    for r in held:
        assert {doc_of[c] for c in r["source_chunk_ids"]} <= eval_docs
    # Every generated sample, not only the kept ones: generation itself never leaks.
    for r in read_rows(run / "generate" / "samples.parquet"):
        side = eval_docs if r["side"] == "eval" else train_docs
        assert {doc_of[c] for c in r["chunk_ids"] + r["source_chunk_ids"]} <= side
    published = load_dataset(str(run / "publish" / "dataset"))
    for r in published["train"]:
        assert not {doc_of[c] for c in r["chunk_ids"]} & eval_docs
    card = " ".join((run / "publish" / "dataset" / "README.md").read_text().split())
    assert "every chunk of context inside their `messages` comes from training documents" in card


def test_adapter_loads_with_peft_and_changes_the_model(quickstart: tuple[Path, str]) -> None:
    import torch
    from peft import PeftModel

    from distill.models import load_causal_lm

    run, _ = quickstart
    adapter = run / "publish" / "adapter"
    assert (adapter / "adapter_model.safetensors").stat().st_size > 100_000
    config = read_json(adapter / "adapter_config.json")
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    model, tok = load_causal_lm("smollm2-135m-instruct")
    ids = tok("Question: How long do free trials last?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        base_logits = model(ids).logits
        tuned = PeftModel.from_pretrained(model, str(adapter))
        tuned_logits = tuned(ids).logits
    assert (tuned_logits - base_logits).abs().max().item() > 1e-4


def test_eval_decides_on_the_answer_key_and_judges_a_sample(
    quickstart: tuple[Path, str],
) -> None:
    from distill.eval_text import cells
    from tests.evaluate.test_metrics import TableParser

    run, _ = quickstart
    answers = read_rows(run / "eval" / "answers.parquet")
    raw = read_json(run / "eval" / "metrics.json")
    assert EvalMetrics.model_validate(raw).model_dump(mode="json") == raw
    metrics = read_metrics(run / "eval" / "metrics.json")
    # The shipped key, whole; capped at 3 questions a set (spread over documents).
    key = metrics.answer_key
    assert key is not None
    # The shipped key, whole, less any question a training row also asks.
    assert key.answerable + key.unanswerable + sum(key.skipped.values()) == 170
    assert set(key.skipped) <= {"asked in training (decontaminated)"}
    assert key.unanswerable == 30 and key.generated == 0
    d = metrics.decision
    assert d is not None
    assert [(s.eval_set, s.questions) for s in d.sets] == [
        ("unseen", 3),
        ("deployment", 3),
        ("pooled", 6),
    ]
    assert d.sets[-1].primary is not None and d.sets[-1].primary.n == 6
    assert d.verdict in ("gain", "loss", "no harm, behaviour gained", "not resolvable")
    assert d.teacher is not None and d.teacher_within_margin is not None
    # Three from the key, one verified twin (eval.unanswerable=1), one off-topic question.
    assert d.unanswerable == 3 + 1 + 1
    split = read_json(run / "generate" / "split.json")
    for a in answers:
        if a["key_facts"] != "[]":
            on_held = a["doc_id"] in split["eval_docs"]
            assert (a["eval_set"] == "unseen") == on_held, a["item_id"]
    # The generated questions: the judged, descriptive tables.
    n = metrics.questions
    assert 1 <= n <= 3
    assert (metrics.unanswerable.no_oracle, metrics.unanswerable.off_topic) == (1, 1)
    assert sorted(metrics.systems) == ["base", "base+rag", "ft+rag", "teacher"]
    generated = [
        a
        for a in answers
        if a["eval_set"] == "unseen" and a["key_facts"] == "[]" and a["kind"] != "unanswerable"
    ]
    assert len(generated) == 3 * (n + 2) + n  # retrieval systems get the unanswerable too
    seen = [a for a in answers if a["eval_set"] == "seen"]
    assert {a["system"] for a in seen} <= {"base"}  # eval.seen_systems among the systems
    assert all(a["latency_s"] > 0 and a["compute_s"] > 0 for a in answers)
    assert all(a["retrieved_chunk_ids"] for a in answers if a["system"] == "ft+rag")
    assert not any(a["retrieved_chunk_ids"] for a in answers if a["system"] == "base")
    # The offline judge (Qwen 1.5B, llama.cpp grammar) grades a sample of 2 questions.
    judged = [a for a in answers if a["judged"]]
    assert len({a["item_id"] for a in judged}) == 2
    assert metrics.judge == "local:qwen2.5-coder-1.5b-instruct"
    assert not metrics.smoke_test and metrics.small_judge
    # A grade per judged answer, and an identity and a foil check per judged question;
    # no pairwise in the quickstart.
    assert metrics.judge_calls == len(judged) + 2 * 2
    checks = metrics.judge_checks
    assert checks["identity"].n + checks["identity"].failed == 2
    assert checks["foil"].n + checks["foil"].failed == 2
    assert metrics.judge_failures == 0  # a grammar: every verdict parses
    assert all(a["correctness"] is not None for a in judged)
    assert not any(a["correctness"] is not None for a in answers if not a["judged"])
    for m in metrics.systems.values():
        assert m.cost_basis == "compute only"
        assert m.compute_s_per_1k is not None and m.compute_s_per_1k > 0
    report = (run / "eval" / "report.md").read_text()
    assert report.startswith("# Evaluation report\n\n## Verdict\n\n> **Deploy `ft+rag`")
    assert "## Primary: key-fact accuracy" in report and "## Generated questions" in report
    page = (run / "eval" / "report.html").read_text()
    assert "<div id='verdict' class='verdict'>" in page
    parser = TableParser()
    parser.feed(page)
    table = {r["system"]: r for r in parser.rows if r}
    assert table == {s: cells(s, m) for s, m in metrics.systems.items()}
    assert (run / "eval" / "tradeoff.png").stat().st_size > 1000


def test_published_folders_are_hub_repos(quickstart: tuple[Path, str]) -> None:
    from datasets import load_dataset

    run, _ = quickstart
    ds = load_dataset(str(run / "publish" / "dataset"))
    assert set(ds) <= {"train", "eval", "eval_seen"} and {"train", "eval"} <= set(ds)
    train = read_rows(run / "curate" / "train.parquet")
    assert ds["train"]["sample_id"] == [r["sample_id"] for r in train]
    assert ds["train"]["messages"] == [r["messages"] for r in train]
    assert ds["eval"].num_rows == len(read_rows(run / "curate" / "eval.parquet"))
    assert ds["train"][0]["messages"][-1]["role"] == "assistant"
    card = (run / "publish" / "dataset" / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["configs"][0]["data_files"][0]["split"] == "train"
    # The quickstart has no reviewers (review.mode: auto), and both cards say so.
    assert "Not human-reviewed" in " ".join(card.split())
    assert set(ds["train"]["review_status"]) == {"not_reviewed"}
    model_card = (run / "publish" / "adapter" / "README.md").read_text()
    model_meta = yaml.safe_load(model_card.split("---")[1])
    assert model_meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert model_meta["library_name"] == "peft"
    assert "| ft+rag |" in model_card
    assert "Not human-reviewed" in " ".join(model_card.split())
    gate = read_json(run / "manifest.json")["review_gate"]
    assert gate["passed"] and gate["mode"] == "auto" and not gate["human_reviewed"]


TOKEN = "hf_" + "e2eT" * 9  # shaped like a Hugging Face token; valid nowhere


def test_publish_uploads_both_repositories_over_http(
    quickstart: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`distill publish` through the CLI against a loopback Hub: the unreviewed dataset is
    refused, then a dry run sends nothing, then both repositories are uploaded byte for
    byte; the cards parse with huggingface_hub's classes; no token lands in a file."""
    import os

    from huggingface_hub import DatasetCard, ModelCard

    from distill.publish.secrets import find_secrets
    from tests.fakes.hub_server import serve_hub

    run, _ = quickstart
    cwd = run.parent.parent
    sets = [
        a for s in [*SCALED_DOWN, "publish.dataset_repo=me/brightdesk-qa"] for a in ("--set", s)
    ]
    recipe = str(REPO / "recipes" / "quickstart.yaml")

    with serve_hub() as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1"}
        env |= {"HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "hf-home")}
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            env.pop(name, None)

        def publish(*args: str) -> subprocess.CompletedProcess[str]:
            cmd = [sys.executable, "-m", "distill", "publish", recipe, *args, *sets]
            return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)

        refused = publish("dataset")
        assert refused.returncode == 4, refused.stderr
        assert "the spot-check was skipped" in refused.stderr and "Traceback" not in refused.stderr
        dry = publish("dataset", "--dry-run")
        assert dry.returncode == 0 and "dry run: nothing uploaded" in dry.stdout
        assert hub.requests == []
        done = publish("dataset", "--accept-unreviewed")
        assert done.returncode == 0, done.stderr
        adapter = publish("adapter", "--repo-id", "me/brightdesk-lora", "--private")
        assert adapter.returncode == 0, adapter.stderr

    def files(folder: Path) -> dict[str, bytes]:
        return {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*")
            if p.is_file()
        }

    for repo in hub.files.values():  # the Hub's own file, written when a repo is created
        assert repo.pop(".gitattributes").startswith(b"*.parquet filter=lfs")

    dataset, model = run / "publish" / "dataset", run / "publish" / "adapter"
    assert hub.files["dataset/me/brightdesk-qa"] == files(dataset)
    assert hub.files["model/me/brightdesk-lora"] == files(model)
    assert hub.repos == {
        "dataset/me/brightdesk-qa": {"private": False},
        "model/me/brightdesk-lora": {"private": True},
    }
    assert {"README.md", "recipe.yaml", "data/train-00000-of-00001.parquet"} <= set(files(dataset))
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json"} <= set(
        files(model)
    )
    assert len(hub.validated) == 2  # each card's metadata went through the Hub's check

    card = DatasetCard.load(dataset / "README.md")
    assert card.data.license == "other" and card.data.size_categories == ["n<1K"]
    assert card.data.license_link == "LICENSE.md" and "LICENSE.md" in files(dataset)
    assert ModelCard.load(model / "README.md").data.license_name == "documents-license"
    assert {"synthetic", "distillation"} <= set(card.data.tags)
    assert "question-answering" in card.data.task_categories
    text = " ".join(card.text.split())
    assert "Published with --accept-unreviewed" in text and "Not human-reviewed" in text
    for section in ("Source corpus", "Teacher and prompts", "Task mix", "Curation",
                    "Human review", "Generation cost", "Known limitations"):  # fmt: skip
        assert f"## {section}" in card.text
    lineage = yaml.safe_load((dataset / "recipe.yaml").read_text())
    assert lineage["generate"]["max_chunks"] == 16 and lineage["name"] == "quickstart"

    mcard = ModelCard.load(model / "README.md")
    assert mcard.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert mcard.data.library_name == "peft" and mcard.data.pipeline_tag == "text-generation"
    assert mcard.data.datasets == ["me/brightdesk-qa"] and mcard.data.license == "other"
    assert "| ft+rag |" in mcard.text and "vllm serve" in mcard.text
    assert 'PeftModel.from_pretrained(base, "me/brightdesk-lora")' in mcard.text

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert find_secrets(run / "publish") == []
    for folder in (dataset, model):
        for name, data in files(folder).items():
            assert TOKEN.encode() not in data, name

    # The optional configs: rejected samples with their reasons, and the corpus chunks.
    extra = publish(
        "dataset",
        "--dry-run",
        "--set",
        "publish.include_rejected=true",
        "--set",
        "publish.include_corpus=true",
    )
    assert extra.returncode == 0, extra.stderr
    from datasets import load_dataset

    rejected = load_dataset(str(dataset), "rejected", split="train")
    curated = read_rows(run / "curate" / "rejected.parquet")
    assert rejected.num_rows == len(curated) and all(rejected["reject_reason"])
    assert set(rejected["rejected_by"]) == {"curation"}
    corpus = load_dataset(str(dataset), "corpus", split="train")
    assert corpus.num_rows == len(read_rows(run / "ingest" / "chunks.parquet"))
    assert "The chunks themselves are in the `corpus` config." in " ".join(
        (dataset / "README.md").read_text().split()
    )


def test_the_published_adapter_is_the_one_eval_measured(quickstart: tuple[Path, str]) -> None:
    import hashlib

    run, _ = quickstart
    weights = (run / "publish" / "adapter" / "adapter_model.safetensors").read_bytes()
    measured = read_metrics(run / "eval" / "metrics.json").adapter_sha256
    assert measured == hashlib.sha256(weights).hexdigest()
    card = (run / "publish" / "adapter" / "README.md").read_text()
    assert f"sha256 `{measured}`" in card


def test_sft_then_dpo_on_the_runs_own_pairs(quickstart: tuple[Path, str], tmp_path: Path) -> None:
    """`train.method: sft_then_dpo` on a copy of the run: the SFT student's own sampled
    answers, graded by the quickstart's judge (Qwen 1.5B), make the pairs; DPO continues
    from the SFT adapter; the pairs reach the published dataset's `preferences` config."""
    import shutil

    from datasets import load_dataset
    from safetensors.torch import load_file

    run, _ = quickstart
    shutil.copytree(run.parent, tmp_path / "runs")
    dpo = [
        "train.method=sft_then_dpo",
        "train.preferences.samples=2",
        "train.preferences.max_new_tokens=96",
        "train.dpo.max_steps=2",
    ]
    sets = [a for s in SCALED_DOWN + dpo for a in ("--set", s)]
    recipe = str(REPO / "recipes" / "quickstart.yaml")
    cmd = [sys.executable, "-m", "distill"]
    proc = subprocess.run(
        [*cmd, "train", recipe, *sets], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = tmp_path / "runs" / "quickstart" / "train"
    m = read_json(out / "metrics.json")
    assert m["method"] == "sft_then_dpo" and m["sft"]["steps"] == 3
    d = m["dpo"]
    assert d["start"] == "sft adapter" and d["steps"] == 2 and d["first_margin"] == 0.0
    assert d["judge"] == "local:qwen2.5-coder-1.5b-instruct"
    train = read_rows(out.parent / "curate" / "train.parquet")
    cands = read_rows(out / "candidates.parquet")
    pairs = read_rows(out / "preferences.parquet")
    assert len(cands) == 2 * len(train) == 2 * d["prompts"]
    assert d["pairs_built"] == len(pairs) >= 1, d["outcomes"]
    assert all(c["written_by"] == "sft student" for c in cands)
    for c in cands:  # every answer graded, or its failure kept: none silently dropped
        assert c["outcome"] and (c["correctness"] is not None or c["outcome"] != "pair")
    kept = {(c["sample_id"], c["answer"]) for c in cands if c["outcome"] == "pair"}
    by_id = {r["sample_id"]: r for r in train}
    split = read_json(out.parent / "generate" / "split.json")
    for p in pairs:
        assert (p["sample_id"], p["rejected"]) in kept and p["rejected_correctness"] <= 2
        assert p["chosen"] == by_id[p["sample_id"]]["messages"][-1]["content"]
        assert not set(p["doc_ids"]) & set(split["eval_docs"])  # training prompts only
        assert "graded" in p["why"]
    sft = load_file(out / "sft_adapter" / "adapter_model.safetensors")
    final = load_file(out / "adapter" / "adapter_model.safetensors")
    assert sft.keys() == final.keys()
    assert any(not (sft[k] == final[k]).all() for k in sft)  # DPO moved the SFT adapter
    report = (out / "report.md").read_text()
    assert "## SFT" in report and "## DPO" in report and "from the sft adapter" in report

    proc = subprocess.run(
        [*cmd, "publish", recipe, "dataset", "--dry-run", "--accept-unreviewed", *sets],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    folder = tmp_path / "runs" / "quickstart" / "publish" / "dataset"
    prefs = load_dataset(str(folder), "preferences")["train"]
    assert prefs.num_rows == len(pairs)
    assert prefs[0]["chosen"][0]["role"] == "assistant" and prefs[0]["prompt"][-1]["role"] == "user"
    card = folder / "README.md"
    meta = yaml.safe_load(card.read_text().split("---")[1])
    assert "preferences" in [c["config_name"] for c in meta["configs"]]
    assert "## Preference pairs" in card.read_text()


def test_two_processes_train_one_adapter_on_the_same_curve(
    quickstart: tuple[Path, str], tmp_path: Path
) -> None:
    """`torchrun --nproc_per_node 2 -m distill train` (what `accelerate launch` runs): two
    CPU processes (gloo), each with half of every batch, train one adapter on the loss
    curve of a one-process run with the same global batch; process 0 alone writes the
    run folder. (Unpacked rows, 2 per update, 2 updates: the run has at least 5 rows, so
    both updates are whole batches and no process repeats a row to fill one.)"""
    import shutil

    import torch
    from peft import PeftModel

    from distill.models import load_causal_lm

    run, _ = quickstart
    base = [*SCALED_DOWN, "train.packing=false", "train.max_steps=2", "train.eval_steps=2"]
    recipe = str(REPO / "recipes" / "quickstart.yaml")
    launchers = {
        "one": ([sys.executable, "-m", "distill"], "train.batch_size=2"),
        "two": (
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node",
                "2",
                "-m",
                "distill",
            ],
            "train.batch_size=1",
        ),
    }
    out = {}
    for name, (launch, batch) in launchers.items():
        shutil.copytree(run.parent, tmp_path / name / "runs")
        sets = [a for s in [*base, batch] for a in ("--set", s)]
        proc = subprocess.run(
            [*launch, "train", recipe, *sets],
            cwd=tmp_path / name,
            capture_output=True,
            text=True,
            check=False,
            timeout=1200,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert proc.stderr.count("✓ train") == 1  # one process reports
        out[name] = tmp_path / name / "runs" / "quickstart" / "train"

    def curve(folder: Path, key: str) -> list[float]:
        return [h[key] for h in read_json(folder / "log.json") if key in h]

    # The same two-process launch again, nothing changed: process 0 finds the stage
    # unchanged and says so to the other (which waited for a training pass that never
    # came, until the collective timeout).
    launch, batch = launchers["two"]
    again = subprocess.run(
        [*launch, "train", recipe, *[a for s in [*base, batch] for a in ("--set", s)]],
        cwd=tmp_path / "two",
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr[-4000:]
    assert "unchanged, skipped" in again.stdout + again.stderr

    one, two = curve(out["one"], "loss"), curve(out["two"], "loss")
    assert len(one) == len(two) == 2
    assert two == pytest.approx(one, rel=0.02), (one, two)
    assert curve(out["two"], "eval_loss") == pytest.approx(curve(out["one"], "eval_loss"), rel=0.02)
    m = read_json(out["two"] / "metrics.json")
    assert m["steps"] == 2 and m["examples"] == read_json(out["one"] / "metrics.json")["examples"]
    assert read_json(out["two"].parent / "manifest.json")["stages"]["train"]["status"] == "done"
    model, tok = load_causal_lm("smollm2-135m-instruct")
    ids = tok("How long do free trials last?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        plain = model(ids).logits
        tuned = PeftModel.from_pretrained(model, str(out["two"] / "adapter"))(ids).logits
    assert (tuned - plain).abs().max().item() > 1e-4


def test_gkd_against_a_served_teacher_from_the_cli(
    quickstart: tuple[Path, str], tmp_path: Path
) -> None:
    """`train.method: gkd` with `train.gkd.served_teacher` openai:smollm2: llama-cpp-python's
    real server on the SmolLM2 GGUF (the student's own tokenizer), through `distill
    train`; the metrics and the report say what ran, and the key never reaches the run
    folder."""
    import os
    import shutil

    from tests.conftest import llama_server, smollm2_gguf

    run, _ = quickstart
    shutil.copytree(run.parent, tmp_path / "runs")
    recipe = str(REPO / "recipes" / "quickstart.yaml")
    with llama_server(smollm2_gguf(), tmp_path) as url:
        served = [
            "train.method=gkd",
            "train.gkd.served_teacher.model=openai:smollm2",
            f"train.gkd.served_teacher.options.base_url={url}",
            "train.gkd.served_teacher.options.api_key_env=DISTILL_E2E_KEY",
            "train.gkd.served_teacher.options.top_k=10",
            "train.gkd.max_steps=2",
            "train.gkd.max_new_tokens=32",
        ]
        sets = [a for s in SCALED_DOWN + served for a in ("--set", s)]
        proc = subprocess.run(
            [sys.executable, "-m", "distill", "train", recipe, *sets],
            cwd=tmp_path,
            env={**os.environ, "DISTILL_E2E_KEY": "sk-e2e-5ca1"},
            capture_output=True,
            text=True,
            check=False,
            timeout=1200,
        )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = tmp_path / "runs" / "quickstart" / "train"
    m = read_json(out / "metrics.json")
    g = m["gkd"]
    assert m["method"] == "gkd" and g["trainer"] == "GKD (served teacher, top-k)", g
    assert g["steps"] == 2 and g["teacher_top_k"] == 10 and g["teacher_coverage"] > 0.9, g
    assert g["eval_loss_before"] is not None and g["eval_loss_after"] is not None
    assert "served teacher's top 10 log-probabilities" in (out / "report.md").read_text()
    for f in (tmp_path / "runs").rglob("*"):
        assert not f.is_file() or b"sk-e2e-5ca1" not in f.read_bytes(), f
    assert "sk-e2e-5ca1" not in proc.stderr + proc.stdout
