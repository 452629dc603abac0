"""The recipe's `ingest` section: which files and datasets, and how they are chunked."""

from __future__ import annotations

from pydantic import Field, model_validator

from distill.config import DEFAULT_EMBEDDER, LocalModel, StrictModel


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
    follow_links: bool = Field(
        False,
        description="Read symbolic links in a corpus folder that point out of it; by default "
        "they are skipped with their reason (a link to ../../notes/passwords.txt would "
        "otherwise be read, sent to the teacher and published).",
    )
    chunk_tokens: int = Field(
        256, ge=16, le=8192, description="Largest chunk, in tokens of `tokenizer`."
    )
    chunk_overlap: int = Field(
        32, ge=0, description="Tokens a chunk repeats from the previous one in the same section."
    )
    tokenizer: LocalModel | None = Field(
        None, description="Tokenizer that measures chunks (a model's); defaults to the student's."
    )
    embedding_model: LocalModel = Field(
        DEFAULT_EMBEDDER,
        description="sentence-transformers model: local:MODEL or MODEL (hub id, local folder "
        "or offline alias).",
    )
    embedding_batch_size: int = Field(32, ge=1, description="Chunks embedded per batch.")

    @model_validator(mode="after")
    def _check(self) -> IngestConfig:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError("chunk_overlap must be smaller than chunk_tokens")
        if not self.paths and not self.datasets:
            raise ValueError("give at least one of paths and datasets")
        return self
