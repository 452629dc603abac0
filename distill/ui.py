"""Terminal output: one stderr console and progress bars for long loops."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


class RedactingConsole(Console):
    """A console whose printed text never carries a credential (see distill.redact)."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        from distill.redact import redact

        super().print(*(redact(o) if isinstance(o, str) else o for o in objects), **kwargs)


console = RedactingConsole(stderr=True, highlight=False)


class PlainProgress:
    """Progress where no terminal shows a bar (nohup, CI logs, a pipe): a plain line per
    task at most every `every` seconds (default 30, $DISTILL_PROGRESS_EVERY) and one
    when it ends: done/total, rate, elapsed time, and the description (which carries the
    spend where there is one). The subset of rich's Progress that distill uses."""

    def __init__(
        self, out: Console, every: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.out = out
        self.every = float(os.environ.get("DISTILL_PROGRESS_EVERY", 30)) if every is None else every
        self.clock = clock
        self.tasks: dict[TaskID, dict[str, Any]] = {}

    def add_task(
        self, description: str, total: float | None = None, visible: bool = True,
        completed: float = 0, **_: Any,
    ) -> TaskID:  # fmt: skip
        now = self.clock()
        task = TaskID(len(self.tasks))
        self.tasks[task] = dict(
            description=description, total=total, done=completed, visible=visible,
            start=now, printed=now, last=None,
        )  # fmt: skip
        return task

    def update(
        self, task: TaskID, *, advance: float | None = None, completed: float | None = None,
        description: str | None = None, total: float | None = None, **_: Any,
    ) -> None:  # fmt: skip
        t = self.tasks[task]
        if completed is not None:
            t["done"] = completed
        if advance:
            t["done"] += advance
        if description is not None:
            t["description"] = description
        if total is not None:
            t["total"] = total
        if self.clock() - t["printed"] >= self.every:
            self._print(task)

    def advance(self, task: TaskID, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def track(
        self, items: Iterable[T], total: int | None = None, description: str = "working"
    ) -> Iterator[T]:
        if total is None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        task = self.add_task(description, total=total)
        for item in items:
            yield item
            self.advance(task)

    def _print(self, task: TaskID) -> None:
        t = self.tasks[task]
        t["printed"] = now = self.clock()
        state = (t["done"], t["total"], t["description"])
        if not t["visible"] or state == t["last"]:
            return
        t["last"] = state
        elapsed = max(now - t["start"], 1e-9)
        done, total = t["done"], t["total"]
        count = f"{done:g}/{total:g} ({done / total:.0%})" if total else f"{done:g}"
        self.out.print(
            f"  {t['description']}: {count}, {done / elapsed:.2f}/s, {elapsed:.0f} s elapsed",
            highlight=False, markup=False, soft_wrap=True,
        )  # fmt: skip

    def start(self) -> None:
        pass

    def stop(self) -> None:
        for task in self.tasks:
            self._print(task)

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def progress() -> Progress | PlainProgress:
    """A progress bar with counts and times on a terminal, plain lines every ~30 s
    elsewhere; use as a context manager."""
    if not console.is_terminal:
        return PlainProgress(console)
    return Progress(
        TextColumn("  {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar."""
    with progress() as bar:
        yield from bar.track(items, total=total, description=description)
