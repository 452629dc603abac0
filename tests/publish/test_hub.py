"""The Hub upload at the HTTP boundary (a loopback Hub): every file sent, a second upload
that makes the repository match the folder, and a missing token. The real-model round
trip is in integration/test_end_to_end.py."""

from __future__ import annotations

import hashlib
from pathlib import Path
from unittest.mock import ANY

import pytest

from distill.errors import UserError
from distill.io import write_rows
from distill.publish.hub import upload
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
