"""Your own questions (generate.prompts): real-format files with hostile lines read as
counted skips, the held-out share, and the generate stage over a small BM25 index with
the fake teacher and the loopback OpenAI server (no model loads: fast)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from distill import retrieval, tables
from distill.config import RetrievalConfig
from distill.errors import InputError
from distill.generate import stage as generate
from distill.generate.config import PromptsConfig
from distill.generate.imported import Question, choose, read_prompts
from distill.io import read_rows
from distill.recipe import load_recipe
from distill.retrieval import Retriever, build_index
from distill.runfolder import RunFolder, RunOptions
from distill.split import Split
from distill.tables import Chunk
from tests.conftest import write_recipe
from tests.fakes.openai_server import serve

CFG = PromptsConfig(path="unused")


def jsonl(path: Path, lines: list[Any]) -> Path:
    """Records as JSON lines; bytes and str lines are written as they are (hostile ones)."""
    with path.open("wb") as f:
        for line in lines:
            if isinstance(line, bytes):
                f.write(line + b"\n")
            elif isinstance(line, str):
                f.write(line.encode() + b"\n")
            else:
                f.write(json.dumps(line).encode() + b"\n")
    return path


def chat(*turns: tuple[str, Any]) -> dict[str, Any]:
    return {"messages": [{"role": r, "content": c} for r, c in turns]}


def test_an_openai_fine_tuning_file_with_hostile_lines(tmp_path: Path) -> None:
    system = ("system", "You are BrightDesk support.")
    path = jsonl(
        tmp_path / "ft.jsonl",
        [
            chat(
                system,
                ("user", "How long is the password reset link valid?"),
                ("assistant", "30 minutes."),
            ),  # fmt: skip
            # Multi-turn: the last user turn is the question, the reply after it the answer.
            {
                **chat(
                    ("user", "Hi"),
                    ("assistant", "Hello!"),
                    ("user", "When do exports run?"),
                    ("assistant", "Nightly at 02:00 UTC."),
                ),
                "weight": 1,
            },  # fmt: skip
            # Content as parts; the last turn is the user's: no imported answer.
            chat(
                (
                    "user",
                    [
                        {"type": "text", "text": "Are SMS codes"},
                        {"type": "text", "text": "supported?"},
                    ],
                )
            ),  # fmt: skip
            chat(system, ("wizard", "Cast a spell"), ("user", "Is there a free plan?")),
            chat(system, ("user", "  \t "), ("assistant", "Nothing to answer.")),
            '{"messages": [{"role": "user", "content": "cut off',
            chat(("user", "x" * 1_000_000), ("assistant", "a huge question")),
            chat(("user", "y" * 40_000)),  # under the line limit, over the message limit
            chat(("user", "How long is the PASSWORD reset link valid")),  # a duplicate
            chat(system, ("assistant", "Nobody asked.")),
            chat(("user", [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}])),
            [1, 2],
            b'\xff\xfe{"messages": []}',
            "[" * 100_000,
            {"messages": ["hello"]},
            "",
            chat(("user", "Which roles\ncan invite\n\nmembers?"), ("assistant", "Admins.\nOnly.")),
        ],
    )
    got = read_prompts(path, CFG)
    assert [(q.question, q.answer) for q in got.questions] == [
        ("How long is the password reset link valid?", "30 minutes."),
        ("When do exports run?", "Nightly at 02:00 UTC."),
        ("Are SMS codes supported?", None),
        ("Which roles can invite members?", "Admins.\nOnly."),  # an answer keeps its lines
    ]
    assert [q.origin for q in got.questions] == [
        "ft.jsonl:1",
        "ft.jsonl:2",
        "ft.jsonl:3",
        "ft.jsonl:17",
    ]
    assert got.skipped == {
        "unknown role": 1,
        "empty question": 1,
        "malformed line": 3,  # cut off, not UTF-8, nested past the recursion limit
        "oversize message": 2,
        "duplicate question": 1,
        "no user turn": 1,
        "question is not text": 1,
        "not a JSON object": 1,
        "malformed message": 1,
    }
    assert got.first["oversize message"] == "ft.jsonl:7"
    assert "3 malformed line (first: ft.jsonl:6)" in got.summary()


def test_a_stored_completions_export(tmp_path: Path) -> None:
    """A stored chat completion as `client.chat.completions.list()` returns it, with its
    request's messages (`client.chat.completions.messages.list(id)`) under `input`."""

    def stored(n: int, question: str, reply: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": 1733000000 + n,
            "model": "ft:gpt-4o-mini-2024-07-18:acme::xyz",
            "choices": [{"index": 0, "message": reply, "finish_reason": "stop", "logprobs": None}]
            if reply is not None
            else [],
            "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28},
            "metadata": {"topic": "billing"},
            "input": [
                {
                    "id": f"chatcmpl-{n}-0",
                    "role": "developer",
                    "content": "Answer briefly.",
                    "name": None,
                    "content_parts": None,
                },  # fmt: skip
                {
                    "id": f"chatcmpl-{n}-1",
                    "role": "user",
                    "content": question,
                    "name": None,
                    "content_parts": None,
                },  # fmt: skip
            ],
        }

    answer = {"role": "assistant", "content": "Team costs $29 per user per month.",
              "refusal": None, "annotations": []}  # fmt: skip
    tool = {"role": "assistant", "content": None, "refusal": None,
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "lookup", "arguments": "{}"}}]}  # fmt: skip
    refused = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    path = jsonl(
        tmp_path / "stored.jsonl",
        [
            stored(1, "How much does the Team plan cost?", answer),
            stored(2, "What is my current API usage?", tool),
            stored(3, "Can you hack my neighbour's account?", refused),
            stored(4, "Where are invoices?", None),  # no choices: no completion
            {**stored(5, "unused", answer), "input": "Is SSO available?"},
        ],
    )
    got = read_prompts(path, CFG)
    assert [(q.question, q.answer) for q in got.questions] == [
        ("How much does the Team plan cost?", "Team costs $29 per user per month."),
        ("What is my current API usage?", None),  # a tool call answers nothing
        ("Can you hack my neighbour's account?", None),
        ("Is SSO available?", "Team costs $29 per user per month."),  # `input` as its text
    ]
    assert got.skipped == {"malformed message": 1}


def test_a_csv_file_and_plain_json_lines(tmp_path: Path) -> None:
    csv_path = tmp_path / "questions.csv"
    csv_path.write_bytes(
        b"\xef\xbb\xbfquestion,answer,topic\n"  # a byte-order mark, as spreadsheets write
        b'"How long do free trials last?","14 days.",billing\n'
        b'"What does the API allow\nper minute?",,api\n'
        b'"",x,empty\n'
        b'"' + b"z" * 600_000 + b'",a,big\n'
        b"Bad \xff bytes?,a,broken\n"
        b"how long do free trials last,dup,billing\n"
        b"\n"
        b"Who can invite members?\n"  # a short row: no answer column
    )
    got = read_prompts(csv_path, CFG)
    assert [(q.question, q.answer) for q in got.questions] == [
        ("How long do free trials last?", "14 days."),
        ("What does the API allow per minute?", None),
        ("Who can invite members?", None),
    ]
    assert got.skipped == {
        "empty question": 1,
        "oversize message": 1,
        "malformed line": 1,
        "duplicate question": 1,
    }
    with pytest.raises(InputError, match="no header column 'prompt'"):
        read_prompts(csv_path, PromptsConfig(path="x", question_field="prompt"))

    path = jsonl(
        tmp_path / "plain.jsonl",
        [
            {"question": "How long do free trials last?", "answer": "14 days."},
            {"question": "When do exports run?"},
            {"question": 42},
            {"question": "Anything?", "answer": {"text": "no"}},
            {"prompt": "Which key is this?"},
        ],
    )
    got = read_prompts(path, CFG)
    assert [q.answer for q in got.questions] == ["14 days.", None]
    assert got.skipped == {
        "question is not text": 1,
        "answer is not text": 1,
        "no question (no messages, input or question field)": 1,
    }
    page = tmp_path / "page.json"
    page.write_text(json.dumps({"object": "list", "data": [chat(("user", "Who pays?")), 5]}))
    got = read_prompts(page, CFG)
    assert [q.question for q in got.questions] == ["Who pays?"]
    assert (
        got.skipped == {"not a JSON object": 1} and got.first["not a JSON object"] == "page.json:#1"
    )
    (tmp_path / "broken.json").write_text("{nope")
    with pytest.raises(InputError, match="is not JSON"):
        read_prompts(tmp_path / "broken.json", CFG)
    with pytest.raises(InputError, match="is not a file"):
        read_prompts(tmp_path / "absent.jsonl", CFG)


def test_huge_lines_are_skipped_fast_without_being_held(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    with path.open("wb") as f:
        for _ in range(5):
            f.write(json.dumps(chat(("user", "q" * 20_000_000))).encode() + b"\n")
        f.write(json.dumps(chat(("user", "Is this one kept?"))).encode())  # no final newline
    t0 = time.perf_counter()
    got = read_prompts(path, CFG)
    assert time.perf_counter() - t0 < 5  # 100 MB read past in pieces, never parsed
    assert [q.question for q in got.questions] == ["Is this one kept?"]
    assert got.skipped == {"oversize message": 5}


def _questions(n: int) -> list[Question]:
    return [Question(f"{i:016x}", f"Question {i}?", None, f"f:{i}") for i in range(n)]


def test_the_held_out_share_is_seeded_stable_and_never_everything() -> None:
    cfg = PromptsConfig(path="x", eval_fraction=0.25)
    train, held = choose(_questions(40), cfg, seed=0)
    assert 4 <= len(held) <= 18 and len(train) + len(held) == 40
    assert choose(_questions(40), cfg, seed=0) == (train, held)
    # Adding questions moves none of the others.
    _, held_more = choose(_questions(60), cfg, seed=0)
    assert {q.qid for q in held} == {q.qid for q in held_more if int(q.qid, 16) < 40}
    assert choose(_questions(40), cfg, seed=1)[1] != held
    assert len(choose(_questions(3), PromptsConfig(path="x", eval_fraction=0.01), 0)[1]) == 1
    assert choose(_questions(5), PromptsConfig(path="x", eval_fraction=0), 0)[1] == []
    assert choose(_questions(1), cfg, 0) == (_questions(1), [])
    capped = PromptsConfig(path="x", eval_fraction=0.25, max_questions=10)
    train, held = choose(_questions(40), capped, seed=0)
    assert len(train) + len(held) == 10


# -- the generate stage over a small corpus

# Every page and question says "BrightDesk": BM25 always finds some training chunk, so
# a question about a held-out page gets training chunks instead of none.
DOCS = {
    "billing/plans": "BrightDesk Starter costs $12 per user per month. Team costs $29 per "
    "user per month.",
    "billing/trials": "BrightDesk free trials last 14 days and need no credit card.",
    "account/password": "Click Forgot password on the BrightDesk sign-in page. The reset link "
    "is valid for 30 minutes.",
    "account/two-factor": "BrightDesk supports authenticator apps and hardware keys. SMS codes "
    "are not supported.",
    "data/exports": "BrightDesk exports run nightly at 02:00 UTC and arrive as CSV files.",
    "admin/roles": "BrightDesk admins can invite members, change roles and remove seats.",
    "api/limits": "The BrightDesk API allows 600 requests per minute per workspace token.",
}
QUESTIONS = {  # two questions a page, in its own words
    "billing/plans": [
        "How much is BrightDesk Team per user?",
        "What does BrightDesk Starter cost?",
    ],
    "billing/trials": [
        "How long do BrightDesk free trials last?",
        "Do BrightDesk trials need a credit card?",
    ],
    "account/password": [
        "How long is a BrightDesk reset link valid?",
        "Where is BrightDesk Forgot password?",
    ],
    "account/two-factor": [
        "Are SMS codes supported by BrightDesk?",
        "Does BrightDesk take hardware keys?",
    ],
    "data/exports": [
        "When do BrightDesk exports run nightly?",
        "Do BrightDesk exports arrive as CSV?",
    ],
    "admin/roles": ["Can BrightDesk admins change roles?", "Who removes BrightDesk seats?"],
    "api/limits": [
        "How many BrightDesk API requests per minute?",
        "Is the BrightDesk limit per workspace token?",
    ],
}


@pytest.fixture
def corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An ingested corpus of seven one-chunk documents: chunks and a BM25 index (the dense
    vectors are stand-ins: the recipes here search with BM25 alone, so no model loads)."""
    chunks: list[Chunk] = [
        {"chunk_id": f"{doc}#0", "doc_id": doc, "source": f"{doc}.md", "title": doc,
         "heading_path": doc, "text": text, "n_tokens": len(text.split()), "position": 0}
        for doc, text in DOCS.items()
    ]  # fmt: skip

    def stand_in(texts: list[str], *args: Any, **kwargs: Any) -> np.ndarray:
        rng = np.random.default_rng(len(texts))
        v = rng.normal(size=(len(texts), 8)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    monkeypatch.setattr(retrieval, "embed", stand_in)
    ingest = tmp_path / "runs" / "mine" / "ingest"
    ingest.mkdir(parents=True)
    tables.write(ingest / "chunks.parquet", chunks, Chunk)
    build_index(chunks, "stand-in", 8, ingest)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def recipe_text(prompts: str | None, teacher: str = "'fake:'", max_chunks: int | None = 0) -> str:
    """A recipe over the corpus fixture (BM25 alone; a student that does not load)."""
    text = (
        "name: mine\ningest:\n  paths: [docs]\nstudent: ./no-student-here\n"
        f"teacher: {teacher}\nretrieval: {{mode: bm25}}\nsplit: {{eval_fraction: 0.3}}\n"
        "generate:\n  neighbours: 1\n"
    )
    if max_chunks is not None:
        text += f"  max_chunks: {max_chunks}\n"
    return text + (f"  prompts: {prompts}\n" if prompts else "")


def traffic_file(folder: Path, answers: bool = False) -> Path:
    lines = []
    for doc, (first, second) in QUESTIONS.items():
        lines.append(chat(("user", first), ("assistant", f"From {doc}: yes.")) if answers
                     else chat(("user", first)))  # fmt: skip
        lines.append({"question": second})
    lines.append("not json")  # a skip, counted in generate's counts
    return jsonl(folder / "traffic.jsonl", lines)


def run_generate(folder: Path, text: str) -> tuple[dict[str, Any], RunFolder]:
    recipe = load_recipe(write_recipe(folder, text))
    run = RunFolder(folder / "runs" / "mine")
    return generate.run(recipe, run, RunOptions()), run


def test_no_held_out_chunk_reaches_a_training_prompt(corpus: Path) -> None:
    """Every imported training sample's context comes from training documents; the
    control shows that retrieval over the whole index would have handed some of them a
    held-out chunk."""
    traffic_file(corpus)
    counts, run = run_generate(corpus, recipe_text("{path: traffic.jsonl, eval_fraction: 0.2}"))
    split = Split.load(run.split_file)
    assert split.eval_docs and split.train_docs
    samples = read_rows(run.samples)
    assert samples and {s["task"] for s in samples} == {"imported"}
    held_text = [text for doc, text in DOCS.items() if doc in split.eval_docs]
    for s in samples:
        assert set(s["doc_ids"]) <= split.train_docs and s["side"] == "train"
        prompt = "\n".join(m["content"] for m in s["messages"])
        assert not any(t in prompt for t in held_text)
        assert s["answer_by"] == "teacher" and s["teacher"] == "fake:"
        assert s["origin"].startswith("traffic.jsonl:")
    whole = Retriever(run.ingest_dir, RetrievalConfig(mode="bm25"))
    best = whole.retrieve_many([s["question"] for s in samples], 1)
    assert any(hits[0][0]["doc_id"] in split.eval_docs for hits in best)
    # The held-out share: never trained on, each with the teacher's grounded reference.
    traffic = [json.loads(ln) for ln in run.traffic.read_text().splitlines()]
    assert traffic and not {t["question"] for t in traffic} & {s["question"] for s in samples}
    assert len(traffic) + len(samples) == counts["imported_questions"] == 14
    assert all(t["reference_by"] == "teacher" and t["reference"] for t in traffic)
    assert counts["imported_skipped"] == {"malformed line": 1}
    assert counts["traffic_items"] == len(traffic) == counts["imported_held_out"]


def test_kept_answers_are_the_users_and_cost_no_request(corpus: Path) -> None:
    traffic_file(corpus, answers=True)
    counts, run = run_generate(
        corpus, recipe_text("{path: traffic.jsonl, answers: keep, eval_fraction: 0.2}")
    )
    samples = read_rows(run.samples)
    traffic = [json.loads(ln) for ln in run.traffic.read_text().splitlines()]
    kept = [s for s in samples if s["answer_by"] == "user"]
    asked = [s for s in samples if s["answer_by"] == "teacher"]
    assert kept and asked  # the {question} records have no answer: the teacher's
    assert all(s["answer"].startswith("From ") and s["teacher"] == "user" for s in kept)
    assert all(s["cost_usd"] == 0 and s["output_tokens"] == 0 for s in kept)
    assert counts["requests_sent"] == len(asked) + sum(
        t["reference_by"] == "teacher" for t in traffic
    )
    # A held-out question with an imported answer is referenced by it.
    by_user = {t["question"]: t for t in traffic if t["reference_by"] == "user"}
    firsts = {q[0]: doc for doc, q in QUESTIONS.items()}
    assert all(t["reference"] == f"From {firsts[q]}: yes." for q, t in by_user.items())
    assert counts["imported_answers_kept"] == len(kept)


def test_a_rerun_pays_for_no_request_and_resumes_a_failed_one(
    corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the loopback OpenAI server: the second run is served from the cache; a
    request that failed is sent again and only it."""
    monkeypatch.setenv("DISTILL_TEST_KEY", "test-key-" + "z" * 24)
    traffic_file(corpus)
    with serve() as (server, url):

        def answer(body: dict[str, Any]) -> str:
            return "It says so [1]."

        server.reply = answer
        server.faults = [(400, {}, '{"error": {"message": "bad request"}}')]
        opts = f"{{base_url: '{url}', api_key_env: DISTILL_TEST_KEY, ramp_s: 0, max_retries: 0}}"
        text = recipe_text(
            "{path: traffic.jsonl, eval_fraction: 0.2}",
            teacher=f"{{model: 'openai:gpt-4o-mini', options: {opts}}}",
        )
        first, run = run_generate(corpus, text)
        assert first["requests_sent"] == 14 and first["failures"] == 1
        sent = len(server.requests)
        again, run = run_generate(corpus, text)
        assert again["failures"] == 0 and again["cached_replies"] == 13
        assert again["requests_sent"] == 1 and len(server.requests) == sent + 1
        third, _ = run_generate(corpus, text)
        assert third["requests_sent"] == 0 and len(server.requests) == sent + 1
    assert third["samples"] + third["traffic_items"] == 14


def test_with_generated_questions_and_an_edited_file(corpus: Path) -> None:
    """Your questions join the generated ones; without generate.prompts an earlier run's
    traffic set is gone (eval would otherwise ask it)."""
    traffic_file(corpus)
    counts, run = run_generate(corpus, recipe_text("{path: traffic.jsonl}", max_chunks=4))
    assert counts["tasks"]["imported"] and counts["tasks"]["qa"]
    assert run.traffic.is_file()
    run_generate(corpus, recipe_text(None, max_chunks=4))
    assert not run.traffic.exists()
    (corpus / "traffic.jsonl").write_text("not json\n\n")
    with pytest.raises(
        InputError, match=r"no usable question in traffic.jsonl \(skipped: 1 malformed"
    ):
        run_generate(corpus, recipe_text("{path: traffic.jsonl}"))


def test_the_prompts_file_is_in_generates_fingerprint(corpus: Path) -> None:
    from distill.pipeline import default_stages

    path = traffic_file(corpus)
    recipe = load_recipe(write_recipe(corpus, recipe_text("{path: traffic.jsonl}")))
    extra = default_stages()["generate"].extra
    before = extra(recipe)["prompts_file"]
    path.write_text(path.read_text() + json.dumps({"question": "One more?"}) + "\n")
    assert extra(recipe)["prompts_file"] != before
    plain = load_recipe(write_recipe(corpus, recipe_text(None, max_chunks=None)))
    assert "prompts_file" not in extra(plain)


def test_a_key_in_an_imported_question_stops_publish(
    corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Imported text reaches the published dataset like every training row, and the
    secret scan before publish catches a key in it (generate counts it first)."""
    from distill.errors import UserError
    from distill.publish.secrets import refuse_secrets
    from distill.publish.stage import _dataset_rows

    monkeypatch.setenv("HF_HOME", str(corpus / "hf-home"))
    key = "sk-proj-" + "Q7" * 16
    jsonl(corpus / "traffic.jsonl", [
        {"question": f"My key {key} stopped working: how many API requests per minute?"},
        {"question": "How long do free trials last?"},
    ])  # fmt: skip
    counts, run = run_generate(corpus, recipe_text("{path: traffic.jsonl, eval_fraction: 0}"))
    assert counts["imported_secret_shaped"] == 1
    rows = read_rows(run.samples)
    assert any(key in r["question"] for r in rows)
    staged = corpus / "staged"
    from distill.io import write_rows

    write_rows(staged / "data" / "train-00000-of-00001.parquet", _dataset_rows(rows))
    with pytest.raises(UserError, match="an OpenAI or Anthropic key") as e:
        refuse_secrets(staged, "dataset")
    assert key not in str(e.value)


def test_the_held_out_share_is_evals_traffic_set(corpus: Path) -> None:
    """Eval asks the held-out questions as the `traffic` set: your answers or the
    teacher's as references, a refusing reference as a question the documents cannot
    answer, and none that a training row asks too."""
    from distill.evaluate.items import build_items
    from distill.io import write_rows

    traffic_file(corpus, answers=True)
    text = recipe_text("{path: traffic.jsonl, eval_fraction: 0.5}") + "eval: {generated: false}\n"
    _, run = run_generate(corpus, text)
    records = [json.loads(ln) for ln in run.traffic.read_text().splitlines()]
    assert {r["reference_by"] for r in records} == {"user", "teacher"}
    by_teacher = next(r for r in records if r["reference_by"] == "teacher")
    by_teacher["refusal"] = True  # as if the teacher found no answer in the documents
    trained = next(r for r in records if r is not by_teacher)
    run.traffic.write_text("".join(json.dumps(r) + "\n" for r in records))
    write_rows(run.curated("train"), [{"question": trained["question"] + "!"}])
    recipe = load_recipe(write_recipe(corpus, text))
    items, key = build_items(recipe, run, Retriever(run.ingest_dir, recipe.retrieval))
    asked = {it.item_id: it for it in items if it.eval_set == "traffic"}
    assert key is None and set(asked) == {r["id"] for r in records} - {trained["id"]}
    for r in records:
        it = asked.get(r["id"])
        if it is None:
            continue
        assert it.question == r["question"] and it.reference_by == r["reference_by"]
        assert len(it.hits) == recipe.eval.k and not it.key_facts
        if r is by_teacher:
            assert (it.kind, it.reference) == ("off_topic", "")
        else:
            assert (it.kind, it.reference) == ("answerable", r["reference"])
            assert it.source_chunk_ids == (r["cited_chunk_ids"] or r["chunk_ids"])


def test_no_generated_questions_needs_your_own() -> None:
    from pydantic import ValidationError

    from distill.generate.config import GenerateConfig

    with pytest.raises(ValidationError, match="max_chunks: 0 generates nothing"):
        GenerateConfig(max_chunks=0)
    assert GenerateConfig(max_chunks=0, prompts=PromptsConfig(path="q.jsonl")).max_chunks == 0


@pytest.mark.slow
def test_hybrid_retrieval_keeps_the_split_too(ingested: Path, tmp_path: Path) -> None:
    """With the real embedder and hybrid search (dense ranks every chunk), an imported
    question about a held-out page still gets training chunks alone."""
    from distill.pipeline import run_pipeline

    jsonl(tmp_path / "traffic.jsonl", [
        {"question": q} for q in (
            "How long do free trials last?", "What does the Team plan cost per user?",
            "How long is the password reset link valid?", "Where do I click Forgot password?",
            "Are SMS codes supported for two-factor?", "Which authenticator apps work?",
        )
    ])  # fmt: skip
    path = write_recipe(
        tmp_path,
        "name: small\ningest:\n  paths: [docs]\n  chunk_tokens: 64\n  chunk_overlap: 8\n"
        "teacher: 'fake:'\ngenerate:\n  neighbours: 1\n"
        "  prompts: {path: traffic.jsonl, eval_fraction: 0.2, k: 2}\n",
    )
    run = run_pipeline(load_recipe(path), until="generate")
    split = Split.load(run.split_file)
    chunks = read_rows(run.chunks)
    held = [c["text"] for c in chunks if c["doc_id"] in split.eval_docs]
    mine = [s for s in read_rows(run.samples) if s["task"] == "imported"]
    assert held and len(mine) == 6 - len(run.traffic.read_text().splitlines())
    for s in mine:
        assert set(s["doc_ids"]) <= split.train_docs and len(s["chunk_ids"]) == 2
        prompt = "\n".join(m["content"] for m in s["messages"])
        assert not any(text in prompt for text in held)


def test_the_estimate_prices_your_questions_as_generate_sends_them(corpus: Path) -> None:
    from distill.generate.estimate import estimate

    traffic_file(corpus, answers=True)
    text = recipe_text("{path: traffic.jsonl, answers: keep, eval_fraction: 0.2}")
    recipe = load_recipe(write_recipe(corpus, text))
    run = RunFolder(corpus / "runs" / "mine")
    (mine,) = [s for s in estimate(recipe, run)["steps"] if s["step"] == "your questions"]
    counts, _ = run_generate(corpus, text)
    # The kept answers cost nothing: only the questions without one are asked.
    assert mine["requests"] == counts["requests_sent"] < counts["imported_questions"]
    assert mine["output_tokens_max"] == mine["requests"] * recipe.generate.max_new_tokens
