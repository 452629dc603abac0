"""What the config models share: the strict base (unknown keys are errors), the default
models, the eval systems, and the settings several stages read (retrieval, prices)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_STUDENT = "smollm2-135m-instruct"

DEFAULT_EMBEDDER = "all-minilm-l6-v2"

EvalSystem = Literal["teacher", "base", "base+rag", "ft", "ft+rag"]

ALL_SYSTEMS: tuple[EvalSystem, ...] = ("teacher", "base", "base+rag", "ft", "ft+rag")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class RetrievalConfig(StrictModel):
    mode: Literal["hybrid", "dense", "bm25"] = Field(
        "hybrid", description="Search used by generate and eval: hybrid, dense or bm25."
    )
    dense_weight: float = Field(1.0, ge=0, description="Weight of the dense ranking in fusion.")
    bm25_weight: float = Field(1.0, ge=0, description="Weight of the BM25 ranking in fusion.")
    rrf_k: int = Field(
        60, ge=1, description="Reciprocal rank fusion constant: higher flattens rank differences."
    )
    candidates: int = Field(
        100, ge=1, description="How deep each ranking goes into the fusion (hybrid only)."
    )
    rerank_model: str | None = Field(
        None,
        description="Optional cross-encoder (hub id or folder) that re-scores the fused top "
        "`rerank_top`.",
    )
    rerank_top: int = Field(20, ge=1, description="Candidates the cross-encoder re-scores.")


class PriceConfig(StrictModel):
    input: float = Field(ge=0, description="USD per million input tokens.")
    output: float = Field(ge=0, description="USD per million output tokens.")
    cached_input: float | None = Field(
        None, ge=0, description="USD per million cached input tokens (default: as input)."
    )
