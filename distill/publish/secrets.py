"""The secret scan before publishing: every file of a folder about to become final is
searched for the credentials this process knows (environment variables named like
credentials, the Hub login cache's token) and for the shapes of common keys; one
found stops the publish. The value itself is never printed."""

from __future__ import annotations

from pathlib import Path

from distill.errors import UserError
from distill.io import read_rows
from distill.redact import SECRET_SHAPES, env_secrets


def hub_login_token() -> tuple[str | None, str | None]:
    """(the Hub login cache's token or None, why it could not be read or None). No cache
    is not a problem; a cache that exists and cannot be read is: the scan says so."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return None, None
    path = Path(constants.HF_TOKEN_PATH)
    try:
        if not path.exists():
            return None, None
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or type(e).__name__
        return None, f"the Hugging Face login cache {path} could not be read ({reason})"
    return token or None, None


def secret_values() -> tuple[dict[str, str], list[str]]:
    """Secrets this process knows, as value -> where it came from (at least 8 characters):
    environment variables named like credentials and the Hub login cache's token; and
    what could not be looked at."""
    found = env_secrets()
    token, problem = hub_login_token()
    if token and len(token) >= 8:
        found.setdefault(token, "the Hugging Face login cache")
    return found, [problem] if problem else []


def _cells(value: object) -> list[str]:
    """Every string inside a Parquet cell, as it is stored (a JSON dump would escape
    quotes, backslashes and non-ASCII characters, so a secret holding one went unseen)."""
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in (*_cells(k), *_cells(v))]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _cells(v)]
    return [value if isinstance(value, str) else str(value)]


def _file_text(path: Path) -> str:
    """A file's content for the scan: Parquet's cells decoded (its pages may be
    compressed), one per line; everything else as bytes read as text."""
    if path.suffix == ".parquet":
        return "\n".join(t for row in read_rows(path) for t in _cells(row))
    return path.read_bytes().decode("utf-8", errors="replace")


def find_secrets(folder: Path) -> list[str]:
    """'file: what' for every credential found in the folder's files (never the value)."""
    known, unread = secret_values()
    problems = [f"{u}: its token was not looked for" for u in unread]
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        text = _file_text(path)
        what = [f"the value of {src}" for value, src in known.items() if value in text]
        what += [name for name, rx in SECRET_SHAPES.items() if rx.search(text)]
        if what:
            problems.append(f"{path.relative_to(folder)}: {', '.join(sorted(set(what)))}")
    return problems


def refuse_secrets(folder: Path, kind: str) -> None:
    """Stop before a staged folder becomes final when it holds a credential, or when the
    scan could not look for one; the folder published before (if any) stays as it was."""
    problems = find_secrets(folder)
    if problems:
        raise UserError(
            f"publish {kind}: not written, the secret scan stopped it: "
            + "; ".join(problems)
            + ". Remove the credentials from the documents or recipe (or fix what the scan "
            "could not read) and publish again"
        )
