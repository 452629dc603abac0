"""Typed recipe: one pydantic model per stage, composed into `Recipe`.

YAML keys are exactly the field names; unknown keys are errors. `--set a.b=value`
overrides a field (the value is parsed as YAML, so `--set train.epochs=1` is a number).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from distill.errors import RecipeError

DEFAULT_STUDENT = "smollm2-135m-instruct"
DEFAULT_EMBEDDER = "all-minilm-l6-v2"
EvalSystem = Literal["teacher", "base", "base+rag", "ft", "ft+rag"]
ALL_SYSTEMS: tuple[EvalSystem, ...] = ("teacher", "base", "base+rag", "ft", "ft+rag")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class JsonlConfig(StrictModel):
    text_field: str = Field("text", description="Field holding each record's text.")
    id_field: str | None = Field(
        None, description="Field with a stable record id; default: the line number."
    )
    title_field: str | None = Field(None, description="Field with the record's title.")


class DatasetSource(StrictModel):
    path: str = Field(description="Hugging Face dataset: hub id, or a local folder or file.")
    split: str = Field("train", description="Split to read.")
    text_field: str = Field("text", description="Column holding each row's text.")
    id_field: str | None = Field(
        None, description="Column with a stable row id; default: row number."
    )
    title_field: str | None = Field(None, description="Column with the row's title.")


class IngestConfig(StrictModel):
    paths: list[str] = Field(
        default_factory=list,
        description="Files, folders or glob patterns of documents, relative to the recipe file "
        "(.md, .markdown, .txt, .rst, .html, .htm, .pdf, .jsonl).",
    )
    datasets: list[DatasetSource] = Field(
        default_factory=list, description="Hugging Face datasets to read as documents, one per row."
    )
    jsonl: JsonlConfig = Field(
        default_factory=lambda: JsonlConfig(),
        description="How .jsonl files map to documents (other fields become metadata).",
    )
    exclude: list[str] = Field(
        default_factory=list, description="Glob patterns (relative paths) of files to leave out."
    )
    max_file_mb: float = Field(
        64, gt=0, description="Files larger than this (MB) are skipped, with their reason."
    )
    chunk_tokens: int = Field(
        256, ge=16, le=8192, description="Largest chunk, in tokens of `tokenizer`."
    )
    chunk_overlap: int = Field(
        32, ge=0, description="Tokens a chunk repeats from the previous one in the same section."
    )
    tokenizer: str | None = Field(
        None, description="Tokenizer that measures chunks; defaults to the student model's."
    )
    embedding_model: str = Field(
        DEFAULT_EMBEDDER,
        description="sentence-transformers model: hub id, local folder or offline alias.",
    )
    embedding_batch_size: int = Field(32, ge=1, description="Chunks embedded per batch.")

    @model_validator(mode="after")
    def _check(self) -> IngestConfig:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError("chunk_overlap must be smaller than chunk_tokens")
        if not self.paths and not self.datasets:
            raise ValueError("give at least one of paths and datasets")
        return self


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


TaskType = Literal["qa", "instructions", "multi_hop", "raft", "multi_turn"]
INSTRUCTION_KINDS = (
    "a request to summarise the page for a particular reader",
    "a request to extract specific facts from the page into a short list",
    "a request to compare two options, plans or settings the page describes",
    "a request for step-by-step instructions for a task the page describes",
    "a request to rewrite part of the page for a particular audience",
)


def _qa_only() -> dict[TaskType, float]:
    return {"qa": 1.0}


class RaftConfig(StrictModel):
    distractors: int = Field(
        3, ge=1, le=10, description="Retrieved chunks added to a raft sample's context."
    )
    no_oracle_share: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Share of raft samples whose context leaves the source chunk out; their "
        "target answer is `refusal`.",
    )
    refusal: str = Field(
        "The documents provided do not contain the answer to this question.",
        description="The target answer when the context lacks the answer.",
    )


class GenerateConfig(StrictModel):
    teacher: str = Field(
        f"local:{DEFAULT_STUDENT}",
        description="Teacher as 'provider:model', e.g. 'local:PATH_OR_HUB_ID' or 'fake:'.",
    )
    teacher_options: dict[str, Any] = Field(
        default_factory=dict,
        description="The teacher backend's settings, e.g. {dtype: bfloat16} for local:.",
    )
    tasks: dict[TaskType, float] = Field(
        default_factory=_qa_only,
        description="Task mix: task type -> weight (qa, instructions, multi_hop, raft, "
        "multi_turn); each sample's task is a seeded weighted pick.",
    )
    personas: list[str] = Field(
        default_factory=lambda: ["a new user", "an experienced user", "an administrator"],
        description="Who asks; each sample picks one (seeded).",
    )
    difficulties: list[str] = Field(
        default_factory=lambda: ["easy", "medium", "hard"],
        description="Question difficulty levels; each sample picks one.",
    )
    question_styles: list[str] = Field(
        default_factory=lambda: [
            "a direct question",
            "a how-do-I question",
            "a question that first describes the user's situation",
        ],
        description="Question styles; each sample picks one.",
    )
    instruction_kinds: list[str] = Field(
        default_factory=lambda: list(INSTRUCTION_KINDS),
        description="Kinds of request for the instructions task (a phrase each; defaults: "
        "summarise, extract, compare, explain step by step, rewrite for an audience).",
    )
    raft: RaftConfig = Field(default_factory=lambda: RaftConfig())
    multi_turn_turns: int = Field(2, ge=2, le=3, description="Turns in a multi_turn sample.")
    question_template: str = Field(
        "qa_question@v2",
        description="Template for questions (qa, raft, multi_turn), name@vN in prompts/.",
    )
    instruction_template: str = Field(
        "instruction@v1", description="Template for the instructions task's requests."
    )
    multi_hop_template: str = Field(
        "multi_hop_question@v1", description="Template for two-chunk questions."
    )
    follow_up_template: str = Field(
        "follow_up@v1", description="Template for multi_turn follow-up questions."
    )
    answer_template: str = Field(
        "grounded_answer@v1",
        description="Template for answers; it is also the prompt the student is trained on "
        "and evaluated with (numbered documents, citations like [1]).",
    )
    prompts_dir: str | None = Field(
        None,
        description="Folder of your own templates (same layout as prompts/), relative to the "
        "recipe; searched before the built-in ones.",
    )
    samples_per_chunk: int = Field(1, ge=1, le=50, description="Questions written per chunk.")
    samples_per_1k_tokens: float | None = Field(
        None,
        gt=0,
        description="If set, questions per chunk scale with its length instead: "
        "max(1, round(tokens / 1000 * this)); overrides samples_per_chunk.",
    )
    max_chunks: int | None = Field(
        None, ge=1, description="Use at most this many chunks (a seeded sample); null for all."
    )
    neighbours: int = Field(
        1, ge=0, le=10, description="Retrieved neighbour chunks added to the answer's context."
    )
    temperature: float = Field(0.7, ge=0, le=2, description="Sampling temperature for questions.")
    max_new_tokens: int = Field(160, ge=8, le=4096, description="Token cap per teacher reply.")
    batch_size: int = Field(
        8,
        ge=1,
        description="Prompts per forward pass for a local: teacher (API teachers send "
        "everything at once, teacher_options.concurrency at a time).",
    )
    seed: int = Field(0, description="Seed for chunk sampling and teacher sampling.")
    mode: Literal["online", "batch"] = Field(
        "online",
        description="online: requests as they go; batch: the provider's batch API (OpenAI "
        "Batch, Anthropic Message Batches) at half price, results within 24 h; resumable.",
    )
    batch_poll_s: float = Field(30.0, gt=0, description="Seconds between batch status polls.")
    batch_resubmits: int = Field(
        1, ge=0, description="Times an expired or transiently failed batch item is resubmitted."
    )
    max_cost_usd: float | None = Field(
        None,
        gt=0,
        description="Spend cap for the stage: a request that could pass it (worst case, "
        "requests in flight counted) is not sent and the stage stops; null for none.",
    )
    price: PriceConfig | None = Field(
        None,
        description="The teacher's price, overriding the built-in table (needed for a "
        "model the table does not know when max_cost_usd is set).",
    )

    @model_validator(mode="after")
    def _check(self) -> GenerateConfig:
        if (
            not self.tasks
            or any(w < 0 for w in self.tasks.values())
            or not any(w > 0 for w in self.tasks.values())
        ):
            raise ValueError("tasks: give at least one task type with a positive weight")
        for name in ("personas", "difficulties", "instruction_kinds"):
            if not getattr(self, name):
                raise ValueError(f"{name}: give at least one")
        return self


ExportFormat = Literal["openai", "sharegpt", "alpaca"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("openai", "sharegpt", "alpaca")


class CurateConfig(StrictModel):
    min_question_chars: int = Field(10, ge=1, description="Shorter questions are rejected.")
    require_question_mark: bool = Field(
        True, description="Reject questions (not instructions) that do not end with '?'."
    )
    require_citations: bool = Field(
        False, description="Reject answers that cite no document (refusals aside)."
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
    eval_fraction: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="Expected share of documents held out for evaluation, chosen per document "
        "before generation (stable when other documents are added).",
    )
    seed: int = Field(0, description="Seed of the split by document.")
    seen_eval_fraction: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Share of the training documents' plain questions held out as a second "
        "eval set (unseen questions on seen documents: knowledge absorbed); 0 for none.",
    )
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
    exports: list[ExportFormat] = Field(
        default_factory=lambda: list(EXPORT_FORMATS),
        description="Files written to review/exports/ (what trains, after review, and the eval "
        "split) besides the parquet splits (whose "
        "`messages` column is Hugging Face chat format).",
    )


class ReviewConfig(StrictModel):
    mode: Literal["auto", "argilla"] = Field(
        "auto",
        description="'auto': no humans; samples are recorded as not human-reviewed and "
        "training is not gated. 'argilla': a spot-check sample goes to Argilla and the "
        "reviewers' decisions gate training.",
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
        description="Share of the spot-check that must be reviewed before training starts.",
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


class TrainConfig(StrictModel):
    backend: Literal["auto", "trl", "unsloth"] = Field(
        "auto",
        description="'unsloth' (CUDA GPU, the `gpu` extra), 'trl' (TRL + PEFT, CPU or GPU), or "
        "'auto': Unsloth when a CUDA GPU and Unsloth are present, else TRL. Both run the same "
        "TRL SFTTrainer with the same settings; Unsloth only loads and wraps the model.",
    )
    student: str = Field(
        DEFAULT_STUDENT, description="Student model: hub id, local folder, .gguf file or alias."
    )
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha (scaling = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="Module names LoRA wraps.",
    )
    epochs: float = Field(2.0, gt=0, description="Passes over the training set.")
    max_steps: int | None = Field(
        None, ge=1, description="Stop after this many optimizer steps (overrides epochs)."
    )
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule after warmup."
    )
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of steps spent warming up.")
    load_in_4bit: bool = Field(
        False, description="QLoRA: load the student in 4-bit NF4 (CUDA GPU only, bitsandbytes)."
    )
    packing: bool = Field(
        False,
        description="Pack several examples into each max_seq_length row (best-fit, each "
        "example attending only to itself): fewer pad tokens, faster on short examples.",
    )
    eval_steps: int = Field(
        20, ge=1, description="Loss on the eval split every this many optimizer steps."
    )
    save_steps: int = Field(
        20, ge=1, description="Checkpoint every this many steps (`distill train --resume`)."
    )
    batch_size: int = Field(8, ge=1, description="Examples per device step.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Steps per optimizer update.")
    max_seq_length: int = Field(512, ge=32, description="Longer examples are truncated.")
    gradient_checkpointing: bool = Field(
        False,
        description="Recompute activations in the backward pass: less memory, ~30% slower. "
        "Turn on for large students on small GPUs.",
    )
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="bfloat16 mixed precision or float32; auto uses bfloat16 where the hardware "
        "has it (about 1.5x faster on such CPUs).",
    )
    seed: int = Field(0, description="Training seed.")


class EvalConfig(StrictModel):
    systems: list[EvalSystem] = Field(
        default_factory=lambda: list(ALL_SYSTEMS),
        min_length=1,
        description="Systems to answer the held-out questions; '+rag' adds retrieved chunks.",
    )
    max_questions: int | None = Field(
        None, ge=1, description="Evaluate at most this many held-out questions (per eval set)."
    )
    unanswerable: int = Field(
        4,
        ge=0,
        description="Held-out questions asked again with their source documents removed from "
        "retrieval; the right answer says the documents do not contain it.",
    )
    off_topic: list[str] = Field(
        default_factory=list,
        description="Questions about topics the corpus does not cover; the right answer is a "
        "refusal. Asked of the systems with retrieval.",
    )
    k: int = Field(2, ge=1, le=20, description="Chunks retrieved for '+rag' systems and teacher.")
    max_new_tokens: int = Field(128, ge=8, description="Token cap per answer.")
    batch_size: int = Field(
        4,
        ge=1,
        description="Questions a local model answers together (each answer's latency is its "
        "batch's wall time; compute per answer is that time / batch size).",
    )
    engine: Literal["auto", "llama.cpp", "transformers"] = Field(
        "auto",
        description="Runtime of the student systems: auto (llama.cpp for a GGUF student when "
        "llama-cpp-python is installed: the base GGUF plus the adapter as a LoRA GGUF), "
        "llama.cpp or transformers.",
    )
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="transformers student weights dtype for answering: auto (bfloat16 where "
        "the hardware has it), float32 or bfloat16.",
    )
    judge: str | None = Field(
        None,
        description="Judge as 'provider:model' (correctness, groundedness, pairwise "
        "preference); null: the teacher (generate.teacher).",
    )
    judge_options: dict[str, Any] | None = Field(
        None, description="The judge backend's settings; null: generate.teacher_options."
    )
    grade_template: str = Field(
        "eval_grade@v2",
        description="Correctness (and groundedness) 1-5 against the reference (v2: the "
        "rubric in the system prompt, the answer last, so prompts share long prefixes).",
    )
    pairwise_template: str = Field(
        "eval_pairwise@v2",
        description="Which of two answers is better, asked in both orders (v2: the rubric "
        "in the system prompt).",
    )
    pairwise: bool = Field(True, description="Judge each student system against the teacher.")
    base_model: str | None = Field(
        None,
        description="Answer 'base' systems through this endpoint ('openai:MODEL', e.g. vLLM) "
        "instead of loading train.student here.",
    )
    ft_model: str | None = Field(
        None,
        description="Answer 'ft' systems through this endpoint ('openai:LORA_NAME', e.g. vLLM "
        "with --enable-lora) instead of loading the adapter here.",
    )
    student_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Settings for base_model/ft_model, e.g. {base_url: http://localhost:8000/v1}.",
    )
    hardware_cost_per_hour: float | None = Field(
        None,
        ge=0,
        description="USD per hour of this machine, to price local systems' compute; null: "
        "report their compute time only.",
    )
    seen_set: bool = Field(
        True,
        description="Also ask curate's held-out questions on training documents (the seen-"
        "documents set, knowledge absorbed), reported beside the unseen-documents table.",
    )
    seen_systems: list[EvalSystem] = Field(
        default_factory=lambda: list[EvalSystem](["base", "ft"]),
        description="Systems that answer the seen-documents set (of eval.systems); its "
        "question is whether fine-tuning alone, without retrieval, absorbed the documents.",
    )
    examples: int = Field(10, ge=0, description="Side-by-side examples in the report.")
    seed: int = Field(
        0, description="Seed for picking the unanswerable questions and for the bootstrap."
    )
    similarity_model: str = Field(
        DEFAULT_EMBEDDER, description="Embedding model for answer-to-reference similarity."
    )


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


class Recipe(StrictModel):
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Run name; the run folder is <run_dir>/<name>.",
    )
    description: str = Field("", description="Free text, copied into the cards.")
    run_dir: str = Field("runs", description="Parent folder of run folders, relative to the cwd.")
    ingest: IngestConfig
    retrieval: RetrievalConfig = Field(default_factory=lambda: RetrievalConfig())
    generate: GenerateConfig = Field(default_factory=lambda: GenerateConfig())
    curate: CurateConfig = Field(default_factory=lambda: CurateConfig())
    review: ReviewConfig = Field(default_factory=lambda: ReviewConfig())
    train: TrainConfig = Field(default_factory=lambda: TrainConfig())
    eval: EvalConfig = Field(default_factory=lambda: EvalConfig())
    publish: PublishConfig = Field(default_factory=lambda: PublishConfig())

    # Set by load_recipe: where relative input paths are resolved from.
    base_dir: Path = Field(Path("."), exclude=True, description="Folder of the recipe file.")

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir) / self.name

    def stage_config(self, stage: str) -> BaseModel:
        return getattr(self, stage)


def _set_path(data: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    keys = dotted.split(".")
    node = data
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise RecipeError(
                source, [f"--set {dotted}: '{'.'.join(keys[: i + 1])}' is not a section"]
            )
        node = child
    node[keys[-1]] = value


def _format_error(err: Any, model: type[BaseModel]) -> str:
    loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        parent: Any = model
        for part in err["loc"][:-1]:
            field = parent.model_fields.get(str(part)) if isinstance(part, str) else None
            ann = field.annotation if field else None
            parent = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
            if parent is None:
                break
        known = f" (known keys: {', '.join(parent.model_fields)})" if parent else ""
        return f"{loc}: unknown key{known}"
    given = err.get("input")
    shown = "" if err["type"] == "missing" else f" (got {given!r})"
    return f"{loc}: {err['msg']}{shown}"


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe; raise RecipeError with one line per problem."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise RecipeError(source, ["file not found"])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise RecipeError(source, [f"{where}not valid YAML ({getattr(e, 'problem', e)})"]) from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(source, ["the top level must be a mapping of stage names to settings"])
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise RecipeError(source, [f"--set {item!r}: expected KEY.PATH=VALUE"])
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as e:
            raise RecipeError(
                source,
                [
                    f"--set {item!r}: the value is not valid YAML ({getattr(e, 'problem', e)}); "
                    "quote it, e.g. --set 'eval.off_topic=[\"Is it free?\"]'"
                ],
            ) from e
        _set_path(data, key.strip(), value, source)
    data.pop("base_dir", None)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        raise RecipeError(source, [_format_error(err, Recipe) for err in e.errors()]) from e
    recipe.base_dir = path.resolve().parent
    return recipe


def _nested_model(ann: Any) -> type[BaseModel] | None:
    """The model a field holds, directly or as list items."""
    from typing import get_args

    for candidate in (ann, *get_args(ann)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def describe_fields() -> str:
    """Every recipe key with its type, default and description, as Markdown."""
    sections: list[tuple[str, type[BaseModel]]] = []

    def collect(name: str, model: type[BaseModel]) -> None:
        sections.append((name, model))
        for key, field in model.model_fields.items():
            nested = _nested_model(field.annotation)
            if nested is not None:
                is_list = getattr(field.annotation, "__origin__", None) is list
                prefix = "" if name == "(top level)" else f"{name}."
                collect(f"{prefix}{key}{'[]' if is_list else ''}", nested)

    collect("(top level)", Recipe)
    lines = []
    for section, model in sections:
        rows = []
        for key, field in model.model_fields.items():
            if field.exclude or _nested_model(field.annotation) is not None:
                continue
            if field.is_required():
                default = "required"
            else:
                value = field.get_default(call_default_factory=True)
                default = f"`{json.dumps(value, default=str)}`"
            ann = field.annotation
            kind = ann.__name__ if isinstance(ann, type) else str(ann).replace("typing.", "")
            kind = kind.replace(" | ", " or ")
            rows.append(f"| `{key}` | {kind} | {default} | {field.description or ''} |")
        if rows:
            head = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
            lines += [f"### `{section}`", "", *head, *rows, ""]
    return "\n".join(lines)
