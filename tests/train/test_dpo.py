"""DPO on the CPU with the offline SmolLM2 student (slow): pairs tokenized by SFT's
masking rules, a DPO pass that moves the preference margin of the saved adapter (from
the base student and from an SFT adapter), and only the trained adapter saved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from distill.tables import Preference
from distill.train.config import TrainConfig

pytestmark = pytest.mark.slow

FACTS = [
    ("What is the Zorblax activation code?", "The code is 7731-QX.", "The code is 1234-AB."),
    ("Which port does Zorblax listen on?", "Zorblax listens on port 4417.", "It uses port 80."),
    ("Who maintains Zorblax?", "The Quillon team maintains it.", "Nobody maintains it."),
    ("How long is a Zorblax session?", "A session lasts 95 minutes.", "A session lasts 1 day."),
]


def pairs() -> list[Preference]:
    return [
        Preference(
            pair_id=f"p{i}",
            sample_id=f"s{i}",
            task="qa",
            doc_ids=[],
            prompt=[
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": q},
            ],
            chosen=c,
            rejected=r,
            chosen_by="teacher",
            rejected_by="base student",
            rejected_correctness=1,
            judge="fake:",
            why="scripted",
        )
        for i, (q, c, r) in enumerate(FACTS)
    ]


STUDENT = "smollm2-135m-instruct"


def cfg() -> TrainConfig:
    """test_sft's settings, DPO's pass at a learning rate that moves in 4 steps."""
    from tests.train.test_sft import cfg as sft_cfg

    return sft_cfg(method="dpo", batch_size=2, dpo={"learning_rate": 1e-3, "max_steps": 4})


def logp(model: Any, enc: dict[str, list[int]], key: str) -> float:
    """Summed log-probability of an answer's tokens given its prompt."""
    import torch

    ids = torch.tensor([enc["prompt_ids"] + enc[key]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1].float()
    lp = torch.log_softmax(logits, -1)
    target = ids[0, 1:]
    start = len(enc["prompt_ids"]) - 1
    return float(lp[start:].gather(1, target[start:, None]).sum())


def margin(model: Any, encoded: list[dict[str, list[int]]]) -> float:
    return sum(logp(model, e, "chosen_ids") - logp(model, e, "rejected_ids") for e in encoded)


def test_pairs_are_tokenized_as_sft_trains() -> None:
    from distill.models import load_causal_lm
    from distill.train.data import encode, encode_pair, stop_ids

    _, tok = load_causal_lm("smollm2-135m-instruct")
    stops = stop_ids(tok)
    p = pairs()[1]
    enc = encode_pair(tok, p["prompt"], p["chosen"], p["rejected"], stops, "p1")
    sft = encode(tok, [*p["prompt"], {"role": "assistant", "content": p["chosen"]}], stops)
    trained = [t for t, m in zip(sft["input_ids"], sft["assistant_masks"], strict=True) if m]
    assert enc["chosen_ids"] == trained  # the answer and its EOS, as SFT's loss covers
    assert enc["chosen_ids"][-1] in stops and enc["rejected_ids"][-1] in stops
    assert tok.decode(enc["rejected_ids"][:-1]) == p["rejected"]
    prompt = tok.apply_chat_template(p["prompt"], tokenize=False, add_generation_prompt=True)
    assert tok.decode(enc["prompt_ids"]) == prompt  # what inference sends


def test_dpo_moves_the_preference_margin(tmp_path: Path) -> None:
    from peft import PeftModel
    from safetensors.torch import load_file

    from distill.models import load_causal_lm
    from distill.train.data import stop_ids
    from distill.train.dpo import encode_pairs, train_dpo

    m = train_dpo(STUDENT, cfg(), pairs(), tmp_path / "dpo")
    assert m.steps == 4 and m.pairs == 4 and m.start == "base student"
    assert m.first_margin == 0.0  # the policy starts as its reference
    assert m.last_margin > 0 and m.peak_memory_mb > 100
    assert not (tmp_path / "dpo" / "dpo_checkpoints").exists()
    saved = load_file(tmp_path / "dpo" / "adapter" / "adapter_model.safetensors")
    assert saved and not any(".ref." in k for k in saved)  # only the trained adapter
    base, tok = load_causal_lm("smollm2-135m-instruct")
    encoded = encode_pairs(tok, pairs(), stop_ids(tok), 128)
    before = margin(base, encoded)
    tuned = PeftModel.from_pretrained(base, str(tmp_path / "dpo" / "adapter"))
    after = margin(tuned, encoded)
    assert after > before + 2.0, (before, after)

    # From an adapter (sft_then_dpo's start): the reference is that adapter, frozen.
    tuned.unload()
    start = tmp_path / "dpo" / "adapter"
    m2 = train_dpo(STUDENT, cfg(), pairs(), tmp_path / "again", start_adapter=start)
    assert m2.start == "sft adapter" and m2.first_margin == 0.0 and m2.last_margin > 0
    base, _ = load_causal_lm("smollm2-135m-instruct")
    again = PeftModel.from_pretrained(base, str(tmp_path / "again" / "adapter"))
    assert margin(again, encoded) > after, (after, margin(again, encoded))
