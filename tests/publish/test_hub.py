"""Publishing without models: the secret scan, the recipe scrub, the Hub upload at the
HTTP boundary (a loopback Hub), and the CLI's refusals. The real-model round trip is
in test_end_to_end.py."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import ANY

import pytest

from distill.errors import UserError
from distill.io import write_rows
from distill.publish.cards import size_category
from distill.publish.hub import upload
from distill.publish.secrets import find_secrets
from distill.redact import scrub
from tests.fakes.hub_server import serve_hub

HF_TOKEN = "hf_" + "T3st" * 9  # shaped like a real token; never valid anywhere


@pytest.fixture
def hub_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    with serve_hub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # conftest and CI set them
            monkeypatch.delenv(name, raising=False)
        import importlib

        import huggingface_hub.constants as c

        importlib.reload(c)  # the endpoint and Xet switch are read at import
        yield hub
    importlib.reload(c)


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


def test_size_categories() -> None:
    assert [size_category(n) for n in (0, 999, 1000, 54_321, 2_000_000)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "10K<n<100K",
        "1M<n<10M",
    ]


def test_upload_sends_every_file_to_the_hub(hub_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hub = hub_env
    folder = tmp_path / "dataset"
    (folder / "data").mkdir(parents=True)
    (folder / "README.md").write_text("---\nlicense: other\n---\n# card\n")
    write_rows(folder / "data" / "train-00000-of-00001.parquet", [{"a": i} for i in range(10)])
    got = upload("dataset", folder, "me/demo", private=True, message="distill publish dataset")
    assert got["files"] == 2 and got["url"].endswith("/datasets/me/demo")
    assert hub.repos == {"dataset/me/demo": {"private": True}}
    local = {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }
    assert hub.files["dataset/me/demo"] == {**local, ".gitattributes": ANY}
    # The Parquet file went through the LFS protocol, the card inline in the commit.
    parquet = local["data/train-00000-of-00001.parquet"]
    assert hashlib.sha256(parquet).hexdigest() in hub.blobs
    assert hub.commits[0]["summary"] == "distill publish dataset"
    api = [r for r in hub.requests if not r["path"].startswith("/lfs-upload/")]
    assert api and all(r["headers"]["authorization"] == f"Bearer {HF_TOKEN}" for r in api)
    # Publishing again updates the same repository (create_repo with exist_ok).
    (folder / "README.md").write_text("---\nlicense: other\n---\n# card v2\n")
    upload("dataset", folder, "me/demo", private=True, message="again")
    assert hub.files["dataset/me/demo"]["README.md"].endswith(b"# card v2\n")
    assert len(hub.commits) == 2


def test_publishing_again_makes_the_repo_match_the_folder(hub_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hub = hub_env
    folder = tmp_path / "dataset"
    (folder / "corpus").mkdir(parents=True)
    (folder / "README.md").write_text("---\nlicense: other\n---\n# card\n")
    write_rows(folder / "corpus" / "chunks-00000-of-00001.parquet", [{"text": "a chunk"}])
    upload("dataset", folder, "me/demo", private=None, message="with the corpus")
    assert hub.repos["dataset/me/demo"] == {"private": False}
    assert "corpus/chunks-00000-of-00001.parquet" in hub.files["dataset/me/demo"]
    # include_corpus turned off, and the user now asks for a private repository
    (folder / "corpus" / "chunks-00000-of-00001.parquet").unlink()
    got = upload("dataset", folder, "me/demo", private=True, message="without it")
    assert got["deleted"] == ["corpus/chunks-00000-of-00001.parquet"]
    assert sorted(hub.files["dataset/me/demo"]) == [".gitattributes", "README.md"]
    assert hub.repos["dataset/me/demo"] == {"private": True}
    assert len(hub.commits) == 2  # the deletion is in the same commit as the upload
    # Neither --private nor --public: an existing repository keeps its visibility.
    got = upload("dataset", folder, "me/demo", private=None, message="again")
    assert got["deleted"] == [] and hub.repos["dataset/me/demo"] == {"private": True}
    upload("dataset", folder, "me/demo", private=False, message="open it")
    assert hub.repos["dataset/me/demo"] == {"private": False}


def test_upload_without_a_token_is_one_clear_error(
    hub_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("HF_TOKEN")
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "README.md").write_text("x")
    with pytest.raises(
        UserError, match="no Hugging Face token: set HF_TOKEN or run `hf auth login`"
    ):
        upload("adapter", tmp_path / "f", "me/x", private=False, message="m")
    assert hub_env.requests == []


def test_an_other_license_names_itself_as_the_hubs_card_spec_asks() -> None:
    import yaml
    from huggingface_hub import DatasetCard, ModelCard

    from distill.publish.cards import OTHER_LICENSE, license_meta, license_text
    from distill.publish.config import PublishConfig

    other = PublishConfig()
    meta = license_meta(other)
    front = "---\n" + yaml.safe_dump(meta) + "---\n# card\n"
    for card in (ModelCard(front), DatasetCard(front)):
        assert card.data.license == "other"
        assert card.data.license_name == "documents-license"
        assert card.data.license_link == OTHER_LICENSE
    recipe = SimpleNamespace(name="acme", publish=other)
    text = license_text(recipe)  # type: ignore[arg-type]
    assert text is not None and "`acme`" in text
    named = PublishConfig(license="cc-by-4.0")
    assert license_meta(named) == {"license": "cc-by-4.0"}
    assert license_text(SimpleNamespace(name="acme", publish=named)) is None  # type: ignore[arg-type]
    linked = PublishConfig(license_name="acme-eula", license_link="https://acme.example/eula")
    assert license_meta(linked)["license_link"] == "https://acme.example/eula"
    assert license_text(SimpleNamespace(name="acme", publish=linked)) is None  # type: ignore[arg-type]


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
