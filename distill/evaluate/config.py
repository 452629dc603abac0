"""The recipe's `eval` section: the systems (the built-in ones by name, others as
`NAME: SPEC`), the items, the judge."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator
from typing_extensions import TypeAliasType

from distill.config import (
    ALL_SYSTEMS,
    DEFAULT_EMBEDDER,
    RETRIEVAL_SYSTEMS,
    EvalSystem,
    LocalModel,
    PriceConfig,
    StrictModel,
    TeacherConfig,
)


class NamedSystem(TeacherConfig):
    """A system of eval.systems given by spec, `NAME: SPEC` (e.g. the fine-tune a new
    student replaces): a model answering the same questions, scored on the same key and
    compared with eval.deciding's first system. SPEC is written as `teacher:` is, one
    'provider:model' string or {model, options, price}, plus `rag` and `margin`."""

    model: str = Field(
        description="The system as 'provider:model': openai:MODEL (OpenAI or any "
        "OpenAI-compatible endpoint: options.base_url), anthropic:MODEL, local:MODEL or "
        "fake:, with `options` as teacher.options. `NAME: X` alone is short for "
        "`NAME: {model: X}`."
    )
    price: PriceConfig | None = Field(
        None,
        description="Its price per million tokens, for its cost per 1,000 answers (a "
        "fine-tuned or self-hosted model is not in the built-in table).",
    )
    rag: bool = Field(
        False,
        description="Give it the retrieved chunks, as the '+rag' systems (and the "
        "unanswerable questions); false: the question alone.",
    )
    margin: float = Field(
        0.10,
        gt=0,
        lt=1,
        description="Non-inferiority margin: eval.deciding's first system matches this one "
        "when the paired lower bound of their key-fact accuracy difference is above -margin.",
    )


# A name of eval.systems: a built-in one, or NAME: SPEC (one key: its name).
SystemEntry = TypeAliasType(
    "SystemEntry",
    Annotated[
        Annotated[EvalSystem, Tag("name")] | Annotated[dict[str, NamedSystem], Tag("spec")],
        Discriminator(lambda v: "name" if isinstance(v, str) else "spec"),
    ],
)
_WORD = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")


class EvalConfig(StrictModel):
    systems: list[SystemEntry] = Field(
        default_factory=lambda: list[SystemEntry](ALL_SYSTEMS),
        min_length=1,
        description="Systems to answer the held-out questions: teacher, base, base+rag, ft, "
        "ft+rag ('+rag' adds retrieved chunks), or NAME: SPEC, any other model scored on "
        "the same key and compared with eval.deciding's first system (SPEC: "
        "'provider:model' or {model, options, price, rag, margin}; see "
        "docs/evaluation.md).",
    )
    answer_key: str | None = Field(
        None,
        description="A JSON Lines answer key (question, key_facts, optional doc; or "
        "answerable: false with absent terms), relative to the recipe: its questions are "
        "scored judge-free by key facts, the primary of the decision (see docs/evaluation.md).",
    )
    generated_key: bool = Field(
        True,
        description="Also ask the answer key the teacher wrote (generate.eval_key), checked "
        "and scored like eval.answer_key.",
    )
    generated: bool = Field(
        True,
        description="Also ask the held-out split's generated questions (the teacher's "
        "answers as references: judged, never the primary).",
    )
    max_questions: int | None = Field(
        None,
        ge=1,
        description="At most this many questions per eval set (and unanswerable ones from "
        "the answer key): a seeded sample spread evenly over documents.",
    )
    judge_items: int | None = Field(
        None,
        ge=0,
        description="Judge a seeded sample of this many answerable questions (every system's "
        "answer to each); 0 turns the judge off, null judges all.",
    )
    deciding: tuple[EvalSystem, EvalSystem] = Field(
        ("ft+rag", "base+rag"),
        description="The pre-declared primary comparison: the first system against the "
        "second on key-fact accuracy.",
    )
    teacher_margin: float = Field(
        0.10,
        gt=0,
        lt=1,
        description="Non-inferiority margin against the teacher: the deciding system is "
        "'within this of the teacher' when the paired lower bound is above -margin.",
    )
    unanswerable: int = Field(
        4,
        ge=0,
        description="Questions asked again with their source documents removed from "
        "retrieval; the right answer says the documents do not contain it. From an answer "
        "key, only those whose key facts no other document states (verified); from the "
        "generated questions, unverified (descriptive).",
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
    gguf_type: Literal["auto", "as_is", "bf16", "f16"] = Field(
        "auto",
        description="llama.cpp student weights: auto (the GGUF re-encoded as bf16 once, "
        "where the CPU has native bf16: prompts are read ~2x faster than from 4-bit "
        "blocks, and eval's answers are mostly prompt; else the GGUF as it is), as_is, "
        "bf16 or f16. Both students share it, so the comparison stays paired.",
    )
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="transformers student weights dtype for answering: auto (bfloat16 where "
        "the hardware has it), float32 or bfloat16.",
    )
    judge: str | None = Field(
        None,
        description="Judge as 'provider:model' (correctness, groundedness, pairwise "
        "preference); null: the teacher.",
    )
    judge_options: dict[str, Any] | None = Field(
        None, description="The judge backend's settings; null: teacher.options."
    )
    grade_template: str = Field(
        "eval_grade@v3",
        description="The judge's template (v3: reason first, then correct / partial / wrong "
        "against the reference and the question's source document, with identity and foil "
        "checks; v2: correctness and groundedness 1-5 against the reference).",
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
        "instead of loading the student here.",
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
    similarity_model: LocalModel = Field(
        DEFAULT_EMBEDDER, description="Embedding model for answer-to-reference similarity."
    )

    @field_validator("systems", mode="before")
    @classmethod
    def _entries(cls, systems: Any) -> Any:
        """A built-in name, or NAME: SPEC with one new name (a word) per entry."""
        seen: set[str] = set()
        for entry in systems if isinstance(systems, list) else []:
            if isinstance(entry, str) and entry not in ALL_SYSTEMS:
                raise ValueError(
                    f"{entry!r} is not a system: write one of {', '.join(ALL_SYSTEMS)}, or "
                    "NAME: SPEC for another model, e.g. {incumbent: 'openai:MODEL'}"
                )
            if not isinstance(entry, dict):
                continue
            if len(entry) != 1:
                raise ValueError(
                    f"{', '.join(map(str, entry))}: write one NAME: SPEC per entry, "
                    "e.g. [ft+rag, {incumbent: 'openai:MODEL'}]"
                )
            (name,) = entry
            if str(name).lower() in ALL_SYSTEMS or not _WORD.match(str(name)):
                raise ValueError(
                    f"{name!r} cannot name a system: use a word (letters, digits, - or _) "
                    f"other than {', '.join(ALL_SYSTEMS)}; retrieval is `rag: true`, "
                    "not a +rag name"
                )
            if name in seen:
                raise ValueError(f"{name!r} names two systems: give each its own name")
            seen.add(name)
        return systems

    @property
    def system_names(self) -> list[str]:
        """Every system's name, in the recipe's order."""
        return [e if isinstance(e, str) else next(iter(e)) for e in self.systems]

    @property
    def named_systems(self) -> dict[str, NamedSystem]:
        """The systems given as NAME: SPEC, by name."""
        return {k: v for e in self.systems if isinstance(e, dict) for k, v in e.items()}

    @property
    def retrieval_systems(self) -> frozenset[str]:
        """The systems given retrieved chunks: the teacher and the '+rag' students by
        their name, a named system by its `rag`."""
        named = {k for k, v in self.named_systems.items() if v.rag}
        return frozenset(RETRIEVAL_SYSTEMS) | named
