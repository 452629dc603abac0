"""One step of generate's requests sent to the teacher: batched for a local teacher
(prompts that start alike side by side for llama.cpp), all at once for an API teacher;
every request that fails becomes a failures.parquet row, and what the run pays is
counted as the replies arrive."""

from __future__ import annotations

from typing import Any

from distill.errors import TeacherError
from distill.tables import Failure
from distill.teachers.base import Completion, Teacher


def failure(
    request_id: str,
    step: str,
    reason: str,
    status: int | None = None,
    detail: str = "",
    attempts: int = 1,
) -> Failure:
    """A failures.parquet row: one request that ended without a usable reply."""
    return {
        "request_id": request_id,
        "stage": f"generate.{step}",
        "reason": reason[:200],
        "status": status,
        "attempts": attempts,
        "last_error": detail[:2000],
    }


def _teacher_failure(request_id: str, step: str, e: TeacherError, attempts: int = 1) -> Failure:
    reason = str(e).split(": ", 1)[-1]
    return failure(request_id, step, reason, e.status, e.body or str(e), attempts)


class Spend:
    """What this run has paid so far, for the progress bar (cached replies are free)."""

    def __init__(self) -> None:
        self.usd = 0.0

    def add(self, c: Completion) -> None:
        if not c.cached:
            self.usd += c.cost_usd


def run_step(
    bar: Any,
    label: str,
    prompts: dict[int, list[dict[str, str]]],
    batch_size: int,
    *,
    teacher: Teacher,
    ids: list[str],
    failures: list[Failure],
    spend: Spend,
    seed: int | None = None,
    **params: Any,
) -> dict[int, Completion]:
    """Send one step's prompts; return index -> reply. Each failed request becomes a
    failure row (never silently dropped). A local teacher gets batches of similar
    length (less padding); an API teacher gets them all at once (its engine keeps
    `concurrency` in flight)."""
    order = sorted(prompts, key=lambda j: sum(len(m["content"]) for m in prompts[j]))
    if teacher.sends_all_at_once:
        batch_size = max(1, len(order))
    if teacher.sends_all_at_once and teacher.runs_locally:
        # llama.cpp answers one prompt at a time and keeps the previous prompt's KV
        # cache: in the order of their text, prompts that start alike (one chunk's
        # samples, the same system prompt and passages) evaluate their shared start once.
        order = sorted(prompts, key=lambda j: [(m["role"], m["content"]) for m in prompts[j]])
    task = bar.add_task(label, total=len(order))
    out: dict[int, Completion] = {}

    def status(batch_id: str, state: str, done: int, total: int) -> None:
        bar.update(task, description=f"{label} · batch {batch_id} {state} {done}/{total}")

    teacher.watch(status)  # a provider batch's progress, while we wait
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        if seed is not None:
            # The same seed for every batch: a request's reply (and its cache key) must
            # not depend on where its batch fell (which other jobs ran, how long they were).
            params["seed"] = seed

        def done(i: int, c: Completion, idx: list[int] = idx) -> None:
            spend.add(c)
            bar.update(task, advance=1, description=f"{label} · ${spend.usd:.4f}")
            if c.error is not None:
                failures.append(_teacher_failure(ids[idx[i]], label, c.error, c.attempts))
            else:
                out[idx[i]] = c

        try:
            teacher.complete_many([prompts[j] for j in idx], on_done=done, **params)
        except TeacherError as e:  # the whole batch failed (e.g. a local model error)
            failures.extend(_teacher_failure(ids[j], label, e) for j in idx if j not in out)
    return out


def spend_now(teacher: Teacher, spend: Spend) -> float:
    """What this run paid: replies that came from the cache cost nothing now."""
    return teacher.spent_usd if teacher.budget is not None else spend.usd
