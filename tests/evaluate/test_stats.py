"""Paired-comparison statistics against published and hand-derived values (no models)."""

from __future__ import annotations

import math
import random

import pytest

from distill.evaluate import stats as st


def table(both: int, wins: int, losses: int, neither: int) -> tuple[dict, dict]:
    """Outcome dicts for a (first) and b (second) with the given paired counts."""
    cells = [(1, 1)] * both + [(1, 0)] * wins + [(0, 1)] * losses + [(0, 0)] * neither
    a = {f"q{i}": x for i, (x, _) in enumerate(cells)}
    b = {f"q{i}": y for i, (_, y) in enumerate(cells)}
    return a, b


# ---- Wilson ----------------------------------------------------------------------------


def test_wilson_zero_of_26_keeps_an_upper_bound() -> None:
    lo, hi = st.wilson(0, 26)
    # At k = 0 the upper bound is z^2 / (n + z^2) = 3.8415 / 29.8415.
    assert lo == 0.0
    assert hi == pytest.approx(0.1287, abs=1e-4)
    assert hi > 0


def test_wilson_all_of_26_keeps_a_lower_bound() -> None:
    lo, hi = st.wilson(26, 26)
    assert lo < 1
    assert lo == pytest.approx(1 - 0.1287, abs=1e-4)  # the mirror of 0/26
    assert hi == 1.0


def test_wilson_textbook_value() -> None:
    # Newcombe (1998), Stat Med 17:857, the 81/263 example: score method 0.2553 to 0.3662.
    lo, hi = st.wilson(81, 263)
    assert lo == pytest.approx(0.2553, abs=1e-4)
    assert hi == pytest.approx(0.3662, abs=1e-4)


def test_wilson_empty_and_bad_input() -> None:
    assert st.wilson(0, 0) is None
    with pytest.raises(ValueError):
        st.wilson(5, 4)
    with pytest.raises(ValueError):
        st.wilson(1, 4, level=1.0)


# ---- paired binary ---------------------------------------------------------------------


def test_newcombe_published_example() -> None:
    # Newcombe (1998), Stat Med 17:2635, method 10, example (a): a = 12, b = 9, c = 2,
    # d = 21 (n = 44), difference 0.1591, interval 0.0112 to 0.2954. The figures match
    # the same example run through Fagerland, Lydersen & Laake's R package
    # contingencytables (Newcombe_square_and_add_CI_paired_2x2) and biostatUZH's
    # confIntPairedProportion, both of which use the paper's continuity-corrected phi.
    # (Without that correction the same counts give 0.0182 to 0.2892; the 0.0381 to
    # 0.2918 quoted in the review matches neither.)
    r = st.paired_binary(*table(12, 9, 2, 21))
    assert r is not None
    assert (r.n, r.both, r.wins, r.losses, r.neither) == (44, 12, 9, 2, 21)
    assert r.diff == pytest.approx(7 / 44)
    assert r.ci[0] == pytest.approx(0.0112, abs=1e-4)
    assert r.ci[1] == pytest.approx(0.2954, abs=1e-4)
    # The interval excludes 0 but the exact McNemar test (9 against 2: p = 0.065) does
    # not reject: a verdict needs both.
    assert r.p_value == pytest.approx(0.0654, abs=1e-4) and not r.significant
    assert r.p_d == pytest.approx(11 / 44)
    assert r.deff == 1.0 and r.clusters is None


def test_newcombe_mirrors_when_systems_swap() -> None:
    ab = st.paired_binary(*table(12, 9, 2, 21))
    a, b = table(12, 9, 2, 21)
    ba = st.paired_binary(b, a)
    assert ab is not None and ba is not None
    assert ba.diff == pytest.approx(-ab.diff)
    assert ba.ci[0] == pytest.approx(-ab.ci[1])
    assert ba.ci[1] == pytest.approx(-ab.ci[0])


@pytest.mark.parametrize(
    ("wins", "losses", "p"),
    [
        (4, 0, 0.125),  # 2 * (1/2)^4
        (7, 1, 0.0703125),  # 2 * (C(8,0) + C(8,1)) / 2^8 = 18 / 256
        (0, 0, 1.0),  # no discordant pairs: no evidence either way
        (3, 3, 1.0),
    ],
)
def test_exact_mcnemar(wins: int, losses: int, p: float) -> None:
    # Concordant pairs carry no information about the difference: p must not move.
    for both, neither in ((1, 1), (10, 5)):
        r = st.paired_binary(*table(both, wins, losses, neither))
        assert r is not None
        assert r.p_value == pytest.approx(p, abs=1e-12)


def test_no_discordance_still_has_an_interval() -> None:
    r = st.paired_binary(*table(6, 0, 0, 5))
    assert r is not None
    lo, hi = r.ci
    assert lo < 0 < hi
    assert hi - lo > 0.05
    assert not r.significant
    assert r.p_value == 1.0
    # The MDE floors p_d at 1/n rather than reporting that any difference is detectable.
    assert r.mde == pytest.approx((1.959964 + 0.841621) * math.sqrt(1 / 11 / 11), rel=1e-5)
    # All correct for both: phi's denominator is 0, the interval still has width.
    r = st.paired_binary(*table(11, 0, 0, 0))
    assert r is not None and r.ci[0] < 0 < r.ci[1]


def test_paired_binary_uses_shared_items_only() -> None:
    a, b = table(3, 2, 1, 4)
    a["extra_a"] = 1
    b["extra_b"] = 0
    r = st.paired_binary(a, b)
    assert r is not None and r.n == 10
    assert st.paired_binary({"x": 1}, {"y": 1}) is None
    with pytest.raises(ValueError):
        st.paired_binary({"x": 0.5}, {"x": 1})
    with pytest.raises(ValueError):
        st.paired_binary(a, b, clusters={"q0": "c"})


def _clustered_binary() -> tuple[dict, dict, dict, dict]:
    """30 items in 5 clusters of 6: a wins every item of clusters 0-2 and loses every
    item of clusters 3-4. Returns a, b, those clusters, and clusters that spread the
    same items evenly (each cluster 4 or 3 wins)."""
    a, b, by_cluster, spread = {}, {}, {}, {}
    for i in range(30):
        key = f"q{i}"
        cluster = i // 6
        a[key], b[key] = (1, 0) if cluster < 3 else (0, 1)
        by_cluster[key] = f"c{cluster}"
        spread[key] = f"s{i % 5}"
    return a, b, by_cluster, spread


def test_clustered_binary_widens_the_interval() -> None:
    a, b, by_cluster, spread = _clustered_binary()
    flat = st.paired_binary(a, b)
    clustered = st.paired_binary(a, b, by_cluster)
    mixed = st.paired_binary(a, b, spread)
    assert flat is not None and clustered is not None and mixed is not None
    # Within-cluster variance 0: ICC = 1, so deff = 1 + (6 - 1) * 1 = 6.
    assert clustered.deff == pytest.approx(6.0)
    assert clustered.clusters == 5
    assert mixed.deff == 1.0
    assert mixed.ci == flat.ci
    assert clustered.ci[1] - clustered.ci[0] > flat.ci[1] - flat.ci[0]
    # The lower half-width (not clipped at -1) grows by exactly sqrt(deff).
    assert clustered.diff - clustered.ci[0] == pytest.approx(
        math.sqrt(6) * (flat.diff - flat.ci[0])
    )
    assert clustered.mde == pytest.approx(math.sqrt(6) * flat.mde)


# ---- design effect ---------------------------------------------------------------------


def test_design_effect_hand_computed() -> None:
    # Clusters [1, 0, 1] and [0, 0, 0]: MSB = 2/3, MSW = (2/3) / 4 = 1/6, m = 3,
    # ICC = (2/3 - 1/6) / (2/3 + 2 * 1/6) = 0.5, deff = 1 + 2 * 0.5 = 2.
    values = {"a1": 1, "a2": 0, "a3": 1, "b1": 0, "b2": 0, "b3": 0}
    clusters = {k: k[0] for k in values}
    assert st.design_effect(values, clusters) == pytest.approx(2.0)


def test_design_effect_unequal_sizes() -> None:
    # Clusters [1, 0] and [0, 0, 0, 0]: MSB = 1/3, MSW = 0.5 / 4 = 1/8,
    # n0 = (6 - 20/6) / 1 = 8/3, ICC = (1/3 - 1/8) / (1/3 + (5/3) / 8) = 5/13,
    # mean size 3: deff = 1 + 2 * 5/13 = 23/13.
    values = {"a1": 1, "a2": 0, "b1": 0, "b2": 0, "b3": 0, "b4": 0}
    clusters = {k: k[0] for k in values}
    assert st.design_effect(values, clusters) == pytest.approx(23 / 13)


def test_design_effect_degenerate_cases() -> None:
    values = {"a": 1.0, "b": 0.0, "c": 1.0, "d": 0.0}
    assert st.design_effect(values, {k: "one" for k in values}) == 1.0
    assert st.design_effect(values, {k: k for k in values}) == 1.0
    zeros = {k: 0.0 for k in values}
    assert st.design_effect(zeros, {"a": "x", "b": "x", "c": "y", "d": "y"}) == 1.0
    # Clusters that are more alike than chance (negative ICC) floor at 1.
    assert st.design_effect(values, {"a": "x", "b": "x", "c": "y", "d": "y"}) == 1.0
    with pytest.raises(ValueError):
        st.design_effect(values, {"a": "x"})


# ---- paired continuous -----------------------------------------------------------------


def test_sign_flip_exact_values() -> None:
    # 4 positive differences: only all-plus and all-minus reach |sum| = 4: p = 2/16.
    a = {f"q{i}": 1.0 + i / 10 for i in range(4)}
    b = {k: 0.0 for k in a}
    r = st.paired_continuous(a, b)
    assert r is not None and r.p_value == pytest.approx(0.125)
    # 16 items is still enumerated exactly: 2 / 2^16.
    a = {f"q{i}": 1.0 for i in range(16)}
    r = st.paired_continuous(a, {k: 0.0 for k in a})
    assert r is not None and r.p_value == pytest.approx(2 / 65536)
    # Cluster sums 3 and 1: flips give |4|, |2|, |2|, |4|, so p = 2/4.
    a = {"x1": 1.0, "x2": 1.0, "x3": 1.0, "y1": 1.0}
    r = st.paired_continuous(a, {k: 0.0 for k in a}, clusters={k: k[0] for k in a})
    assert r is not None and r.p_value == pytest.approx(0.5) and r.clusters == 2


def test_sign_flip_strong_effect_and_null() -> None:
    rng = random.Random(1)
    a = {f"q{i}": 1.0 + rng.gauss(0, 0.2) for i in range(40)}
    b = {k: 0.0 for k in a}
    strong = st.paired_continuous(a, b)
    assert strong is not None
    # 40 items: 10,000 random flips, none as extreme (only all-plus or all-minus would
    # be, 2 in 2^40): p = (0 + 1) / (10,000 + 1).
    assert strong.p_value == pytest.approx(1 / 10_001)
    assert strong.significant
    null_a = {f"q{i}": (1.0 if i % 2 else -1.0) * (1 + i // 2) for i in range(40)}
    null = st.paired_continuous(null_a, {k: 0.0 for k in null_a})
    assert null is not None
    assert null.diff == pytest.approx(0.0)
    assert null.p_value > 0.5
    assert not null.significant


def test_bootstrap_interval_matches_the_normal_theory_interval() -> None:
    rng = random.Random(7)
    a = {f"q{i}": rng.gauss(0.5, 1.0) for i in range(400)}
    b = {k: 0.0 for k in a}
    r = st.paired_continuous(a, b, seed=3)
    assert r is not None
    # For 400 roughly normal differences the interval is close to mean +- 1.96 sd/sqrt(n).
    half = 1.959964 * r.sd / math.sqrt(400)
    assert r.ci[0] == pytest.approx(r.diff - half, abs=0.15 * half)
    assert r.ci[1] == pytest.approx(r.diff + half, abs=0.15 * half)
    assert r.mde == pytest.approx((1.959964 + 0.841621) * r.sd / 20, rel=1e-5)
    again = st.paired_continuous(a, b, seed=3)
    assert again == r  # seeded: the same interval and p-value on a rerun


def test_small_sample_widening() -> None:
    # Two differences, 0 and 2: the bootstrap means are 0, 1, 2 with chances 1/4, 1/2,
    # 1/4, so the 2.5% and 97.5% percentiles of 2000 resamples are 0 and 2. Widened by
    # sqrt(n / (n - 1)) = sqrt(2) about the mean 1: 1 -+ sqrt(2).
    r = st.paired_continuous({"x": 0.0, "y": 2.0}, {"x": 0.0, "y": 0.0})
    assert r is not None
    assert r.ci[0] == pytest.approx(1 - math.sqrt(2))
    assert r.ci[1] == pytest.approx(1 + math.sqrt(2))


def test_cluster_bootstrap_widens_for_clustered_scores() -> None:
    rng = random.Random(5)
    a, clusters = {}, {}
    for c in range(8):
        shift = 1.0 if c % 2 else -0.6  # each cluster moves together
        for j in range(6):
            key = f"c{c}q{j}"
            a[key] = shift + rng.gauss(0, 0.05)
            clusters[key] = f"c{c}"
    b = {k: 0.0 for k in a}
    flat = st.paired_continuous(a, b)
    clustered = st.paired_continuous(a, b, clusters)
    assert flat is not None and clustered is not None
    assert clustered.deff > 4  # nearly all variance is between clusters: close to m = 6
    assert clustered.clusters == 8
    assert clustered.ci[1] - clustered.ci[0] > 1.5 * (flat.ci[1] - flat.ci[0])
    # 8 clusters, half up and half down: the sign-flip test at the cluster level sees
    # little evidence, while the 48 items taken one by one look far more convincing.
    assert clustered.p_value > flat.p_value
    assert clustered.p_value > 0.05


def test_paired_continuous_edges() -> None:
    assert st.paired_continuous({"x": 1.0}, {"x": 0.0}) is None
    a = {"x": 1.0, "y": 2.0, "z": 1.5}
    one = st.paired_continuous(a, {k: 0.0 for k in a}, clusters={k: "all" for k in a})
    assert one is not None
    assert one.ci == (-math.inf, math.inf)  # one cluster: nothing to resample
    assert one.p_value == 1.0
    assert not one.significant


# ---- power -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delta", "p_d", "review", "exact"),
    [
        # Connor (1987): ceil([z_a sqrt(p_d) + z_b sqrt(p_d - delta^2)]^2 / delta^2).
        # The review's 165 is one above the formula's 163.39 -> 164.
        (0.125, 0.33, 165, 164),
        (0.125, 0.375, 186, 186),
        (0.10, 0.25, 194, 194),
        (0.05, 0.35, 1097, 1097),
    ],
)
def test_n_paired_binary(delta: float, p_d: float, review: int, exact: int) -> None:
    n = st.n_paired_binary(delta, p_d)
    assert abs(n - review) <= 1
    assert n == exact
    assert st.n_paired_binary(-delta, p_d) == n
    assert st.n_paired_binary(delta, p_d, deff=2.0) in (2 * n - 1, 2 * n)


def test_n_paired_binary_rejects_impossible_differences() -> None:
    with pytest.raises(ValueError):
        st.n_paired_binary(0.6, 0.3)  # a difference cannot exceed the discordance
    with pytest.raises(ValueError):
        st.n_paired_binary(0.0, 0.3)


def test_mde_values_and_square_root_law() -> None:
    # (1.95996 + 0.84162) * sqrt(0.25 / 100) = 2.80158 * 0.05.
    assert st.mde_paired_binary(100, 0.25) == pytest.approx(0.140079, abs=1e-5)
    assert st.mde_continuous(100, 1.0) == pytest.approx(0.280158, abs=1e-5)
    for n in (10, 50, 300):
        assert st.mde_paired_binary(4 * n, 0.3) == pytest.approx(st.mde_paired_binary(n, 0.3) / 2)
        assert st.mde_continuous(9 * n, 0.7) == pytest.approx(st.mde_continuous(n, 0.7) / 3)
    assert st.mde_paired_binary(100, 0.25, deff=4) == pytest.approx(
        2 * st.mde_paired_binary(100, 0.25)
    )


def test_n_continuous() -> None:
    # Effect size 0.5 (delta/sd): (1.95996 + 0.84162)^2 / 0.25 = 31.4 -> 32.
    assert st.n_continuous(0.5, 1.0) == 32
    assert st.n_continuous(0.1, 0.2) == 32
    assert st.n_continuous(0.5, 1.0, deff=1.5) == 48  # 47.09 -> 48


# ---- Holm, non-inferiority, clusters ---------------------------------------------------


def test_holm_known_example() -> None:
    adjusted = st.holm({"x": 0.01, "y": 0.04, "z": 0.03})
    assert list(adjusted) == ["x", "y", "z"]
    assert adjusted["x"] == pytest.approx(0.03)  # 3 * 0.01
    assert adjusted["z"] == pytest.approx(0.06)  # 2 * 0.03
    assert adjusted["y"] == pytest.approx(0.06)  # max(1 * 0.04, 0.06): monotone
    assert st.holm({"a": 0.5, "b": 0.6}) == {"a": 1.0, "b": 1.0}  # capped
    assert st.holm({}) == {}
    with pytest.raises(ValueError):
        st.holm({"a": 1.5})


def test_non_inferior() -> None:
    assert st.non_inferior(-0.03, 0.05)
    assert not st.non_inferior(-0.06, 0.05)
    assert not st.non_inferior(-0.05, 0.05)  # on the margin is not above it


def test_cluster_of_chooses_documents_or_chunks() -> None:
    ids = [f"q{i}" for i in range(30)]
    chunk_of = {q: f"chunk{i}" for i, q in enumerate(ids)}
    many = {q: f"doc{i % 15}" for i, q in enumerate(ids)}
    mapping, unit = st.cluster_of(ids, many, chunk_of)
    assert unit == "document" and mapping["q16"] == "doc1"
    few = {q: f"doc{i % 14}" for i, q in enumerate(ids)}
    mapping, unit = st.cluster_of(ids, few, chunk_of)
    assert unit == "chunk" and mapping["q16"] == "chunk16"
    assert st.cluster_of(ids, few, chunk_of, min_docs=14)[1] == "document"
    with pytest.raises(ValueError):
        st.cluster_of(["missing"], many, chunk_of)
