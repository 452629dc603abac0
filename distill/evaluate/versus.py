"""The deciding system against each named system of eval.systems (`NAME: SPEC`, e.g.
the fine-tune it replaces): does the new system match the one it replaces?

On the answer key, pooled, as the teacher comparison is (distill.evaluate.decision):
key-fact accuracy, paired, with each named system's non-inferiority margin (matched
when the paired lower bound is above -margin); and what 1,000 answers cost each, over
every answer it gave, priced as the judged tables price them
(distill.evaluate.metrics.cost_per_1k): an API system at its price, a local one as
compute on this machine (the speed table's compute per 1,000 answers). Added to the decision
(`Decision.named`) with one verdict line each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from distill.decision_text import verdict_line
from distill.evaluate import stats
from distill.evaluate.config import NamedSystem
from distill.evaluate.decision import by_system, compare, is_keyed, key_correct
from distill.evaluate.metrics import cost_per_1k
from distill.results import POOLED, Decision, Versus
from distill.tables import Answer


def _any(r: Answer) -> bool:
    return True


def versus(
    rows: Sequence[Answer], a: str, name: str, spec: NamedSystem, hourly_usd: float | None
) -> Versus | None:
    """`a` against the named system `name` on the answer key, and what each costs; None
    when no question has an answer from both."""
    c = compare(rows, a, name, "key-fact accuracy", key_correct, is_keyed, POOLED)
    if c is None:
        return None
    # Over every answer each gave, as the speed table times them.
    cost, basis, _ = cost_per_1k(by_system(rows, name, _any), hourly_usd, f"give {name} a price")
    own, own_basis, compute = cost_per_1k(by_system(rows, a, _any), hourly_usd)
    return Versus(
        model=spec.model,
        rag=spec.rag,
        comparison=c,
        margin=spec.margin,
        within_margin=stats.non_inferior(c.ci[0], spec.margin),
        cost_per_1k_usd=None if cost is None else round(cost, 4),
        cost_basis=basis,
        deciding_cost_per_1k_usd=None if own is None else round(own, 4),
        deciding_cost_basis=own_basis,
        deciding_compute_s_per_1k=None if compute is None else round(compute, 1),
    )


def with_named(
    d: Decision,
    rows: Sequence[Answer],
    named: Mapping[str, NamedSystem],
    hourly_usd: float | None,
) -> Decision:
    """The decision with each named system compared (`named`) and its verdict line."""
    a = d.deciding[0]
    found = {
        name: v for name, spec in named.items() if (v := versus(rows, a, name, spec, hourly_usd))
    }
    if not found:
        return d
    lines = [verdict_line(a, name, v) for name, v in found.items()]
    return d.model_copy(update={"named": found, "verdict_lines": [*d.verdict_lines, *lines]})
