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


# Files the Hub writes itself; never deleted as stale.
HUB_OWN_FILES = {".gitattributes"}


def upload(
    kind: Kind, folder: Path, repo_id: str, private: bool | None, message: str
) -> dict[str, Any]:
    """Make the repository match `folder` in one commit: create it if needed, add every
    file, delete the files it holds that the folder no longer has (say, the corpus after
    `include_corpus` was turned off). `private`: True or False sets the visibility of a
    new or existing repository; None creates a public one and leaves an existing one's
    visibility as it is. Returns {"url", "commit", "files", "deleted", "bytes", "private"}."""
    from huggingface_hub import (
        CommitOperationAdd,
        CommitOperationDelete,
        HfApi,
        constants,
        get_token,
    )
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
    local = {p.relative_to(folder).as_posix() for p in files}
    try:
        repo = api.create_repo(repo_id, repo_type=repo_type, private=bool(private), exist_ok=True)
        if private is not None:  # an existing repository keeps its own otherwise
            api.update_repo_settings(repo_id, repo_type=repo_type, private=private)
        stale = sorted(
            set(api.list_repo_files(repo_id, repo_type=repo_type)) - local - HUB_OWN_FILES
        )
        info = api.create_commit(
            repo_id,
            repo_type=repo_type,
            operations=[
                CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=p)
                for p in files
            ]
            + [CommitOperationDelete(path_in_repo=p) for p in stale],
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
        "deleted": stale,
        "bytes": sum(p.stat().st_size for p in files),
        "private": private,
    }
