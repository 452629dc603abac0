from __future__ import annotations

import pytest

from distill.retrieval import rrf


def test_rrf_hand_checked_example() -> None:
    # dense ranks: a=1, b=2, c=3; bm25 ranks: c=1, a=2 (b shares no term)
    dense, bm25 = [0, 1, 2], [2, 0]
    fused = rrf([(1.0, dense), (1.0, bm25)], rrf_k=1)
    # a: 1/2 + 1/3 = 0.833; c: 1/4 + 1/2 = 0.75; b: 1/3
    assert [item for item, _ in fused] == [0, 2, 1]
    assert [round(s, 3) for _, s in fused] == [0.833, 0.75, 0.333]


def test_rrf_weights_and_ties() -> None:
    fused = rrf([(0.0, [0, 1]), (2.0, [1, 0])], rrf_k=60)
    assert [item for item, _ in fused] == [1, 0]
    assert fused[0][1] == pytest.approx(2 / 61)
    tie = rrf([(1.0, [5]), (1.0, [3])], rrf_k=60)
    assert [item for item, _ in tie] == [3, 5]  # equal scores: lower position first
