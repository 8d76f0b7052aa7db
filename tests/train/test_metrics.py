"""Metrics against hand-worked cases and a brute-force ranking built item by item."""

from __future__ import annotations

import math

import numpy as np
import pytest

from train.metrics import (
    check_metrics,
    first_ranks,
    mean_rank,
    median_rank,
    mrr,
    ndcg_at_k,
    needed_depth,
    positions_from_scores,
    precision_at_1,
    recall_at_k,
    retrieval_metrics,
)


def _brute_force(scores, positives, ties, k_list=(1, 5, 10), ndcg_k=10):
    """Sort every candidate by (score desc, tie rule), walk the list, and count by hand."""
    ranks, ndcgs = [], []
    for i, row in enumerate(scores):
        pos = set(positives[i])
        # pessimistic: at equal scores a non-positive goes first; optimistic: a positive does
        first = 0 if ties == "pessimistic" else 1
        order = sorted(
            range(len(row)), key=lambda j, pos=pos: (-row[j], first if j not in pos else 1 - first)
        )
        positions = [n + 1 for n, j in enumerate(order) if j in pos]
        ranks.append(positions[0])
        dcg = sum(1 / math.log2(p + 1) for p in positions if p <= ndcg_k)
        ideal = sum(1 / math.log2(p + 1) for p in range(1, min(len(pos), ndcg_k) + 1))
        ndcgs.append(dcg / ideal)
    out = {f"R@{k}": sum(r <= k for r in ranks) / len(ranks) for k in k_list}
    srt = sorted(ranks)
    n = len(srt)
    out["MedR"] = srt[n // 2] if n % 2 else (srt[n // 2 - 1] + srt[n // 2]) / 2
    out["MeanR"] = sum(ranks) / n
    out["MRR"] = sum(1 / r for r in ranks) / n
    out["nDCG@10"] = sum(ndcgs) / n
    return out


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_scores_with_ties_and_several_positives(ties, seed):
    rng = np.random.default_rng(seed)
    n_q, n_c = 40, 60
    # Few distinct values: many ties, among negatives and between positives and negatives.
    scores = rng.integers(0, 6, size=(n_q, n_c)).astype(np.float64) / 5
    positives = [
        rng.choice(n_c, size=rng.integers(1, 8), replace=False).tolist() for _ in range(n_q)
    ]
    positions = positions_from_scores(scores, positives, ties=ties)
    got = retrieval_metrics(first_ranks(positions), positions)
    want = _brute_force(scores, positives, ties)
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == pytest.approx(want[name], abs=1e-12), name


def test_hand_worked_single_positive():
    scores = np.array([[0.9, 0.8, 0.7, 0.6]])
    pos = positions_from_scores(scores, [[2]])
    assert [p.tolist() for p in pos] == [[3]]
    m = retrieval_metrics(first_ranks(pos), pos)
    assert m["R@1"] == 0.0 and m["R@5"] == 1.0 and m["R@10"] == 1.0
    assert m["MRR"] == pytest.approx(1 / 3)
    assert m["MedR"] == 3 and m["MeanR"] == 3
    assert m["nDCG@10"] == pytest.approx(1 / math.log2(4))


def test_hand_worked_several_positives():
    # order: 0.9 (neg), 0.9 (neg), 0.5 (pos), 0.3 (pos), 0.1 (neg)
    scores = np.array([[0.3, 0.9, 0.5, 0.9, 0.1]])
    pos = positions_from_scores(scores, [[0, 2]])
    assert pos[0].tolist() == [3, 4]
    ndcg = (1 / math.log2(4) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(pos, [2], 10) == pytest.approx(ndcg)
    assert recall_at_k(first_ranks(pos), 3) == 1.0
    assert recall_at_k(first_ranks(pos), 2) == 0.0


def test_ties_are_pessimistic_by_default_and_optimistic_on_request():
    # A collapsed model: every score equal. Pessimistic: the positive comes last.
    scores = np.full((1, 3), 0.5)
    assert positions_from_scores(scores, [[1]])[0].tolist() == [3]
    assert positions_from_scores(scores, [[1]], ties="optimistic")[0].tolist() == [1]
    # Two tied positives with one tied negative: the negative goes first, positives follow.
    assert positions_from_scores(scores, [[0, 2]])[0].tolist() == [2, 3]
    assert positions_from_scores(scores, [[0, 2]], ties="optimistic")[0].tolist() == [1, 2]


def test_valid_mask_ignores_padding():
    scores = np.array([[0.2, 0.9, 0.5]])
    valid = np.array([[True, False, True]])
    assert positions_from_scores(scores, [[0]], valid=valid)[0].tolist() == [2]


def test_rank_summaries():
    ranks = np.array([1, 2, 10, 3])
    assert median_rank(ranks) == 2.5
    assert mean_rank(ranks) == 4.0
    assert mrr(ranks) == pytest.approx((1 + 0.5 + 0.1 + 1 / 3) / 4)
    assert precision_at_1(ranks) == 0.25
    assert recall_at_k(ranks, 3) == 0.75


def test_ndcg_with_more_positives_than_k():
    # 12 positives occupying positions 1..12: nDCG@10 is perfect.
    positions = [np.arange(1, 13)]
    assert ndcg_at_k(positions, [12], 10) == pytest.approx(1.0)
    # Only positions beyond k: zero.
    assert ndcg_at_k([np.array([11, 15])], [2], 10) == 0.0


def test_metric_names():
    assert check_metrics(["R@1", "R@50", "nDCG@5", "P@1", "MedR", "MeanR", "MRR"])
    assert needed_depth(["R@1", "nDCG@5", "nDCG@10"]) == 10
    for bad in ["R@0", "recall", "nDCG@", "P@5"]:
        with pytest.raises(ValueError, match="unknown metric"):
            check_metrics([bad])
    with pytest.raises(ValueError, match="no positive"):
        positions_from_scores(np.zeros((1, 3)), [[]])
    with pytest.raises(ValueError, match="ties"):
        positions_from_scores(np.zeros((1, 3)), [[0]], ties="random")  # type: ignore[arg-type]
    assert retrieval_metrics(np.array([2]), names=["P@1", "R@1"]) == {"P@1": 0.0, "R@1": 0.0}
