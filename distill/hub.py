"""Upload a written publish folder to the Hugging Face Hub with `huggingface_hub`.

The token is `HF_TOKEN` or the Hub's login cache (`hf auth login`), read by
`huggingface_hub` itself; distill never writes it anywhere. `HF_ENDPOINT` points at
another Hub (a mirror or a test server) as usual.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from distill.errors import UserError

Kind = Literal["dataset", "adapter"]


def _repo_type(kind: Kind) -> str:
    return "dataset" if kind == "dataset" else "model"


def upload(kind: Kind, folder: Path, repo_id: str, private: bool, message: str) -> dict[str, Any]:
    """Create the repository if needed and commit every file of `folder` in one commit.
    Returns {"url", "commit", "files", "bytes"}."""
    from huggingface_hub import CommitOperationAdd, HfApi, constants, get_token
    from huggingface_hub.errors import HfHubHTTPError

    if constants.is_offline_mode():
        raise UserError(
            "HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set: unset it to upload to the Hub"
        )
    if not get_token():
        raise UserError(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login` "
            "(a token with write access to the repository's owner)"
        )
    api = HfApi()
    repo_type = _repo_type(kind)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    try:
        repo = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        info = api.create_commit(
            repo_id,
            repo_type=repo_type,
            operations=[
                CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=p)
                for p in files
            ],
            commit_message=message,
        )
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        hint = {
            401: "the token was refused: check HF_TOKEN or run `hf auth login`",
            403: f"the token may not write to '{repo_id}': use a write token for its owner",
            404: f"'{repo_id}' was not found and could not be created",
        }.get(status or 0, "")
        first = str(e).splitlines()[0]
        raise UserError(
            f"upload to the Hub failed: {first}" + (f" ({hint})" if hint else "")
        ) from e
    except ValueError as e:  # the Hub refused a card's metadata
        raise UserError(f"upload to the Hub failed: {' '.join(str(e).split())}") from e
    return {
        "url": str(repo),
        "commit": info.oid,
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
    }
