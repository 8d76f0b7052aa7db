"""Stable row ids and the bounded-memory set of ids already seen in a manifest."""

from __future__ import annotations

import threading

import duckdb
import numpy as np
import pyarrow as pa

# md5 is used for identity, not security: it is stable across versions and machines. DuckDB hashes a
# column in C++ without the GIL (about 0.4 µs a 100-byte key, where a Python loop over hashlib
# takes 0.7 µs and holds the GIL, so it would also stall the reader and writer threads of ingest).
_HASH_QUERY = "SELECT md5(key) AS id FROM keys"

# Opening a DuckDB connection costs several milliseconds, so each thread keeps one for its lifetime
# (a connection must not be used by two threads at once).
_local = threading.local()

# Hex digit value of each byte ('0'-'9', 'a'-'f', 'A'-'F'); 255 marks a byte that is not one.
_HEX_VALUES = np.full(256, 255, dtype=np.uint8)
_HEX_VALUES[np.frombuffer(b"0123456789", dtype=np.uint8)] = np.arange(10)
_HEX_VALUES[np.frombuffer(b"abcdef", dtype=np.uint8)] = np.arange(10, 16)
_HEX_VALUES[np.frombuffer(b"ABCDEF", dtype=np.uint8)] = np.arange(10, 16)


def _connection() -> duckdb.DuckDBPyConnection:
    con = getattr(_local, "con", None)
    if con is None:
        con = duckdb.connect(
            config={
                "enable_external_access": False,
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
            }
        )
        _local.con = con
    return con


def hash_keys(keys: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """md5 hex ids of the key strings, and the first 64 bits of each as uint64 (for dedup).

    >>> ids, id64 = hash_keys(pa.array(["abc"]))
    >>> ids[0].as_py(), hex(id64[0])
    ('900150983cd24fb0d6963f7d28e17f72', '0x900150983cd24fb0')
    """
    if keys.null_count:
        raise ValueError("hash_keys: a key is null; build keys with every part filled")
    con = _connection()
    con.register("keys", pa.table({"key": keys}))
    try:
        ids = con.sql(_HASH_QUERY).to_arrow_table().column("id").combine_chunks()
    finally:
        con.unregister("keys")
    return ids, id_prefixes(ids)


def id_prefixes(ids: pa.Array) -> np.ndarray:
    """The first 64 bits of 32-digit hex ids as uint64, decoded from the Arrow buffers at once."""
    ids = ids.cast(pa.string())
    n = len(ids)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    if ids.null_count:
        raise ValueError("id_prefixes: an id is null")
    offsets = np.frombuffer(ids.buffers()[1], dtype=np.int32, count=n + 1, offset=ids.offset * 4)
    if not (np.diff(offsets) == 32).all():
        raise ValueError("id_prefixes: ids must be 32 hex digits (md5)")
    data = np.frombuffer(ids.buffers()[2], dtype=np.uint8)
    digits = _HEX_VALUES[data[offsets[0] : offsets[-1]].reshape(n, 32)[:, :16]]
    if (digits == 255).any():
        raise ValueError("id_prefixes: ids must be hex digits")
    packed = (digits[:, 0::2] << 4) | digits[:, 1::2]  # 8 bytes a row, most significant first
    return np.ascontiguousarray(packed).view(">u8").ravel().astype(np.uint64)


class SeenIds:
    """A set of 64-bit id prefixes in a numpy hash table (13-27 bytes an id, no Python objects).

    Open addressing with linear probing, vectorised over a batch. Ids are stored scrambled
    (multiplied by an odd constant, a bijection) and the slot is the top bits of that value; a
    batch is sorted by it first, so the lookups walk the table in order instead of jumping around,
    and ids that want the same slot sit next to each other. Each round moves the ids that found
    another id in their slot one slot on, so the cost of a batch does not grow with the number of
    ids already seen (the table doubles, rarely, when it is 60% full). At 5M ids the table takes
    64 MB, where a Python set of the same ids would take several hundred.
    """

    _MAX_LOAD = 0.6

    def __init__(self) -> None:
        self._bits = 20  # 8 MB to start: no growing for the first 600k ids
        self._table = np.zeros(1 << self._bits, dtype=np.uint64)  # 0 marks an empty slot
        self._size = 0  # ids in the table
        self._has_zero = False  # the id 0 scrambles to 0, the empty mark: it is kept aside

    def __len__(self) -> int:
        return self._size + int(self._has_zero)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Boolean mask: which of `ids` were added before."""
        ids = np.asarray(ids, dtype=np.uint64)
        found = np.zeros(len(ids), dtype=bool)
        if self._has_zero:
            found[ids == 0] = True
        pending = np.sort(ids * _SCRAMBLE)
        pending = pending[pending != 0]
        slots = self._slots(pending)
        hits = []
        while len(pending):
            stored = self._table[slots]
            hits.append(pending[stored == pending])
            probe_on = (stored != pending) & (stored != 0)
            pending, slots = pending[probe_on], self._next(slots[probe_on])
        hit = np.concatenate(hits) if hits else pending
        if len(hit):  # rare: duplicates
            found |= np.isin(ids * _SCRAMBLE, hit)
        return found

    def add(self, ids: np.ndarray) -> None:
        scrambled = _sorted_unique(np.sort(np.asarray(ids, dtype=np.uint64) * _SCRAMBLE))
        if len(scrambled) and scrambled[0] == 0:
            self._has_zero = True
            scrambled = scrambled[1:]
        self._reserve(len(scrambled))
        self._insert(scrambled)

    def add_new(self, ids: np.ndarray) -> np.ndarray:
        """Add `ids`; return which of them are repeats: added before, or earlier in `ids`.

        The same as `contains(ids)`, then marking each id's later occurrences, then `add(ids)`,
        in one pass over the table.

        >>> seen = SeenIds()
        >>> seen.add_new(np.array([7, 8, 7], dtype=np.uint64)).tolist()
        [False, False, True]
        >>> seen.add_new(np.array([8, 9], dtype=np.uint64)).tolist()
        [True, False]
        """
        scrambled = np.asarray(ids, dtype=np.uint64) * _SCRAMBLE
        order = np.argsort(scrambled)
        keys = scrambled[order]
        repeat = np.zeros(len(keys), dtype=bool)
        np.equal(keys[1:], keys[:-1], out=repeat[1:])
        if repeat.any():  # rare: the earliest of equal ids must come first
            order = np.argsort(scrambled, kind="stable")
            keys = scrambled[order]
        seen = repeat.copy()
        zero = keys == 0
        if zero.any():
            seen[zero] |= self._has_zero
            self._has_zero = True
        fresh = np.flatnonzero(~repeat & ~zero)
        self._reserve(len(fresh))
        seen[fresh[self._insert(keys[fresh])]] = True
        repeats = np.empty(len(keys), dtype=bool)
        repeats[order] = seen
        return repeats

    def _slots(self, scrambled: np.ndarray) -> np.ndarray:
        return scrambled >> np.uint64(64 - self._bits)

    def _next(self, slots: np.ndarray) -> np.ndarray:
        return (slots + np.uint64(1)) & np.uint64(len(self._table) - 1)

    def _reserve(self, more: int) -> None:
        while self._size + more > self._MAX_LOAD * len(self._table):
            self._grow()

    def _insert(self, pending: np.ndarray) -> np.ndarray:
        """Insert sorted, distinct, non-zero scrambled ids; return which were present already."""
        present = np.zeros(len(pending), dtype=bool)
        positions = np.arange(len(pending))
        slots = self._slots(pending)
        while len(pending):
            stored = self._table[slots]
            done = stored == pending
            present[positions[done]] = True
            empty = stored == 0
            # Of several ids that want the same empty slot, the first takes it; the others see
            # it taken in the next round. Slots stay sorted (ids only ever move one slot on)
            # except where they wrap around the end of the table.
            first = np.ones(len(slots), dtype=bool)
            np.not_equal(slots[1:], slots[:-1], out=first[1:])
            if len(slots) > 1 and not (slots[1:] >= slots[:-1]).all():
                first[:] = False
                first[np.unique(slots, return_index=True)[1]] = True
            winners = np.flatnonzero(empty & first)
            self._table[slots[winners]] = pending[winners]
            self._size += len(winners)
            done[winners] = True
            keep = ~done
            slots = np.where(empty, slots, self._next(slots))[keep]
            pending = pending[keep]
            positions = positions[keep]
        return present

    def _grow(self) -> None:
        stored = self._table[self._table != 0]
        stored.sort()
        self._bits += 1
        self._table = np.zeros(1 << self._bits, dtype=np.uint64)  # the old one is freed here
        self._size = 0
        # In slices, so that the temporary arrays of a round stay small next to the table.
        for start in range(0, len(stored), 1 << 16):
            self._insert(stored[start : start + (1 << 16)])


#: An odd constant (2^64 / golden ratio): multiplying by it permutes the 64-bit values and spreads
#: any ids over the table (md5 prefixes already are spread; other callers' ids may not be).
_SCRAMBLE = np.uint64(0x9E3779B97F4A7C15)


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    if len(values) < 2:
        return values
    keep = np.empty(len(values), dtype=bool)
    keep[0] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values if keep.all() else values[keep]
