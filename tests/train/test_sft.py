"""Training on the CPU with the offline SmolLM2 student (slow): the adapter moves the
model toward the training answers, the loss curve and report are written, and a run
that crashes resumes from its checkpoint to the same adapter as an unbroken run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from distill.errors import UserError
from distill.train.config import TrainConfig
from distill.train_results import SftPass

pytestmark = pytest.mark.slow

STUDENT = "smollm2-135m-instruct"

FACTS = [
    ("What is the Zorblax activation code?", "The Zorblax activation code is 7731-QX."),
    ("Which port does Zorblax listen on?", "Zorblax listens on port 4417."),
    ("Who maintains Zorblax?", "Zorblax is maintained by the Quillon team."),
    ("How long is a Zorblax session?", "A Zorblax session lasts 95 minutes."),
]


def rows(n: int = 16) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        q, a = FACTS[i % len(FACTS)]
        out.append(
            {
                "sample_id": f"s{i}",
                "messages": [
                    {"role": "system", "content": "Answer briefly."},
                    {"role": "user", "content": q},
                    {"role": "assistant", "content": a},
                ],
            }
        )
    return out


def cfg(**kw: Any) -> TrainConfig:
    base = dict(
        backend="auto",
        max_steps=6,
        batch_size=4,
        learning_rate=1e-3,
        max_seq_length=128,
        save_steps=2,
        eval_steps=3,
        lora_dropout=0.0,
        precision="float32",
    )
    return TrainConfig.model_validate({**base, **kw})


def answer_loss(model: Any, tok: Any) -> float:
    """Mean loss of the training answers given their questions (teacher-forced)."""
    import torch

    from distill.train.data import encode, stop_ids

    total = 0.0
    for r in rows(len(FACTS)):
        enc = encode(tok, r["messages"], stop_ids(tok))
        ids = torch.tensor([enc["input_ids"]])
        labels = torch.tensor([[t if m else -100 for t, m in zip(*enc.values(), strict=True)]])
        with torch.no_grad():
            total += float(model(input_ids=ids, labels=labels).loss)
    return total / len(FACTS)


class Crash(Exception):
    pass


def crash_at(step: int) -> Any:
    from transformers import TrainerCallback

    class CrashAt(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step == step:
                raise Crash(step)

    return CrashAt()


def test_training_moves_the_model_toward_the_data(tmp_path: Path) -> None:
    from peft import PeftModel

    from distill.models import load_causal_lm
    from distill.train.sft import train_adapter

    metrics = train_adapter(STUDENT, cfg(), rows(), tmp_path, eval_rows=rows(4))
    assert metrics.backend == "trl" and metrics.steps == 6
    assert metrics.eval_loss is not None and metrics.peak_memory_mb > 100
    assert metrics.adapter_bytes > 100_000 and metrics.versions["trl"]
    evals = [h for h in metrics.log_history if "eval_loss" in h]
    assert [h["step"] for h in evals] == [3, 6]
    assert not (tmp_path / "checkpoints").exists()  # removed once the adapter is saved
    base, tok = load_causal_lm("smollm2-135m-instruct")
    before = answer_loss(base, tok)
    tuned = PeftModel.from_pretrained(base, str(tmp_path / "adapter"))
    after = answer_loss(tuned, tok)
    assert after < 0.7 * before, (before, after)  # measured: 1.82 -> 1.02


def test_a_crashed_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    from distill.train.sft import train_adapter

    whole = train_adapter(STUDENT, cfg(), rows(), tmp_path / "whole")
    with pytest.raises(Crash):
        train_adapter(STUDENT, cfg(), rows(), tmp_path / "broken", callbacks=[crash_at(5)])
    assert (tmp_path / "broken" / "checkpoints" / "checkpoint-4").is_dir()
    with pytest.raises(UserError, match="other train settings"):
        train_adapter(STUDENT, cfg(learning_rate=5e-4), rows(), tmp_path / "broken", resume=True)
    with pytest.raises(UserError, match="other training data"):  # curate changed the rows
        train_adapter(STUDENT, cfg(), rows()[:-1], tmp_path / "broken", resume=True)
    resumed = train_adapter(STUDENT, cfg(), rows(), tmp_path / "broken", resume=True)
    assert resumed.resumed_from_step == 4 and resumed.steps == 6
    a = load_file(tmp_path / "whole" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "broken" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k

    def losses(m: SftPass) -> list[float]:
        return [round(h["loss"], 3) for h in m.log_history if "loss" in h]

    # The restored log history plus the resumed steps: the same curve, step for step.
    assert losses(resumed) == losses(whole) and len(losses(whole)) == 6
    with pytest.raises(UserError, match="nothing to resume"):
        train_adapter(STUDENT, cfg(), rows(), tmp_path / "broken", resume=True)


def test_four_bit_needs_a_gpu(tmp_path: Path) -> None:
    import torch

    from distill.train.sft import train_adapter

    assert not torch.cuda.is_available()
    with pytest.raises(UserError, match="load_in_4bit needs a CUDA GPU"):
        train_adapter(STUDENT, cfg(load_in_4bit=True), rows(), tmp_path)
