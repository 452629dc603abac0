"""Ingest, retrieval and generation on a small corpus with the real tokenizer and embedder,
and the fake teacher (slow: loads SmolLM2's tokenizer and MiniLM)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from distill.io import read_rows
from distill.pipeline import run_pipeline
from distill.recipe import load_recipe
from distill.retrieval import Retriever
from distill.runfolder import RunFolder

pytestmark = pytest.mark.slow


def test_bad_files_are_skipped_with_reasons_in_the_report(ingested: Path) -> None:
    report = (ingested / "ingest" / "report.md").read_text()
    assert "skipped: unreadable PDF" in report
    assert "skipped: unsupported file type '.bin'" in report
    docs = read_rows(ingested / "ingest" / "documents.parquet")
    assert sorted(d["doc_id"] for d in docs) == [
        "account/password",
        "account/two-factor",
        "billing/plans",
    ]


def test_retrieval_finds_the_right_passage(ingested: Path) -> None:
    r = Retriever(ingested / "ingest")
    (top, score), *_ = r.retrieve("how long is the password reset link valid", k=3, mode="dense")
    assert top["doc_id"] == "account/password" and 0 < score <= 1.0001
    for mode in ("dense", "bm25", "hybrid"):
        (top, _), *_ = r.retrieve("Are SMS codes supported?", k=1, mode=mode)
        assert top["doc_id"] == "account/two-factor", mode
    assert r.retrieve("zebra quantum", k=3, mode="bm25") == []  # no shared term, no hit
    others = r.retrieve("price per user", k=10, exclude_doc="billing/plans")
    assert others and all(c["doc_id"] != "billing/plans" for c, _ in others)
    cid = r.chunks[0]["chunk_id"]
    assert cid not in [c["chunk_id"] for c, _ in r.neighbours(cid, 3)]


def test_fake_teacher_runs_generate_and_curate(ingested: Path) -> None:
    chunks = read_rows(ingested / "ingest" / "chunks.parquet")
    samples = read_rows(ingested / "generate" / "samples.parquet")
    assert len(samples) == len(chunks) == 4
    for s in samples:
        chunk = next(c for c in chunks if c["chunk_id"] == s["source_chunk_id"])
        assert s["question"].startswith("What does the documentation say about")
        assert s["answer"] and s["answer"] in " ".join(c["text"] for c in chunks)
        assert chunk["chunk_id"] in s["chunk_ids"]
    train = read_rows(ingested / "curate" / "train.parquet")
    held = read_rows(ingested / "curate" / "eval.parquet")
    assert len(train) + len(held) + len(read_rows(ingested / "curate" / "rejected.parquet")) == 4


def test_search_command_prints_ranked_chunks(ingested: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "distill", "search", "recipe.yaml", "reset link", "-k", "2"],
        cwd=ingested.parent.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(" 1. ") and "account/password  [Passwords > Reset]" in lines[0]
    assert lines[1].strip().startswith("Click Forgot password")
    assert lines[2].startswith(" 2. ")
    bad = subprocess.run(
        [sys.executable, "-m", "distill", "search", "recipe.yaml", "x", "--mode", "fuzzy"],
        cwd=ingested.parent.parent, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and "--mode must be hybrid, dense or bm25" in bad.stderr


def test_reingest_embeds_only_changed_documents(
    ingested: Path, small_corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import distill.retrieval

    embedded: list[int] = []
    real_embed = distill.retrieval.embed

    def counting(texts: list[str], *args: object, **kwargs: object) -> object:
        embedded.append(len(texts))
        return real_embed(texts, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(distill.retrieval, "embed", counting)
    before = {c["chunk_id"] for c in read_rows(ingested / "ingest" / "chunks.parquet")}
    (small_corpus / "account" / "password.md").write_text(
        "# Passwords\n\n## Reset\n\nThe reset link is valid for 45 minutes.\n"
    )
    recipe = load_recipe(ingested.parent.parent / "recipe.yaml")
    run = run_pipeline(recipe, only="ingest")
    assert embedded == [1]  # one changed chunk; the three unchanged ones reuse their vectors
    counts = run.stage("ingest")["counts"]
    assert counts["unchanged_documents"] == 2 and counts["embedded_chunks"] == 1
    after = {c["chunk_id"] for c in read_rows(ingested / "ingest" / "chunks.parquet")}
    assert len(before & after) == 3 and len(after - before) == 1  # stable ids
    (top, _), *_ = Retriever(ingested / "ingest").retrieve("reset link valid minutes", k=1)
    assert "45 minutes" in top["text"]


def test_cross_encoder_reorders_the_fused_candidates(ingested: Path, tmp_path: Path) -> None:
    """A tiny randomly initialised cross-encoder (no weights can be downloaded here): the
    retriever must return candidates in exactly the order of the model's scores."""
    import shutil

    from sentence_transformers import CrossEncoder
    from transformers import BertConfig, BertForSequenceClassification

    from distill.config import RetrievalConfig
    from distill.models import resolve_embedding_model

    folder = tmp_path / "tiny-ce"
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, num_labels=1,
    )  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(folder)
    minilm = Path(resolve_embedding_model("all-minilm-l6-v2").path)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm / name, folder / name)
    cfg = RetrievalConfig(rerank_model=str(folder), rerank_top=4)
    r = Retriever(ingested / "ingest", cfg)
    query = "reset link"
    hits = r.retrieve(query, k=4)
    fused = Retriever(ingested / "ingest").retrieve(query, k=4)
    assert {c["chunk_id"] for c, _ in hits} == {c["chunk_id"] for c, _ in fused}
    ce = CrossEncoder(str(folder), device="cpu")
    scores = ce.predict([(query, f"{c['heading_path']}\n{c['text']}") for c, _ in hits])
    assert list(scores) == sorted(scores, reverse=True)
    assert [round(s, 5) for _, s in hits] == [round(float(s), 5) for s in scores]


def test_generation_killed_midway_resumes_without_asking_twice(
    ingested: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kill generate after its first teacher call; the rerun sends only what is missing
    and ends with exactly the samples of an uninterrupted run."""
    from distill.teachers import BACKENDS
    from distill.teachers.fake import FakeTeacher

    sent: list[str] = []

    class Flaky(FakeTeacher):
        def complete_many(self, batch, **params):  # type: ignore[no-untyped-def]
            if crash and sent:
                raise KeyboardInterrupt  # a hard stop after the first call
            sent.extend(m[-1]["content"] for m in batch)
            return super().complete_many(batch, **params)

    monkeypatch.setitem(BACKENDS, "fake", Flaky)  # the recipe's fake: teacher, flaky
    recipe = load_recipe(
        ingested.parent.parent / "recipe.yaml", ["name=killed", "generate.batch_size=2"]
    )
    crash = True
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(recipe, until="generate")
    assert RunFolder(recipe.run_path).stage("generate")["status"] == "interrupted"
    first_call = len(sent)
    crash = False
    run = run_pipeline(recipe, only="generate")
    assert len(sent) == len(set(sent)) == 8  # 4 questions + 4 answers, none asked twice
    counts = run.stage("generate")["counts"]
    assert counts["cached_replies"] == first_call and counts["requests_sent"] == 8 - first_call
    resumed = read_rows(recipe.run_path / "generate" / "samples.parquet")

    monkeypatch.setitem(BACKENDS, "fake", FakeTeacher)
    clean = load_recipe(
        ingested.parent.parent / "recipe.yaml", ["name=clean", "generate.batch_size=2"]
    )
    run_pipeline(clean, until="generate")
    uninterrupted = read_rows(clean.run_path / "generate" / "samples.parquet")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "created_at"} for r in rows]  # noqa: E731
    assert strip(resumed) == strip(uninterrupted)


def test_generate_with_openai_teacher_records_failed_requests(
    ingested: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakes.openai_server import serve

    monkeypatch.setenv("DISTILL_TEST_KEY", "test-key")
    with serve() as (server, url):
        server.reply = lambda body: (
            "How long is the reset link valid?"
            if "Write one question" in body["messages"][-1]["content"]
            else "30 minutes."
        )
        server.faults = [(500, {}, '{"error": {"message": "overloaded"}}')]
        options = (
            f"{{base_url: '{url}', api_key_env: DISTILL_TEST_KEY, max_retries: 0, concurrency: 1}}"
        )
        recipe = load_recipe(
            ingested.parent.parent / "recipe.yaml",
            [
                "name=viaopenai",
                "teacher=openai:test-model",
                f"teacher.options={options}",
            ],
        )
        run = run_pipeline(recipe, until="generate")
    samples = read_rows(recipe.run_path / "generate" / "samples.parquet")
    failures = read_rows(recipe.run_path / "generate" / "failures.parquet")
    assert len(samples) == 3 and {s["answer"] for s in samples} == {"30 minutes."}
    (failure,) = failures
    assert failure["status"] == 500 and "overloaded" in failure["last_error"]
    assert run.stage("generate")["counts"]["failures"] == 1
    assert len(server.requests) == 7  # 4 questions (1 failed, not retried) + 3 answers
    assert "test-key" not in (recipe.run_path / "manifest.json").read_text()


def test_every_task_type_through_generate(ingested: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from distill.teachers import BACKENDS
    from distill.teachers.fake import FakeTeacher

    calls: list[list[dict[str, str]]] = []

    class Recording(FakeTeacher):
        def complete(self, messages, **params):  # type: ignore[no-untyped-def]
            calls.append(messages)
            return super().complete(messages, **params)

    monkeypatch.setitem(BACKENDS, "fake", Recording)
    mix = "{qa: 1, instructions: 1, multi_hop: 1, raft: 3, multi_turn: 1}"
    recipe = load_recipe(
        ingested.parent.parent / "recipe.yaml",
        ["name=tasks", f"generate.tasks={mix}", "generate.samples_per_chunk=6"]
        + ["generate.raft={distractors: 2, no_oracle_share: 0.5}"],
    )
    run = run_pipeline(recipe, until="generate")
    samples = read_rows(recipe.run_path / "generate" / "samples.parquet")
    by_task = {t: [s for s in samples if s["task"] == t] for t in recipe.generate.tasks}
    assert all(by_task.values()), {t: len(v) for t, v in by_task.items()}
    assert run.stage("generate")["counts"]["tasks"] == {t: len(v) for t, v in by_task.items()}
    for s in samples:
        assert s["messages"][0]["role"] == "system" and s["messages"][-1]["role"] == "assistant"
        assert s["messages"][1]["content"].endswith(s["question"])
        assert s["template"].startswith("qa_question@v2+instruction@v1")
        assert len(s["chunk_ids"]) == s["messages"][1]["content"].count("<document id=")
    turns = by_task["multi_turn"][0]["messages"]
    assert [m["role"] for m in turns] == ["system", "user", "assistant", "user", "assistant"]
    for s in by_task["multi_hop"]:
        assert len(s["source_doc_ids"]) == 2 and set(s["source_chunk_ids"]) <= set(s["chunk_ids"])
    refusals = [s for s in by_task["raft"] if s["expects_refusal"]]
    raft = recipe.generate.raft
    assert refusals and all(s["answer"] == raft.refusal_for(s["sample_id"]) for s in refusals)
    assert all(s["source_chunk_id"] not in s["chunk_ids"] for s in refusals)
    # Nobody asked the teacher to answer a question whose context lacks the answer.
    asked = {m[-1]["content"] for m in calls}
    assert not any(s["messages"][1]["content"] in asked for s in refusals)
    instructions = by_task["instructions"]
    assert all(s["question"].startswith("Summarise") for s in instructions)


def test_curate_with_a_judge_writes_report_plots_and_exports(
    ingested: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from distill.errors import TeacherError
    from distill.teachers import BACKENDS
    from distill.teachers.fake import FakeTeacher

    verdict = '{"groundedness": 5, "quality": 4, "reason": "every claim is in [1]"}'

    class Judge(FakeTeacher):
        def __init__(self, spec: str, model: str, options: object = None) -> None:
            super().__init__(spec, model, options, responses=lambda messages: verdict)

        def complete(self, messages, **params):  # type: ignore[no-untyped-def]
            if "30 minutes" in messages[-1]["content"]:  # the judge's API fails on these
                raise TeacherError("fake:judge: HTTP 503", status=503)
            return super().complete(messages, **params)

    monkeypatch.setitem(BACKENDS, "judge", Judge)  # a judge backend of the test's own
    recipe = load_recipe(ingested.parent.parent / "recipe.yaml", ["name=judged"])
    recipe = recipe.model_copy(
        update={"curate": recipe.curate.model_copy(update={"judge": "judge:scripted"})}
    )
    run = run_pipeline(recipe, until="curate")
    out = recipe.run_path / "curate"
    rejected = read_rows(out / "rejected.parquet")
    kept = read_rows(out / "train.parquet") + read_rows(out / "eval.parquet")
    failed = [r for r in rejected if r["reject_reason"].startswith("judge failed")]
    assert failed and all("HTTP 503" in r["reject_reason"] for r in failed)
    assert kept and all(s["groundedness"] == 5 and s["quality"] == 4 for s in kept)
    assert run.stage("curate")["counts"]["removed_by_judge"] == len(failed)
    report = (out / "report.md").read_text()
    assert "| judge |" in report and "![judge.png](judge.png)" in report
    assert (out / "judge.png").stat().st_size > 1000 and (out / "support.png").exists()
    assert not (out / "exports").exists()  # written after review, not before
    run_pipeline(recipe, only="review")
    exports = recipe.run_path / "review" / "exports"
    lines = (exports / "train.openai.jsonl").read_text().splitlines()
    assert len(lines) == len(read_rows(out / "train.parquet"))
    assert all(json.loads(x)["messages"][-1]["role"] == "assistant" for x in lines)
    assert (exports / "eval.sharegpt.json").exists()


def test_a_shared_stem_gives_stable_distinct_ids_over_reruns(
    small_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """a.md added beside a.txt: both keep their extension, whichever was read or reused,
    and rerunning never multiplies their chunks (it went 2 -> 3 -> 5 -> 9)."""
    from tests.conftest import write_recipe

    monkeypatch.chdir(tmp_path)
    (small_corpus / "notes.txt").write_text("Exports run nightly at 02:00 UTC.\n")
    recipe = load_recipe(
        write_recipe(tmp_path, "name: stems\ningest:\n  paths: [docs]\n", name="stems.yaml")
    )
    run_pipeline(recipe, only="ingest")
    first = read_rows(tmp_path / "runs" / "stems" / "ingest" / "documents.parquet")
    assert "notes" in {d["doc_id"] for d in first}
    (small_corpus / "notes.md").write_text("# Notes\n\nImports run hourly.\n")
    counts = []
    for _ in range(3):
        run_pipeline(recipe, only="ingest", force={"ingest"})
        chunks = read_rows(tmp_path / "runs" / "stems" / "ingest" / "chunks.parquet")
        counts.append(len(chunks))
        assert len({c["chunk_id"] for c in chunks}) == len(chunks)
    docs = read_rows(tmp_path / "runs" / "stems" / "ingest" / "documents.parquet")
    ids = {d["doc_id"] for d in docs}
    assert {"notes.md", "notes.txt"} <= ids and "notes" not in ids
    assert len(set(counts)) == 1  # no rerun adds a chunk
    # The same ids and chunks as a fresh ingest of the same files.
    fresh = load_recipe(
        write_recipe(tmp_path, "name: fresh\ningest:\n  paths: [docs]\n", name="fresh.yaml")
    )
    run_pipeline(fresh, only="ingest")
    again = read_rows(tmp_path / "runs" / "fresh" / "ingest" / "chunks.parquet")
    assert sorted(c["chunk_id"] for c in again) == sorted(c["chunk_id"] for c in chunks)


def test_two_inputs_that_give_one_id_are_a_one_line_error(
    small_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distill.errors import InputError
    from tests.conftest import write_recipe

    monkeypatch.chdir(tmp_path)
    (small_corpus / "faq.jsonl").write_text('{"id": "1", "text": "Refunds take five days."}\n')
    (small_corpus / "faq").mkdir()
    (small_corpus / "faq" / "1.md").write_text("# One\n\nRefunds take five business days.\n")
    recipe = load_recipe(write_recipe(tmp_path, "name: ids\ningest:\n  paths: [docs]\n"))
    with pytest.raises(InputError, match="both give the document id 'faq/1'"):
        run_pipeline(recipe, only="ingest")


def test_changing_a_datasets_fields_reads_it_again(
    small_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """text_field/id_field/title_field decide what a dataset's documents say: changing
    one must not reuse the text read under the old setting (the old text was kept)."""
    import datasets

    from tests.conftest import write_recipe

    monkeypatch.chdir(tmp_path)
    rows = {
        "text": ["Exports run nightly at 02:00 UTC.", "Imports run hourly."],
        "body": ["Refunds take five business days.", "Invoices are sent monthly."],
        "key": ["r1", "r2"],
    }
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "saved"))

    def ingest(fields: str) -> list[dict]:
        recipe = load_recipe(
            write_recipe(
                tmp_path,
                f"name: ds\ningest:\n  paths: [docs]\n  datasets:\n    - {{path: saved{fields}}}\n",
                name="ds.yaml",
            )
        )
        run_pipeline(recipe, only="ingest")
        docs = read_rows(tmp_path / "runs" / "ds" / "ingest" / "documents.parquet")
        return [d for d in docs if d["format"] == "dataset"]

    first = ingest("")
    assert {d["doc_id"] for d in first} == {"saved/0", "saved/1"}
    assert any("nightly" in d["text"] for d in first)
    second = ingest(", text_field: body, id_field: key")
    assert {d["doc_id"] for d in second} == {"saved/r1", "saved/r2"}
    assert any("Refunds" in d["text"] for d in second)
    assert not any("nightly" in d["text"] for d in second)
    chunks = read_rows(tmp_path / "runs" / "ds" / "ingest" / "chunks.parquet")
    assert not any("nightly" in c["text"] for c in chunks)


def test_a_flood_of_one_passage_costs_what_its_information_costs(
    small_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page that is one sentence pasted thousands of times (numbered, so it still
    compresses to several percent and passes the low-information check), and a JSONL
    file of one record repeated: their repeats were chunked, embedded and offered to the
    teacher in full. Now each collapses to its distinct chunks, and the report says so."""
    import json

    from distill.ingest.readers import low_information
    from tests.conftest import write_recipe

    monkeypatch.chdir(tmp_path)
    flood = "".join(
        f"Entry {i}: the nightly export emails the workspace owner a summary.\n\n"
        for i in range(3000)
    )
    assert low_information(flood) is None  # not caught by the compression check
    (small_corpus / "flood.md").write_text("# Flood\n\n" + flood)
    record = {"text": "Refunds are issued within five business days of the request."}
    (small_corpus / "records.jsonl").write_text(
        "\n".join(json.dumps({**record, "id": str(i)}) for i in range(400)) + "\n"
    )
    recipe = load_recipe(
        write_recipe(tmp_path, "name: flood\ningest:\n  paths: [docs]\n", name="flood.yaml")
    )
    run = run_pipeline(recipe, only="ingest")
    out = tmp_path / "runs" / "flood" / "ingest"
    chunks = read_rows(out / "chunks.parquet")
    from_flood = [c for c in chunks if c["doc_id"] == "flood"]
    from_records = [c for c in chunks if c["doc_id"].startswith("records/")]
    # 3,000 paragraphs fill ~300 chunks; what is left are the few ways a chunk's window
    # can fall on the repeating paragraph.
    assert 1 <= len(from_flood) <= 8 and len(from_records) == 1
    counts = run.stage("ingest")["counts"]
    assert counts["collapsed_chunks"] > 400 and counts["chunks"] == len(chunks)
    report = (out / "report.md").read_text()
    assert "repeated chunks collapsed" in report
    # The rest of the corpus is untouched: every other document keeps its chunks.
    others = {c["doc_id"] for c in chunks} - {"flood"} - {c["doc_id"] for c in from_records}
    assert others and all(not d.startswith("records/") for d in others)
