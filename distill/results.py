"""What the eval stage hands on: eval/metrics.json as typed models.

The eval stage writes it (distill.evaluate.stage, the decision from
distill.evaluate.decision); the report, the model card (publish), `distill eval
--compare` and the benchmarks read it back with `read_metrics`. Every model forbids
unknown keys, so a renamed key is a validation error, not a silently missing number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from distill.errors import InputError

POOLED = "pooled"

Interval = tuple[float, float]


class Strict(BaseModel):
    """Unknown keys are errors: a renamed key fails here, not as a number gone missing."""

    model_config = ConfigDict(extra="forbid")


class Share(Strict):
    """k of n with its Wilson interval."""

    k: int
    n: int
    value: float | None
    ci: Interval | None


class Mean(Strict):
    n: int
    value: float | None


class Comparison(Strict):
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
    ci: Interval
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


class SetResult(Strict):
    eval_set: str
    questions: int
    documents: int
    accuracy: dict[str, Share]  # system -> key-fact accuracy
    recall: dict[str, Mean]
    hit_rate: Share | None  # the retrieved chunks state every key fact
    primary: Comparison | None


class Speed(Strict):
    """One system's speed on this machine, over the answers timed alone."""

    timed: int  # answers timed (llama.cpp students: a spread sample, cache reset first)
    latency_p50_s: float | None  # nearest rank; retrieval's search included for +rag
    latency_p95_s: float | None
    compute_s_per_1k: float | None  # seconds of this machine per 1,000 answers
    output_tokens_per_s: float | None


class SystemDetail(Strict):
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


class Example(Strict):
    item_id: str
    eval_set: str
    question: str
    key_facts: str
    answers: dict[str, str]


class Versus(Strict):
    """eval.deciding's first system against a named system of eval.systems (NAME: SPEC,
    e.g. the model it replaces) on key-fact accuracy, pooled, with what 1,000 answers
    cost each: does the new system match the one it replaces?"""

    model: str  # the named system's 'provider:model'
    rag: bool  # it was given the retrieved chunks
    comparison: Comparison  # the deciding system - this one
    margin: float
    within_margin: bool  # non-inferiority: the paired lower bound above -margin
    cost_per_1k_usd: float | None  # its answers, at its price (or compute, if local)
    cost_basis: str
    deciding_cost_per_1k_usd: float | None  # the deciding system's, on the same questions
    deciding_cost_basis: str
    deciding_compute_s_per_1k: float | None  # seconds of this machine per 1,000 answers


class Decision(Strict):
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
    named: dict[str, Versus] = {}  # by name; {}: no named system (or none with pairs)


# -- the judged, generated questions (distill.evaluate.metrics): descriptive tables


class PairedDifference(Strict):
    """Mean of a - b over the items both have, with its paired 95% interval."""

    diff: float
    ci: Interval
    n: int
    significant: bool  # the interval excludes 0
    p_value: float
    mde: float  # the smallest difference this many questions detect at 80% power


class PairedComparison(PairedDifference):
    """`system` against `against` on one judged metric (uncorrected, descriptive)."""

    system: str
    against: str
    metric: str


class Correctness(Strict):
    mean: float | None  # the judge's 1-5 over the judged answers
    ge4: float | None  # share of the sample graded >= 4; failures count as not
    judged: int
    failed: int


class Groundedness(Strict):
    mean: float | None
    judged: int
    failed: int


class Citations(Strict):
    citing: float | None  # of the answerable questions
    accuracy: float | None  # of the citing answers: the source cited, nothing invented
    n_citing: int  # citing answers whose question has source chunks (all but your own)


class Refusal(Strict):
    accuracy: float | None  # refused, of the unanswerable questions
    n: int
    false_refusals: float | None  # refused, of the answered answerable ones


class VsTeacher(Strict):
    """Head to head with the teacher: shares of the judged sample."""

    n: int
    win: float
    tie: float
    loss: float
    failed: int


class SystemCI(Strict):
    """95% intervals by metric; None where the system has no such metric or no values."""

    correct: Interval | None = None
    correctness: Interval | None = None
    token_f1: Interval | None = None
    similarity: Interval | None = None
    answer_words: Interval | None = None
    win: Interval | None = None
    groundedness: Interval | None = None
    refusal: Interval | None = None
    citation_accuracy: Interval | None = None


class SystemMetrics(Strict):
    """One system on the generated questions; None where it does not apply (no
    retrieval: no groundedness, citations or refusals; the teacher: no vs_teacher)."""

    local: bool
    n: int
    n_unanswerable: int
    answer_failures: int
    correctness: Correctness
    similarity: float | None
    token_f1: float | None
    answer_words: float | None
    ci: SystemCI
    vs_teacher: VsTeacher | None
    groundedness: Groundedness | None
    support: float | None
    citations: Citations | None
    refusal: Refusal | None
    latency_p50_s: float | None
    latency_p95_s: float | None
    tokens_per_s: float | None
    compute_s_per_1k: float | None
    cost_per_1k_usd: float | None
    cost_basis: str


class SeenMetrics(Strict):
    """The seen-documents set: held-out questions on training documents."""

    questions: int
    systems: dict[str, SystemMetrics]
    comparisons: list[PairedComparison]


class TrafficMetrics(Strict):
    """Your own held-out questions (generate.prompts), asked with retrieval over the whole
    index; references: your answers where the file had them, else the teacher's grounded
    ones. Descriptive: never in the decision's pooled primary."""

    questions: int
    user_references: int  # of those, referenced by your imported answers
    cannot_answer: int  # the teacher's grounded reference refused: scored on refusal
    systems: dict[str, SystemMetrics]
    comparisons: list[PairedComparison]


class Unanswerable(Strict):
    no_oracle: int  # held-out questions asked with their source documents removed
    off_topic: int


class Bootstrap(Strict):
    resamples: int
    seed: int
    level: float


class Agreement(Strict):
    """The judge against the key-fact check (distill.agreement)."""

    n: int
    agreement: float
    kappa: float | None  # undefined when both put every answer in one class
    kappa_ci95: Interval | None = None  # absent before the interval was reported


class JudgeCheck(Strict):
    """Answers whose grade is known (identity: must be correct; foil: must be wrong)."""

    n: int
    failed: int
    missed: int
    rate: float | None
    ci: Interval | None


class AnswerKeySummary(Strict):
    file: str | None  # eval.answer_key; None when only the teacher's key was asked
    generated: int = 0  # questions from the teacher's key (absent before it existed)
    items: int
    answerable: int
    unanswerable: int
    skipped: dict[str, int]  # why -> count
    skip_examples: list[str]


class EvalMetrics(Strict):
    """eval/metrics.json. Files written before the judge-free decision do not validate
    (their comparisons had other keys): `read_metrics` says to rerun eval."""

    questions: int  # generated questions on unseen documents (the judged tables)
    unanswerable: Unanswerable
    k: int
    retrieval_hit_rate: float | None
    teacher: str
    student: str
    hardware: str
    batch_size: int
    student_engine: Literal["llama.cpp", "transformers"] | None
    student_weights: str | None = None  # the GGUF file a llama.cpp student ran on
    systems: dict[str, SystemMetrics]
    comparisons: list[PairedComparison]
    bootstrap: Bootstrap
    adapter_sha256: str | None  # which adapter these numbers are of
    seen: SeenMetrics | None = None  # no seen-documents questions asked
    traffic: TrafficMetrics | None = None  # no questions of your own held out
    judge: str | None  # None: the judge was off
    smoke_test: bool
    small_judge: bool
    judge_calls: int
    judge_failures: int
    judge_cost_usd: float
    judge_agreement: Agreement | None
    # The next two came after the answer key: absent from its first files.
    judge_checks: dict[str, JudgeCheck] = {}  # "identity", "foil"; {}: not run
    judge_same_family: bool = False
    answer_key: AnswerKeySummary | None
    decision: Decision | None
    what_this_means_judged: list[str]  # the judged questions' sentences
    what_this_means: list[str]  # the verdict's lines, then those


def read_metrics(path: Path) -> EvalMetrics:
    """eval/metrics.json through its model; a missing, older or damaged file is one
    line saying what to do, not a traceback."""
    try:
        return EvalMetrics.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise InputError(f"{path} is missing: run `distill eval RECIPE`") from None
    except (OSError, ValidationError):
        raise InputError(
            f"{path} is from an older distill or damaged: rerun `distill eval RECIPE --force`"
        ) from None
