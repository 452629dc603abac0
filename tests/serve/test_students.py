"""`distill serve` with the real student (slow): SmolLM2 with a freshly trained adapter,
through llama.cpp in process (its GGUF and the adapter exported as a LoRA GGUF, as eval
answers), behind the real retrieval (MiniLM + BM25 over an ingested corpus), asked with
the real `openai` SDK. A streamed reply is the whole reply in pieces; a prompt over the
context is a 400 and the server goes on; the load test (bench/serve_load.py, small
counts) loses no request at concurrency 1, 4 and 16 and leaves the server up."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from distill.recipe import load_recipe
from distill.runfolder import RunFolder
from distill.serve.app import create_app, running
from distill.serve.assistant import Assistant, open_assistant
from distill.serve.students import LocalStudent
from tests.conftest import REPO, write_recipe
from tests.fakes.loopback import free_port
from tests.train.test_sft import STUDENT, cfg, rows

pytestmark = pytest.mark.slow

DOCS = {
    "plans.md": "# Plans\n\n## Trials\n\nFree trials last 14 days and need no credit card.\n",
    "password.md": "# Passwords\n\n## Reset\n\nThe reset link is valid for 30 minutes.\n",
    "two-factor.md": "# Two-factor\n\n## Methods\n\nHardware keys are supported; SMS is not.\n",
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A run folder with an index and a trained adapter; its recipe."""
    from distill.pipeline import run_pipeline
    from distill.train.sft import train_adapter

    root = tmp_path_factory.mktemp("serve")
    (root / "docs").mkdir()
    for name, text in DOCS.items():
        (root / "docs" / name).write_text(text)
    recipe = write_recipe(
        root,
        f"name: srv\nrun_dir: {root / 'runs'}\ningest:\n  paths: [docs]\n  chunk_tokens: 64\n"
        f"  chunk_overlap: 8\nteacher: 'fake:'\nstudent: {STUDENT}\n"
        "eval:\n  k: 2\n  max_new_tokens: 24\n  engine: llama.cpp\n",
    )
    r = load_recipe(recipe)
    run_pipeline(r, until="ingest")
    folder = RunFolder(r.run_path)
    train_adapter(STUDENT, cfg(max_steps=2), rows(8), folder.stage_dir("train"))
    folder.update_stage("train", status="done")
    return {"recipe": recipe, "root": root}


@pytest.fixture(scope="module")
def served(run: dict[str, Any]) -> Iterator[tuple[Assistant, str]]:
    assistant = open_assistant(load_recipe(run["recipe"]), run["recipe"])
    try:
        with running(create_app(assistant), "127.0.0.1", free_port()) as url:
            yield assistant, url
    finally:
        assistant.student.close()


def test_the_student_answers_with_its_retrieval(served: tuple[Assistant, str]) -> None:
    assistant, url = served
    student = assistant.student
    assert isinstance(student, LocalStudent) and student.llama is not None
    assert student.llama.lora is not None and student.llama.lora.name == "srv-lora-f16.gguf"
    question = "How long do free trials last?"
    with openai.OpenAI(base_url=url, api_key="unused", max_retries=0) as sdk:
        whole = sdk.chat.completions.create(
            model="srv", messages=[{"role": "user", "content": question}]
        )
        pieces = list(
            sdk.chat.completions.create(
                model="srv",
                messages=[{"role": "user", "content": question}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    text = whole.choices[0].message.content
    assert text and whole.choices[0].finish_reason in ("stop", "length")
    assert "".join(c.choices[0].delta.content or "" for c in pieces if c.choices) == text
    extra = (whole.model_extra or {})["distill"]
    assert "plans" in extra["retrieved"][0]["doc_id"] and len(extra["retrieved"]) == 2
    # The usage llama.cpp counted is the count the context check makes beforehand.
    grounded = assistant.ground(question)
    assert whole.usage is not None and pieces[-1].usage is not None
    assert whole.usage.prompt_tokens == student.prompt_tokens(grounded.messages) > 50
    assert pieces[-1].usage.completion_tokens == whole.usage.completion_tokens <= 25


def test_through_transformers_the_reply_comes_whole(run: dict[str, Any]) -> None:
    """`eval.engine: transformers`: the same student (the model and the adapter folder),
    generated whole and streamed as one piece; its context is the model's."""
    recipe = load_recipe(run["recipe"], ["eval.engine=transformers"])
    assistant = open_assistant(recipe, run["recipe"])
    try:
        student = assistant.student
        assert isinstance(student, LocalStudent) and student.llama is None
        assert "transformers" in student.description and student.n_ctx == 8192
        with running(create_app(assistant), "127.0.0.1", free_port()) as url:
            with openai.OpenAI(base_url=url, api_key="unused", max_retries=0) as sdk:
                ask = {"model": "srv", "messages": [{"role": "user", "content": "Is SMS ok?"}]}
                whole = sdk.chat.completions.create(**ask)
                pieces = [
                    c.choices[0].delta.content
                    for c in sdk.chat.completions.create(**ask, stream=True)
                    if c.choices and c.choices[0].delta.content
                ]
    finally:
        student.close()
    assert whole.choices[0].message.content and pieces == [whole.choices[0].message.content]
    assert whole.usage is not None and whole.usage.prompt_tokens > 50


def test_a_prompt_over_the_context_is_a_400(served: tuple[Assistant, str]) -> None:
    assistant, url = served
    assert assistant.student.n_ctx == 4096
    with openai.OpenAI(base_url=url, api_key="unused", max_retries=0) as sdk:
        with pytest.raises(openai.BadRequestError) as e:
            sdk.chat.completions.create(
                model="srv", messages=[{"role": "user", "content": "Is SMS supported? " * 1500}]
            )
        assert e.value.code == "context_length_exceeded" and "4096" in e.value.message
        ok = sdk.chat.completions.create(
            model="srv", messages=[{"role": "user", "content": "Is SMS supported?"}]
        )
    assert ok.choices[0].message.content


def test_the_load_test_loses_no_request(run: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    got = subprocess.run(
        [sys.executable, str(REPO / "bench" / "serve_load.py"), str(run["recipe"])]
        + ["--levels", "1,4,16", "--requests", "16", "--max-tokens", "12", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert got.returncode == 0, got.stdout + got.stderr
    report = json.loads(out.read_text())
    assert report["server_alive_after"] is True
    assert [lv["concurrency"] for lv in report["levels"]] == [1, 4, 16]
    for lv in report["levels"]:
        assert lv["sent"] == lv["answered"] == 16 and lv["lost"] == lv["refused"] == []
        assert lv["requests_per_s"] > 0 and lv["p99_s"] >= lv["p50_s"] > 0
        assert lv["tokens_per_s"] > 0 and lv["first_token_p50_s"] <= lv["p99_s"]
