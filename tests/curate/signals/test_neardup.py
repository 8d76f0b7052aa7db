"""Blockwise near-duplicate search equals brute force; components and keep rule."""

from __future__ import annotations

import numpy as np
import pytest

from curate.signals.neardup import (
    connected_components,
    cosine_pairs,
    hamming_first_match,
    hamming_pairs,
    keep_first,
    normalise_rows,
)


def brute_components(n: int, edges) -> np.ndarray:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(n)])


def flip_bits(value: int, bits: list[int]) -> int:
    for b in bits:
        value ^= 1 << b
    return value


def test_cosine_pairs_equal_brute_force_for_every_block_size():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    x[100] = x[7] + 0.01 * rng.normal(size=16)  # planted near-duplicates
    x[250] = x[7] * 3.0  # same direction, other norm
    x[299] = x[123]
    unit = normalise_rows(x)
    sims = unit @ unit.T
    expected = {(i, j) for i, j in zip(*np.nonzero(np.triu(sims >= 0.9, k=1)), strict=True)}
    assert {(7, 100), (7, 250), (100, 250), (123, 299)} <= expected
    for block in (1, 7, 64, 300, 4096):
        got = cosine_pairs(x, 0.9, block=block)
        assert {tuple(p) for p in got.tolist()} == expected
        assert (got[:, 0] < got[:, 1]).all()
    for block in (64, 4096):  # the torch path (used on GPUs), here on the CPU
        got = cosine_pairs(x, 0.9, block=block, device="cpu")
        assert {tuple(p) for p in got.tolist()} == expected


def test_hamming_pairs_give_the_brute_force_components():
    rng = np.random.default_rng(2)
    base = [int(v) for v in rng.integers(0, 2**63, size=400, dtype=np.int64)]
    hashes = list(base)
    hashes.append(base[3])  # exact duplicate
    hashes.append(flip_bits(base[3], [0, 17, 40]))  # 3 bits away
    hashes.append(flip_bits(base[10], [5, 6, 7, 8, 9, 10, 11]))  # 7 bits away
    hashes.append(flip_bits(base[20], [63]))  # top bit
    values = np.array(hashes, dtype=np.uint64)
    n = len(values)
    distances = np.bitwise_count(values[:, None] ^ values[None, :])
    for k in (0, 1, 3, 6, 8):
        edges = list(zip(*np.nonzero(np.triu(distances <= k, k=1)), strict=True))
        expected = brute_components(n, edges)
        for block in (3, 4096):
            pairs = hamming_pairs(values, k, block=block)
            assert (np.bitwise_count(values[pairs[:, 0]] ^ values[pairs[:, 1]]) <= k).all()
            np.testing.assert_array_equal(connected_components(n, pairs), expected)
    labels = connected_components(n, hamming_pairs(values, 3))
    assert labels[400] == labels[401] == labels[3]
    assert labels[402] != labels[10]  # 7 bits is more than 3


def test_hamming_first_match_equals_brute_force():
    rng = np.random.default_rng(3)
    refs = rng.integers(0, 2**63, size=200, dtype=np.int64).astype(np.uint64)
    refs[150] = refs[20]  # a repeated reference: the first index must win
    queries = np.concatenate(
        [
            rng.integers(0, 2**63, size=100, dtype=np.int64).astype(np.uint64),
            np.array(
                [flip_bits(int(refs[20]), [1, 2]), flip_bits(int(refs[99]), [3, 30, 60, 61])],
                dtype=np.uint64,
            ),
        ]
    )
    for k in (0, 2, 4, 10):
        dist = np.bitwise_count(queries[:, None] ^ refs[None, :]).astype(np.int64)
        within = dist <= k
        expected = np.where(within.any(axis=1), within.argmax(axis=1), -1)
        got, got_dist = hamming_first_match(queries, refs, k, block=16)
        np.testing.assert_array_equal(got, expected)
        hit = expected >= 0
        np.testing.assert_array_equal(got_dist[hit], dist[hit, expected[hit]])
        assert (got_dist[~hit] == -1).all()
    got, _ = hamming_first_match(queries, refs, 2)
    assert got[100] == 20 and got[101] == -1


def test_connected_components_on_random_graphs_and_long_chains():
    rng = np.random.default_rng(4)
    for n, m in ((50, 30), (500, 400), (1000, 50)):
        edges = rng.integers(0, n, size=(m, 2))
        np.testing.assert_array_equal(connected_components(n, edges), brute_components(n, edges))
    chain = np.stack([np.arange(999, 0, -1), np.arange(998, -1, -1)], axis=1)  # 999-998-...-0
    assert (connected_components(1000, chain) == 0).all()
    assert connected_components(3, np.empty((0, 2), np.int64)).tolist() == [0, 1, 2]


def test_keep_first_prefers_score_then_tiebreak():
    labels = np.array([0, 0, 0, 3, 3, 5])
    score = np.array([0.2, 0.9, np.nan, np.nan, np.nan, 0.1])
    tiebreak = np.array([5, 4, 3, 2, 1, 0])
    keep = keep_first(labels, score=score, tiebreak=tiebreak)
    assert keep.tolist() == [False, True, False, False, True, True]
    assert keep_first(labels).tolist() == [True, False, False, True, False, True]


@pytest.mark.parametrize("k", [-1, 64])
def test_invalid_bit_counts(k):
    with pytest.raises(ValueError):
        hamming_pairs(np.array([1, 2], dtype=np.uint64), k)
