"""On-policy distillation (GKD) on the CPU with the offline SmolLM2 student (slow): a
teacher that knows the training facts (the student after SFT on them, merged), and a
GKD pass that brings the base student's next-token distribution closer to it; a
teacher with another tokenizer (Qwen) distilled through GOLD."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.train.test_sft import STUDENT, cfg, rows

pytestmark = pytest.mark.slow


# Rows the eval-split loss is measured on: the same facts asked and answered in other
# words, so no eval row is a training row (rows(n) cycles through FACTS' own wording).
HELD_OUT = [
    ("Tell me the activation code for Zorblax.", "Zorblax's activation code is 7731-QX."),
    ("What port number does Zorblax use?", "Zorblax uses port 4417."),
    ("Which team looks after Zorblax?", "The Quillon team looks after Zorblax."),
    ("How many minutes does a Zorblax session run?", "A Zorblax session runs 95 minutes."),
]


def held_out_rows() -> list[dict[str, Any]]:
    return [
        {
            "sample_id": f"e{i}",
            "messages": [
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": q},
                {"role": "assistant", "content": a},
            ],
        }
        for i, (q, a) in enumerate(HELD_OUT)
    ]


def divergence(student: Any, teacher: Any, tok: Any) -> float:
    """Mean KL(teacher || student) over the training answers' tokens."""
    import torch

    from distill.train.data import encode, stop_ids

    total, n = 0.0, 0
    for r in rows(4):
        enc = encode(tok, r["messages"], stop_ids(tok))
        ids = torch.tensor([enc["input_ids"]])
        mask = torch.tensor(enc["assistant_masks"][1:], dtype=torch.bool)
        with torch.no_grad():
            s = torch.log_softmax(student(input_ids=ids).logits[0, :-1].float(), -1)[mask]
            t = torch.log_softmax(teacher(input_ids=ids).logits[0, :-1].float(), -1)[mask]
        total += float((t.exp() * (t - s)).sum())
        n += int(mask.sum())
    return total / n


def merged_teacher(out: Path) -> Path:
    """SmolLM2 after SFT on the training facts, merged into out/model: a teacher that
    knows them and shares the student's tokenizer."""
    from peft import PeftModel

    from distill.models import load_causal_lm
    from distill.train.sft import train_adapter

    train_adapter(STUDENT, cfg(), rows(), out / "sft")
    base, tok = load_causal_lm("smollm2-135m-instruct")
    merged = PeftModel.from_pretrained(base, str(out / "sft" / "adapter")).merge_and_unload()
    merged.save_pretrained(out / "model")
    tok.save_pretrained(out / "model")
    return out / "model"


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return merged_teacher(tmp_path_factory.mktemp("teacher"))


def test_gkd_moves_the_student_toward_the_teacher(teacher: Path, tmp_path: Path) -> None:
    from peft import PeftModel

    from distill.models import load_causal_lm
    from distill.train.gkd import train_gkd

    gkd = {
        "teacher": str(teacher),
        "max_steps": 4,
        "lmbda": 0.5,
        "learning_rate": 1e-3,
        "max_new_tokens": 24,
    }
    m = train_gkd(
        STUDENT,
        cfg(method="gkd", batch_size=2, gkd=gkd),
        rows(8),
        tmp_path,
        eval_rows=held_out_rows(),
    )
    assert m.eval_examples == 4 and m.eval_loss_after < m.eval_loss_before, m
    assert m.steps == 4 and m.start == "base student" and m.teacher == str(teacher)
    losses = [h["loss"] for h in m.log_history if "loss" in h]
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    assert not (tmp_path / "gkd_checkpoints").exists()
    base, tok = load_causal_lm("smollm2-135m-instruct")
    taught, _ = load_causal_lm(str(teacher))
    before = divergence(base, taught, tok)
    student = PeftModel.from_pretrained(base, str(tmp_path / "adapter"))
    after = divergence(student, taught, tok)
    assert after < 0.8 * before, (before, after)


def test_gold_distills_from_a_teacher_with_another_tokenizer(tmp_path: Path) -> None:
    """A Qwen2.5-Coder-0.5B teacher (151k-token vocabulary) for the SmolLM2 student
    (49k): TRL's GOLDTrainer with the ULD loss, on the student's own samples only; the
    distillation loss on the curated answers (never trained on: lmbda 1) falls."""
    from peft import PeftModel

    from distill.models import load_causal_lm
    from distill.train.gkd import train_gkd

    gkd = {
        "teacher": "qwen2.5-coder-0.5b-instruct",
        "max_steps": 4,
        "lmbda": 1.0,
        "learning_rate": 1e-3,
        "max_new_tokens": 24,
    }
    m = train_gkd(
        STUDENT,
        cfg(method="gkd", batch_size=2, gkd=gkd),
        rows(8),
        tmp_path,
        eval_rows=held_out_rows(),
    )
    assert m.trainer.startswith("GOLD") and m.steps == 4
    logged = [h for h in m.log_history if "loss" in h]
    assert len(logged) == 4 and all("on_policy_loss" in h for h in logged), logged
    assert m.eval_examples == 4
    assert m.eval_loss_after < m.eval_loss_before, m
    base, _ = load_causal_lm("smollm2-135m-instruct")
    PeftModel.from_pretrained(base, str(tmp_path / "adapter"))
