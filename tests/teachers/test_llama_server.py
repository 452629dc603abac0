"""The openai: teacher against a real OpenAI-compatible server: llama-cpp-python's,
serving the offline SmolLM2 GGUF (slow; `make test` installs llama-cpp-python)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from distill.io import read_rows
from distill.pipeline import run_pipeline
from distill.recipe import load_recipe
from distill.teachers.engine import schema_problem
from distill.teachers.factory import make_teacher
from tests.conftest import llama_server, smollm2_gguf

pytestmark = pytest.mark.slow
SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}},
    "required": ["question"],
}


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with llama_server(smollm2_gguf(), tmp_path_factory.mktemp("llama")) as url:
        yield url


def test_structured_output_through_json_object_mode(
    llama_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLAMA_KEY", "none")
    teacher = make_teacher(
        "openai:smollm2",
        {"base_url": llama_url, "api_key_env": "LLAMA_KEY", "structured": "json_object"},
    )
    chat = [{"role": "user", "content": "Write one question about how long free trials last."}]
    c = teacher.complete(chat, schema=SCHEMA, max_tokens=48, temperature=0.0)
    # The server constrains decoding to the schema, so the reply validates.
    assert schema_problem(c.parsed, SCHEMA) is None and c.parsed["question"]
    assert c.usage.input_tokens > 10 and c.usage.output_tokens > 0
    replies = teacher.complete_many([chat, chat], max_tokens=16, temperature=0.0)
    assert all(r.error is None and r.text for r in replies)


def test_generate_stage_through_the_server(
    ingested: Path, llama_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLAMA_KEY", "none")
    recipe = load_recipe(
        ingested.parent.parent / "recipe.yaml",
        [
            "name=llama",
            "teacher=openai:smollm2",
            f"teacher.options={{base_url: '{llama_url}', api_key_env: LLAMA_KEY}}",
            "generate.max_new_tokens=48",
        ],
    )
    run = run_pipeline(recipe, until="generate")
    counts = run.stage("generate")["counts"]
    samples = read_rows(recipe.run_path / "generate" / "samples.parquet")
    failures = read_rows(recipe.run_path / "generate" / "failures.parquet")
    assert len(samples) + len({f["request_id"] for f in failures}) == 4
    assert samples and all(s["answer"] and s["question"] for s in samples)
    assert counts["requests_sent"] == 4 + len(samples) and counts["cost_usd"] == 0
    assert run.stage("generate")["tokens"]["input"] > 0
