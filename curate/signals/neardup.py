"""Near-duplicate search in bounded memory: cosine pairs of embeddings, Hamming pairs of 64-bit
hashes, connected components, and one row kept per cluster.

Embedding pairs are found block by block (`block × block` similarities at a time, never n × n).
Hash pairs use multi-index hashing: split the 64 bits into `k + 1` bands; two hashes within `k`
bits agree exactly on at least one band (pigeonhole), so only hashes sharing a band value are
compared. Exact-duplicate hashes are collapsed first, so a band bucket never holds the same hash
twice. Both searches are exact (parity tests compare them with brute force).

The pure functions here take numpy arrays and return arrays; `curate.signals.score` applies them
to manifests.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

DEFAULT_BLOCK = 4096


def _empty_pairs() -> np.ndarray:
    return np.empty((0, 2), dtype=np.int64)


def normalise_rows(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); zero rows stay zero."""
    x = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def cosine_pairs(
    embeddings: np.ndarray,
    threshold: float,
    *,
    block: int = DEFAULT_BLOCK,
    device: str | None = None,
) -> np.ndarray:
    """All pairs (i, j), i < j, whose cosine similarity is at least `threshold`; shape (m, 2).

    Memory is O(block² + m): similarities are computed one `block × block` tile at a time over
    the upper triangle. `device` (e.g. "cuda") runs the tiles with torch on that device; None
    uses numpy.
    """
    x = normalise_rows(embeddings)
    if device is not None:
        return _cosine_pairs_torch(x, threshold, block=block, device=device)
    n = len(x)
    found: list[np.ndarray] = []
    for i0 in range(0, n, block):
        a = x[i0 : i0 + block]
        for j0 in range(i0, n, block):
            sims = a @ x[j0 : j0 + block].T
            hits = sims >= threshold
            if i0 == j0:
                hits = np.triu(hits, k=1)
            ii, jj = np.nonzero(hits)
            if len(ii):
                found.append(np.stack([ii + i0, jj + j0], axis=1).astype(np.int64))
    return np.concatenate(found) if found else _empty_pairs()


def _cosine_pairs_torch(x: np.ndarray, threshold: float, *, block: int, device: str) -> np.ndarray:
    import torch

    n = len(x)
    # float32 tiles without TF32: a 10-bit mantissa would move similarities near the threshold.
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        data = torch.from_numpy(x).to(device)
        found: list[torch.Tensor] = []
        with torch.inference_mode():
            for i0 in range(0, n, block):
                a = data[i0 : i0 + block]
                for j0 in range(i0, n, block):
                    hits = (a @ data[j0 : j0 + block].T) >= threshold
                    if i0 == j0:
                        hits = torch.triu(hits, diagonal=1)
                    idx = hits.nonzero()
                    if len(idx):
                        idx[:, 0] += i0
                        idx[:, 1] += j0
                        found.append(idx.cpu())
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    if not found:
        return _empty_pairs()
    return torch.cat(found).numpy().astype(np.int64)


def _bands(max_bits: int) -> list[tuple[int, int]]:
    """(shift, width) of `max_bits + 1` bands covering the 64 bits as evenly as possible."""
    count = max_bits + 1
    if not 1 <= count <= 64:
        raise ValueError(f"max_bits must be between 0 and 63, found {max_bits}")
    widths = [64 // count + (1 if i < 64 % count else 0) for i in range(count)]
    bands, shift = [], 0
    for width in widths:
        bands.append((shift, width))
        shift += width
    return bands


def _band_key(hashes: np.ndarray, shift: int, width: int) -> np.ndarray:
    mask = np.uint64((1 << width) - 1) if width < 64 else np.uint64(0xFFFFFFFFFFFFFFFF)
    return (hashes >> np.uint64(shift)) & mask


def _runs(keys: np.ndarray) -> Iterator[np.ndarray]:
    """Index arrays of the groups of equal keys that have at least two members."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    bounds = np.flatnonzero(np.diff(sorted_keys)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(keys)]])
    for start, end in zip(starts, ends, strict=True):
        if end - start > 1:
            yield order[start:end]


def _popcount_xor(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.bitwise_count(np.bitwise_xor(a[:, None], b[None, :]))


def hamming_pairs(hashes: np.ndarray, max_bits: int, *, block: int = DEFAULT_BLOCK) -> np.ndarray:
    """Pairs (i, j), i < j, of hashes at most `max_bits` bits apart; shape (m, 2).

    Identical hashes contribute a chain of pairs (each to the first of its group), which is enough
    for connected components; distinct hashes contribute every qualifying pair.
    """
    bands = _bands(max_bits)  # validates max_bits
    hashes = np.asarray(hashes, dtype=np.uint64)
    if len(hashes) < 2:
        return _empty_pairs()
    unique, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    found: list[np.ndarray] = []
    # Identical hashes: link every row to the first row with the same hash.
    rows = np.arange(len(hashes))
    same = first[inverse] != rows
    if same.any():
        found.append(np.stack([first[inverse][same], rows[same]], axis=1))
    if max_bits > 0 and len(unique) > 1:
        near: list[np.ndarray] = []  # pairs of indices into `unique`
        for shift, width in bands:
            for members in _runs(_band_key(unique, shift, width)):
                for i0 in range(0, len(members), block):
                    a = members[i0 : i0 + block]
                    for j0 in range(i0, len(members), block):
                        b = members[j0 : j0 + block]
                        hits = _popcount_xor(unique[a], unique[b]) <= max_bits
                        if i0 == j0:
                            hits = np.triu(hits, k=1)
                        ii, jj = np.nonzero(hits)
                        if len(ii):
                            near.append(np.sort(np.stack([a[ii], b[jj]], axis=1), axis=1))
        if near:
            # A pair sharing several bands is found once per band.
            pairs = np.unique(np.concatenate(near), axis=0)
            found.append(np.stack([first[pairs[:, 0]], first[pairs[:, 1]]], axis=1))
    if not found:
        return _empty_pairs()
    pairs = np.concatenate(found).astype(np.int64)
    return np.sort(pairs, axis=1)


def hamming_first_match(
    queries: np.ndarray, references: np.ndarray, max_bits: int, *, block: int = DEFAULT_BLOCK
) -> tuple[np.ndarray, np.ndarray]:
    """For each query hash, the smallest index of a reference hash at most `max_bits` bits away
    (-1 when none) and that distance (-1 when none)."""
    bands = _bands(max_bits)  # validates max_bits
    queries = np.asarray(queries, dtype=np.uint64)
    references = np.asarray(references, dtype=np.uint64)
    best = np.full(len(queries), -1, dtype=np.int64)
    best_distance = np.full(len(queries), -1, dtype=np.int64)
    if len(queries) == 0 or len(references) == 0:
        return best, best_distance
    ref_unique, ref_first = np.unique(references, return_index=True)
    q_unique, q_inverse = np.unique(queries, return_inverse=True)
    # Per unique query hash: best reference (smallest original index) within range.
    u_best = np.full(len(q_unique), np.iinfo(np.int64).max, dtype=np.int64)
    u_distance = np.full(len(q_unique), -1, dtype=np.int64)
    for shift, width in bands:
        q_keys = _band_key(q_unique, shift, width)
        r_keys = _band_key(ref_unique, shift, width)
        r_order = np.argsort(r_keys, kind="stable")
        r_sorted = r_keys[r_order]
        common = np.intersect1d(q_keys, r_sorted)
        if len(common) == 0:
            continue
        q_order = np.argsort(q_keys, kind="stable")
        q_sorted = q_keys[q_order]
        q_lo = np.searchsorted(q_sorted, common, "left")
        q_hi = np.searchsorted(q_sorted, common, "right")
        r_lo = np.searchsorted(r_sorted, common, "left")
        r_hi = np.searchsorted(r_sorted, common, "right")
        for ql, qh, rl, rh in zip(q_lo, q_hi, r_lo, r_hi, strict=True):
            q_members = q_order[ql:qh]
            r_members = r_order[rl:rh]
            for i0 in range(0, len(q_members), block):
                qa = q_members[i0 : i0 + block]
                for j0 in range(0, len(r_members), block):
                    rb = r_members[j0 : j0 + block]
                    dist = _popcount_xor(q_unique[qa], ref_unique[rb]).astype(np.int64)
                    within = dist <= max_bits
                    if not within.any():
                        continue
                    ref_index = np.where(within, ref_first[rb][None, :], np.iinfo(np.int64).max)
                    pick = ref_index.argmin(axis=1)
                    cand = ref_index[np.arange(len(qa)), pick]
                    better = cand < u_best[qa]
                    u_best[qa[better]] = cand[better]
                    u_distance[qa[better]] = dist[np.arange(len(qa)), pick][better]
    found = u_best != np.iinfo(np.int64).max
    best = np.where(found, u_best, -1)[q_inverse]
    best_distance = np.where(found, u_distance, -1)[q_inverse]
    return best, best_distance


def connected_components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Component label of each of `n` nodes: the smallest node index in its component.

    Vectorised hooking and pointer jumping (no Python loop over edges).
    """
    parent = np.arange(n, dtype=np.int64)
    if len(pairs) == 0:
        return parent
    a = np.asarray(pairs[:, 0], dtype=np.int64)
    b = np.asarray(pairs[:, 1], dtype=np.int64)
    while True:
        root_a, root_b = parent[a], parent[b]
        differ = root_a != root_b
        if not differ.any():
            return parent
        low = np.minimum(root_a[differ], root_b[differ])
        high = np.maximum(root_a[differ], root_b[differ])
        # Hook each larger root under the smallest root it is linked to.
        np.minimum.at(parent, high, low)
        while True:  # pointer jumping until every node points at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


def keep_first(
    labels: np.ndarray, *, score: np.ndarray | None = None, tiebreak: np.ndarray | None = None
) -> np.ndarray:
    """Boolean mask: one row per component, the one with the highest `score` (NaN lowest), then
    the smallest `tiebreak` (e.g. the rank of the row id), then the smallest index."""
    n = len(labels)
    index = np.arange(n)
    keys = [index]
    if tiebreak is not None:
        keys.insert(0, np.asarray(tiebreak))
    if score is not None:
        s = np.asarray(score, dtype=np.float64)
        keys.insert(0, np.where(np.isnan(s), np.inf, -s))
    keys.insert(0, np.asarray(labels))
    order = np.lexsort(tuple(reversed(keys)))
    sorted_labels = np.asarray(labels)[order]
    first = np.ones(n, dtype=bool)
    first[1:] = sorted_labels[1:] != sorted_labels[:-1]
    keep = np.zeros(n, dtype=bool)
    keep[order[first]] = True
    return keep
