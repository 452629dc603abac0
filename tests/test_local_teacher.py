"""The local transformers teacher on the real SmolLM2 (slow)."""

from __future__ import annotations

import pytest

from distill.teachers import get_teacher

pytestmark = pytest.mark.slow


def test_local_teacher_batches_counts_tokens_and_reports_the_token_cap() -> None:
    teacher = get_teacher("local:smollm2-135m-instruct", {"dtype": "float32"})
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
