"""Paired comparisons of two systems on the same questions: intervals, tests, power.

Pure functions over {item_id: value} dicts (standard library and numpy only). Two
systems answer the same questions, so every comparison is paired: per question the
difference a - b, which cancels question difficulty. Questions cluster (several per
document or chunk) and questions from one document succeed or fail together, so
`clusters` maps item ids to a cluster id and the intervals widen by the design effect
(binary outcomes) or resample whole clusters (continuous scores).

Power figures use a two-sided alpha of 0.05 and a power of 0.80.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from statistics import NormalDist, fmean, stdev

import numpy as np

_NORMAL = NormalDist()
Z_ALPHA = _NORMAL.inv_cdf(1 - 0.05 / 2)  # 1.95996: two-sided alpha 0.05
Z_BETA = _NORMAL.inv_cdf(0.80)  # 0.84162: power 0.80
# Sign-flip tests enumerate every flip up to this many clusters (2**16 = 65,536 rows);
# above it they draw PERMUTATIONS random flips.
EXACT_MAX = 16
PERMUTATIONS = 10_000


@dataclass(frozen=True)
class PairedBinary:
    """a against b on binary outcomes over the items both have."""

    n: int
    both: int  # a = 1, b = 1
    wins: int  # a = 1, b = 0
    losses: int  # a = 0, b = 1
    neither: int  # a = 0, b = 0
    diff: float  # (wins - losses) / n: accuracy of a minus accuracy of b
    ci: tuple[float, float]
    p_value: float  # exact two-sided McNemar
    p_d: float  # (wins + losses) / n: the share of discordant pairs
    deff: float
    significant: bool  # the interval excludes 0 and the exact test rejects at 0.05
    mde: float  # the smallest difference this n detects at 80% power
    clusters: int | None


@dataclass(frozen=True)
class PairedContinuous:
    """a against b on continuous scores over the items both have."""

    n: int
    diff: float  # mean of a - b
    ci: tuple[float, float]
    p_value: float  # sign-flip permutation test at the cluster level
    sd: float  # standard deviation of the per-item differences
    deff: float
    significant: bool  # the interval excludes 0
    mde: float  # the smallest mean difference this n detects at 80% power
    clusters: int | None


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, not {level}")
    return _NORMAL.inv_cdf(1 - (1 - level) / 2)


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval for the proportion k/n; None when n is 0."""
    if n == 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"k must be between 0 and n, not {k} of {n}")
    z = _z(level)
    p = k / n
    # Unlike the Wald interval, this keeps a non-zero width at 0/n and n/n: 0 wrong
    # answers out of 26 still leaves room for a 13% error rate.
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _shared(a: Mapping[str, float], b: Mapping[str, float]) -> list[str]:
    return sorted(set(a) & set(b))


def _cluster_ids(ids: Iterable[str], clusters: Mapping[str, str]) -> list[str]:
    missing = [i for i in ids if i not in clusters]
    if missing:
        raise ValueError(f"{len(missing)} item(s) have no cluster, e.g. {missing[0]!r}")
    return [clusters[i] for i in ids]


def _mcnemar_exact(wins: int, losses: int) -> float:
    # Under the null the discordant pairs split 50/50; two-sided = twice the smaller tail.
    m = wins + losses
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(min(wins, losses) + 1))
    return min(1.0, 2 * tail / 2**m)  # int / int: exact for any m, no overflow


def _newcombe(both: int, wins: int, losses: int, neither: int, level: float) -> tuple[float, float]:
    # Newcombe (1998, Stat Med 17:2635) method 10: Wilson intervals of the two marginal
    # proportions, squared and added with the correlation of the pairs.
    n = both + wins + losses + neither
    p1, p2 = (both + wins) / n, (both + losses) / n
    w1, w2 = wilson(both + wins, n, level), wilson(both + losses, n, level)
    assert w1 is not None and w2 is not None
    (l1, u1), (l2, u2) = w1, w2
    margins = (both + wins) * (losses + neither) * (both + losses) * (wins + neither)
    cross = both * neither - wins * losses
    # The paper's phi carries a continuity correction: a positive ad - bc shrinks by n/2
    # (to no less than 0). Without it, no discordant pairs means phi = 1 and an interval
    # of almost no width (none at all when both systems score exactly 1/2).
    if margins == 0:
        phi = 0.0
    elif cross > n / 2:
        phi = (cross - n / 2) / math.sqrt(margins)
    elif cross >= 0:
        phi = 0.0
    else:
        phi = cross / math.sqrt(margins)
    diff = p1 - p2
    lower = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    upper = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, diff - lower), min(1.0, diff + upper)


def paired_binary(
    a: Mapping[str, float],
    b: Mapping[str, float],
    clusters: Mapping[str, str] | None = None,
    level: float = 0.95,
) -> PairedBinary | None:
    """Paired comparison of 0/1 outcomes: Newcombe interval, exact McNemar p, power.

    Over the item ids both have; None when they share none. With `clusters` the
    Newcombe interval, which assumes independent items, is widened about `diff` by
    sqrt(deff) when the design effect of the differences is above 1. `significant`
    needs both the interval to exclude 0 and the exact McNemar test to reject at 0.05:
    at small n the two can disagree (4 wins and no loss: the score interval excludes 0,
    the exact p is 0.125), and a verdict should not rest on the laxer one."""
    ids = _shared(a, b)
    if not ids:
        return None
    for i in ids:
        if a[i] not in (0, 1) or b[i] not in (0, 1):
            raise ValueError(f"binary outcomes must be 0 or 1; {i!r} has {a[i]!r}, {b[i]!r}")
    both = sum(1 for i in ids if a[i] == 1 and b[i] == 1)
    wins = sum(1 for i in ids if a[i] == 1 and b[i] == 0)
    losses = sum(1 for i in ids if a[i] == 0 and b[i] == 1)
    n = len(ids)
    neither = n - both - wins - losses
    diff = (wins - losses) / n
    lo, hi = _newcombe(both, wins, losses, neither, level)
    deff, k = 1.0, None
    if clusters is not None:
        k = len(set(_cluster_ids(ids, clusters)))
        deff = design_effect({i: a[i] - b[i] for i in ids}, clusters)
        if deff > 1:
            s = math.sqrt(deff)
            lo, hi = max(-1.0, diff - (diff - lo) * s), min(1.0, diff + (hi - diff) * s)
    p_d = (wins + losses) / n
    p_value = _mcnemar_exact(wins, losses)
    return PairedBinary(
        n=n,
        both=both,
        wins=wins,
        losses=losses,
        neither=neither,
        diff=diff,
        ci=(lo, hi),
        p_value=p_value,
        p_d=p_d,
        deff=deff,
        significant=(lo > 0 or hi < 0) and p_value < 0.05,
        # No discordance observed is not no discordance: floor at one pair in n, so the
        # MDE never claims that any difference at all would be detected.
        mde=mde_paired_binary(n, max(p_d, 1 / n), deff),
        clusters=k,
    )


def _units(
    ids: list[str], diffs: list[float], clusters: Mapping[str, str] | None
) -> tuple[np.ndarray, np.ndarray]:
    # The resampling units: per cluster (or per item) the summed difference and the size.
    if clusters is None:
        return np.asarray(diffs, dtype=float), np.ones(len(diffs))
    sums: dict[str, float] = {}
    sizes: dict[str, int] = {}
    for c, d in zip(_cluster_ids(ids, clusters), diffs, strict=True):
        sums[c] = sums.get(c, 0.0) + d
        sizes[c] = sizes.get(c, 0) + 1
    keys = sorted(sums)
    return np.array([sums[c] for c in keys]), np.array([sizes[c] for c in keys], dtype=float)


def _sign_flip_p(sums: np.ndarray, rng: np.random.Generator) -> float:
    # The item count is the same under every flip, so compare |sum| rather than |mean|.
    k = len(sums)
    observed = abs(float(sums.sum()))
    tol = 1e-9 * max(1.0, float(np.abs(sums).sum()))  # equal sums must count as ties
    if k <= EXACT_MAX:
        bits = (np.arange(2**k)[:, None] >> np.arange(k)) & 1
        flipped = np.abs((1 - 2 * bits) @ sums)
        return float(np.count_nonzero(flipped >= observed - tol)) / 2**k
    signs = rng.choice(np.array([-1.0, 1.0]), size=(PERMUTATIONS, k))
    hits = np.count_nonzero(np.abs(signs @ sums) >= observed - tol)
    # +1 on both sides counts the observed labelling, so p is never 0.
    return (hits + 1) / (PERMUTATIONS + 1)


def paired_continuous(
    a: Mapping[str, float],
    b: Mapping[str, float],
    clusters: Mapping[str, str] | None = None,
    seed: int = 0,
    n_boot: int = 2000,
    level: float = 0.95,
) -> PairedContinuous | None:
    """Paired comparison of scores: cluster bootstrap interval, sign-flip p, power.

    Over the item ids both have; None when they share fewer than two (no spread to
    measure). The interval resamples whole clusters when `clusters` is given, else
    items; with a single cluster it is unbounded."""
    ids = _shared(a, b)
    if len(ids) < 2:
        return None
    diffs = [float(a[i]) - float(b[i]) for i in ids]
    n = len(ids)
    mean = fmean(diffs)
    sums, sizes = _units(ids, diffs, clusters)
    k = len(sums)
    rng = np.random.default_rng(seed)
    if k < 2:
        lo, hi = -math.inf, math.inf
    else:
        idx = rng.integers(0, k, size=(n_boot, k))
        # Pooled mean of the resampled items (clusters differ in size), not a mean of
        # cluster means, so it estimates the same quantity as `mean`.
        boot = sums[idx].sum(axis=1) / sizes[idx].sum(axis=1)
        alpha = 1 - level
        q_lo, q_hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
        # The bootstrap variance of a mean is s^2 (k-1)/k / k, not s^2 / k: the
        # percentile interval is too narrow by sqrt((k-1)/k), which matters at a few
        # clusters. Widen it back about the mean.
        f = math.sqrt(k / (k - 1))
        lo, hi = mean - (mean - float(q_lo)) * f, mean + (float(q_hi) - mean) * f
    deff = 1.0
    if clusters is not None:
        deff = design_effect(dict(zip(ids, diffs, strict=True)), clusters)
    sd = stdev(diffs)
    return PairedContinuous(
        n=n,
        diff=mean,
        ci=(lo, hi),
        p_value=_sign_flip_p(sums, rng),
        sd=sd,
        deff=deff,
        significant=lo > 0 or hi < 0,
        mde=mde_continuous(n, sd, deff),
        clusters=k if clusters is not None else None,
    )


def design_effect(values: Mapping[str, float], clusters: Mapping[str, str]) -> float:
    """Kish design effect 1 + (m - 1) * ICC of `values` grouped by `clusters`, at least 1."""
    ids = list(values)
    groups: dict[str, list[float]] = {}
    for i, c in zip(ids, _cluster_ids(ids, clusters), strict=True):
        groups.setdefault(c, []).append(float(values[i]))
    n, k = len(ids), len(groups)
    # One cluster or all singletons: no within- or between-cluster contrast to estimate.
    if k < 2 or n == k:
        return 1.0
    grand = fmean(values[i] for i in ids)
    ssb = sum(len(g) * (fmean(g) - grand) ** 2 for g in groups.values())
    ssw = sum(sum((x - fmean(g)) ** 2 for x in g) for g in groups.values())
    msb, msw = ssb / (k - 1), ssw / (n - k)
    # The one-way ANOVA ICC with n0, the cluster size that corrects for unequal sizes
    # (equal to m when all clusters have m items).
    n0 = (n - sum(len(g) ** 2 for g in groups.values()) / n) / (k - 1)
    denom = msb + (n0 - 1) * msw
    if denom <= 1e-15:
        return 1.0
    icc = (msb - msw) / denom
    # A negative ICC (clusters more alike than chance) would shrink the interval below
    # the independent-items one; that would be a claim the data cannot support.
    return max(1.0, 1 + (n / k - 1) * icc)


def mde_paired_binary(n: int, p_d: float, deff: float = 1.0) -> float:
    """Minimum detectable difference in paired proportions for n pairs at discordance p_d."""
    if n <= 0 or not 0 <= p_d <= 1 or deff <= 0:
        raise ValueError(f"need n > 0, 0 <= p_d <= 1, deff > 0; got {n}, {p_d}, {deff}")
    return (Z_ALPHA + Z_BETA) * math.sqrt(deff * p_d / n)


def n_paired_binary(delta: float, p_d: float, deff: float = 1.0) -> int:
    """Pairs needed to detect a difference delta at discordance p_d (Connor 1987)."""
    if delta == 0 or delta * delta >= p_d or p_d > 1 or deff <= 0:
        raise ValueError(f"need 0 < delta^2 < p_d <= 1 and deff > 0; got {delta}, {p_d}")
    root = Z_ALPHA * math.sqrt(p_d) + Z_BETA * math.sqrt(p_d - delta * delta)
    return math.ceil(deff * root * root / (delta * delta))


def mde_continuous(n: int, sd: float, deff: float = 1.0) -> float:
    """Minimum detectable mean difference for n pairs whose differences have sd."""
    if n <= 0 or sd < 0 or deff <= 0:
        raise ValueError(f"need n > 0, sd >= 0, deff > 0; got {n}, {sd}, {deff}")
    return (Z_ALPHA + Z_BETA) * sd * math.sqrt(deff / n)


def n_continuous(delta: float, sd: float, deff: float = 1.0) -> int:
    """Pairs needed to detect a mean difference delta when the differences have sd."""
    if delta == 0 or sd < 0 or deff <= 0:
        raise ValueError(f"need delta != 0, sd >= 0, deff > 0; got {delta}, {sd}, {deff}")
    return math.ceil(deff * (Z_ALPHA + Z_BETA) ** 2 * sd * sd / (delta * delta))


def holm(p_values: Mapping[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values, in the input's order."""
    for key, p in p_values.items():
        if not 0 <= p <= 1:
            raise ValueError(f"p-value for {key!r} must be in [0, 1], not {p}")
    m = len(p_values)
    adjusted: dict[str, float] = {}
    running = 0.0
    for rank, (key, p) in enumerate(sorted(p_values.items(), key=lambda kv: kv[1])):
        # Step-down: the running maximum keeps a smaller raw p from getting a larger
        # adjusted p than a larger raw one.
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[key] = running
    return {key: adjusted[key] for key in p_values}


def non_inferior(ci_low: float, margin: float) -> bool:
    """Whether the lower bound of a - b lies above -margin (a is no worse than b by margin)."""
    return ci_low > -margin


def cluster_of(
    item_ids: Iterable[str],
    doc_of: Mapping[str, str],
    chunk_of: Mapping[str, str],
    min_docs: int = 15,
) -> tuple[dict[str, str], str]:
    """The clusters to use: documents when the items span min_docs of them, else chunks."""
    ids = list(item_ids)
    missing = [i for i in ids if i not in doc_of or i not in chunk_of]
    if missing:
        raise ValueError(f"{len(missing)} item(s) lack a document or chunk, e.g. {missing[0]!r}")
    # Documents are the honest unit (questions on one document share its difficulty),
    # but a handful of clusters leaves the design effect and the cluster bootstrap
    # with too little to go on; chunks are then the coarsest usable grouping.
    if len({doc_of[i] for i in ids}) >= min_docs:
        return {i: doc_of[i] for i in ids}, "document"
    return {i: chunk_of[i] for i in ids}, "chunk"
