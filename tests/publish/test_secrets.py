"""What publish writes carries no secret: the recipe scrubbed of credentials, and the scan
of both folders for known values and token shapes, in files and in Parquet cells."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.io import write_rows
from distill.publish.secrets import find_secrets
from distill.redact import scrub

HF_TOKEN = "hf_" + "T3st" * 9  # shaped like a real token; never valid anywhere


def test_scrub_removes_credentials_but_keeps_variable_names() -> None:
    recipe = {
        "teacher": {
            "options": {
                "api_key": "plain-secret-value",
                "api_key_env": "OPENAI_API_KEY",
                "base_url": "https://proxy.example/v1?key=sk-proj-" + "a" * 30,
                "headers": {"Authorization": "Bearer xyz"},
            }
        },
        "notes": ["token " + HF_TOKEN],
        "review": {"api_url": None, "password_env": "ARGILLA_PASSWORD"},
    }
    out = scrub(recipe)
    opts = out["teacher"]["options"]
    assert opts["api_key"] == "<redacted>" and opts["api_key_env"] == "OPENAI_API_KEY"
    assert opts["base_url"] == "https://proxy.example/v1?key=<redacted>"
    assert opts["headers"] == {"Authorization": "<redacted>"}
    assert out["notes"] == ["token <redacted>"]
    assert out["review"] == {"api_url": None, "password_env": "ARGILLA_PASSWORD"}


def test_secret_scan_finds_known_values_and_shapes_never_printing_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISTILL_TEST_API_KEY", "correct-horse-battery")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    folder = tmp_path / "repo"
    (folder / "data").mkdir(parents=True)
    (folder / "README.md").write_text("Made with key correct-horse-battery.\n")
    (folder / "clean.txt").write_text("Nothing to see: hf_short, sk-tiny.\n")
    # Parquet pages may be compressed: the scan reads the decoded rows.
    write_rows(
        folder / "data" / "train.parquet", [{"text": "x" * 500 + " " + HF_TOKEN} for _ in range(50)]
    )
    found = find_secrets(folder)
    assert found == [
        "README.md: the value of $DISTILL_TEST_API_KEY",
        "data/train.parquet: a Hugging Face token",
    ]
    assert not any("correct-horse" in f or HF_TOKEN in f for f in found)


@pytest.mark.parametrize("secret", ['pa"ss-w0rd-quoted', "back\\slash-secret", "clé-secrète-été"])
def test_secret_scan_reads_parquet_cells_as_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    """A secret with a quote, a backslash or non-ASCII letters was missed in Parquet
    cells: the scan read their JSON dump, where such characters are escaped."""
    monkeypatch.setenv("DISTILL_TEST_PASSWORD", secret)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    folder = tmp_path / "repo"
    folder.mkdir()
    write_rows(
        folder / "train.parquet",
        [{"messages": [{"role": "user", "content": f"log in with {secret} please"}]}],
    )
    assert find_secrets(folder) == ["train.parquet: the value of $DISTILL_TEST_PASSWORD"]
