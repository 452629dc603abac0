"""The local transformers teacher on the real SmolLM2 (slow)."""

from __future__ import annotations

import pytest

from distill.teachers.factory import make_teacher

pytestmark = pytest.mark.slow


def test_local_teacher_batches_counts_tokens_and_reports_the_token_cap() -> None:
    teacher = make_teacher(
        "local:smollm2-135m-instruct", {"engine": "transformers", "dtype": "float32"}
    )
    chats = [
        [{"role": "user", "content": "Name three colours."}],
        [{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
    ]
    capped = teacher.complete_many(chats, max_tokens=4, temperature=0.0)
    assert [c.finish_reason for c in capped] == ["length", "length"]
    assert [c.usage.output_tokens for c in capped] == [4, 4]
    assert all(c.usage.input_tokens > 5 and c.text for c in capped)
    free = teacher.complete([{"role": "user", "content": "What is 2+2?"}], max_tokens=60)
    assert free.finish_reason == "stop" and 0 < free.usage.output_tokens < 60
    again = teacher.complete([{"role": "user", "content": "What is 2+2?"}], max_tokens=60)
    assert again.text == free.text  # greedy decoding is deterministic


def test_a_final_assistant_message_is_continued() -> None:
    """A prefill: the reply continues the assistant's text instead of starting a turn."""
    teacher = make_teacher(
        "local:smollm2-135m-instruct", {"engine": "transformers", "dtype": "float32"}
    )
    question = [{"role": "user", "content": 'Reply with JSON like {"answer": 4}. What is 2+2?'}]
    prefix = '{"answer": '
    plain, continued = teacher.complete_many(
        [question, [*question, {"role": "assistant", "content": prefix}]],
        max_tokens=8,
        temperature=0.0,
    )
    assert not continued.text.startswith(prefix)  # the continuation only
    assert continued.text.lstrip()[:1].isdigit()  # ... right after '"answer": '
    assert continued.text != plain.text
