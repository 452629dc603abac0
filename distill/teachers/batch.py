"""Batch mode (`generate.mode: batch`): the OpenAI Batch API and Anthropic Message
Batches, at half the price, for runs that can wait (up to 24 hours).

`BatchTeacher` wraps an API teacher. Its `complete_many`:
1. gives each request a deterministic custom id (a hash of the request);
2. resumes: ids already inside a batch this run folder submitted (batches.json) are
   polled, never submitted again;
3. submits the rest as one provider batch and records its id in batches.json
   *before* polling, so a crash or Ctrl-C at any moment loses nothing;
4. polls every `poll_s` seconds, printing progress, until the batch ends;
5. merges results: each reply goes to `on_done` (the request cache commits it);
   expired, cancelled and transiently failed items (429, 5xx) are resubmitted in a
   new batch, up to `max_resubmits` times; other failures end as failures.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from distill.errors import TeacherError
from distill.io import hash_json, read_json, write_json
from distill.teachers.base import Completion, Message, WrappedTeacher
from distill.teachers.engine import ApiTeacher, BatchItem, BatchStatus, loop_factory
from distill.teachers.prices import estimate_tokens
from distill.ui import console


class BatchState:
    """The batches this run folder submitted: id, provider, custom ids, status."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.batches: list[dict[str, Any]] = read_json(path)["batches"] if path.exists() else []

    def save(self) -> None:
        write_json(self.path, {"batches": self.batches})

    def add(self, batch_id: str, provider: str, ids: list[str]) -> dict[str, Any]:
        entry = {
            "id": batch_id,
            "provider": provider,
            "custom_ids": ids,
            "status": "submitted",
            "submitted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        self.batches.append(entry)
        self.save()
        return entry

    def open_batches(self, provider: str) -> list[dict[str, Any]]:
        """Submitted batches whose results have not been merged yet."""
        return [b for b in self.batches if b["provider"] == provider and b["status"] != "merged"]


def custom_id(body: dict[str, Any]) -> str:
    """A deterministic id for a request (64 hex characters: both providers accept it)."""
    return hash_json(body)


class BatchTeacher(WrappedTeacher):
    """An ApiTeacher's requests sent through its provider's batch API."""

    def __init__(
        self,
        inner: ApiTeacher,
        state_path: Path,
        poll_s: float = 30.0,
        max_resubmits: int = 1,
    ) -> None:
        super().__init__(inner)
        self.inner: ApiTeacher = inner
        self.sends_all_at_once = True
        self.state = BatchState(state_path)
        self.poll_s = poll_s
        self.max_resubmits = max_resubmits
        self.requests_sent = 0  # batch items submitted (resubmissions included)
        self.batches_submitted = 0
        self.batches_resumed = 0
        # Called on each status change: (batch id, provider state, done, total).
        self.on_status: Callable[[str, str, int, int], None] | None = None

    def stats(self) -> dict[str, Any]:
        return {
            "batches_submitted": self.batches_submitted,
            "batches_resumed": self.batches_resumed,
        }

    def watch(self, on_status: Callable[[str, str, int, int], None]) -> None:
        self.on_status = on_status

    def complete_many(
        self,
        batch: list[list[Message]],
        *,
        schema: dict[str, Any] | None = None,
        on_done: Callable[[int, Completion], None] | None = None,
        **params: Any,
    ) -> list[Completion]:
        if not batch:
            return []
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(self._run(batch, schema, params, on_done))

    async def _run(
        self,
        batch: list[list[Message]],
        schema: dict[str, Any] | None,
        params: dict[str, Any],
        on_done: Callable[[int, Completion], None] | None,
    ) -> list[Completion]:
        t = self.inner
        bodies = [t.request_body(m, schema, params) for m in batch]
        where: dict[str, list[int]] = {}  # custom id -> positions (identical requests share)
        for i, body in enumerate(bodies):
            where.setdefault(custom_id(body), []).append(i)
        max_out = int(params.get("max_tokens") or 1024)
        worst = {
            cid: t.price.bound(estimate_tokens(batch[idx[0]]), max_out) if t.price else 0.0
            for cid, idx in where.items()
        }
        tries = dict.fromkeys(where, 0)
        results: list[Completion | None] = [None] * len(batch)

        def finish(cid: str, c: Completion) -> None:
            for i in where.pop(cid, []):
                results[i] = c
                if on_done is not None:
                    on_done(i, c)

        async with t.open_client() as client:
            # Resume: ids inside a batch submitted before, by this process or an earlier one.
            waiting = [
                b for b in self.state.open_batches(t.provider) if set(b["custom_ids"]) & set(where)
            ]
            self.batches_resumed += len(waiting)
            for b in waiting:
                for cid in set(b["custom_ids"]) & set(where):
                    tries[cid] = 1
                    t.budget.reserve(worst[cid])  # paid for already, or about to be
            while where:
                inside = {cid for b in waiting for cid in b["custom_ids"]}
                todo = self._within_budget([c for c in where if c not in inside], worst, finish)
                if todo:
                    waiting.append(await self._submit(client, todo, bodies, where, tries))
                if not waiting:
                    break
                entry = waiting.pop(0)
                await self._wait(client, entry)
                got = await self._call(t.batch_results, client, entry["id"], schema, params)
                self._merge(entry, got, where, worst, tries, finish)
        lost = TeacherError(f"{t.spec}: no result for this request")
        return [c if c is not None else Completion(text="", error=lost) for c in results]

    async def _submit(
        self,
        client: Any,
        todo: list[str],
        bodies: list[dict[str, Any]],
        where: dict[str, list[int]],
        tries: dict[str, int],
    ) -> dict[str, Any]:
        t = self.inner
        items = [BatchItem(cid, bodies[where[cid][0]]) for cid in todo]
        batch_id = await self._call(t.batch_submit, client, items)
        entry = self.state.add(batch_id, t.provider, todo)  # persisted before any polling
        for cid in todo:
            tries[cid] += 1
        self.requests_sent += len(items)
        self.batches_submitted += 1
        console.print(f"  submitted batch {batch_id} ({len(items)} requests)")
        return entry

    def _merge(
        self,
        entry: dict[str, Any],
        got: dict[str, Completion],
        where: dict[str, list[int]],
        worst: dict[str, float],
        tries: dict[str, int],
        finish: Callable[[str, Completion], None],
    ) -> None:
        """Deliver an ended batch's results; transient failures stay for resubmission."""
        whole = got.get("*")  # the batch as a whole failed
        for cid in entry["custom_ids"]:
            if cid not in where:
                continue
            c = got.get(cid)
            if c is None:
                error = (
                    whole.error
                    if whole is not None
                    else TeacherError(
                        f"{self.spec}: batch ended without this request", retryable=True
                    )
                )
                c = Completion(text="", error=error)
            t = self.inner
            if c.error is None:
                c.cost_usd = t.price.cost(c.usage) if t.price else 0.0
            t.budget.settle(worst[cid], c.cost_usd)
            if c.error is not None and c.error.retryable and tries[cid] <= self.max_resubmits:
                continue  # resubmitted on the next pass
            c.attempts = max(1, tries[cid])
            finish(cid, c)
        entry["status"] = "merged"
        self.state.save()

    def _within_budget(
        self, todo: list[str], worst: dict[str, float], finish: Callable[[str, Completion], None]
    ) -> list[str]:
        t = self.inner
        fits = []
        for cid in todo:
            if t.budget.reserve(worst[cid]):
                fits.append(cid)
            else:
                error = TeacherError(
                    f"{t.spec}: budget: not sent, it could pass max_cost_usd {t.budget.max_usd}"
                )
                finish(cid, Completion(text="", error=error, attempts=0))
        return fits

    async def _wait(self, client: Any, entry: dict[str, Any]) -> None:
        last = None
        while True:
            status: BatchStatus = await self._call(self.inner.batch_status, client, entry["id"])
            line = f"{status.state} {status.done}/{status.total}"
            if line != last:
                if self.on_status is not None:
                    self.on_status(entry["id"], status.state, status.done, status.total)
                else:
                    console.print(f"  batch {entry['id']}: {line}")
                last = line
            if status.ended:
                return
            await asyncio.sleep(self.poll_s)

    async def _call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """A batch API call, retried with backoff on transient errors."""
        opts = self.inner.options
        for attempt in range(opts.max_retries + 1):
            try:
                return await fn(*args)
            except TeacherError as e:
                if not e.retryable or attempt == opts.max_retries:
                    raise
                delay = e.retry_after if e.retry_after is not None else opts.backoff_s * 2**attempt
                await asyncio.sleep(min(delay, 60.0))
        raise AssertionError("unreachable")
