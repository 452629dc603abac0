"""Talking to Argilla: the spot-check dataset, its records, and the reviewers' answers.

The server is $ARGILLA_API_URL (or `review.api_url`) with $ARGILLA_API_KEY, else the
local server `distill review serve` started. The key is read from the environment or
the local server's credentials file and never written anywhere by distill.

Records are pushed through the argilla SDK's API layer; their ids are the sample ids, so a second
push updates the same records (and keeps reviewers' answers). Answers are read
through the SDK's API layer rather than its Record objects, which crash on a
discarded response that has no values.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from distill import assets
from distill.errors import UserError
from distill.recipe import Recipe
from distill.ui import track

VERDICTS = {"accept": "Accept", "reject": "Reject"}
ISSUES = {
    "hallucination": "Hallucination",
    "not_grounded": "Not grounded in the context",
    "unclear_question": "Unclear question",
    "wrong_format": "Wrong format",
    "unsafe": "Unsafe",
}
QUESTIONS = ("verdict", "corrected_response", "quality", "issues")
DEFAULT_GUIDELINES = assets.path("review", "guidelines.md")
NO_SERVER = (
    "no Argilla server: start the local one with `distill review serve`, or set "
    "ARGILLA_API_URL and ARGILLA_API_KEY to your own"
)


@dataclass
class Connection:
    client: Any  # argilla.Argilla
    url: str

    def close(self) -> None:
        # Its keep-alive connections would otherwise outlive a stopped server.
        self.client.http_client.close()


def connect(recipe: Recipe) -> Connection:
    """A client for the recipe's Argilla server; a one-line error when there is none."""
    from distill.review.server import local_server

    url = os.environ.get("ARGILLA_API_URL") or recipe.review.api_url
    key = os.environ.get("ARGILLA_API_KEY")
    local = local_server()
    if url is None:
        if local is None:
            raise UserError(NO_SERVER)
        url = local["url"]
    url = url.rstrip("/")
    if key is None:
        if local is None or local["url"] != url:
            raise UserError(f"no API key for the Argilla server at {url}: set ARGILLA_API_KEY")
        key = local["api_key"]
    import argilla as rg

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            client = rg.Argilla(api_url=url, api_key=key, timeout=60, **_space_auth(url))
    except Exception as e:  # the SDK raises its own and httpx's errors
        raise UserError(f"cannot reach Argilla at {url}: {_short(e)}") from None
    return Connection(client, url)


def is_hf_space(url: str) -> bool:
    """An https URL whose host is a Hugging Face Space (`NAME.hf.space`): the only place
    the user's HF token may go. `https://x.hf.space.evil.example` is not one."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    return parts.scheme == "https" and host.endswith(".hf.space") and host != ".hf.space"


def _space_auth(url: str) -> dict[str, Any]:
    """A private Hugging Face Space lets requests through with the user's HF token."""
    token = os.environ.get("HF_TOKEN")
    if token and is_hf_space(url):
        return {"headers": {"Authorization": f"Bearer {token}"}}
    return {}


def _short(e: Exception) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) < 200 else text[:200] + "…"


def dataset_name(recipe: Recipe) -> str:
    return recipe.review.dataset or f"{recipe.name}-spot-check"


def guidelines(recipe: Recipe) -> str:
    path = recipe.review.guidelines
    file = recipe.base_dir / path if path else DEFAULT_GUIDELINES
    if not file.is_file():
        raise UserError(f"review.guidelines: no file at {file}")
    return file.read_text(encoding="utf-8").strip()  # the server strips it too


# What is judged first, what it is judged against after: the reviewer reads the request
# and the answer without scrolling past the documents. Documents are untrusted: every
# field is plain text (tables aligned by distill.review.records.aligned_tables), never
# rendered as Markdown or HTML.
FIELDS = (
    ("instruction", "Instruction (or the conversation so far)"),
    ("response", "Response"),
    ("context", "Context (chunk ids in brackets)"),
)


def settings(recipe: Recipe) -> Any:
    import argilla as rg

    return rg.Settings(
        guidelines=guidelines(recipe),
        fields=[rg.TextField(name=n, title=t, use_markdown=False) for n, t in FIELDS],
        questions=[
            rg.LabelQuestion(name="verdict", title="Keep this pair for training?", labels=VERDICTS),
            rg.TextQuestion(
                name="corrected_response",
                title="Corrected response (accept + a correction replaces the answer)",
                required=False,
            ),
            rg.RatingQuestion(
                name="quality",
                title="Quality (1 useless - 5 expert)",
                values=[1, 2, 3, 4, 5],
                required=False,
            ),
            rg.MultiLabelQuestion(name="issues", title="Issues", labels=ISSUES, required=False),
        ],
        metadata=[
            rg.TermsMetadataProperty(name="task", title="Task"),
            rg.TermsMetadataProperty(name="source_doc", title="Source document"),
            rg.TermsMetadataProperty(name="reason", title="Why in the spot-check"),
            rg.TermsMetadataProperty(name="template", title="Prompt templates"),
            rg.IntegerMetadataProperty(name="groundedness", title="Judge groundedness"),
            rg.IntegerMetadataProperty(name="judge_quality", title="Judge quality"),
            rg.FloatMetadataProperty(name="support", title="Support score"),
        ],
        allow_extra_metadata=False,
    )


def open_dataset(conn: Connection, recipe: Recipe, *, create: bool) -> Any:
    """The recipe's spot-check dataset (created with its settings when `create`)."""
    import argilla as rg

    name, workspace = dataset_name(recipe), recipe.review.workspace
    client = conn.client
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SDK warns when something does not exist
        if client.workspaces(workspace) is None:
            raise UserError(
                f"Argilla has no workspace '{workspace}'; create it or set review.workspace"
            )
        ds = client.datasets(name=name, workspace=workspace)
    if ds is not None:
        have = {q.name for q in ds.settings.questions}
        if not set(QUESTIONS) <= have:
            raise UserError(
                f"Argilla dataset '{name}' exists with other questions ({sorted(have)}); "
                "set review.dataset to a new name"
            )
        text = guidelines(recipe)
        if create and ds.settings.guidelines != text:
            ds.settings.guidelines = text
            ds.settings.update()
        return ds
    if not create:
        raise UserError(
            f"Argilla has no dataset '{name}' in workspace '{workspace}'; "
            "run `distill review push RECIPE` first"
        )
    ds = rg.Dataset(name=name, workspace=workspace, settings=settings(recipe), client=client)
    ds.create()
    return ds


def ui_url(conn: Connection, ds: Any) -> str:
    return f"{conn.url}/dataset/{ds.id}/annotation-mode"


def log_records(conn: Connection, ds: Any, items: list[dict[str, Any]], batch: int = 256) -> None:
    """Create or update records; each item has id, fields, metadata, suggestions.

    Sent through the SDK's API layer (the bulk upsert `Dataset.records.log` calls), a
    batch at a time under distill's own progress bar: `log` draws a tqdm bar of its own
    that would interleave with it and has no switch to turn it off."""
    import argilla as rg

    records = [
        rg.Record(
            id=it["id"],
            fields=it["fields"],
            metadata={k: v for k, v in it["metadata"].items() if v is not None},
            suggestions=[
                rg.Suggestion(q, v, score=score, agent=agent)
                for q, v, score, agent in it["suggestions"]
            ],
            _dataset=ds,  # suggestions find their questions' ids through it
        )
        for it in items
    ]
    models = [r.api_model() for r in records]
    batches = range(0, len(models), batch)
    for start in track(batches, "sending records", total=len(batches)):
        conn.client.api.records.bulk_upsert(ds.id, models[start : start + batch])


def usernames(conn: Connection) -> dict[str, str]:
    try:
        return {str(u.id): u.username for u in conn.client.users}
    except Exception:  # an annotator's key may not list users; ids are kept then
        return {}


def answers(conn: Connection, ds: Any, page: int = 500) -> Iterator[dict[str, Any]]:
    """Every record's id and its reviewers' answers:
    {"id", "responses": [{"user", "status", "values": {question: value}}]}."""
    names = usernames(conn)
    api = conn.client.api.records
    offset = 0
    while True:
        batch = api.list(ds.id, offset=offset, limit=page, with_suggestions=False)
        for rec in batch:
            yield {
                "id": str(rec.external_id),
                "responses": [
                    {
                        "user": names.get(str(r.user_id), str(r.user_id)),
                        "status": getattr(r.status, "value", str(r.status)),
                        "values": {k: v.get("value") for k, v in (r.values or {}).items()},
                    }
                    for r in rec.responses or []
                ],
            }
        if len(batch) < page:
            return
        offset += page
