"""The recipe's `curate` section: the checks, deduplication, the judge and
decontamination (the split is the recipe's own: `split`)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from distill.config import StrictModel


class CurateConfig(StrictModel):
    min_question_chars: int = Field(10, ge=1, description="Shorter questions are rejected.")
    require_question_mark: bool = Field(
        True, description="Reject questions (not instructions) that do not end with '?'."
    )
    require_citations: bool = Field(
        False, description="Reject answers that cite no document (refusals aside)."
    )
    grounded_numbers: bool = Field(
        True,
        description="Reject answers that state a number or code (in digits) that no "
        "message before them states: made up, or general knowledge rather than the "
        "documents ('How many minutes are in an hour?').",
    )
    min_answer_chars: int = Field(2, ge=1, description="Shorter answers are rejected.")
    max_answer_tokens: int = Field(
        200, ge=8, description="Longer answers (student tokenizer) are rejected."
    )
    max_repetition: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Reject answers whose share of repeated word 4-grams is higher (loops).",
    )
    near_dup_questions: float | None = Field(
        0.8,
        gt=0,
        le=1,
        description="Reject a question this similar (Jaccard of character 5-grams, MinHash "
        "LSH) to an earlier kept one; null to keep them.",
    )
    near_dup_samples: float | None = Field(
        0.8, gt=0, le=1, description="The same for question + answers together."
    )
    semantic_dedup: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Also reject a question whose embedding cosine similarity to an earlier "
        "kept one is at least this (ingest's embedding model); null for off.",
    )
    min_support: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Reject answers whose lexical support score (share of their content "
        "words found in the cited documents) is lower; null to only report it.",
    )
    judge: str | None = Field(
        None,
        description="Judge model ('provider:model', as teachers) scoring groundedness and "
        "quality 1-5; null for no judge. A failed judge call rejects the sample.",
    )
    judge_options: dict[str, Any] = Field(
        default_factory=dict, description="The judge backend's settings."
    )
    judge_template: str = Field("judge@v1", description="The judge's prompt template.")
    min_groundedness: int = Field(4, ge=1, le=5, description="Judge score needed to keep.")
    min_quality: int = Field(3, ge=1, le=5, description="Judge score needed to keep.")
    decontam_similarity: float | None = Field(
        0.92,
        gt=0,
        le=1,
        description="Drop a training sample whose request has at least this embedding cosine "
        "with an eval request (and a seen-set question this close to a training one); null "
        "for off.",
    )
    decontam_ngram: int = Field(
        13,
        ge=0,
        description="Drop training samples sharing a word n-gram this long with any eval "
        "question or answer; 0 for off.",
    )
    max_refusal_share: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Most of the training rows that may be refusal targets (RAFT's "
        "no-oracle rows); a seeded choice of the extra ones is dropped, counted as "
        "'refusal share'. Checks remove answerable rows more often than refusals (their "
        "contexts are longer; a refusal states no fact to check), and a student trained on "
        "too many refuses what it could answer. The share generate plans is "
        "generate.tasks' raft weight times raft.no_oracle_share. null: no cap.",
    )
