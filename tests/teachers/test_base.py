from __future__ import annotations

import pytest

from distill.errors import UserError
from distill.teachers.base import cut_at_stop, parse_json
from distill.teachers.factory import make_teacher
from distill.teachers.fake import FakeTeacher
from distill.teachers.local import TransformersTeacher


def test_backends_are_chosen_by_prefix() -> None:
    assert isinstance(make_teacher("fake:"), FakeTeacher)
    t = make_teacher("local:some/model")
    assert isinstance(t, TransformersTeacher) and t.model == "some/model"  # not a GGUF
    with pytest.raises(UserError, match="unknown teacher .gpt-4o.*local, openai, anthropic, fake"):
        make_teacher("gpt-4o")
    with pytest.raises(UserError, match="needs a model"):
        make_teacher("local:")


def test_fake_teacher_scripted_and_stop_strings() -> None:
    t = FakeTeacher(responses=["one\nQuestion: two", '{"a": 1} trailing'])
    c = t.complete([{"role": "user", "content": "hi"}], stop=["\nQuestion:"])
    assert c.text == "one"
    c2 = t.complete([{"role": "user", "content": "x"}], schema={"type": "object"})
    assert c2.parsed == {"a": 1}
    assert len(t.calls) == 2
    with pytest.raises(IndexError):
        t.complete([{"role": "user", "content": "x"}])


def test_fake_teacher_default_reply_is_deterministic_and_grounded() -> None:
    doc = '<document id="a" title="Billing > Trials">\nTrials last 14 days. More.\n</document>'
    msgs = [{"role": "user", "content": doc}]  # a '>' inside an attribute must not end the tag
    a = FakeTeacher().complete(msgs).text
    assert a == "Trials last 14 days." == FakeTeacher().complete(msgs).text


def test_helpers() -> None:
    assert cut_at_stop("abc STOP def", ["STOP", "c"]) == "ab"
    assert cut_at_stop("abc", None) == "abc"
    assert parse_json('noise {"x": [1, 2]} more') == {"x": [1, 2]}
    assert parse_json("no json") is None
    # A raw line break inside a string (llama.cpp's grammar allows one) still parses.
    assert parse_json('{"reason": "a list\n  ", "verdict": "wrong"}') == {
        "reason": "a list\n  ",
        "verdict": "wrong",
    }
