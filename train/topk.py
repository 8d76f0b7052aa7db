"""Chunked similarity search: top-k and exact ranks without the full score matrix.

Scores are inner products of (L2-normalised) embeddings, computed block by block: a block of
`query_chunk` queries against `candidate_chunk` candidates. Only the running top-k per query and a
few counters per query stay in memory, so 100k x 100k never materialises a 40 GB matrix.

Ties are broken deterministically: among equal scores the lower candidate index comes first, which
is what a stable descending sort of the dense matrix gives. The chunked top-k therefore equals
`dense_topk` exactly whenever the block products equal the dense product (always for exactly
representable inputs; BLAS may round a dot product differently for different product shapes, by
one unit in the last place). All candidate blocks have the same shape (the last one is padded), so
within one search the scores of a query are computed alike and identical candidates tie exactly.

`rank_search` also counts, for each query, the non-positive candidates that score at least as high
as (or, optimistically, higher than) the query's best positive: the exact rank that R@K, MedR, MeanR
and MRR need, however deep the positive sits. The positives' own scores come from the very same
block products as the counts (a block is recomputed bit-identically when it was not kept), so a
positive tied with negatives is never miscounted.

>>> import torch
>>> q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
>>> c = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
>>> chunked_topk(q, c, 2, candidate_chunk=2).indices.tolist()
[[0, 1], [2, 1]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from train.metrics import TIES, Ties


@dataclass(frozen=True)
class TopK:
    """Per query: the k best scores (descending) and their candidate indices."""

    values: torch.Tensor  # (n_queries, k)
    indices: torch.Tensor  # (n_queries, k) int64


def block_scores(queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """The one place scores are computed: (n_q, d) x (n_c, d) -> (n_q, n_c) inner products."""
    return queries @ candidates.T


def _lexsort(
    values: torch.Tensor, indices: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Order each row by (value descending, index ascending) and keep the first k."""
    by_index = torch.argsort(indices, dim=1, stable=True)
    values = torch.gather(values, 1, by_index)
    indices = torch.gather(indices, 1, by_index)
    order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
    return torch.gather(values, 1, order), torch.gather(indices, 1, order)


#: Columns per segment of the segmented top-k (see `_block_topk`).
SEGMENT = 128


def _block_topk(
    scores: torch.Tensor, k: int, offset: int, segment: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k of one block with ties broken by lower index.

    A full-row `torch.topk` makes several passes over the block; instead each row is cut into
    segments of `segment` columns, and only the k segments with the highest maxima are searched
    (one cheap max pass, then a top-k over k * segment values). Every value above the k-th best
    lies in those segments; the result is exact unless a value *equal* to the k-th best may sit
    in a segment left out, or ties cross the cut: those rows (found from the (k+1)-th values,
    with no extra pass) are redone with a stable sort of the whole row.
    """
    n = scores.shape[1]
    k = min(k, n)
    segment = segment or SEGMENT
    n_seg = n // segment
    if k < n and n_seg >= 2 * (k + 1):
        head = n_seg * segment
        maxima = scores[:, :head].unflatten(1, (n_seg, segment)).amax(dim=2)
        seg_values, seg_index = torch.topk(maxima, k + 1, dim=1)
        # Columns of the k best segments, plus the tail that fits no segment.
        columns = (
            seg_index[:, :k, None] * segment + torch.arange(segment, device=scores.device)
        ).flatten(1)
        if head < n:
            tail = torch.arange(head, n, device=scores.device).expand(scores.shape[0], -1)
            columns = torch.cat([columns, tail], dim=1)
        picked = torch.gather(scores, 1, columns)
        values, where = torch.topk(picked, k + 1, dim=1)
        indices = torch.gather(columns, 1, where)
        # Exact when the best segment left out is below the k-th value and no tie crosses the cut.
        ambiguous = (seg_values[:, k] >= values[:, k - 1]) | (values[:, k] == values[:, k - 1])
        values, indices = values[:, :k], indices[:, :k]
    else:
        # One more than needed: torch.topk picks arbitrarily among values equal to the k-th, and
        # the (k+1)-th value tells whether such a tie crosses the cut.
        values, indices = torch.topk(scores, min(k + 1, n), dim=1)
        ambiguous = None
        if k < n:
            ambiguous = values[:, k] == values[:, k - 1]
            values, indices = values[:, :k], indices[:, :k]
    if ambiguous is not None and bool(ambiguous.any()):
        rows = ambiguous.nonzero().squeeze(1)
        ordered = torch.sort(scores[rows], dim=1, descending=True, stable=True)
        values[rows] = ordered.values[:, :k]
        indices[rows] = ordered.indices[:, :k]
    return values, indices + offset


def _count_at_least(
    scores: torch.Tensor, threshold: torch.Tensor, strict: bool, buffer: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, how many scores are >= (or > when strict) the row's threshold; reuses `buffer`."""
    if buffer is None or buffer.shape != scores.shape:
        buffer = torch.empty(scores.shape, dtype=torch.bool, device=scores.device)
    (torch.gt if strict else torch.ge)(scores, threshold, out=buffer)
    # Summing bools as int8 into int16 is several times faster than the default int64 sum.
    wide = torch.int16 if scores.shape[1] < 2**15 else torch.int32
    return buffer.view(torch.int8).sum(dim=1, dtype=wide), buffer


def _merge(
    running: tuple[torch.Tensor, torch.Tensor] | None,
    block: tuple[torch.Tensor, torch.Tensor],
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    if running is None:
        return _lexsort(block[0], block[1], k)
    return _lexsort(torch.cat([running[0], block[0]], 1), torch.cat([running[1], block[1]], 1), k)


def dense_topk(queries: torch.Tensor, candidates: torch.Tensor, k: int) -> TopK:
    """Reference: the full score matrix, stable-sorted descending (for tests and small pools)."""
    scores = block_scores(queries, candidates)
    ordered = torch.sort(scores, dim=1, descending=True, stable=True)
    k = min(k, scores.shape[1])
    return TopK(ordered.values[:, :k], ordered.indices[:, :k])


def _bounds(n: int, chunk: int) -> list[tuple[int, int]]:
    if chunk < 1:
        raise ValueError(f"chunk sizes must be >= 1, found {chunk}")
    return [(s, min(s + chunk, n)) for s in range(0, n, chunk)]


class _CandidateBlocks:
    """Candidate blocks of one size: the last block is padded with zero rows.

    BLAS may round a dot product differently for differently shaped products (a one-column
    product goes through a matrix-vector kernel, for instance), so identical candidates in
    blocks of different sizes could score an ulp apart and break ties. With every block the same
    shape, a query's scores are all computed alike. The size is balanced (ceil(n / blocks)) so the
    padding is small.
    """

    def __init__(self, candidates: torch.Tensor, chunk: int) -> None:
        if chunk < 1:
            raise ValueError(f"chunk sizes must be >= 1, found {chunk}")
        n = candidates.shape[0]
        blocks = -(-n // chunk)
        self.size = -(-n // blocks)
        self.bounds = _bounds(n, self.size)
        self.candidates = candidates
        self._padded_last: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.bounds)

    def scores(
        self, queries: torch.Tensor, b: int, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(n_q, block b's real candidates) scores, computed on a full-size block.

        `out` (n_q, size), when given, receives the product: reusing one buffer saves the page
        faults of a fresh allocation per block, which cost a third of a CPU matmul.
        """
        c0, c1 = self.bounds[b]
        block = self.candidates[c0:c1]
        if c1 - c0 < self.size:
            if self._padded_last is None:
                pad = block.new_zeros((self.size - (c1 - c0), block.shape[1]))
                self._padded_last = torch.cat([block, pad])
            block = self._padded_last
        if out is None or out.shape != (queries.shape[0], self.size):
            full = block_scores(queries, block)
        else:
            full = torch.mm(queries, block.T, out=out)
        return full[:, : c1 - c0] if c1 - c0 < self.size else full


def _check(queries: torch.Tensor, candidates: torch.Tensor, k: int) -> None:
    if queries.ndim != 2 or candidates.ndim != 2 or queries.shape[1] != candidates.shape[1]:
        raise ValueError(
            f"expected queries (n_q, d) and candidates (n_c, d) with the same d; found "
            f"{tuple(queries.shape)} and {tuple(candidates.shape)}"
        )
    if k < 1:
        raise ValueError(f"k must be >= 1, found {k}")
    if candidates.shape[0] == 0:
        raise ValueError("there are no candidates to search")


def chunked_topk(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    k: int,
    *,
    query_chunk: int = 1024,
    candidate_chunk: int = 8192,
    progress: Callable[[int], None] | None = None,
) -> TopK:
    """Top-k candidates of every query, computed block by block (see the module docstring)."""
    _check(queries, candidates, k)
    k = min(k, candidates.shape[0])
    blocks = _CandidateBlocks(candidates, candidate_chunk)
    values, indices = [], []
    buffer: torch.Tensor | None = None
    for q0, q1 in _bounds(queries.shape[0], query_chunk):
        q = queries[q0:q1]
        if buffer is None or buffer.shape[0] != q.shape[0]:
            buffer = q.new_empty((q.shape[0], blocks.size))
        running = None
        for b, (c0, _) in enumerate(blocks.bounds):
            running = _merge(running, _block_topk(blocks.scores(q, b, buffer), k, c0), k)
        assert running is not None
        values.append(running[0])
        indices.append(running[1])
        if progress is not None:
            progress(q1 - q0)
    return TopK(torch.cat(values), torch.cat(indices))


@dataclass(frozen=True)
class Relevance:
    """Candidate indices per query in CSR form: query i's are `indices[indptr[i]:indptr[i+1]]`."""

    indptr: np.ndarray  # (n_queries + 1,) int64
    indices: np.ndarray  # int64, sorted and unique within each query

    @classmethod
    def from_lists(cls, lists: Sequence[Sequence[int]]) -> Relevance:
        rows = [np.unique(np.asarray(list(x), dtype=np.int64)) for x in lists]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([r.size for r in rows])
        indices = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        return cls(indptr, indices.astype(np.int64))

    @property
    def n_queries(self) -> int:
        return len(self.indptr) - 1

    def row(self, i: int) -> np.ndarray:
        return self.indices[self.indptr[i] : self.indptr[i + 1]]

    def counts(self) -> np.ndarray:
        return np.diff(self.indptr)

    def row_ids(self) -> np.ndarray:
        """The query of each entry of `indices`."""
        return np.repeat(np.arange(self.n_queries, dtype=np.int64), self.counts())

    def without(self, other: Relevance) -> Relevance:
        """Entries of self that are not in `other` (same queries)."""
        lists = [np.setdiff1d(self.row(i), other.row(i)) for i in range(self.n_queries)]
        return Relevance.from_lists(lists)


@dataclass(frozen=True)
class RankSearch:
    """What `rank_search` found: top-k, each positive's score, and the exact ranks."""

    topk: TopK
    positives: Relevance
    positive_scores: torch.Tensor  # aligned with positives.indices
    ahead: torch.Tensor  # (n_q,) non-positives scoring >= (pessimistic) or > the best positive
    n_valid: np.ndarray  # (n_q,) candidates taking part for each query (excluded ones removed)
    ties: str

    def top(self, k: int) -> TopK:
        """The first k of the kept top-k (excluded candidates, scored -inf, may pad the end)."""
        return TopK(self.topk.values[:, :k], self.topk.indices[:, :k])

    @property
    def ranks(self) -> np.ndarray:
        """1-based rank of each query's best positive."""
        return 1 + self.ahead.cpu().numpy().astype(np.int64)

    def positions(self, depth: int) -> list[np.ndarray]:
        """Per query, the positions of its positives that are <= `depth` (ascending).

        The first positive's position is the exact rank; a later positive's position comes from the
        top-k values, exact whenever it is within the top-k the search kept (`depth` must be at most
        k minus the query's number of positives; `rank_search` sizes k for that).
        """
        values = self.topk.values.cpu().numpy()
        kept = values.shape[1]
        scores = self.positive_scores.cpu().numpy()
        ranks = self.ranks
        out: list[np.ndarray] = []
        for i in range(self.positives.n_queries):
            s = np.sort(scores[self.positives.indptr[i] : self.positives.indptr[i + 1]])[::-1]
            n_pos = s.size
            if depth > kept - n_pos and kept < self.n_valid[i]:
                raise ValueError(
                    f"positions to depth {depth} need a top-k of at least {depth + n_pos}, "
                    f"the search kept {kept}"
                )
            found = [int(ranks[i])] if ranks[i] <= depth else []
            top = np.sort(values[i])  # ascending, for searchsorted
            s_sorted = np.sort(s)
            for j in range(1, n_pos):
                if self.ties == "pessimistic":
                    all_ge = top.size - np.searchsorted(top, s[j], side="left")
                    pos_ge = s_sorted.size - np.searchsorted(s_sorted, s[j], side="left")
                else:
                    all_ge = top.size - np.searchsorted(top, s[j], side="right")
                    pos_ge = s_sorted.size - np.searchsorted(s_sorted, s[j], side="right")
                if all_ge >= kept and kept < self.n_valid[i]:
                    break  # deeper than the kept top-k, so deeper than `depth`
                position = 1 + j + (all_ge - pos_ge)
                if position > depth:
                    break
                found.append(int(position))
            out.append(np.array(found, dtype=np.int64))
        return out


def rank_search(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    positives: Relevance,
    *,
    k: int = 10,
    depth: int = 10,
    ties: Ties = "pessimistic",
    exclude: Relevance | None = None,
    query_chunk: int = 1024,
    candidate_chunk: int = 8192,
    retain_mb: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> RankSearch:
    """Top-k and exact ranks of the positives of every query, block by block.

    `positives` lists each query's relevant candidates (at least one each). `exclude` lists
    candidates that do not take part for a query (e.g. a composed query's own source video); a
    positive is never excluded. The kept top-k is `max(k, depth + most positives of a query)` so
    that `RankSearch.positions(depth)` is exact. Blocks holding positives are computed first (to
    know each query's best positive score) and kept in memory up to `retain_mb` (default: two
    blocks), else recomputed.
    """
    _check(queries, candidates, k)
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, found {ties!r}")
    n_q, n_c = queries.shape[0], candidates.shape[0]
    if positives.n_queries != n_q:
        raise ValueError(f"positives cover {positives.n_queries} queries, expected {n_q}")
    counts = positives.counts()
    if n_q and counts.min() < 1:
        raise ValueError(f"query {int(np.argmin(counts))} has no positive")
    if positives.indices.size and (positives.indices.min() < 0 or positives.indices.max() >= n_c):
        raise ValueError(f"positive candidate indices must be in [0, {n_c})")
    if exclude is not None:
        exclude = exclude.without(positives)
    kept = min(n_c, max(k, depth + (int(counts.max()) if n_q else 0)))
    device = queries.device
    blocks = _CandidateBlocks(candidates, candidate_chunk)
    c_bounds = blocks.bounds
    size = blocks.size

    p_row_ids = positives.row_ids()
    e_row_ids = exclude.row_ids() if exclude is not None else None
    all_values, all_indices, all_ahead = [], [], []
    buffer: torch.Tensor | None = None
    mask_buffer: torch.Tensor | None = None
    pool: list[torch.Tensor] = []
    n_pooled = 0
    pos_scores = torch.empty(positives.indices.size, dtype=queries.dtype, device=device)
    for q0, q1 in _bounds(n_q, query_chunk):
        q = queries[q0:q1]
        p0, p1 = int(positives.indptr[q0]), int(positives.indptr[q1])
        p_rows = torch.from_numpy(p_row_ids[p0:p1] - q0).to(device)
        p_cols = positives.indices[p0:p1]
        p_block = p_cols // size
        if exclude is not None and e_row_ids is not None:
            e0, e1 = int(exclude.indptr[q0]), int(exclude.indptr[q1])
            e_rows = e_row_ids[e0:e1] - q0
            e_cols = exclude.indices[e0:e1]
        else:
            e_rows = e_cols = np.zeros(0, dtype=np.int64)

        def scores_of(
            b: int, out: torch.Tensor | None = None, q=q, e_rows=e_rows, e_cols=e_cols
        ) -> torch.Tensor:
            c0, c1 = c_bounds[b]
            s = blocks.scores(q, b, out)
            inside = (e_cols >= c0) & (e_cols < c1)
            if inside.any():
                rows = torch.from_numpy(e_rows[inside]).to(device)
                cols = torch.from_numpy(e_cols[inside] - c0).to(device)
                s[rows, cols] = float("-inf")
            return s

        if buffer is None or buffer.shape[0] != q.shape[0]:
            buffer = q.new_empty((q.shape[0], size))
            pool.clear()  # buffers are as tall as the query chunk
            n_pooled = 0
        block_bytes = q.shape[0] * size * q.element_size()
        retain_bytes = 2 * block_bytes if retain_mb is None else retain_mb * 2**20
        # 1. Blocks with positives: each positive's score, from the same products as the counts.
        # Kept blocks live in reused buffers (up to `retain_mb`); the others are recomputed.
        retained: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # block -> (scores, buffer)
        for b in np.unique(p_block).tolist():
            out = None
            if pool:
                out = pool.pop()
            elif (n_pooled + 1) * block_bytes <= retain_bytes:
                out = q.new_empty((q.shape[0], size))
                n_pooled += 1
            s = scores_of(b, out if out is not None else buffer)
            here = np.nonzero(p_block == b)[0]
            sel = torch.from_numpy(here).to(device)
            cols = torch.from_numpy(p_cols[here] - c_bounds[b][0]).to(device)
            pos_scores[p0 + sel] = s[p_rows[sel], cols]
            if out is not None:
                retained[b] = (s, out)
        chunk_pos = pos_scores[p0:p1]
        best = torch.full((q1 - q0,), float("-inf"), dtype=queries.dtype, device=device)
        best = best.scatter_reduce(0, p_rows, chunk_pos, reduce="amax")
        # Positives at or above their query's best score (the ties among positives).
        pos_at_best = torch.zeros(q1 - q0, dtype=torch.long, device=device)
        pos_at_best.index_add_(0, p_rows, (chunk_pos >= best[p_rows]).long())

        # 2. Every block: counts against the best positive, and the running top-k.
        ahead = torch.zeros(q1 - q0, dtype=torch.long, device=device)
        running = None
        threshold = best[:, None]
        strict = ties == "optimistic"
        for b, (c0, _) in enumerate(c_bounds):
            if b in retained:
                s, out = retained.pop(b)
                pool.append(out)  # reusable once this block is done: s is only read below
            else:
                s = scores_of(b, buffer)
            top = _block_topk(s, kept, c0)
            running = _merge(running, top, kept)
            # Scores at or above the threshold are all in the block's top-k unless its last kept
            # value reaches the threshold: count from the top-k, and scan the block only for the
            # rows that need it (few, once a model ranks its positives high).
            over = (top[0] > threshold) if strict else (top[0] >= threshold)
            count = over.sum(dim=1)
            if top[0].shape[1] < s.shape[1]:
                need = over[:, -1]
                n_need = int(need.sum())
                if n_need > s.shape[0] // 4:
                    full, mask_buffer = _count_at_least(s, threshold, strict, mask_buffer)
                    count = torch.where(need, full.long(), count)
                elif n_need:
                    rows = need.nonzero().squeeze(1)
                    part, _ = _count_at_least(s[rows], threshold[rows], strict, None)
                    count[rows] = part.long()
            ahead += count
        if ties == "pessimistic":
            ahead -= pos_at_best
        # optimistic: no positive scores above the best positive, so nothing to subtract
        assert running is not None
        all_values.append(running[0])
        all_indices.append(running[1])
        all_ahead.append(ahead)
        if progress is not None:
            progress(q1 - q0)

    n_excluded = exclude.counts() if exclude is not None else np.zeros(n_q, dtype=np.int64)
    return RankSearch(
        topk=TopK(torch.cat(all_values), torch.cat(all_indices)),
        positives=positives,
        positive_scores=pos_scores,
        ahead=torch.cat(all_ahead),
        n_valid=n_c - n_excluded,
        ties=ties,
    )
