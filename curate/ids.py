"""Stable row ids and the bounded-memory set of ids already seen in a manifest."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

# md5 is used for identity, not security: it is stable across versions and machines, and DuckDB
# computes it vectorised (a Python loop over hashlib would dominate the ingest of large TSVs).
_HASH_QUERY = "SELECT md5(key) AS id FROM keys"
# The first 64 bits of an id, the key of duplicate detection; computable from a stored id alone.
_ID64_QUERY = "SELECT ('0x' || left(id, 16))::UBIGINT AS id64 FROM ids"


def _query(sql: str, name: str, table: pa.Table) -> pa.Table:
    con = duckdb.connect(
        config={
            "enable_external_access": False,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    try:
        con.register(name, table)
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()


def hash_keys(keys: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """md5 hex ids of the key strings, and the first 64 bits of each as uint64 (for dedup)."""
    ids = _query(_HASH_QUERY, "keys", pa.table({"key": keys})).column("id").combine_chunks()
    return ids, id_prefixes(ids)


def id_prefixes(ids: pa.Array) -> np.ndarray:
    """The first 64 bits of hex ids as uint64."""
    result = _query(_ID64_QUERY, "ids", pa.table({"id": ids}))
    return result.column("id64").to_numpy()


class SeenIds:
    """A set of 64-bit id prefixes kept as sorted numpy runs (8 bytes an id, no Python objects).

    Runs are merged like a log-structured merge tree, so adding n ids costs O(n log n) overall and a
    membership test is a binary search per run. At 5M ids this is 40 MB, where a Python set of
    the same ids would take several hundred.
    """

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(run) for run in self._runs)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Boolean mask: which of `ids` were added before."""
        found = np.zeros(len(ids), dtype=bool)
        for run in self._runs:
            positions = np.searchsorted(run, ids)
            positions[positions == len(run)] = 0
            found |= run[positions] == ids
        return found

    def add(self, ids: np.ndarray) -> None:
        run = np.unique(np.asarray(ids, dtype=np.uint64))
        if len(run) == 0:
            return
        self._runs.append(run)
        # Merge while the newest run is at least as large as the one before it.
        while len(self._runs) > 1 and len(self._runs[-1]) >= len(self._runs[-2]):
            newest = self._runs.pop()
            self._runs[-1] = np.union1d(self._runs[-1], newest)
