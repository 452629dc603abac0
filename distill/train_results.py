"""What the train stage hands on: each pass's result and train/metrics.json as typed
models.

Each pass returns one (`SftPass`, `DpoPass`, `GkdPass`); the stage writes them into
train/metrics.json as a `TrainMetrics`, and the report, the model card (publish) and
the benchmarks read it back with `read_train_metrics`. Every model forbids unknown keys,
so a renamed key is a validation error, not a silently missing number. The file's
layout predates these models and is kept byte for byte: the first pass's figures also
stand at the top level, and a served GKD teacher's figures sit among the GKD pass's own
(the serialisers below flatten them, the validators nest them again).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from distill.errors import InputError


class Strict(BaseModel):
    """Unknown keys are errors: a renamed key fails here, not as a number gone missing."""

    model_config = ConfigDict(extra="forbid")


class Figures(Strict):
    """Steps, loss and throughput of a finished pass (a resumed one counts its own steps)."""

    steps: int
    resumed_from_step: int | None  # None: not resumed
    epochs: float
    train_loss: float  # the trainer's mean
    seconds: float
    tokens_per_second: float


class Machine(Strict):
    """Where a pass ran and what it left: memory, adapter, device, versions."""

    peak_memory_mb: float  # GPU allocated, or the process's RSS on the CPU
    adapter_bytes: int
    device: str  # "cpu" or the GPU's name
    precision: str
    versions: dict[str, str]  # package -> version trained with


class PassResult(Figures, Machine):
    """What every pass reports. `log_history` (the trainer's) goes to its own log file,
    never into metrics.json."""

    backend: str  # "trl" or "unsloth"
    log_history: list[dict[str, Any]] = Field(default_factory=list, exclude=True, repr=False)


class Examples(Strict):
    """The rows a pass trained on and the eval split it measured (SFT, GKD)."""

    examples: int
    eval_examples: int
    eval_loss: float | None  # the last logged eval-split loss; None: none logged


class SftPass(PassResult, Examples):
    """SFT's result (train/sft_adapter/metrics.json when a second pass follows)."""


class DpoPass(PassResult):
    """DPO's result, as train_dpo returns it."""

    start: str  # "base student" or "sft adapter"
    pairs: int  # the pairs trained on (a pair whose prompt fills max_length is left out)
    pairs_left_out: int
    beta: float
    first_margin: float | None  # reward margin at the first logged step
    last_margin: float | None
    last_accuracy: float | None


class PairCounts(Strict):
    """What building the DPO pairs counted (distill.train.preferences.build)."""

    prompts: int
    answers: int  # the student's sampled answers, graded
    pairs: int  # the pairs built
    judge: str
    judge_cost_usd: float
    judge_failures: int
    outcomes: dict[str, int]  # each answer's outcome -> how many


class PairStats(PairCounts):
    """train/preferences.json: the counts and the memory building the pairs took."""

    pairs_peak_memory_mb: float


class DpoMetrics(DpoPass, PairStats):
    """metrics.json's `dpo`: DPO's result beside how its pairs were built; `pairs` is
    DPO's (those trained on) and the built ones are `pairs_built`."""

    pairs_built: int


class ServedFigures(Strict):
    """What a GKD pass records of a served teacher (never its URL or key)."""

    teacher_top_k: int
    teacher_requests: int
    teacher_positions: int  # answer positions asked for
    teacher_coverage: float | None  # the share of them scored; None: none asked


class CaptureFigures(Strict):
    """What a GKD pass from a captured teacher (train.gkd.capture) records of the capture."""

    top_k: int
    bits: int  # 8 or 16 per log-probability
    rows: int  # the rows the pass reads from it (training and measured eval rows)
    captured_rows: int  # of them, captured by this pass (0: all were in the capture)
    tokens: int  # answer tokens in the capture
    bytes: int  # the capture's shards
    bytes_per_token: float
    seconds: float  # capturing, in this pass (the teacher's loading included)
    peak_memory_mb: float | None  # the capture's peak; None: nothing captured


class GkdPass(PassResult, Examples):
    """On-policy distillation's result. In the file, `served`'s keys stand among the
    pass's own, and only with a served teacher."""

    start: str  # "base student" or "sft adapter"
    teacher: str | None
    trainer: str  # "GKD", "GOLD", "GKD (served teacher, top-k)" or "GKD (captured teacher, top-k)"
    served: ServedFigures | None = None
    capture: CaptureFigures | None = None  # absent from the file without a capture
    first_loss: float | None
    last_loss: float | None
    eval_loss_before: float | None  # the eval rows' distillation loss; None: not measured
    eval_loss_after: float | None

    @model_validator(mode="before")
    @classmethod
    def _nest_served(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "served" in data:
            return data
        keys = ServedFigures.model_fields.keys()
        if not keys & data.keys():
            return data
        own = {k: v for k, v in data.items() if k not in keys}
        return {**own, "served": {k: data[k] for k in keys if k in data}}

    @model_serializer(mode="wrap")
    def _flat_served(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        served = out.pop("served", None)
        if out.get("capture", 1) is None:
            del out["capture"]
        return {**out, **(served or {})}


Second = DpoMetrics | GkdPass
PASSES = ("sft", "dpo", "gkd")  # TrainMetrics' fields, in the order they run
# What the file's top level says of the whole stage (the rest there is the first pass's).
STAGE_KEYS = ("method", "examples", "eval_examples", "eval_loss", "peak_memory_mb")


class TrainMetrics(Strict):
    """train/metrics.json: the method and each pass's result.

    In the file, the first pass's keys (SFT's; DPO's or GKD's when it runs alone) stand
    at the top level beside `STAGE_KEYS`, and every pass is also nested under its name,
    except SFT's when it ran alone."""

    method: str  # train.method
    examples: int  # the training rows
    sft: SftPass | None = None
    dpo: DpoMetrics | None = None
    gkd: GkdPass | None = None

    @property
    def second(self) -> Second | None:
        """The pass after SFT or instead of it."""
        return self.dpo or self.gkd

    @property
    def first(self) -> PassResult:
        """The pass whose figures stand at the top level: SFT's, else the only one."""
        first = self.sft or self.second
        assert first is not None, "a TrainMetrics without a pass"
        return first

    @property
    def eval_examples(self) -> int:
        return self.sft.eval_examples if self.sft else 0

    @property
    def eval_loss(self) -> float | None:
        return self.sft.eval_loss if self.sft else None

    @property
    def peak_memory_mb(self) -> float:
        """The stage's peak: the largest of its passes' (building DPO's pairs included)."""
        second = self.second
        if second is None:
            return self.first.peak_memory_mb
        pairs = second.pairs_peak_memory_mb if isinstance(second, DpoMetrics) else 0
        return max(self.first.peak_memory_mb, second.peak_memory_mb, pairs)

    @model_serializer(mode="wrap")
    def _file_layout(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        nested: dict[str, Any] = handler(self)
        first = next(n for n in PASSES if nested[n] is not None)
        out = {**nested[first]}
        stage = (
            self.method,
            self.examples,
            self.eval_examples,
            self.eval_loss,
            self.peak_memory_mb,
        )
        out.update(zip(STAGE_KEYS, stage, strict=True))
        if self.second is not None:
            out.update({n: nested[n] for n in PASSES if nested[n] is not None})
        return out

    @model_validator(mode="before")
    @classmethod
    def _from_file_layout(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        own = set(cls.model_fields)
        top = {k: v for k, v in data.items() if k not in own}
        if not top:  # built in code, not read from a file
            return data
        if data.get("method") == "sft":  # one pass: its keys are the top level's
            sft = {k: v for k, v in data.items() if k != "method"}
            return {"method": "sft", "examples": data.get("examples"), "sft": sft}
        nested = {k: data[k] for k in own if k in data}
        first: dict[str, Any] = data.get("sft") or next((data[n] for n in PASSES if n in data), {})
        stray = top.keys() - first.keys() - set(STAGE_KEYS)
        if stray:
            raise ValueError(f"unknown keys at the top level: {sorted(stray)}")
        return nested

    @model_validator(mode="after")
    def _passes_of_the_method(self) -> TrainMetrics:
        ran = [n for n in PASSES if getattr(self, n) is not None]
        if ran != [n for n in PASSES if n in self.method.split("_")]:
            raise ValueError(f"train.method {self.method} with the passes {ran}")
        return self


def read_train_metrics(path: Path) -> TrainMetrics:
    """train/metrics.json through its model; a missing, older or damaged file is one
    line saying what to do, not a traceback."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return TrainMetrics.model_validate(data)
    except FileNotFoundError:
        raise InputError(f"{path} is missing: run `distill train RECIPE`") from None
    except (OSError, ValueError, ValidationError):
        raise InputError(
            f"{path} is from an older distill or damaged: rerun `distill train RECIPE --force`"
        ) from None
