"""The recipe's `publish` section: the repositories and what the cards and datasets hold."""

from __future__ import annotations

from pydantic import Field

from distill.config import StrictModel

# A Hub repository id: NAME or ORG/NAME.
REPO_ID = r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$"


class PublishConfig(StrictModel):
    dataset_repo: str | None = Field(
        None,
        pattern=REPO_ID,
        description="Hub dataset repository, ORG/NAME or NAME; defaults to "
        "'<recipe name>-dataset'. `distill publish --repo-id` overrides it.",
    )
    adapter_repo: str | None = Field(
        None,
        pattern=REPO_ID,
        description="Hub model repository for the adapter, ORG/NAME or NAME; defaults to "
        "'<recipe name>-lora'. `distill publish --repo-id` overrides it.",
    )
    private: bool = Field(
        False,
        description="Make the Hub repositories private, new or existing (false: a new one is "
        "public, an existing one keeps its visibility; `distill publish --public` opens one).",
    )
    license: str = Field(
        "other", description="License stated in both cards (your documents' license)."
    )
    license_name: str | None = Field(
        None,
        description="With license: other, the license's name for the Hub's card metadata; "
        "null: 'documents-license', explained in a LICENSE.md written beside the card.",
    )
    license_link: str | None = Field(
        None,
        description="With license: other, where the license's text is (a URL, or a file in "
        "the repository); null: the LICENSE.md distill writes.",
    )
    language: list[str] = Field(
        default_factory=lambda: ["en"], description="Languages of the data, for the cards."
    )
    include_rejected: bool = Field(
        False,
        description="Add the samples curation or reviewers rejected, with reasons, as the "
        "dataset's 'rejected' config.",
    )
    include_corpus: bool = Field(
        False,
        description="Copy the corpus chunks into the dataset repository ('corpus' config). "
        "Off by default: the card describes the documents without copying them.",
    )
