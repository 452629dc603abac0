"""On-policy distillation (GKD) on the CPU with the offline SmolLM2 student (slow): a
teacher that knows the training facts (the student after SFT on them, merged), and a
GKD pass that brings the base student's next-token distribution closer to it; a
teacher with another tokenizer is refused before its weights load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from distill.errors import UserError
from tests.test_train import cfg, rows

pytestmark = pytest.mark.slow


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


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2 after SFT on the training facts, merged: a teacher sharing its tokenizer."""
    from peft import PeftModel

    from distill.models import load_causal_lm
    from distill.train.trainer import train_adapter

    out = tmp_path_factory.mktemp("teacher")
    train_adapter(cfg(), rows(), out / "sft")
    base, tok = load_causal_lm("smollm2-135m-instruct")
    merged = PeftModel.from_pretrained(base, str(out / "sft" / "adapter")).merge_and_unload()
    merged.save_pretrained(out / "model")
    tok.save_pretrained(out / "model")
    return out / "model"


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
    m = train_gkd(cfg(method="gkd", batch_size=2, gkd=gkd), rows(8), tmp_path)
    assert m["steps"] == 4 and m["start"] == "base student" and m["teacher"] == str(teacher)
    losses = [h["loss"] for h in m["log_history"] if "loss" in h]
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    assert not (tmp_path / "gkd_checkpoints").exists()
    base, tok = load_causal_lm("smollm2-135m-instruct")
    taught, _ = load_causal_lm(str(teacher))
    before = divergence(base, taught, tok)
    student = PeftModel.from_pretrained(base, str(tmp_path / "adapter"))
    after = divergence(student, taught, tok)
    assert after < 0.8 * before, (before, after)


def test_a_teacher_with_another_tokenizer_is_refused(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from distill.models import load_causal_lm
    from distill.train.gkd import load_teacher

    words = {"<unk>": 0, "</s>": 1, "hello": 2, "world": 3}
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(words, unk_token="<unk>")),
        unk_token="<unk>",
        eos_token="</s>",
    )
    small = LlamaConfig(
        vocab_size=4,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    LlamaForCausalLM(small).save_pretrained(tmp_path / "other")
    tok.save_pretrained(tmp_path / "other")
    _, student_tok = load_causal_lm("smollm2-135m-instruct")
    c = cfg(method="gkd", gkd={"teacher": str(tmp_path / "other")})
    with pytest.raises(UserError, match="another tokenizer than the student"):
        load_teacher(c, student_tok)
