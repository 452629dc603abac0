"""What the config models share: the strict base (unknown keys are errors), the default
models, the grammar of model references, the eval systems, and the settings several
stages read (the teacher, the split, retrieval, prices)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

DEFAULT_STUDENT = "smollm2-135m-instruct"

DEFAULT_EMBEDDER = "all-minilm-l6-v2"

EvalSystem = Literal["teacher", "base", "base+rag", "ft", "ft+rag"]

ALL_SYSTEMS: tuple[EvalSystem, ...] = ("teacher", "base", "base+rag", "ft", "ft+rag")
# The built-in systems given retrieved chunks (a named system: its `rag`).
RETRIEVAL_SYSTEMS: tuple[EvalSystem, ...] = ("teacher", "base+rag", "ft+rag")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


# `provider:model`; a provider is a word of two or more letters, so a hub id (no colon),
# a folder or a .gguf path is never read as one.
_PROVIDER = re.compile(r"^([A-Za-z][\w-]+):")


def local_model(ref: str) -> str:
    """A model that runs here (student, embedder, re-ranker, a GKD teacher loaded in the
    training process): `local:MODEL` or a bare `MODEL`, the same model; kept bare. Another
    provider is an error: those models are answered elsewhere."""
    found = _PROVIDER.match(ref)
    if found is None:
        return ref
    if found.group(1) == "local":
        return ref[found.end() :]
    raise ValueError(
        f"{ref!r} names the provider {found.group(1)}:, but this model runs here: write "
        "local:MODEL or MODEL (a hub id, a folder, a .gguf file or an offline alias)"
    )


LocalModel = Annotated[str, AfterValidator(local_model)]


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
    rerank_model: LocalModel | None = Field(
        None,
        description="Optional cross-encoder (local:MODEL or MODEL: hub id or folder) that "
        "re-scores the fused top `rerank_top`.",
    )
    rerank_top: int = Field(20, ge=1, description="Candidates the cross-encoder re-scores.")


class PriceConfig(StrictModel):
    input: float = Field(ge=0, description="USD per million input tokens.")
    output: float = Field(ge=0, description="USD per million output tokens.")
    cached_input: float | None = Field(
        None, ge=0, description="USD per million cached input tokens (default: as input)."
    )


class TeacherConfig(StrictModel):
    """The teacher: who writes the training data (generate), answers as the `teacher`
    system and, unless another is named, judges (eval, DPO's pairs). A recipe may give it
    as one string, `teacher: local:MODEL`, short for `teacher: {model: local:MODEL}`."""

    model: str = Field(
        f"local:{DEFAULT_STUDENT}",
        description="The teacher as 'provider:model': local:MODEL (hub id, folder, .gguf "
        "file or offline alias), openai:MODEL, anthropic:MODEL or fake:. `teacher: X` "
        "alone is short for `teacher: {model: X}`.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="The teacher backend's settings, e.g. {dtype: bfloat16} for local:, "
        "{base_url: ..., concurrency: 8} for openai:.",
    )
    price: PriceConfig | None = Field(
        None,
        description="The teacher's price, overriding the built-in table (needed for a "
        "model the table does not know when generate.max_cost_usd is set).",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_string(cls, data: Any) -> Any:
        return {"model": data} if isinstance(data, str) else data


class SplitConfig(StrictModel):
    """What is held out for evaluation: whole documents, chosen before generation
    (distill.split), and a share of the training documents' questions, chosen by curate."""

    eval_fraction: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="Expected share of documents held out for evaluation, chosen per document "
        "before generation (stable when other documents are added).",
    )
    min_eval_documents: int = Field(
        1,
        ge=1,
        description="Hold out at least this many documents (the next by their seeded hash, "
        "when eval_fraction picks fewer); a training side of one document stays.",
    )
    seed: int = Field(
        0,
        description="Seed of the split by document (and of curate's seeded choices: the "
        "seen-documents set and the refusal cap).",
    )
    seen_eval_fraction: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Share of the training documents' plain questions held out as a second "
        "eval set (unseen questions on seen documents: knowledge absorbed); 0 for none.",
    )

    def documents(self) -> dict[str, Any]:
        """The settings the split by document depends on (generate chooses it)."""
        return self.model_dump(include={"eval_fraction", "min_eval_documents", "seed"})
