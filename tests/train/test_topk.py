"""Chunked top-k and rank search against the dense computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from train.metrics import positions_from_scores
from train.topk import Relevance, chunked_topk, dense_topk, rank_search

CHUNKS = [(2, 3), (7, 13), (16, 64), (50, 5), (1000, 1000)]


def _integer_embeddings(n, d, seed):
    """Small integers as floats: every dot product is exact, and ties are frequent."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-2, 3, (n, d), generator=g).float()


@pytest.mark.parametrize(("query_chunk", "candidate_chunk"), [(1, 1), *CHUNKS])
@pytest.mark.parametrize("k", [1, 5, 17, 500])
def test_chunked_topk_equals_dense_exactly(query_chunk, candidate_chunk, k):
    q = _integer_embeddings(23, 6, seed=1)
    c = _integer_embeddings(101 if candidate_chunk > 1 else 31, 6, seed=2)
    dense = dense_topk(q, c, k)
    chunked = chunked_topk(q, c, k, query_chunk=query_chunk, candidate_chunk=candidate_chunk)
    assert torch.equal(chunked.values, dense.values)
    assert torch.equal(chunked.indices, dense.indices)  # ties: lower index first, as a stable sort


def test_chunked_topk_on_real_valued_embeddings():
    g = torch.Generator().manual_seed(3)
    q = torch.nn.functional.normalize(torch.randn(64, 32, generator=g), dim=-1)
    c = torch.nn.functional.normalize(torch.randn(3000, 32, generator=g), dim=-1)
    dense = dense_topk(q, c, 10)
    for qc, cc in [(64, 3000), (16, 512), (5, 999)]:
        chunked = chunked_topk(q, c, 10, query_chunk=qc, candidate_chunk=cc)
        # Block products may round differently from the full product by an ulp.
        assert torch.allclose(chunked.values, dense.values, rtol=0, atol=1e-6)
        gaps = (dense.values[:, :-1] - dense.values[:, 1:]).min(dim=1).values
        clear = gaps > 1e-5
        assert torch.equal(chunked.indices[clear], dense.indices[clear])
        if (qc, cc) == (64, 3000):  # one block: the very same product
            assert torch.equal(chunked.indices, dense.indices)


def _random_case(seed, n_q=30, n_c=120, max_pos=6):
    rng = np.random.default_rng(seed)
    q = _integer_embeddings(n_q, 5, seed=seed)
    c = _integer_embeddings(n_c, 5, seed=seed + 100)
    positives = [rng.choice(n_c, size=rng.integers(1, max_pos + 1), replace=False).tolist()
                 for _ in range(n_q)]  # fmt: skip
    excluded = [
        rng.choice(n_c, size=rng.integers(0, 4), replace=False).tolist() for _ in range(n_q)
    ]
    return q, c, positives, excluded


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
@pytest.mark.parametrize(("query_chunk", "candidate_chunk"), CHUNKS)
@pytest.mark.parametrize("retain_mb", [256.0, 0.0])
def test_rank_search_equals_dense_ranks_and_positions(
    ties, query_chunk, candidate_chunk, retain_mb
):
    q, c, positives, _ = _random_case(seed=query_chunk + candidate_chunk)
    found = rank_search(q, c, Relevance.from_lists(positives), k=10, depth=10, ties=ties,
                        query_chunk=query_chunk, candidate_chunk=candidate_chunk,
                        retain_mb=retain_mb)  # fmt: skip
    want = positions_from_scores((q @ c.T).numpy(), positives, ties=ties)
    assert found.ranks.tolist() == [int(p.min()) for p in want]
    for got, ref in zip(found.positions(10), want, strict=True):
        assert got.tolist() == ref[ref <= 10].tolist()
    dense = dense_topk(q, c, 10)
    assert torch.equal(found.top(10).values, dense.values)
    assert torch.equal(found.top(10).indices, dense.indices)
    # Each positive's score is its entry of the score matrix.
    rel = Relevance.from_lists(positives)
    full = q @ c.T
    assert torch.equal(
        found.positive_scores, full[torch.from_numpy(rel.row_ids()), torch.from_numpy(rel.indices)]
    )


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
def test_rank_search_with_excluded_candidates(ties):
    q, c, positives, excluded = _random_case(seed=7)
    found = rank_search(q, c, Relevance.from_lists(positives), k=10, ties=ties,
                        exclude=Relevance.from_lists(excluded), query_chunk=8, candidate_chunk=32)  # fmt: skip
    valid = np.ones((len(q), len(c)), dtype=bool)
    for i, (pos, exc) in enumerate(zip(positives, excluded, strict=True)):
        valid[i, [j for j in exc if j not in pos]] = False  # a positive is never excluded
    want = positions_from_scores((q @ c.T).numpy(), positives, ties=ties, valid=valid)
    assert found.ranks.tolist() == [int(p.min()) for p in want]
    for got, ref in zip(found.positions(10), want, strict=True):
        assert got.tolist() == ref[ref <= 10].tolist()
    top = found.top(10)
    for i in range(len(q)):
        shown = top.indices[i][torch.isfinite(top.values[i])].tolist()
        assert not set(shown) & (set(excluded[i]) - set(positives[i]))


def test_collapsed_embeddings_rank_last():
    # Every candidate identical (a collapsed model, or zero vectors for undecodable media).
    q = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    c = torch.ones(50, 8) / 8**0.5
    for chunk in (1, 7, 49, 64):
        found = rank_search(
            q, c, Relevance.from_lists([[i] for i in range(4)]), candidate_chunk=chunk
        )
        assert found.ranks.tolist() == [50] * 4
    zeros = rank_search(q, torch.zeros(50, 8), Relevance.from_lists([[3]] * 4), ties="optimistic")
    assert zeros.ranks.tolist() == [1] * 4


def test_relevance_and_errors():
    rel = Relevance.from_lists([[3, 1, 3], [0]])
    assert rel.indptr.tolist() == [0, 2, 3] and rel.indices.tolist() == [1, 3, 0]
    assert rel.row_ids().tolist() == [0, 0, 1]
    assert rel.without(Relevance.from_lists([[3], []])).indices.tolist() == [1, 0]
    q, c = torch.zeros(2, 3), torch.zeros(4, 3)
    with pytest.raises(ValueError, match="no positive"):
        rank_search(q, c, Relevance.from_lists([[1], []]))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        rank_search(q, c, Relevance.from_lists([[1], [4]]))
    with pytest.raises(ValueError, match="same d"):
        chunked_topk(q, torch.zeros(4, 2), 1)
    with pytest.raises(ValueError, match="no candidates"):
        chunked_topk(q, torch.zeros(0, 3), 1)


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
def test_rank_search_counts_from_top_k_when_positives_rank_high(ties):
    # Most positives are copies of their query (rank near 1: counted from the block top-k), a few
    # are random (deep: those rows alone are scanned), in chunks tall enough for the row subset.
    q = _integer_embeddings(64, 6, seed=21)
    c = _integer_embeddings(400, 6, seed=22)
    c[:60] = q[:60]
    positives = [[i] if i < 60 else [int(300 + i)] for i in range(64)]
    found = rank_search(q, c, Relevance.from_lists(positives), ties=ties, query_chunk=64,
                        candidate_chunk=100)  # fmt: skip
    want = positions_from_scores((q @ c.T).numpy(), positives, ties=ties)
    assert found.ranks.tolist() == [int(p.min()) for p in want]


@pytest.mark.parametrize("segment", [2, 4, 16])
@pytest.mark.parametrize("kind", ["integers", "floats"])
def test_segmented_block_top_k_is_exact(monkeypatch, segment, kind):
    # Small segments so that these small blocks take the segmented path (large blocks always do).
    import train.topk as topk_module

    monkeypatch.setattr(topk_module, "SEGMENT", segment)
    if kind == "integers":  # ties everywhere: the fallback to a stable sort
        q, c = _integer_embeddings(40, 5, seed=31), _integer_embeddings(700, 5, seed=32)
    else:  # distinct scores: the segmented path itself
        g = torch.Generator().manual_seed(33)
        q, c = torch.randn(40, 16, generator=g), torch.randn(700, 16, generator=g)
    for k in (1, 3, 10):
        dense = dense_topk(q, c, k)
        chunked = chunked_topk(q, c, k, query_chunk=40, candidate_chunk=700)
        assert torch.equal(chunked.values, dense.values)
        assert torch.equal(chunked.indices, dense.indices)
    positives = [[i, 3 * i + 1] for i in range(40)]
    found = rank_search(q, c, Relevance.from_lists(positives), query_chunk=40, candidate_chunk=350)
    want = positions_from_scores((q @ c.T).numpy(), positives)
    assert found.ranks.tolist() == [int(p.min()) for p in want]
    for got, ref in zip(found.positions(10), want, strict=True):
        assert got.tolist() == ref[ref <= 10].tolist()
