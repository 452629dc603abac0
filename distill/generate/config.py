"""The recipe's `generate` section: the task mix, and how requests are sent to the teacher
(the recipe's own: `teacher`)."""

from __future__ import annotations

import random
from typing import Any, Literal

from pydantic import Field, model_validator

from distill.config import StrictModel

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
    refusal: str | list[str] = Field(
        "The documents provided do not contain the answer to this question.",
        description="The target answer when the context lacks the answer: one sentence, "
        "or several to choose from per sample (seeded by its id). Each must read as a "
        "refusal to curate's check. One by default: on the PostgreSQL benchmark the Qwen "
        "0.5B student learned to refuse from 28 rows in one wording and not at all from "
        "the same rows in six (docs/evaluation.md).",
    )

    @model_validator(mode="after")
    def _refusals_read_as_refusals(self) -> RaftConfig:
        from distill.grounding import is_refusal

        said = [self.refusal] if isinstance(self.refusal, str) else self.refusal
        if not said:
            raise ValueError("refusal is empty: give at least one sentence")
        for text in said:
            if not is_refusal(text):
                raise ValueError(
                    f"refusal {text!r} does not read as a refusal, so curate "
                    "would reject every row that uses it: say the documents do not contain "
                    "the answer (e.g. 'The documents provided do not say.')"
                )
        return self

    def refusal_for(self, sample_id: str) -> str:
        """The refusal target of one sample: the same for the same id on every run."""
        if isinstance(self.refusal, str):
            return self.refusal
        return random.Random(sample_id).choice(self.refusal)


class EvalKeyConfig(StrictModel):
    """Answer-key questions the teacher writes for eval (never for training)."""

    unseen_chunks: int | None = Field(
        None,
        ge=0,
        description="Held-out chunks to write questions from (a seeded sample spread over "
        "documents); null: every held-out chunk.",
    )
    deployment_chunks: int = Field(
        0,
        ge=0,
        description="Training chunks to write new questions from: the deployment set "
        "(asked with retrieval; no training row is removed).",
    )
    questions_per_chunk: int = Field(
        4, ge=1, le=10, description="Questions asked for in one request per chunk."
    )
    template: str = Field("eval_key@v1", description="The request's prompt template.")
    max_tokens: int = Field(400, ge=64, description="Token cap of one reply.")
    teacher: str | None = Field(
        None,
        description="Who writes the key, as 'provider:model'; null: the teacher. A "
        "key is worth a stronger model than the training data: the offline 0.5B Qwen "
        "kept about 1 question in 4 asked, the 1.5B about 2 (bench/distill_quality.py).",
    )
    teacher_options: dict[str, Any] | None = Field(
        None, description="That teacher's settings; null: teacher.options."
    )


class PromptsConfig(StrictModel):
    """Your own questions (distill.generate.imported): each becomes a training sample
    answered from retrieved training chunks, and a seeded share is held out for eval."""

    path: str = Field(
        description="The file, relative to the recipe: JSON Lines of {question, answer?}, "
        "OpenAI chat fine-tuning JSONL ({messages}), a stored-completions export (a stored "
        "chat completion with its request's messages under `input` or `messages`), a .json "
        "list of those, or CSV with a header row. In a conversation the question is the last "
        "user turn, and an assistant turn after it the imported answer."
    )
    answers: Literal["regrounded", "keep"] = Field(
        "regrounded",
        description="regrounded: the teacher answers every question from retrieved training "
        "chunks, with citations. keep: an imported answer is the training target as it is "
        "(the sample's answer_by says `user`); questions without one are answered by the "
        "teacher.",
    )
    eval_fraction: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="Share of the questions held out as the `traffic` eval set (seeded per "
        "question, at least one when above 0), never trained on; their references are the "
        "imported answers, else the teacher's grounded answers; 0 for none.",
    )
    max_questions: int | None = Field(
        None, ge=1, description="Use at most this many questions (a seeded sample); null: all."
    )
    k: int = Field(
        3,
        ge=1,
        le=20,
        description="Chunks retrieved for each question's context (training questions: from "
        "training documents only; held-out ones: from the whole corpus, as eval does).",
    )
    question_field: str = Field(
        "question", description="The question's key in a JSON record, or its CSV column."
    )
    answer_field: str = Field(
        "answer", description="The answer's key in a JSON record, or its CSV column (optional)."
    )
    max_message_bytes: int = Field(
        32768,
        ge=256,
        description="A question or answer longer than this (UTF-8 bytes) is skipped, counted.",
    )


class GenerateConfig(StrictModel):
    prompts: PromptsConfig | None = Field(
        None,
        description="Your own questions (e.g. traffic exported from a hosted fine-tune), "
        "answered grounded in the training documents; null: none.",
    )
    eval_key: EvalKeyConfig | None = Field(
        None,
        description="Also write an answer key for eval: per chunk, one request for several "
        "questions with verbatim key facts, each kept only if its facts are in the chunk "
        "and not in the question (generate/eval_key.jsonl); null: none.",
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
    answer_style: Literal["short", "quote"] = Field(
        "short",
        description="The training target's form. short: the cited answer. quote: RAFT's "
        "published form, first a `Quote:` line copying the sentence that answers word for "
        "word, then `Answer:` (the student's prompt asks for it: answer_template defaults "
        "to grounded_answer_quote@v1; with a keyed pairs_template the quote is the source "
        "chunk's sentence that holds the key facts; eval scores the answer part only).",
    )
    prompts_dir: str | None = Field(
        None,
        description="Folder of your own templates (same layout as prompts/), relative to the "
        "recipe; searched before the built-in ones.",
    )
    samples_per_chunk: int = Field(1, ge=1, le=50, description="Questions written per chunk.")
    pairs_per_request: int = Field(
        1,
        ge=1,
        le=10,
        description="Question/answer pairs one request writes for a qa or raft job (its "
        "context holds the source chunk): the teacher reads the context the student will "
        "see once for all of them (`pairs_template`, a JSON reply). 1: a request for the "
        "question, then one for its answer.",
    )
    pairs_template: str = Field(
        "qa_pairs@v1",
        description="Template for several question/answer pairs in one request. "
        "qa_pairs@v2 adds each pair's key facts (spans of the source chunk its answer must "
        "state; curate checks them); qa_keyed@v1 asks for questions and key facts only, "
        "shows the teacher the source chunk alone, and builds each target from the "
        "chunk's sentence that holds the facts (extractive: no answer is decoded).",
    )
    samples_per_1k_tokens: float | None = Field(
        None,
        gt=0,
        description="If set, questions per chunk scale with its length instead: "
        "max(1, round(tokens / 1000 * this)); overrides samples_per_chunk.",
    )
    max_chunks: int | None = Field(
        None,
        ge=0,
        description="Use at most this many chunks (a seeded sample); null for all; 0 (with "
        "generate.prompts): no generated questions, only your own.",
    )
    held_out_chunks: int | None = Field(
        None,
        ge=0,
        description="At most this many of those chunks from held-out documents (a seeded "
        "sample); the rest of max_chunks goes to training documents. Held-out samples are "
        "the eval split: the eval-split loss in training, decontamination, and eval's "
        "generated questions (eval.generated); with an answer key and eval.generated off, "
        "a few serve, and the teacher's time goes to training data. null: their share.",
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
        "everything at once, teacher.options.concurrency at a time).",
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

    @model_validator(mode="after")
    def _check(self) -> GenerateConfig:
        if (
            not self.tasks
            or any(w < 0 for w in self.tasks.values())
            or not any(w > 0 for w in self.tasks.values())
        ):
            raise ValueError("tasks: give at least one task type with a positive weight")
        quote_template = "grounded_answer_quote@v1"
        if self.answer_style == "quote" and "answer_template" not in self.model_fields_set:
            self.answer_template = quote_template
        elif self.answer_template == quote_template:
            self.answer_style = "quote"
        for name in ("personas", "difficulties", "instruction_kinds"):
            if not getattr(self, name):
                raise ValueError(f"{name}: give at least one")
        if self.max_chunks == 0 and self.prompts is None:
            raise ValueError("max_chunks: 0 generates nothing; give generate.prompts, or raise it")
        return self
