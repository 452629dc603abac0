"""Preference pairs from scripted judgements: a pair only where the judge graded the
student's answer clearly worse, the worst answer of a prompt kept, a failed judgement
never a pair, and every sampled answer's outcome and every pair's reason recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from distill.prompts import load_template
from distill.teachers import Message
from distill.teachers.fake import FakeTeacher
from distill.teachers.judge import JsonJudge
from distill.train import preferences
from distill.train.stage import trl_line


def row(sid: str, question: str, answer: str, edited: bool = False) -> dict[str, Any]:
    return {
        "sample_id": sid,
        "task": "qa",
        "doc_ids": ["d1"],
        "question": question,
        "human_edited": edited,
        "messages": [
            {"role": "system", "content": "Answer from the documents."},
            {"role": "user", "content": f'<document id="1">Text.</document>\n\n{question}'},
            {"role": "assistant", "content": answer},
        ],
    }


# What the scripted judge says of each student answer.
GRADES = {"wrong": 1, "poor": 2, "fine": 4, "broken": None}


def judge_reply(messages: list[Message]) -> str:
    text = messages[-1]["content"]
    answer = text.rsplit("<answer>", 1)[1]
    for word, grade in GRADES.items():
        if word in answer:
            if grade is None:
                return "I think it is fine"  # not JSON: a failed judgement
            return json.dumps({"correctness": grade, "reason": f"the answer is {word}"})
    raise AssertionError(answer)


def build(rows: list[dict[str, Any]], answers: list[list[str]]) -> tuple[Any, Any, FakeTeacher]:
    teacher = FakeTeacher(responses=judge_reply)
    template = load_template("eval_grade@v2")
    cands = preferences.grade(JsonJudge(teacher), template, rows, answers, "sft student")
    pairs = preferences.make_pairs(rows, cands, 2, "fake:judge")
    return pairs, cands, teacher


def test_pairs_only_from_clearly_worse_answers() -> None:
    rows = [
        row("a", "What port?", "Port 4417 [1]."),
        row("b", "What code?", "7731-QX [1].", edited=True),
        row("c", "Who?", "The Quillon team [1]."),
        row("d", "How long?", "95 minutes [1]."),
    ]
    answers = [
        ["a poor answer", "a wrong answer"],  # both clearly worse: the worst is kept
        ["a fine answer", "a poor answer"],
        ["a fine answer", "a broken answer"],  # one fine, one failed judgement: no pair
        ["", "95  Minutes [1]."],  # empty, and the same as the chosen answer
    ]
    pairs, cands, teacher = build(rows, answers)
    assert [p["sample_id"] for p in pairs] == ["a", "b"]
    a, b = pairs
    assert a["rejected"] == "a wrong answer" and a["rejected_correctness"] == 1
    assert a["chosen"] == "Port 4417 [1]." and a["chosen_by"] == "teacher"
    assert a["prompt"] == rows[0]["messages"][:2]  # the prompt is the chat up to the answer
    assert b["rejected"] == "a poor answer" and b["chosen_by"] == "reviewer"
    assert "graded 1/5" in a["why"] and "fake:judge" in a["why"] and "is wrong" in a["why"]
    assert a["rejected_by"] == "sft student"
    outcome = {(c["sample_id"], c["sample"]): c["outcome"] for c in cands}
    assert outcome == {
        ("a", 0): "a worse answer to this prompt was kept",
        ("a", 1): "pair",
        ("b", 0): "not clearly worse",
        ("b", 1): "pair",
        ("c", 0): "not clearly worse",
        ("c", 1): "judgement failed",
        ("d", 0): "empty answer",
        ("d", 1): "the same as the chosen answer",
    }
    failed = next(c for c in cands if c["outcome"] == "judgement failed")
    assert failed["error"] and failed["correctness"] is None
    # Empty and identical answers are never sent to the judge; the rest are, once each.
    assert len(teacher.calls) == 6
    # The judge sees the question without the documents, and the chosen answer as reference.
    prompt = teacher.calls[0][-1]["content"]
    assert "What port?" in prompt and "Port 4417 [1]." in prompt and "<document" not in prompt


def test_a_failed_judgement_never_makes_a_pair() -> None:
    rows = [row("a", "What port?", "Port 4417.")]
    pairs, cands, _ = build(rows, [["a broken answer", "another broken answer"]])
    assert pairs == []
    assert [c["outcome"] for c in cands] == ["judgement failed", "judgement failed"]


def test_trl_line_is_trl_conversational_preference_format() -> None:
    from trl.data_utils import is_conversational

    pairs, _, _ = build([row("a", "What port?", "Port 4417.")], [["a wrong answer"]])
    line = json.loads(trl_line(pairs[0]))
    assert set(line) == {"prompt", "chosen", "rejected"}
    assert is_conversational(line)
    assert line["chosen"] == [{"role": "assistant", "content": "Port 4417."}]
    assert line["rejected"] == [{"role": "assistant", "content": "a wrong answer"}]
    assert line["prompt"][-1]["role"] == "user"


def test_judge_defaults_to_evals_then_the_teacher() -> None:
    from distill.recipe import Recipe

    base = {"name": "x", "ingest": {"paths": ["."]}}
    r = Recipe.model_validate({**base, "teacher": "fake:t"})
    assert preferences.judge_spec(r)[0] == "fake:t"
    r = Recipe.model_validate({**base, "eval": {"judge": "fake:e", "judge_options": {"a": 1}}})
    assert preferences.judge_spec(r) == ("fake:e", {"a": 1})
    r = Recipe.model_validate({**base, "train": {"preferences": {"judge": "fake:p"}}})
    assert preferences.judge_spec(r) == ("fake:p", {})


def test_on_policy_methods_need_a_teacher() -> None:
    import pydantic

    from distill.train.config import TrainConfig

    with pytest.raises(pydantic.ValidationError, match="needs train.gkd.teacher"):
        TrainConfig.model_validate({"method": "sft_then_gkd"})
    assert TrainConfig.model_validate({"method": "gkd", "gkd": {"teacher": "x"}}).gkd.lmbda == 0.5


def test_a_served_teacher_needs_its_server_and_a_local_one_no_provider() -> None:
    import pydantic

    from distill.train.config import TrainConfig

    def gkd(**given: Any) -> TrainConfig:
        return TrainConfig.model_validate({"method": "gkd", "gkd": given})

    with pytest.raises(pydantic.ValidationError, match="options"):
        gkd(served_teacher={"model": "openai:t"})
    with pytest.raises(pydantic.ValidationError, match="base_url"):
        gkd(served_teacher={"model": "openai:t", "options": {"top_k": 5}})
    with pytest.raises(pydantic.ValidationError, match="a served teacher is openai:MODEL"):
        gkd(served_teacher={"model": "t", "options": {"base_url": "u"}})
    with pytest.raises(pydantic.ValidationError, match="runs here: write local:MODEL or MODEL"):
        gkd(teacher="openai:t")
    served = gkd(served_teacher={"model": "openai:t", "options": {"base_url": "u"}})
    assert served.gkd.served_teacher is not None and served.gkd.teacher is None
    options = served.gkd.served_teacher.options
    assert options.logprobs == "echo" and options.top_k == 20
    assert gkd(teacher="local:qwen-1.5b").gkd.teacher == gkd(teacher="qwen-1.5b").gkd.teacher


CARD_TEXT = (
    "name repo_id dataset_repo base provenance teacher version recipe_name description "
    "n_train review_text versions questions k judge hardware adapter_sha256 meaning "
    "decision_table decision"
).split()


def model_card(method: str, gkd: dict[str, Any] | None) -> str:
    from distill.publish.cards import method_tags, render
    from distill.train.config import TrainConfig
    from tests.test_train_results import dpo_metrics, gkd_pass

    t = TrainConfig.model_validate({"method": method, "gkd": {"teacher": "qwen-1.5b"}})
    passes = {"backend": "trl", "device": "cpu", "steps": 7}
    dpo = dpo_metrics(**passes, pairs=11, judge="local:judge", first_margin=0.0, last_margin=0.8)
    gkd = dict(gkd or {})
    served = gkd.pop("served", False)
    card = render(
        "model.md.j2",
        {"tags": method_tags(method)},
        method=method,
        dpo=dpo if method.endswith("dpo") else None,
        gkd=gkd_pass(served, **passes, **gkd) if gkd and method.endswith("gkd") else None,
        t=t,
        steps=15,
        epochs=3,
        train_loss=0.5,
        eval_loss=0.6,
        backend="trl",
        device="cpu",
        **{k: "x" for k in CARD_TEXT},
    )
    return " ".join(card.split())


@pytest.mark.parametrize("method", ["sft", "sft_then_dpo", "dpo", "gkd", "sft_then_gkd"])
def test_model_card_says_how_the_adapter_was_trained(method: str) -> None:
    from distill.publish.cards import method_tags

    gkd = {"teacher": "qwen-1.5b", "first_loss": 0.3, "last_loss": 0.1}
    text = model_card(method, gkd)
    assert ("TRL `SFTTrainer`" in text) == method.startswith("sft")
    assert ("on 11 preference pairs" in text) == method.endswith("dpo")
    assert ("Then TRL `DPOTrainer` from the SFT adapter" in text) == (method == "sft_then_dpo")
    assert ("against `qwen-1.5b`" in text) == method.endswith("gkd")
    assert ("Loss 0.3 at the first step, 0.1 at the last" in text) == method.endswith("gkd")
    assert ("TRL `GKDTrainer`" in text) == method.endswith("gkd")
    assert set(method_tags(method)) == set(method.split("_then_"))
    if method.endswith("gkd"):  # a teacher with another tokenizer: GOLD
        gold = model_card(method, {**gkd, "trainer": "GOLD"})
        assert "TRL `GOLDTrainer`" in gold and "ULD loss across the two tokenizers" in gold
        assert "GKDTrainer" not in gold and "generalized JSD" not in gold
        served = model_card(method, {**gkd, "served": True})  # top 20, as gkd_pass scores
        assert "TRL `GKDTrainer`" in served and "GOLD" not in served
        assert "on the served teacher's top 20 tokens and one bucket for the rest" in served
        assert "served teacher" not in text


def test_resume_skips_a_kept_sft_pass_of_the_same_settings(tmp_path: Path) -> None:
    from distill.train.config import TrainConfig
    from distill.train.stage import _plan, _sft_stamp

    cfg = TrainConfig.model_validate({"method": "sft_then_dpo"})
    data = [row("a", "What port?", "Port 4417.")]
    student = "smollm2-135m-instruct"
    assert _plan(student, cfg, data, tmp_path, resume=True) == (False, False)  # nothing kept
    (tmp_path / "sft_adapter").mkdir()
    (tmp_path / "sft_adapter" / "settings.sha256").write_text(_sft_stamp(student, cfg, data))
    # SFT done, DPO not begun
    assert _plan(student, cfg, data, tmp_path, resume=True) == (True, False)
    assert _plan(student, cfg, data, tmp_path, resume=False) == (False, False)
    other = TrainConfig.model_validate({"method": "sft_then_dpo", "epochs": 1})
    assert _plan(student, other, data, tmp_path, resume=True) == (False, False)  # other settings
    # Another student (no longer a train setting) is another SFT adapter too.
    assert _plan("qwen2.5-coder-0.5b-instruct", cfg, data, tmp_path, True) == (False, False)
    (tmp_path / "dpo_checkpoints" / "checkpoint-2").mkdir(parents=True)
    assert _plan(student, cfg, data, tmp_path, resume=True) == (True, True)
    sft = cfg.model_copy(update={"method": "sft"})
    assert _plan(student, sft, data, tmp_path, True) == (False, False)
    # Rows changed since the crash (a reviewer rejected one): the DPO checkpoints do not
    # make the stale SFT adapter current; SFT runs again and DPO starts over.
    fewer = data + [row("b", "What plan?", "Team.")]
    assert _plan(student, cfg, fewer, tmp_path, resume=True) == (False, False)
    assert _plan(student, other, data, tmp_path, resume=True) == (False, False)  # and again
    # DPO alone: its checkpoints resume (their own stamp checks rows and start weights).
    dpo = cfg.model_copy(update={"method": "dpo"})
    assert _plan(student, dpo, fewer, tmp_path, resume=True) == (False, True)


def test_resumed_dpo_rebuilds_pairs_when_rows_or_start_weights_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--resume reuses preferences.parquet only when it was built from the same rows and
    the same start adapter's weights (the path alone is the same after SFT ran again)."""
    from types import SimpleNamespace

    import distill.train.dpo
    from distill.io import write_json
    from distill.train import stage
    from distill.train.config import TrainConfig
    from distill.train_results import DpoPass
    from tests.test_train_results import dpo_metrics, pair_stats

    built: list[int] = []

    def build(recipe, rows, out, start):  # type: ignore[no-untyped-def]
        built.append(len(rows))
        stats = pair_stats(pairs=0)
        (out / "preferences.parquet").write_bytes(b"")
        write_json(out / "preferences.json", stats.model_dump())
        return [], stats

    monkeypatch.setattr(stage, "_build_pairs", build)
    monkeypatch.setattr(stage.tables, "read", lambda path, kind: [])
    monkeypatch.setattr(stage, "loss_plot", lambda *a, **k: None)
    trained = DpoPass(**dpo_metrics(pairs=0).model_dump(include=set(DpoPass.model_fields)))
    monkeypatch.setattr(distill.train.dpo, "train_dpo", lambda *a, **k: trained)
    recipe = SimpleNamespace(
        student="smollm2-135m-instruct",
        train=TrainConfig.model_validate({"method": "sft_then_dpo"}),
    )
    start = tmp_path / "sft_adapter"
    start.mkdir()
    (start / "adapter_model.safetensors").write_bytes(b"weights v1")
    rows = [row("a", "What port?", "Port 4417."), row("b", "What plan?", "Team.")]
    stage._dpo(recipe, rows, tmp_path, start, True)  # type: ignore[arg-type]
    stage._dpo(recipe, rows, tmp_path, start, True)  # type: ignore[arg-type]
    assert built == [2]  # the same rows and weights: the pairs are reused
    stage._dpo(recipe, rows[:1], tmp_path, start, True)  # type: ignore[arg-type]
    assert built == [2, 1]  # a row rejected since: built again
    (start / "adapter_model.safetensors").write_bytes(b"weights v2")
    stage._dpo(recipe, rows[:1], tmp_path, start, True)  # type: ignore[arg-type]
    assert built == [2, 1, 1]  # SFT retrained: built again


def test_published_pairs_are_only_those_of_published_samples(tmp_path: Path) -> None:
    """Pairs built before review rejected or corrected their sample were published with
    the dataset: only pairs whose sample is in the published rows, with the same final
    answer, go out."""
    from distill.io import read_rows, write_rows
    from distill.pipeline import RunOptions
    from distill.publish.stage import write_dataset
    from tests.review.test_stage import publishable_run, sample

    decisions = [
        {"sample_id": "s001", "status": "rejected", "corrected_answer": None},
        {"sample_id": "s002", "status": "edited", "corrected_answer": "A2, corrected."},
        {"sample_id": "s003", "status": "accepted", "corrected_answer": None},
    ]
    train = [sample(1), sample(2), sample(3)]
    recipe, run = publishable_run(tmp_path, train, decisions, "sft_then_dpo")

    def pair(i: int) -> dict[str, Any]:
        s = sample(i)
        return {
            "pair_id": f"p{i}",
            "sample_id": s["sample_id"],
            "task": "qa",
            "doc_ids": ["a"],
            "prompt": s["messages"][:-1],
            "chosen": s["messages"][-1]["content"],
            "rejected": "Wrong.",
            "chosen_by": "teacher",
            "rejected_by": "sft student",
            "rejected_correctness": 1,
            "judge": "fake:",
            "why": "graded 1",
        }

    write_rows(run.preferences, [pair(1), pair(2), pair(3)])
    counts = write_dataset(recipe, run, tmp_path / "out", "me/r", RunOptions())
    assert counts["preferences"] == 1 and counts["preferences_left_out"] == 2
    got = read_rows(tmp_path / "out" / "preferences" / "preferences-00000-of-00001.parquet")
    assert [g["chosen"] for g in got] == [[{"role": "assistant", "content": "A3."}]]
