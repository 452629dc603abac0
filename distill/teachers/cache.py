"""A persistent request cache, so a rerun never pays twice for the same request.

The key hashes everything that decides a reply: the teacher spec, the messages (which
hold the prompt templates' words), the schema and the sampling parameters, and `salt`
where a caller needs one more (eval's judge on the teacher system's loaded model).
Each answer is committed as soon as it arrives (SQLite, WAL), so killing the
process at any moment loses at most the requests in flight.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from distill.io import hash_json
from distill.teachers.base import Completion, Message, Teacher, Usage, WrappedTeacher


class RequestCache:
    """SQLite table of request key -> completion (JSON)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, completion TEXT NOT NULL)"
        )

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute(
                "SELECT completion FROM replies WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        data = json.loads(row[0])
        data["usage"] = Usage(**data["usage"])
        data["cached"] = True
        return Completion(**data)

    def put(self, key: str, completion: Completion) -> None:
        if completion.error is not None:
            return
        # The provider's raw reply is not kept (asdict would deep-copy it, too).
        data = {
            f.name: getattr(completion, f.name)
            for f in fields(completion)
            if f.name not in ("raw", "error", "cached")
        }
        data["usage"] = asdict(completion.usage)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO replies (key, completion) VALUES (?, ?)",
                (key, json.dumps(data, default=str)),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def close(self) -> None:
        self._db.close()


# Teacher options that change how fast requests go, not what comes back.
THROUGHPUT = frozenset(
    {
        "concurrency",
        "rpm",
        "tpm",
        "timeout_s",
        "max_retries",
        "backoff_s",
        "ramp_s",
        "api_key_env",
        "n_threads",
    }
)


class CachedTeacher(WrappedTeacher):
    """Wraps a teacher: answers from the cache first, sends only the misses."""

    def __init__(self, inner: Teacher, cache: RequestCache, salt: str = "") -> None:
        super().__init__(inner)
        self.cache = cache
        self.salt = salt
        self.hits = 0
        self.misses = 0

    @property
    def requests_sent(self) -> int:
        """Requests the inner teacher sent (an API teacher counts its retries too)."""
        return int(getattr(self.inner, "requests_sent", self.misses))

    def key(
        self,
        messages: list[Message],
        schema: dict[str, Any] | None,
        params: Any,
        exclude: frozenset[str] = THROUGHPUT,
    ) -> str:
        """What decides the reply: the model, the settings that change what it says (the
        server, the structured mode, a local engine and dtype), the prompt, the schema
        and the sampling. Throughput settings are not in it: lowering `concurrency`
        after a 429 must not pay for every request again."""
        options = self.inner.options
        dump = getattr(options, "model_dump", None)
        settings = dump(exclude=exclude) if dump is not None else options
        return hash_json([self.inner.spec, settings, self.salt, messages, schema, params])

    def _legacy_key(
        self, messages: list[Message], schema: dict[str, Any] | None, params: Any
    ) -> str:
        """The key as it was before throughput settings left it, so a cache written then
        keeps serving (a hit under it is copied to the new key)."""
        return self.key(messages, schema, params, exclude=frozenset())

    def _get(self, key: str, messages: list[Message], schema: Any, params: Any) -> Any:
        found = self.cache.get(key)
        if found is None and hasattr(self.inner.options, "model_dump"):
            found = self.cache.get(self._legacy_key(messages, schema, params))
            if found is not None:
                self.cache.put(key, found)
        return found

    def complete_many(
        self,
        batch: list[list[Message]],
        *,
        schema: dict[str, Any] | None = None,
        on_done: Callable[[int, Completion], None] | None = None,
        **params: Any,
    ) -> list[Completion]:
        keys = [self.key(m, schema, params) for m in batch]
        found: list[Completion | None] = [
            self._get(k, m, schema, params) for k, m in zip(keys, batch, strict=True)
        ]
        todo = [i for i, c in enumerate(found) if c is None]
        self.hits += len(batch) - len(todo)
        self.misses += len(todo)
        if on_done is not None:
            for i, c in enumerate(found):
                if c is not None:
                    on_done(i, c)

        def arrived(j: int, completion: Completion) -> None:
            i = todo[j]
            self.cache.put(keys[i], completion)  # committed now; failures are not stored
            found[i] = completion
            if on_done is not None:
                on_done(i, completion)

        if todo:
            self.inner.complete_many(
                [batch[i] for i in todo], schema=schema, on_done=arrived, **params
            )
        return [c for c in found if c is not None]
