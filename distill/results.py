"""What the eval stage hands on: the decision as typed models (metrics.json's `decision`).

The eval stage writes it (distill.evaluate.decision); the report, the model card
(publish) and the benchmarks read it back with `Decision.model_validate`, so a renamed
field is a type error, not a silently missing number.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

POOLED = "pooled"


class Share(BaseModel):
    """k of n with its Wilson interval."""

    k: int
    n: int
    value: float | None
    ci: tuple[float, float] | None


class Mean(BaseModel):
    n: int
    value: float | None


class Comparison(BaseModel):
    """One paired comparison of `system` against `against` on `metric`."""

    metric: str
    system: str
    against: str
    eval_set: str
    kind: Literal["binary", "continuous"]
    better: Literal["higher", "lower"] = "higher"
    n: int
    dropped: int  # items without a complete pair
    diff: float
    ci: tuple[float, float]
    p_value: float
    p_holm: float | None = None
    wins: int | None = None  # binary: system right, against wrong
    losses: int | None = None
    p_d: float | None = None  # binary: discordance
    sd: float | None = None  # continuous: sd of the differences
    deff: float
    clusters: int | None
    cluster_by: str
    mde: float
    significant: bool
    n_for: dict[str, int | None] = {}  # "+5": questions a +5-point effect would need

    @property
    def favourable(self) -> bool:
        """A significant difference in the metric's good direction."""
        good = self.diff > 0 if self.better == "higher" else self.diff < 0
        p = self.p_holm if self.p_holm is not None else self.p_value
        return self.significant and good and p < 0.05


class SetResult(BaseModel):
    eval_set: str
    questions: int
    documents: int
    accuracy: dict[str, Share]  # system -> key-fact accuracy
    recall: dict[str, Mean]
    hit_rate: Share | None  # the retrieved chunks state every key fact
    primary: Comparison | None


class Speed(BaseModel):
    """One system's speed on this machine, over the answers timed alone."""

    timed: int  # answers timed (llama.cpp students: a spread sample, cache reset first)
    latency_p50_s: float | None  # nearest rank; retrieval's search included for +rag
    latency_p95_s: float | None
    compute_s_per_1k: float | None  # seconds of this machine per 1,000 answers
    output_tokens_per_s: float | None


class SystemDetail(BaseModel):
    """Descriptive figures of one system over the answer key (pooled)."""

    refusal: Share | None  # refused, of the verified unanswerables
    false_refusal: Share | None  # refused, of the answerables
    accuracy_on_hit: Share | None
    acceptable_on_miss: Share | None  # correct or refused, when retrieval missed
    citing: Share | None  # answers with a citation
    citation_precision: Mean | None
    unsupported_numbers: Share | None  # of the numbers and codes stated
    answer_words: Mean
    prompt_tokens: Mean
    output_tokens: Mean
    failed: int
    loops: Share | None = None  # replies cut where they began to repeat themselves
    speed: Speed | None = None


class Example(BaseModel):
    item_id: str
    eval_set: str
    question: str
    key_facts: str
    answers: dict[str, str]


class Decision(BaseModel):
    deciding: tuple[str, str]
    sets: list[SetResult]
    secondaries: list[Comparison]
    systems: dict[str, SystemDetail]
    teacher: Comparison | None
    teacher_margin: float
    teacher_within_margin: bool | None
    verdict: Literal["gain", "loss", "no harm, behaviour gained", "not resolvable", "none"]
    verdict_lines: list[str]
    discordant: dict[str, list[Example]]  # "system right": [...], "against right": [...]
    unanswerable: int
