"""The teacher factory: one place builds every teacher, prices it the same
way, and the wrappers in front report the inner teacher's capabilities and spend."""

from __future__ import annotations

from pathlib import Path

import pytest

from distill.config import PriceConfig
from distill.errors import InputError, UserError
from distill.teachers import llamacpp
from distill.teachers.cache import CachedTeacher, RequestCache
from distill.teachers.factory import make_student, make_teacher, price_for
from distill.teachers.llamacpp import LlamaCppTeacher
from distill.teachers.local import LocalOptions, TransformersTeacher
from distill.teachers.prices import lookup
from tests.fakes.openai_server import serve

KEY = "test-key-" + "x" * 24
CHAT = [{"role": "user", "content": "How long do trials last?"}]


def test_prices_come_from_the_recipe_then_the_table() -> None:
    price, source = price_for("openai:gpt-4o-mini")
    assert price == lookup("openai", "gpt-4o-mini") and source.startswith("price table")
    given, source = price_for("openai:gpt-4o-mini", PriceConfig(input=1.0, output=2.0))
    assert (given.input, given.output, source) == (1.0, 2.0, "recipe")  # type: ignore[union-attr]
    assert price_for("local:smollm2-135m-instruct") == (None, "runs on this machine: no API cost")
    unknown, source = price_for("openai:my-finetune")
    assert unknown is None and "counted as 0" in source
    with pytest.raises(UserError, match="no price known for openai:my-finetune"):
        price_for("openai:my-finetune", max_cost_usd=1.0)
    with pytest.raises(UserError, match="mode batch needs an openai: or anthropic: teacher"):
        price_for("local:smollm2-135m-instruct", batch=True)


def test_a_cached_api_teacher_reports_its_capabilities_and_spend(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DISTILL_TEST_KEY", KEY)
    cache = RequestCache(tmp_path / "cache.sqlite")
    with serve() as (server, url):
        teacher = make_teacher(
            "openai:gpt-4o-mini",
            {"base_url": url, "api_key_env": "DISTILL_TEST_KEY"},
            max_cost_usd=5.0,
            cache=cache,
            salt="templates",
        )
        assert isinstance(teacher, CachedTeacher)
        assert teacher.supports_schema and teacher.sends_all_at_once
        assert not teacher.needs_json_prefill and not teacher.runs_locally
        assert teacher.price == lookup("openai", "gpt-4o-mini")
        assert teacher.price_source.startswith("price table")
        assert teacher.spent_usd == 0.0
        first = teacher.complete_many([CHAT], max_tokens=16)
        paid = teacher.spent_usd
        assert paid == pytest.approx(first[0].cost_usd) and paid > 0
        assert teacher.budget.max_usd == 5.0
        again = teacher.complete_many([CHAT], max_tokens=16)  # from the cache: free
        assert again[0].cached and teacher.spent_usd == paid and len(server.requests) == 1
        assert teacher.requests_sent == 1
    cache.close()


def test_local_teachers_say_they_run_here_and_are_not_priced() -> None:
    teacher = make_teacher("local:smollm2-135m-instruct", {"engine": "transformers"})
    assert teacher.runs_locally and teacher.price is None and teacher.spent_usd == 0.0
    assert teacher.needs_json_prefill  # transformers cannot hold a reply to a schema
    fake = make_teacher("fake:")
    assert not fake.runs_locally and fake.supports_schema and not fake.needs_json_prefill
    with pytest.raises(UserError, match="unknown teacher 'gpt-4o'"):
        make_teacher("gpt-4o")


def test_a_local_model_gets_the_runtime_its_engine_option_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One class per runtime, chosen from `engine` (auto: llama.cpp for a GGUF when
    llama-cpp-python is installed); the capabilities are the class's own."""
    ref = "local:smollm2-135m-instruct"  # a GGUF alias
    slow = make_teacher(ref, {"engine": "transformers"})
    assert type(slow) is TransformersTeacher and slow.engine == "transformers"
    assert not slow.supports_schema and not slow.sends_all_at_once
    monkeypatch.setattr(llamacpp, "available", lambda: True)
    fast = make_teacher(ref)
    assert type(fast) is LlamaCppTeacher and fast.engine == "llama.cpp"
    assert fast.supports_schema and fast.sends_all_at_once and fast.runs_locally
    assert fast.timed is None and fast.stop_loops is None  # a teacher is not measured
    monkeypatch.setattr(llamacpp, "available", lambda: False)
    assert type(make_teacher(ref)) is TransformersTeacher


def test_a_student_is_built_with_its_adapter_for_each_system(tmp_path: Path) -> None:
    """Eval's students come from the factory: through transformers the systems share
    one loaded model (the adapter switched off for base); through llama.cpp each system
    loads its own, with the LoRA GGUF for ft, and is measured."""
    adapter = tmp_path / "adapter"
    student = make_student(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        LocalOptions(engine="transformers", dtype="float32"),
        adapter,
        timed=40,
        stop_loops=16,
    )
    assert isinstance(student, TransformersTeacher) and student.runs_locally
    ft, base = student.another(adapter=True), student.another(adapter=False)
    assert ft.weights is base.weights is student.weights
    assert (ft.adapter_off, base.adapter_off) == (False, True)
    with pytest.raises(InputError, match="no trained adapter in .*distill train"):
        base.complete([{"role": "user", "content": "hi"}])

    gguf, lora = tmp_path / "m.gguf", tmp_path / "m-lora.gguf"
    gguf.write_bytes(b"GGUF")
    llama = make_student(str(gguf), LocalOptions(engine="llama.cpp"), lora, timed=40, stop_loops=16)
    assert isinstance(llama, LlamaCppTeacher) and llama.gguf == gguf
    ft, base = llama.another(adapter=True), llama.another(adapter=False)
    assert ft is not llama and (ft.adapter, base.adapter) == (lora, None)
    assert (base.timed, base.stop_loops) == (40, 16)
