"""Retrieval metrics from ranks: R@K, median and mean rank, MRR, nDCG@K, P@1.

Conventions (what a report quotes):

- **Several positives per query** (COCO has 5 captions per image, MSR-VTT 20 per video): a query is
  a hit at K when *any* of its positives is in the top K. Its rank is the position of its
  best-ranked positive; R@K, MedR, MeanR, MRR and P@1 use that rank. nDCG@K uses every positive,
  with binary relevance: DCG = sum over positives at positions p <= K of 1 / log2(p + 1), divided
  by the ideal DCG of min(#positives, K) positives at the top.
- **Ties are pessimistic** by default: a candidate that is *not* a positive and scores exactly as
  high as a positive is ranked before it. So the rank of a query is
  `1 + #{non-positive candidates with score >= best positive score}`, and the i-th positive
  (0-based, positives by decreasing score) sits at `1 + i + #{non-positives with score >= its
  score}`. A collapsed model that scores everything equally gets the worst rank, never rank 1
  (zero vectors for undecodable media must not look like perfect retrieval). `ties="optimistic"`
  counts only strictly higher non-positives instead. The order among tied positives does not
  matter (they are all relevant).
- Values are fractions in [0, 1] (R@K, MRR, nDCG, P@1); MedR and MeanR are 1-based ranks
  (lower is better). P@1 (MMEB's metric for local candidate lists) is the fraction of queries whose
  top candidate is a positive, which equals R@1.

The functions here are pure numpy; `positions_from_scores` is the dense reference, and
`train.topk.rank_search` gives the same positions for large pools without the full score matrix.

>>> import numpy as np
>>> scores = np.array([[0.9, 0.5, 0.5], [0.1, 0.7, 0.7]])
>>> pos = positions_from_scores(scores, [[1], [0]])
>>> [p.tolist() for p in pos]
[[3], [3]]
>>> retrieval_metrics(first_ranks(pos), pos, ks=(1, 3))["R@3"]
1.0
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

Ties = Literal["pessimistic", "optimistic"]
TIES: Final[tuple[str, ...]] = ("pessimistic", "optimistic")

#: Metrics that are better when lower (ranks).
LOWER_IS_BETTER: Final = frozenset({"MedR", "MeanR"})


def positions_from_scores(
    scores: np.ndarray,
    positives: Sequence[Iterable[int]],
    *,
    ties: Ties = "pessimistic",
    valid: np.ndarray | None = None,
) -> list[np.ndarray]:
    """For each query, the 1-based positions of its positives in the tie-broken ranking.

    `scores` is (n_queries, n_candidates); `positives[i]` lists the candidate indices relevant to
    query i (at least one); `valid` (same shape, bool) marks candidates that take part (others are
    ignored, e.g. padding of local candidate lists). Positions come back sorted ascending.
    """
    scores = np.asarray(scores)
    _check_ties(ties)
    out: list[np.ndarray] = []
    for i, pos in enumerate(positives):
        idx = np.unique(np.fromiter(pos, dtype=np.int64))
        if idx.size == 0:
            raise ValueError(f"query {i} has no positive; every query needs at least one")
        row = scores[i]
        is_pos = np.zeros(row.shape[0], dtype=bool)
        is_pos[idx] = True
        neg = row[~is_pos & (valid[i] if valid is not None else True)]
        pos_scores = np.sort(row[idx])[::-1]
        neg_sorted = np.sort(neg)
        if ties == "pessimistic":  # non-positives >= s
            ahead = neg_sorted.size - np.searchsorted(neg_sorted, pos_scores, side="left")
        else:  # non-positives > s
            ahead = neg_sorted.size - np.searchsorted(neg_sorted, pos_scores, side="right")
        out.append(1 + np.arange(idx.size) + ahead)
    return out


def first_ranks(positions: Sequence[np.ndarray]) -> np.ndarray:
    """The rank of each query: the position of its best-ranked positive."""
    return np.array([int(p.min()) for p in positions], dtype=np.int64)


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Fraction of queries with a positive in the top k."""
    return float(np.mean(np.asarray(ranks) <= k)) if len(ranks) else float("nan")


def precision_at_1(ranks: np.ndarray) -> float:
    """Fraction of queries whose top candidate is a positive (MMEB's P@1 / hit@1)."""
    return recall_at_k(ranks, 1)


def median_rank(ranks: np.ndarray) -> float:
    return float(np.median(ranks)) if len(ranks) else float("nan")


def mean_rank(ranks: np.ndarray) -> float:
    return float(np.mean(ranks)) if len(ranks) else float("nan")


def mrr(ranks: np.ndarray) -> float:
    """Mean reciprocal rank of the best-ranked positive."""
    return float(np.mean(1.0 / np.asarray(ranks, dtype=np.float64))) if len(ranks) else float("nan")


def ndcg_at_k(
    positions: Sequence[np.ndarray], n_relevant: Sequence[int] | np.ndarray, k: int = 10
) -> float:
    """Mean nDCG@k with binary relevance.

    `positions[i]` holds the positions of query i's positives; only those <= k matter, so a caller
    may pass only those. `n_relevant[i]` is the number of positives of query i (for the ideal DCG).
    """
    if not len(positions):
        return float("nan")
    discounts = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))  # positions 1..k
    ideal_cum = np.cumsum(discounts)
    total = 0.0
    for pos, n in zip(positions, n_relevant, strict=True):
        p = np.asarray(pos, dtype=np.int64)
        p = p[p <= k]
        dcg = float(discounts[p - 1].sum())
        total += dcg / ideal_cum[min(int(n), k) - 1]
    return float(total / len(positions))


@dataclass(frozen=True)
class MetricSpec:
    """A metric name as stored in the results: R@K, P@1, MedR, MeanR, MRR or nDCG@K."""

    name: str
    kind: str
    k: int = 0

    @classmethod
    def parse(cls, name: str) -> MetricSpec:
        text = name.strip()
        for prefix in ("R@", "nDCG@"):
            if text.startswith(prefix) and text[len(prefix) :].isdigit():
                k = int(text[len(prefix) :])
                if k >= 1:
                    return cls(text, prefix[:-1], k)
        if text in ("P@1", "MedR", "MeanR", "MRR"):
            return cls(text, text, 1 if text == "P@1" else 0)
        raise ValueError(
            f"unknown metric {name!r}; use R@K, nDCG@K (K >= 1), P@1, MedR, MeanR or MRR"
        )


def check_metrics(names: Iterable[str]) -> tuple[str, ...]:
    """Validate metric names (raises ValueError naming the bad one)."""
    return tuple(MetricSpec.parse(n).name for n in names)


def needed_depth(names: Iterable[str]) -> int:
    """How many top positions the metrics look at (the largest K of nDCG@K)."""
    depth = 0
    for n in names:
        spec = MetricSpec.parse(n)
        if spec.kind == "nDCG":
            depth = max(depth, spec.k)
    return depth


def retrieval_metrics(
    ranks: np.ndarray,
    positions: Sequence[np.ndarray] | None = None,
    *,
    n_relevant: Sequence[int] | np.ndarray | None = None,
    ks: Sequence[int] = (1, 5, 10),
    names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Metrics by name from query ranks (and positive positions for nDCG).

    Without `names`: R@k for each k in `ks`, MedR, MeanR, MRR, and nDCG@10 when `positions` is
    given. `n_relevant` defaults to the number of positions given per query.
    """
    if names is None:
        names = [f"R@{k}" for k in ks] + ["MedR", "MeanR", "MRR"]
        if positions is not None:
            names.append("nDCG@10")
    ranks = np.asarray(ranks, dtype=np.int64)
    out: dict[str, float] = {}
    for name in names:
        spec = MetricSpec.parse(name)
        if spec.kind == "R":
            out[spec.name] = recall_at_k(ranks, spec.k)
        elif spec.kind == "P@1":
            out[spec.name] = precision_at_1(ranks)
        elif spec.kind == "MedR":
            out[spec.name] = median_rank(ranks)
        elif spec.kind == "MeanR":
            out[spec.name] = mean_rank(ranks)
        elif spec.kind == "MRR":
            out[spec.name] = mrr(ranks)
        else:  # nDCG
            if positions is None:
                raise ValueError(f"{spec.name} needs the positions of every positive")
            counts = n_relevant if n_relevant is not None else [len(p) for p in positions]
            out[spec.name] = ndcg_at_k(positions, counts, spec.k)
    return out


def summarise(values: Mapping[str, float], digits: int = 4) -> str:
    """'R@1 0.4120, MedR 3, MeanR 4.25' for people."""
    parts = []
    for name, value in values.items():
        if name in LOWER_IS_BETTER:
            parts.append(f"{name} {f'{value:.2f}'.rstrip('0').rstrip('.')}")
        else:
            parts.append(f"{name} {value:.{digits}f}")
    return ", ".join(parts)


def _check_ties(ties: str) -> None:
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, found {ties!r}")
