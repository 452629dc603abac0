"""The rows that flow between stages, one definition each: a TypedDict that writers
build and readers index (so mypy catches a renamed or misspelt column), and the Arrow
schema `write` derives from it (so a column's type never depends on which values a run
happened to produce, and an empty table still has its columns).

| row | file | written by | read by |
| --- | --- | --- | --- |
| Document | ingest/documents.parquet | ingest | ingest (reuse), publish |
| Chunk | ingest/chunks.parquet | ingest | retrieval, curate, review, publish |
| Sample | generate/samples.parquet | generate | curate |
| CuratedSample | curate/{train,eval,eval_seen,rejected}.parquet | curate | review, train, eval |
| Failure | generate/failures.parquet | generate | people (why a request gave nothing) |
| Answer | eval/answers.parquet | eval | eval's metrics and report |
| Judgement | eval/judgements.parquet | eval's judge | people (every verdict, raw reply kept) |
| Candidate | train/candidates.parquet | train (dpo) | people (every sampled answer, graded) |
| Preference | train/preferences.parquet | train (dpo) | train's DPO pass, publish |
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NotRequired, TypedDict, TypeVar

import pyarrow as pa

from distill.io import read_rows, write_rows
from distill.teachers.base import Message

# A chat message ({"role", "content"}, teachers.base.Message) is stored as a struct of
# the two (the only dict-valued column).
_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])


class Document(TypedDict):
    doc_id: str
    source: str  # where a reader finds it: a path, path#L<line>, or dataset:<path>:<split>#<row>
    file: str  # the file or dataset it came from (documents are re-read per file)
    title: str
    text: str
    format: str
    sha256: str  # of the whole file or dataset, so an unchanged file is never re-read
    metadata: str  # JSON: a JSONL record's or dataset row's other fields ("{}": none)


class Chunk(TypedDict):
    chunk_id: str
    doc_id: str
    source: str
    title: str
    heading_path: str
    text: str
    n_tokens: int
    position: int


class Sample(TypedDict):
    """One generated conversation, grounded in `chunk_ids` (citation [n] is chunk n)."""

    sample_id: str
    task: str
    persona: str
    difficulty: str
    style: str | None
    instruction_kind: str | None
    question: str
    answer: str
    turns: int
    answer_truncated: bool
    messages: list[Message]
    source_chunk_id: str
    source_chunk_ids: list[str]
    source_doc_ids: list[str]
    chunk_ids: list[str]
    doc_ids: list[str]
    oracle_in_context: bool
    expects_refusal: bool
    citations: list[int]
    cited_chunk_ids: list[str]
    teacher: str
    template: str
    template_sha: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    created_at: str
    side: NotRequired[str]  # train | eval: the side of the split its document is on
    # Spans of the source chunk its answer must state (a keyed pairs template's reply).
    key_facts: NotRequired[list[str] | None]
    # Your own questions (task `imported`): where the question came from (FILE:LINE), and
    # who wrote the answer: `teacher` (grounded in retrieved training chunks) or `user`
    # (the imported answer, kept: generate.prompts.answers).
    origin: NotRequired[str | None]
    answer_by: NotRequired[str | None]


class CuratedSample(Sample):
    """A sample after curation: its scores, and where it went."""

    support: NotRequired[float | None]
    split: NotRequired[str]
    groundedness: NotRequired[int | None]
    quality: NotRequired[int | None]
    judge_reason: NotRequired[str | None]
    reject_reason: NotRequired[str]


class Failure(TypedDict):
    """A request that ended without a usable reply (never silently dropped)."""

    request_id: str
    stage: str
    reason: str
    status: int | None
    attempts: int
    last_error: str


class Answer(TypedDict):
    """One system's answer to one eval item, with its grades."""

    item_id: str
    eval_set: str
    kind: str
    system: str
    local: bool
    priced: bool
    question: str
    reference: str
    answer: str  # a quote-style answer's answer part: what every score reads
    quoted: NotRequired[str]  # its "Quote:" spans (its reasoning); "" for other answers
    answer_error: str | None
    latency_s: float
    compute_s: float
    timed: bool  # answered alone: its latency and compute count in the speed figures
    finish: str  # "stop" | "length" (the token cap) | "loop" (cut where it repeated itself)
    output_tokens: int
    cost_usd: float
    retrieved_chunk_ids: list[str]
    source_chunk_ids: list[str]
    cited: list[int]
    cited_chunk_ids: list[str]
    refused: bool
    correctness: int | None
    groundedness: int | None
    grade_reason: str | None
    grade_error: str | None
    vs_teacher: str | None
    pairwise: str | None
    pairwise_error: str | None
    similarity: float | None
    token_f1: float | None
    support: float | None
    # The answer key's judge-free scores (distill.keyfacts); None without key facts.
    doc_id: str
    key_facts: str  # JSON: each fact a span or a list of accepted wordings
    fact_found: list[bool]
    fact_conflicts: list[str]
    fact_correct: bool | None
    fact_recall: float | None
    retrieval_hit: bool | None  # the retrieved chunks state every key fact
    cited_right: int  # citations whose chunk states a key fact
    numbers: int  # numbers and codes in the answer
    unsupported_numbers: int  # of those, in no retrieved chunk (rag) or no source chunk
    prompt_tokens: int
    judged: bool  # in the judge's sample


class JudgementKey(TypedDict, total=False):
    """What a judgement is of (eval's: the item, the system, grade or pairwise)."""

    item_id: str
    system: str
    kind: str


class Judgement(JudgementKey):
    verdict: str | None  # the verdict's JSON
    error: str | None
    raw: str
    judge: str
    cost_usd: float


class Candidate(TypedDict):
    """A student's sampled answer to a training prompt, graded against the chosen one."""

    sample_id: str
    sample: int  # which of the prompt's samples
    written_by: str  # "base student" | "sft student"
    answer: str
    correctness: int | None
    reason: str | None
    error: str | None  # a failed judgement: never a pair
    outcome: str  # "pair", or why not: not clearly worse, judgement failed, ...


class Preference(TypedDict):
    """A DPO pair: the chosen answer over the student's own, and why the pair exists."""

    pair_id: str
    sample_id: str
    task: str
    doc_ids: list[str]
    prompt: list[Message]
    chosen: str
    rejected: str
    chosen_by: str  # "teacher" | "reviewer"
    rejected_by: str  # "base student" | "sft student"
    rejected_correctness: int
    judge: str
    why: str


def trl_preference(p: Preference) -> dict[str, list[Message]]:
    """A pair in TRL's conversational preference format (prompt / chosen / rejected),
    which DPOTrainer and `load_dataset` read as it is."""
    return {
        "prompt": [{"role": m["role"], "content": m["content"]} for m in p["prompt"]],
        "chosen": [{"role": "assistant", "content": p["chosen"]}],
        "rejected": [{"role": "assistant", "content": p["rejected"]}],
    }


_SCALARS = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}


def _arrow(tp: Any) -> pa.DataType:
    """The Arrow type of an annotation: scalars, `X | None`, lists and TypedDicts."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _arrow(inner)
    if origin in (typing.NotRequired, typing.Required):
        return _arrow(typing.get_args(tp)[0])
    if tp == Message:
        return _MESSAGE
    if origin is list:
        return pa.list_(_arrow(typing.get_args(tp)[0]))
    if typing.is_typeddict(tp):
        hints = typing.get_type_hints(tp)
        return pa.struct([(name, _arrow(t)) for name, t in hints.items()])
    if tp in _SCALARS:
        return _SCALARS[tp]
    raise TypeError(f"no Arrow type for {tp!r}")


def schema(kind: type) -> pa.Schema:
    """The Arrow schema of a row kind, in its definition's column order."""
    return pa.schema([(name, _arrow(t)) for name, t in typing.get_type_hints(kind).items()])


def _required(kind: type) -> set[str]:
    """The keys every row has. (`NotRequired[...]` is read from the type hints: with
    postponed annotations the TypedDict's own __required_keys__ cannot see it.)"""
    hints = typing.get_type_hints(kind, include_extras=True)
    optional: frozenset[str] = getattr(kind, "__optional_keys__", frozenset())
    return {
        name
        for name, tp in hints.items()
        if name not in optional and typing.get_origin(tp) is not typing.NotRequired
    }


R = TypeVar("R")


def write(
    path: Path, rows: Sequence[Mapping[str, Any]], kind: type, unique: str | None = None
) -> None:
    """Write rows of `kind` atomically with its schema. A column the definition does not
    name is an error; an optional column no row has is left out; an empty table keeps
    every required column; a value repeated in the `unique` column is an error."""
    if unique is not None:
        seen: set[Any] = set()
        for r in rows:
            if r[unique] in seen:
                raise ValueError(f"{path.name}: two rows with {unique} {r[unique]!r}")
            seen.add(r[unique])
    full = schema(kind)
    present = {k for r in rows for k in r}
    unknown = present - set(full.names)
    if unknown:
        raise ValueError(f"{path.name}: columns not in {kind.__name__}: {sorted(unknown)}")
    required = _required(kind)
    keep = [f for f in full if f.name in present or f.name in required]
    write_rows(path, [dict(r) for r in rows], pa.schema(keep))


def read(path: Path, kind: type[R]) -> list[R]:
    """Rows of `kind` from a file `write` wrote (the type is the writer's promise)."""
    return typing.cast(list[R], read_rows(path))
