"""train/metrics.json as typed models: the file a pass result serialises to has exactly
the keys it had when the passes returned dicts (the lists below are written out by hand
from that layout, not taken from the models), and reads back to the same models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from distill.errors import InputError
from distill.io import write_json
from distill.train_results import (
    CaptureFigures,
    DpoMetrics,
    GkdPass,
    PairStats,
    ServedFigures,
    SftPass,
    TrainMetrics,
    read_train_metrics,
)

VERSIONS = {"torch": "2.13.0", "transformers": "5.17.0", "trl": "1.16.0", "peft": "0.21.2"}
EVERY_PASS = dict(
    backend="trl",
    steps=6,
    resumed_from_step=None,
    epochs=3.0,
    train_loss=1.2345,
    seconds=12.3,
    tokens_per_second=456.7,
    peak_memory_mb=1234.5,
    adapter_bytes=123_456,
    device="cpu",
    precision="float32",
    versions=VERSIONS,
)


def sft_pass(**kw: Any) -> SftPass:
    return SftPass(**{**EVERY_PASS, "examples": 24, "eval_examples": 4, "eval_loss": 1.5, **kw})


def pair_stats(**kw: Any) -> PairStats:
    outcomes = {"pair": 11, "not clearly worse": 30}
    counts = dict(prompts=24, answers=48, pairs=11, judge="fake:", judge_failures=1)
    built = dict(judge_cost_usd=0.0012, outcomes=outcomes, pairs_peak_memory_mb=2222.2)
    return PairStats(**{**counts, **built, **kw})


def dpo_metrics(**kw: Any) -> DpoMetrics:
    dpo = dict(start="sft adapter", pairs=10, pairs_left_out=1, beta=0.1, pairs_built=11)
    margins = dict(first_margin=0.0, last_margin=0.8, last_accuracy=1.0)
    built = pair_stats().model_dump()
    return DpoMetrics(**{**EVERY_PASS, **built, **dpo, **margins, "peak_memory_mb": 1500.25, **kw})


def capture_figures() -> CaptureFigures:
    return CaptureFigures(
        top_k=20,
        bits=8,
        rows=40,
        captured_rows=0,
        tokens=2_345,
        bytes=191_000,
        bytes_per_token=81.4,
        seconds=0.0,
        peak_memory_mb=None,
    )


def gkd_pass(served: bool = False, **kw: Any) -> GkdPass:
    figures = ServedFigures(
        teacher_top_k=20, teacher_requests=16, teacher_positions=400, teacher_coverage=0.9875
    )
    trainer = "GKD (served teacher, top-k)" if served else "GKD"
    own = dict(start="base student", teacher="openai:t" if served else "qwen", trainer=trainer)
    losses = dict(first_loss=0.6, last_loss=0.3, eval_loss_before=0.7, eval_loss_after=0.5)
    examples = {"examples": 20, "eval_examples": 4, "eval_loss": None, "peak_memory_mb": 999.0}
    served_figures = {"served": figures if served else None}
    return GkdPass(**{**EVERY_PASS, **own, **losses, **examples, **served_figures, **kw})


# The keys each pass wrote before the models, by hand.
PASS_KEYS = (
    "adapter_bytes backend device epochs peak_memory_mb precision resumed_from_step seconds "
    "steps tokens_per_second train_loss versions"
).split()
SFT_KEYS = sorted([*PASS_KEYS, "eval_examples", "eval_loss", "examples"])
DPO_KEYS = sorted(
    PASS_KEYS
    + (
        "answers beta first_margin judge judge_cost_usd judge_failures last_accuracy "
        "last_margin outcomes pairs pairs_built pairs_left_out pairs_peak_memory_mb prompts "
        "start"
    ).split()
)
GKD_KEYS = sorted(
    PASS_KEYS
    + (
        "eval_examples eval_loss eval_loss_after eval_loss_before examples first_loss "
        "last_loss start teacher trainer"
    ).split()
)
SERVED_KEYS = ["teacher_coverage", "teacher_positions", "teacher_requests", "teacher_top_k"]
STAGE = ["eval_examples", "eval_loss", "examples", "method", "peak_memory_mb"]


def written(m: TrainMetrics, tmp_path: Path) -> dict[str, Any]:
    write_json(tmp_path / "metrics.json", m.model_dump())
    return dict(json.loads((tmp_path / "metrics.json").read_text()))


@pytest.mark.parametrize(
    ("method", "passes", "top", "nested"),
    [
        ("sft", {"sft": sft_pass()}, SFT_KEYS + ["method"], {}),
        (
            "sft_then_dpo",
            {"sft": sft_pass(), "dpo": dpo_metrics()},
            SFT_KEYS + ["dpo", "method", "sft"],
            {"sft": SFT_KEYS, "dpo": DPO_KEYS},
        ),
        ("dpo", {"dpo": dpo_metrics()}, DPO_KEYS + STAGE + ["dpo"], {"dpo": DPO_KEYS}),
        ("gkd", {"gkd": gkd_pass()}, GKD_KEYS + ["gkd", "method"], {"gkd": GKD_KEYS}),
        (
            "gkd",
            {"gkd": gkd_pass(served=True)},
            GKD_KEYS + SERVED_KEYS + ["gkd", "method"],
            {"gkd": GKD_KEYS + SERVED_KEYS},
        ),
        (
            "gkd",
            {"gkd": gkd_pass(capture=capture_figures())},
            GKD_KEYS + ["capture", "gkd", "method"],
            {"gkd": [*GKD_KEYS, "capture"]},
        ),
        (
            "sft_then_gkd",
            {"sft": sft_pass(), "gkd": gkd_pass(served=True)},
            SFT_KEYS + ["gkd", "method", "sft"],
            {"sft": SFT_KEYS, "gkd": GKD_KEYS + SERVED_KEYS},
        ),
    ],
)
def test_metrics_json_keeps_its_keys_and_reads_back(
    tmp_path: Path,
    method: str,
    passes: dict[str, Any],
    top: list[str],
    nested: dict[str, list[str]],
) -> None:
    m = TrainMetrics(method=method, examples=24, **passes)
    data = written(m, tmp_path)
    assert sorted(data) == sorted(set(top))
    for name, keys in nested.items():
        assert sorted(data[name]) == sorted(keys), name
    back = read_train_metrics(tmp_path / "metrics.json")
    assert back == m
    assert written(back, tmp_path) == data


def test_the_top_level_says_the_stage_and_its_first_pass(tmp_path: Path) -> None:
    """DPO or GKD alone: its figures at the top, over the training rows and no eval
    split; the stage's peak is the largest, building the pairs included."""
    dpo = written(TrainMetrics(method="dpo", examples=24, dpo=dpo_metrics()), tmp_path)
    assert dpo["examples"] == 24 and dpo["dpo"]["pairs"] == 10 and dpo["pairs_built"] == 11
    assert dpo["eval_loss"] is None and dpo["eval_examples"] == 0
    assert dpo["peak_memory_mb"] == 2222.2 and dpo["dpo"]["peak_memory_mb"] == 1500.25
    gkd = written(TrainMetrics(method="gkd", examples=24, gkd=gkd_pass()), tmp_path)
    assert gkd["examples"] == 24 and gkd["gkd"]["examples"] == 20
    assert gkd["eval_examples"] == 0 and gkd["gkd"]["eval_examples"] == 4
    both = TrainMetrics(method="sft_then_gkd", examples=24, sft=sft_pass(), gkd=gkd_pass())
    data = written(both, tmp_path)
    assert data["peak_memory_mb"] == 1234.5 and data["eval_loss"] == 1.5
    assert data["steps"] == 6 and data["sft"]["peak_memory_mb"] == 1234.5
    assert isinstance(data["epochs"], float) and isinstance(data["adapter_bytes"], int)


def test_a_damaged_or_missing_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    with pytest.raises(InputError, match="is missing: run `distill train RECIPE`"):
        read_train_metrics(path)
    data = written(TrainMetrics(method="sft", examples=24, sft=sft_pass()), tmp_path)
    for damaged in ({**data, "renamed_loss": 1.0}, {k: v for k, v in data.items() if k != "steps"}):
        path.write_text(json.dumps(damaged))
        with pytest.raises(InputError, match="older distill or damaged: rerun"):
            read_train_metrics(path)
    two = written(
        TrainMetrics(method="sft_then_dpo", examples=24, sft=sft_pass(), dpo=dpo_metrics()),
        tmp_path,
    )
    path.write_text(json.dumps({**two, "stray": 1}))
    with pytest.raises(InputError, match="older distill or damaged"):
        read_train_metrics(path)
    path.write_text(json.dumps({k: v for k, v in two.items() if k != "dpo"}))
    with pytest.raises(InputError, match="older distill or damaged"):  # a pass missing
        read_train_metrics(path)
    with pytest.raises(ValueError, match="train.method sft_then_gkd with the passes"):
        TrainMetrics(method="sft_then_gkd", examples=24, sft=sft_pass())
