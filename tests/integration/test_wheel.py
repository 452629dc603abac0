"""The built wheel works outside the checkout: its prompt templates, review
kit and card templates are package data, found with importlib.resources.

The wheel is built from this tree and installed with --no-deps into a fresh venv whose
only other packages are the test venv's site-packages, added read-only behind it (a
.pth line, so the test venv's editable install of distill is not among them). Slow:
the fake-teacher run loads the real tokenizer and MiniLM."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    # A copy of the tree, so the build writes nothing into the checkout (build/, egg-info).
    src = build / "src"
    shutil.copytree(
        REPO,
        src,
        symlinks=True,
        ignore=shutil.ignore_patterns(".venv", "runs", ".git", "*.egg-info", "__pycache__"),
    )
    got = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", out, src],
        capture_output=True,
        text=True,
    )
    assert got.returncode == 0, got.stdout + got.stderr
    (found,) = out.glob("distill-*.whl")
    return found


def test_the_wheel_carries_templates_and_the_review_kit(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {
        "distill/assets/prompts/qa_answer/v1.j2",
        "distill/assets/prompts/eval_grade/v2.j2",
        "distill/assets/review/guidelines.md",
        "distill/assets/review/server/launch.py",
        "distill/publish/templates/dataset.md.j2",
        "distill/publish/templates/model.md.j2",
    }
    assert shipped <= names, shipped - names
    for path in (REPO / "prompts").glob("*/v*.j2"):  # every template, none forgotten
        assert f"distill/assets/prompts/{path.parent.name}/{path.name}" in names


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The test venv's packages, behind the fresh venv's own: a path line in a .pth does
    # not run that folder's .pth files, so its editable distill stays out.
    Path(site, "shared-test-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    got = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", wheel],
        capture_output=True,
        text=True,
    )
    assert got.returncode == 0, got.stdout + got.stderr
    return venv


def _distill(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [venv / "bin" / "distill", *args], cwd=cwd, capture_output=True, text=True, env=env
    )


def test_the_installed_wheel_runs_outside_the_checkout(
    installed: Path, small_corpus: Path, tmp_path: Path
) -> None:
    where = subprocess.run(
        [
            installed / "bin" / "python",
            "-c",
            "import distill, distill.assets as a; "
            "print(distill.__file__); print(a.path('prompts'))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert where.returncode == 0, where.stderr
    module, prompts = where.stdout.split()
    assert str(installed) in module and str(installed) in prompts  # not the checkout
    assert not Path(module).is_relative_to(REPO)

    # The quickstart recipe, with the corpus it names, copied outside the checkout.
    shutil.copytree(
        REPO / "examples" / "brightdesk" / "docs", tmp_path / "examples" / "brightdesk" / "docs"
    )
    shutil.copy(
        REPO / "examples" / "brightdesk" / "answer_key.jsonl",
        tmp_path / "examples" / "brightdesk" / "answer_key.jsonl",
    )
    (tmp_path / "recipes").mkdir()
    shutil.copy(REPO / "recipes" / "quickstart.yaml", tmp_path / "recipes")
    valid = _distill(installed, tmp_path, "validate", "recipes/quickstart.yaml")
    assert valid.returncode == 0, valid.stderr
    assert "recipes/quickstart.yaml: valid" in valid.stderr

    fields = _distill(installed, tmp_path, "fields")
    assert fields.returncode == 0, fields.stderr
    assert "`generate`" in fields.stdout and "| `teacher` |" in fields.stdout

    (tmp_path / "fake.yaml").write_text(
        "name: wheel\ningest: {paths: [docs], chunk_tokens: 64, chunk_overlap: 8}\n"
        "teacher: 'fake:'\ngenerate: {neighbours: 1}\n"
    )
    assert small_corpus == tmp_path / "docs"
    ran = _distill(installed, tmp_path, "run", "fake.yaml", "--until", "generate")
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "runs" / "wheel" / "generate" / "samples.parquet").exists()
    assert "Traceback" not in ran.stderr
