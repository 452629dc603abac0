"""Agreement of two raters' yes/no labels: Cohen's kappa with a bootstrap interval.

Eval's judge against the key-fact check (distill.evaluate.grading) and the judge and
the key against human reviewers (distill.review.calibration) are measured by it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any


def cohen_kappa(pairs: Sequence[tuple[bool, bool]]) -> float | None:
    """Cohen's kappa of two raters' yes/no; None when undefined (no pairs, or both put
    every pair in the same one class, where chance agreement is 1)."""
    n = len(pairs)
    if not n:
        return None
    po = sum(x == y for x, y in pairs) / n
    p1, p2 = sum(x for x, _ in pairs) / n, sum(y for _, y in pairs) / n
    pe = p1 * p2 + (1 - p1) * (1 - p2)
    return None if pe >= 1 - 1e-12 else (po - pe) / (1 - pe)


def agreement(pairs: Sequence[tuple[bool, bool]], seed: int, rounds: int = 2000) -> dict[str, Any]:
    """Raw agreement and kappa with a 95% percentile bootstrap over the pairs (seeded;
    resamples where kappa is undefined are left out)."""
    n = len(pairs)
    kappa = cohen_kappa(pairs)
    ci = None
    if n >= 2 and kappa is not None:
        rng = random.Random(seed)
        draws = (cohen_kappa([pairs[rng.randrange(n)] for _ in range(n)]) for _ in range(rounds))
        ks = sorted(k for k in draws if k is not None)
        ci = [_r(ks[round(0.025 * (len(ks) - 1))]), _r(ks[round(0.975 * (len(ks) - 1))])]
    return {
        "n": n,
        "agreement": _r(sum(x == y for x, y in pairs) / n) if n else None,
        "kappa": _r(kappa),
        "kappa_ci95": ci,
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 4)
