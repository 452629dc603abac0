from __future__ import annotations

from pathlib import Path

from distill.teachers.base import Message
from distill.teachers.cache import CachedTeacher, RequestCache
from distill.teachers.fake import FakeTeacher


def chat(text: str) -> list[Message]:
    return [{"role": "user", "content": text}]


def counting_teacher(calls: list[str]) -> FakeTeacher:
    def reply(messages: list[Message]) -> str:
        calls.append(messages[-1]["content"])
        return f"reply to {messages[-1]['content']}"

    return FakeTeacher(responses=reply)


def test_second_ask_is_served_from_the_cache(tmp_path: Path) -> None:
    calls: list[str] = []
    teacher = CachedTeacher(counting_teacher(calls), RequestCache(tmp_path / "c.sqlite"))
    first = teacher.complete_many([chat("a"), chat("b")], max_tokens=10)
    again = teacher.complete_many([chat("b"), chat("a"), chat("c")], max_tokens=10)
    assert calls == ["a", "b", "c"]
    assert [c.text for c in again] == ["reply to b", "reply to a", "reply to c"]
    assert again[1].usage == first[0].usage
    assert [c.cached for c in again] == [True, True, False] and not first[0].cached
    assert (teacher.hits, teacher.misses) == (2, 3)


def test_key_covers_params_salt_and_survives_reopening(tmp_path: Path) -> None:
    calls: list[str] = []
    path = tmp_path / "c.sqlite"
    teacher = CachedTeacher(counting_teacher(calls), RequestCache(path), salt="tpl-v1")
    teacher.complete(chat("a"), temperature=0.0)
    teacher.complete(chat("a"), temperature=0.7)  # other sampling: a new request
    CachedTeacher(counting_teacher(calls), RequestCache(path), salt="tpl-v2").complete(chat("a"))
    assert calls == ["a", "a", "a"]
    reopened = CachedTeacher(counting_teacher(calls), RequestCache(path), salt="tpl-v1")
    assert reopened.complete(chat("a"), temperature=0.0).text == "reply to a"
    assert calls == ["a", "a", "a"] and len(reopened.cache) == 3


def test_throughput_settings_are_not_in_the_key_and_old_keys_still_serve(tmp_path: Path) -> None:
    """Lowering concurrency after a 429 (or changing timeouts, retries, rate caps) pays
    for nothing again; another server does; a cache keyed the old way keeps serving."""
    from distill.teachers.openai import OpenAIOptions

    calls: list[str] = []
    path = tmp_path / "c.sqlite"

    def cached(**options: object) -> CachedTeacher:
        fake = counting_teacher(calls)
        fake.options = OpenAIOptions(**options)  # type: ignore[arg-type]
        return CachedTeacher(fake, RequestCache(path))

    cached(concurrency=16).complete(chat("a"))
    slower = cached(concurrency=2, rpm=30, tpm=10_000, timeout_s=300, max_retries=9, ramp_s=3)
    assert slower.complete(chat("a")).cached and calls == ["a"]
    cached(base_url="http://127.0.0.1:9/v1").complete(chat("a"))
    assert calls == ["a", "a"]
    # A reply stored under the key that held every setting (before this change).
    old = cached(concurrency=4)
    old.cache.put(old._legacy_key(chat("b"), None, {}), old.inner.complete(chat("b")))
    assert cached(concurrency=4).complete(chat("b")).cached and calls == ["a", "a", "b"]
