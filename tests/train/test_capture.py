"""Teacher log-probabilities captured once (train.gkd.capture): the capture holds the
teacher's distribution where the student predicts each answer token, a GKD pass trains
from it with the teacher never constructed, a second capture does nothing and a killed
one resumes, and a capture from another teacher, of other rows or for on-policy
settings is one line (the format itself: test_capture_store.py).

Fast tests run two-layer Llama models with random weights and SmolLM2's tokenizer (the
student, and a teacher made from it with noise); the slow one distils the offline
SmolLM2 student from a teacher that knows the training facts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from distill.errors import UserError
from distill.train import capture as capture_module
from distill.train import gkd as gkd_module
from distill.train.capture_store import Scored
from distill.train.config import TrainConfig
from tests.train.test_sft import rows

HELD_OUT = [("Which port does Zorblax use?", "Zorblax uses port 4417.")]


def eval_rows() -> list[dict[str, Any]]:
    return [
        {
            "sample_id": "e0",
            "messages": [
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": q},
                {"role": "assistant", "content": a},
            ],
        }
        for q, a in HELD_OUT
    ]


def distinct(n: int) -> list[dict[str, Any]]:
    """n training rows, no two alike (rows(n) repeats its four facts)."""
    out = rows(n)
    for i, r in enumerate(out):
        r["messages"][-1]["content"] += f" (note {i})"
    return out


def tiny_model(dest: Path, tok: Any, noise: float, seed: int = 0) -> Path:
    """A two-layer Llama with SmolLM2's tokenizer and random weights whose next-token
    distributions are peaked (the LM head scaled); `noise` perturbs its MLPs and head,
    so a teacher made from the student's weights is near it but not it."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig

    torch.manual_seed(0)
    special = dict(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id
    )
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=1024,
        **special,
    )
    model: Any = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(40)
        g = torch.Generator().manual_seed(seed)
        for name, p in model.named_parameters():
            if noise and ("mlp" in name or "lm_head" in name):
                p.add_(torch.randn(p.shape, generator=g) * noise * p.std())
    model.generation_config = GenerationConfig(**special)
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from distill.models import load_tokenizer

    root = tmp_path_factory.mktemp("tiny")
    tok = load_tokenizer("smollm2-135m-instruct")
    return {
        "student": str(tiny_model(root / "student", tok, 0.0)),
        "teacher": str(tiny_model(root / "teacher", tok, 0.5, seed=1)),
        "other_teacher": str(tiny_model(root / "other_teacher", tok, 0.5, seed=2)),
        "second_student": str(tiny_model(root / "second_student", tok, 0.2, seed=3)),
    }


def cfg(teacher: str | None, capture: dict[str, Any] | None = None, **gkd: Any) -> TrainConfig:
    g = {"lmbda": 0, "max_steps": 2, "learning_rate": 1e-3, **gkd}
    if teacher:
        g["teacher"] = teacher
    if capture is not None:
        g["capture"] = capture
    base = dict(
        method="gkd",
        batch_size=2,
        max_seq_length=128,
        save_steps=10,
        lora_dropout=0.0,
        precision="float32",
    )
    return TrainConfig.model_validate({**base, "gkd": g})


# -- capture and train ------------------------------------------------------------------


def test_the_capture_holds_the_teachers_top_k_where_the_student_predicts_each_token(
    tiny: dict[str, str], tmp_path: Path
) -> None:
    import torch

    from distill.models import load_causal_lm
    from distill.train.capture import prepare
    from distill.train.data import encode_rows, stop_ids
    from distill.train.gkd import Collator, keyed
    from distill.train.served import CapturedCollator

    c = cfg(tiny["teacher"], {"top_k": 8, "bits": 16})
    captured = prepare(tiny["student"], c, rows(3), tmp_path)
    assert captured.figures.captured_rows == 3 and captured.figures.top_k == 8
    teacher, tok = load_causal_lm(tiny["teacher"])
    encoded = keyed(encode_rows(tok, rows(3), stop_ids(tok)))
    collate = CapturedCollator(Collator(tok.pad_token_id, 128), captured.store, 128)
    batch = collate(encoded[:2])
    checked = 0
    for b, e in enumerate(encoded[:2]):
        pad = batch["input_ids"].shape[1] - len(e["input_ids"])
        with torch.no_grad():
            lp = torch.log_softmax(teacher(torch.tensor([e["input_ids"]])).logits[0], -1)
        for p, m in enumerate(e["assistant_masks"]):
            col = pad + p - 1  # the student's logits row that predicts token p
            valid = batch["teacher_valid"][b, col]
            assert bool(valid.all()) == bool(m), (p, m)
            if not m:
                continue
            want = lp[p - 1].topk(8)
            assert batch["teacher_ids"][b, col].tolist() == want.indices.tolist()
            got = batch["teacher_logprobs"][b, col]
            assert torch.allclose(got, want.values, atol=2e-2), (got, want.values)
            mass = got.exp().sum() + batch["teacher_tail"][b, col].exp()
            assert abs(float(mass) - 1) < 1e-2
            checked += 1
    assert checked > 10


def test_capture_then_train_without_the_teacher(
    tiny: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first pass captures (the teacher loaded once) and trains; a second pass of
    the same recipe, and a second student trained from the first run's capture with no
    teacher named, never construct the teacher; the losses are those of the loaded
    teacher's GKD, coarse-grained onto the top-k (below it, nearer as k grows)."""
    from distill.train.gkd import train_gkd

    loads: list[str] = []
    real = capture_module.load_causal_lm

    def counted(ref: str, *a: Any) -> Any:
        loads.append(ref)
        return real(ref, *a)

    monkeypatch.setattr(capture_module, "load_causal_lm", counted)
    first = train_gkd(
        tiny["student"],
        cfg(tiny["teacher"], {"top_k": 20}),
        rows(6),
        tmp_path / "a",
        eval_rows=eval_rows(),
    )
    assert loads == [tiny["teacher"]]
    assert first.trainer == "GKD (captured teacher, top-k)" and first.teacher == tiny["teacher"]
    assert first.capture is not None and first.capture.captured_rows == 5  # 4 distinct + 1 eval row
    assert first.capture.bytes_per_token < 120 and first.capture.peak_memory_mb
    assert first.eval_examples == 1 and first.eval_loss_before is not None
    assert (tmp_path / "a" / "adapter" / "adapter_model.safetensors").is_file()
    monkeypatch.undo()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(capture_module, "load_causal_lm", no_load)
        mp.setattr(gkd_module, "load_causal_lm", no_load)
        mp.setattr(capture_module.TeacherScorer, "__enter__", no_load)
        again = train_gkd(
            tiny["student"],
            cfg(tiny["teacher"], {"top_k": 20}),
            rows(6),
            tmp_path / "a",
            eval_rows=eval_rows(),
        )
        assert again.capture is not None and again.capture.captured_rows == 0
        assert again.first_loss == first.first_loss and again.last_loss == first.last_loss
        shared = {"top_k": 20, "path": str(tmp_path / "a" / "teacher_logprobs")}
        second = train_gkd(
            tiny["second_student"], cfg(None, shared), rows(6), tmp_path / "b", eval_rows=[]
        )
        assert second.teacher == tiny["teacher"] and second.steps == 2
        assert not (tmp_path / "b" / "teacher_logprobs").exists()

    loaded = train_gkd(tiny["student"], cfg(tiny["teacher"]), rows(6), tmp_path / "c")
    wide = train_gkd(
        tiny["student"],
        cfg(tiny["teacher"], {"top_k": 256, "bits": 16}, measure_eval=False),
        rows(6),
        tmp_path / "d",
    )
    assert loaded.trainer == "GKD" and loaded.first_loss and first.first_loss and wide.first_loss
    assert first.first_loss < wide.first_loss <= loaded.first_loss * 1.001
    assert wide.first_loss > 0.85 * loaded.first_loss, (wide.first_loss, loaded.first_loss)


def no_load(*a: Any, **k: Any) -> Any:
    raise AssertionError(f"the teacher was constructed: {a}")


def test_a_second_capture_does_nothing_and_a_killed_one_resumes(
    tiny: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distill.train.capture import prepare

    monkeypatch.setattr(capture_module, "ROWS_PER_SHARD", 2)
    scored: list[int] = []
    real = capture_module.TeacherScorer._local

    def killed_after(n: int) -> Any:
        def score(self: Any, e: dict[str, Any]) -> Scored:
            if len(scored) == n:
                raise KeyboardInterrupt
            scored.append(1)
            return real(self, e)

        return score

    c = cfg(tiny["teacher"], {"top_k": 8})
    monkeypatch.setattr(capture_module.TeacherScorer, "_local", killed_after(5))
    with pytest.raises(KeyboardInterrupt):
        prepare(tiny["student"], c, distinct(7), tmp_path / "run")
    folder = tmp_path / "run" / "teacher_logprobs"
    assert len(list(folder.glob("shard-*.npz"))) == 2  # rows 1-4; the 5th died mid-shard
    assert not list(folder.glob(".*tmp"))
    scored.clear()
    monkeypatch.setattr(capture_module.TeacherScorer, "_local", killed_after(99))
    resumed = prepare(tiny["student"], c, distinct(7), tmp_path / "run")
    assert len(scored) == 3 and resumed.figures.captured_rows == 3
    whole = prepare(tiny["student"], c, distinct(7), tmp_path / "whole")
    assert set(resumed.store.rows) == set(whole.store.rows) and len(whole.store.rows) == 7
    for key in whole.store.rows:
        a, b = resumed.store.read(key), whole.store.read(key)
        assert (a.ids == b.ids).all() and (a.logprobs == b.logprobs).all()
    monkeypatch.setattr(capture_module, "load_causal_lm", no_load)
    hit = prepare(tiny["student"], c, distinct(7), tmp_path / "run")
    assert hit.figures.captured_rows == 0 and hit.figures.seconds == 0
    assert len(list(folder.glob("shard-*.npz"))) == 4


def test_a_capture_it_cannot_use_is_one_line(tiny: dict[str, str], tmp_path: Path) -> None:
    from distill.train.capture import prepare

    prepare(tiny["student"], cfg(tiny["teacher"], {"top_k": 8}), rows(2), tmp_path)
    folder = tmp_path / "teacher_logprobs"

    def refused(c: TrainConfig, rs: list[dict[str, Any]], match: str) -> None:
        with pytest.raises(UserError, match=match) as err:
            prepare(tiny["student"], c, rs, tmp_path)
        assert "\n" not in str(err.value)

    first = Path(tiny["teacher"]).name
    refused(
        cfg(tiny["other_teacher"], {"top_k": 8}),
        rows(2),
        f"holds .*{first}'s log-probabilities, not this recipe's teacher's .*delete",
    )
    refused(
        cfg(tiny["teacher"], {"top_k": 20}), rows(2), "holds .* top 8 at 8 bits, not the top 20"
    )
    changed = rows(2)
    changed[1]["messages"][-1]["content"] = "Zorblax listens on port 4418."
    shared = {"top_k": 8, "path": str(folder)}
    refused(cfg(None, shared), changed, r"1 of the 2 rows are not in the capture .* name the")
    with pytest.raises(ValueError, match="gkd.lmbda 0.5 samples the student's own answers") as e:
        cfg(tiny["teacher"], {"top_k": 8}, lmbda=0.5)
    assert "set train.gkd.lmbda to 0, or drop train.gkd.capture" in str(e.value)


def test_a_teacher_with_another_tokenizer_cannot_be_captured(
    tiny: dict[str, str], tmp_path: Path
) -> None:
    import shutil

    from transformers import AutoTokenizer

    from distill.train.capture import prepare

    teacher = tmp_path / "other_vocabulary"
    shutil.copytree(tiny["teacher"], teacher)
    tok = AutoTokenizer.from_pretrained(teacher)
    tok.add_tokens(["<zorblax>"])
    tok.save_pretrained(teacher)
    with pytest.raises(UserError, match="drop train.gkd.capture") as err:
        prepare(tiny["student"], cfg(str(teacher), {}), rows(1), tmp_path / "run")
    assert "GOLD (across tokenizers) reads the teacher live" in str(err.value)


@pytest.fixture(scope="module")
def served_teacher(tiny: dict[str, str]) -> Iterator[str]:
    """vLLM's wire format (`/tokenize`; completions with token-id prompts and
    `prompt_logprobs`) with the tiny teacher's numbers, computed by transformers."""
    import threading

    import torch

    from distill.models import load_causal_lm
    from tests.fakes.loopback import json_server

    model, tok = load_causal_lm(tiny["teacher"])
    lock = threading.Lock()

    def reply(path: str, body: dict[str, Any], headers: Any) -> Any:
        if path == "/tokenize":
            return {"tokens": tok(body["prompt"], add_special_tokens=False)["input_ids"]}
        seq, k = [int(t) for t in body["prompt"]], int(body["prompt_logprobs"])
        with lock, torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([seq])).logits[0].double(), -1)
        out: list[Any] = [None]
        for p in range(1, len(seq)):
            top = lp[p - 1].topk(k)
            keep = [*top.indices.tolist(), seq[p]]
            out.append({str(i): {"logprob": float(lp[p - 1, i])} for i in keep})
        return {"choices": [{"index": 0, "text": "", "prompt_logprobs": out}]}

    with json_server(reply) as url:
        yield url


def test_a_served_teacher_is_captured_as_the_loaded_one_is(
    tiny: dict[str, str], served_teacher: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same rows captured through the server (its top-k, the tail from their sum) and
    from the teacher loaded here: the same ids, log-probabilities and tails; then trained
    from with the server gone."""
    from distill.train.capture import prepare
    from distill.train.gkd import train_gkd

    options = {"base_url": served_teacher, "logprobs": "prompt_logprobs"}
    served = {"model": "openai:tiny", "options": options}
    served_cfg = cfg(None, {"top_k": 8, "bits": 16}, measure_eval=False, served_teacher=served)
    by_server = prepare(tiny["student"], served_cfg, rows(3), tmp_path / "served")
    assert by_server.teacher == "openai:tiny"
    local = prepare(
        tiny["student"], cfg(tiny["teacher"], {"top_k": 8, "bits": 16}), rows(3), tmp_path
    )
    assert set(by_server.store.rows) == set(local.store.rows) and len(local.store.rows) == 3
    for key in local.store.rows:
        a, b = by_server.store.read(key), local.store.read(key)
        assert (a.positions == b.positions).all() and (a.ids == b.ids).all()
        assert np.abs(a.logprobs - b.logprobs).max() < 1e-2
        assert np.abs(a.tail - b.tail).max() < 1e-2
    monkeypatch.setattr(capture_module.TeacherScorer, "__enter__", no_load)
    trained = train_gkd(tiny["student"], served_cfg, rows(3), tmp_path / "served")
    assert trained.teacher == "openai:tiny" and trained.capture is not None
    assert trained.capture.captured_rows == 0 and trained.served is None


def test_a_pass_from_the_capture_is_the_pass_against_the_live_server(
    tiny: dict[str, str], served_teacher: str, tmp_path: Path
) -> None:
    """One row a step, lmbda 0: GKD asking the server at every step and GKD from its
    capture (16 bits) compute the same loss on the same rows, step by step."""
    from distill.train.gkd import train_gkd

    served = {
        "model": "openai:tiny",
        "options": {"base_url": served_teacher, "logprobs": "prompt_logprobs", "top_k": 8},
    }
    common = {"served_teacher": served, "measure_eval": False, "max_steps": 3}
    live_cfg = cfg(None, None, **common).model_copy(update={"batch_size": 1})
    captured_cfg = cfg(None, {"top_k": 8, "bits": 16}, **common)
    captured_cfg = captured_cfg.model_copy(update={"batch_size": 1})
    live = train_gkd(tiny["student"], live_cfg, rows(4), tmp_path / "live")
    stored = train_gkd(tiny["student"], captured_cfg, rows(4), tmp_path / "stored")
    assert live.trainer == "GKD (served teacher, top-k)" and live.served is not None
    assert stored.trainer == "GKD (captured teacher, top-k)"
    a = [h["loss"] for h in live.log_history if "loss" in h]
    b = [h["loss"] for h in stored.log_history if "loss" in h]
    assert len(a) == len(b) == 3 and a[0] > 0.05
    assert a == pytest.approx(b, rel=1e-3), (a, b)


# -- the real student -------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_distils_from_a_capture_without_its_teacher(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SmolLM2 from a teacher that knows the training facts: captured once, then a GKD
    pass from the capture, the teacher never constructed, brings the student's
    distribution on the answers closer to the teacher's."""
    from peft import PeftModel

    from distill.models import load_causal_lm
    from distill.train.capture import prepare
    from distill.train.gkd import train_gkd
    from tests.train.test_gkd import divergence, merged_teacher
    from tests.train.test_sft import STUDENT
    from tests.train.test_sft import cfg as sft_cfg

    teacher = str(merged_teacher(tmp_path_factory.mktemp("teacher")))
    gkd = {"teacher": teacher, "lmbda": 0, "max_steps": 4, "learning_rate": 1e-3}
    c = sft_cfg(method="gkd", batch_size=2, gkd={**gkd, "capture": {}, "measure_eval": False})
    made = prepare(STUDENT, c, rows(8), tmp_path)
    assert made.figures.captured_rows == 4 and made.figures.tokens > 30
    monkeypatch.setattr(capture_module, "load_causal_lm", no_load)
    monkeypatch.setattr(gkd_module, "load_causal_lm", no_load)
    m = train_gkd(STUDENT, c, rows(8), tmp_path)
    assert m.capture is not None and m.capture.captured_rows == 0 and m.steps == 4
    losses = [h["loss"] for h in m.log_history if "loss" in h]
    assert losses[-1] < losses[0], losses
    monkeypatch.undo()
    base, tok = load_causal_lm("smollm2-135m-instruct")
    taught, _ = load_causal_lm(teacher)
    before = divergence(base, taught, tok)
    student = PeftModel.from_pretrained(base, str(tmp_path / "adapter"))
    after = divergence(student, taught, tok)
    assert after < 0.8 * before, (before, after)


def test_a_teachers_identity_names_its_server_and_a_hub_revision_found_later() -> None:
    """Two servers serving other weights under one name are two teachers (the URL only
    hashed); a hub id captured before its first download (no revision on record) is the
    same teacher once its revision is known, and another id is not."""
    import json

    from distill.train.capture import _same_teacher, teacher_identity
    from distill.train.config import GkdConfig

    def served(url: str) -> dict[str, Any] | None:
        opts = {"base_url": url, "api_key_env": "NONE"}
        g = GkdConfig.model_validate({"served_teacher": {"model": "openai:t", "options": opts}})
        return teacher_identity(g, {})

    a, b = served("http://10.0.0.1:8000/v1"), served("http://10.0.0.2:8000/v1")
    assert a is not None and b is not None and a != b
    assert "10.0.0.1" not in json.dumps(a) and a == served("http://10.0.0.1:8000/v1")
    unknown = {"hub_id": "org/teacher", "revision": None}
    assert _same_teacher({"hub_id": "org/teacher", "revision": "abc123"}, unknown)
    assert not _same_teacher({"hub_id": "org/other", "revision": "abc123"}, unknown)
    assert not _same_teacher(unknown, {"hub_id": "org/teacher", "revision": "abc123"})
