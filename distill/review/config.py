"""The recipe's `review` section: the spot-check, the gate before training, the
calibration of the eval judge against humans, and the exports of what trains."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from distill.config import StrictModel

ExportFormat = Literal["openai", "sharegpt", "alpaca"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("openai", "sharegpt", "alpaca")


class ReviewConfig(StrictModel):
    mode: Literal["auto", "argilla", "file"] = Field(
        "auto",
        description="'auto': no humans; samples are recorded as not human-reviewed and "
        "training is not gated. 'argilla': a spot-check sample goes to Argilla and the "
        "reviewers' decisions gate training. 'file': the same spot-check and gate without "
        "Argilla: `distill review export` writes it as CSV or JSONL for a spreadsheet or "
        "any labelling tool, `distill review import` reads the filled copy back.",
    )
    api_url: str | None = Field(
        None,
        description="Argilla server URL (default: $ARGILLA_API_URL, else the local "
        "`distill review serve` server). The API key is never in a recipe: "
        "$ARGILLA_API_KEY, else the local server's credentials.",
    )
    dataset: str | None = Field(
        None, description="Argilla dataset name (default: '<recipe name>-spot-check')."
    )
    workspace: str = Field("argilla", description="Argilla workspace of the dataset.")
    sample_fraction: float = Field(
        0.1, gt=0, le=1, description="Share of training samples in the spot-check."
    )
    sample_count: int | None = Field(
        None, ge=1, description="Spot-check this many training samples (overrides the fraction)."
    )
    flag_groundedness_below: int = Field(
        5,
        ge=0,
        le=6,
        description="Also send every training sample whose judge groundedness is below this "
        "(0: none). Curation keeps 4 and up by default, so 5 sends the borderline ones.",
    )
    flag_quality_below: int = Field(
        4,
        ge=0,
        le=6,
        description="Also send every training sample whose judge quality is below this (0: none). "
        "Curation keeps 3 and up by default.",
    )
    flag_support_below: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Also send every training sample whose support score is below this.",
    )
    low_score_cap: int = Field(
        50, ge=0, description="At most this many low-score samples on top of the sample."
    )
    required_share: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Share of the spot-check's random sample that must be reviewed before "
        "training starts (low-score extras are reviewed too, but do not count).",
    )
    min_sample_reviewed: int = Field(
        10,
        ge=1,
        description="Training waits until at least this many records of the random sample "
        "(or all of it, when smaller) are reviewed: reviewed low-score extras alone do not "
        "open the gate, and a reject rate over a handful of records means little.",
    )
    max_reject_rate: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Training refuses to start when reviewers reject more than this share of "
        "the reviewed random sample (low-score extras are reported, not counted).",
    )
    guidelines: str | None = Field(
        None,
        description="Markdown shown to reviewers (default: distill's review/guidelines.md).",
    )
    seed: int = Field(0, description="Seed of the spot-check sample.")
    calibration_items: int = Field(
        56,
        ge=2,
        description="Eval answers `distill review calibrate` sends to Argilla, blinded, to "
        "measure the eval judge against humans: half from each of eval.deciding's two "
        "systems (both answers to one question where possible), seeded by eval.seed. "
        "About 20-30 minutes of one reviewer's time at 56.",
    )
    exports: list[ExportFormat] = Field(
        default_factory=lambda: list(EXPORT_FORMATS),
        description="Files written to review/exports/ (what trains, after review, and the eval "
        "split) besides the parquet splits (whose "
        "`messages` column is Hugging Face chat format).",
    )
