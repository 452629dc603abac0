from __future__ import annotations

from pathlib import Path

import pytest

from distill.errors import UserError
from distill.models import resolve_causal_lm, resolve_embedding_model


def test_aliases_resolve_to_their_kind_only() -> None:
    with pytest.raises(UserError, match="is an embedding model"):
        resolve_causal_lm("all-minilm-l6-v2")
    with pytest.raises(UserError, match="is a causal language model"):
        resolve_embedding_model("smollm2-135m-instruct")
    emb = resolve_embedding_model("all-minilm-l6-v2")
    assert emb.hub_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert (Path(emb.path) / "config.json").exists()


def test_local_paths_are_checked(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="GGUF file not found"):
        resolve_causal_lm(str(tmp_path / "missing.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="without config.json"):
        resolve_causal_lm(str(tmp_path / "empty"))


def test_hub_ids_pass_through_unchanged() -> None:
    r = resolve_causal_lm("someorg/some-model")
    assert (r.path, r.hub_id) == ("someorg/some-model", "someorg/some-model")
