"""Errors raised by distill.

The tree::

    DistillError                 base; the CLI prints `error: <message>` and exits 1
    ├── UserError                the user can fix it; the message says how (exit 2)
    │   ├── RecipeError          a recipe failed validation; one line per problem
    │   ├── InputError           bad input data: empty corpus, missing stage output
    │   └── MissingExtraError    an optional dependency is not installed
    ├── TeacherError             a teacher backend failed; keeps `status` and `body`
    ├── BudgetExceeded           (teachers/prices.py) max_cost_usd reached (exit 3)
    └── StageError               a stage failed for a reason that is not the user's

Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class DistillError(Exception):
    """Base class of every error distill raises on purpose."""

    exit_code = 1


class UserError(DistillError):
    """The user's mistake; the message says what to do."""

    exit_code = 2


class RecipeError(UserError):
    """A recipe is invalid. `problems` holds one line per problem."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {p}" for p in problems))


class InputError(UserError):
    """Input data is unusable (empty corpus, missing stage output, bad file)."""


class MissingExtraError(UserError):
    """An optional dependency is missing; the message names the pip install."""

    def __init__(self, package: str, install: str) -> None:
        super().__init__(f"{package} is not installed; run: pip install {install}")


class TeacherError(DistillError):
    """A teacher backend failed. `status` and `body` keep what the provider said."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ):
        from distill.redact import redact

        # What a provider or a connection error says can echo the URL with its key in it;
        # failures.parquet and the console get it without.
        self.status = status
        self.body = redact(body) if body else body
        self.retryable = retryable  # worth sending again (429, 5xx, timeout, lost connection)
        self.retry_after = retry_after  # seconds the provider asked us to wait, if it said
        super().__init__(redact(message))


class StageError(DistillError):
    """A pipeline stage failed for a reason that is not the user's input."""
