"""Parity of the ingest fast paths with their plain definitions (text cleaning, counts, ids)."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import polars as pl
import pyarrow as pa

from curate.ids import SeenIds, hash_keys, id_prefixes
from curate.text import clean_array, clean_series, text_stats

PIECES = ["cat", "a", " ", "  ", "\t", "\n", "\u00a0", "\u2003", "é", "e\u0301", "donâ€™t",
          "Â½", "\ufffd", "\x1f", "中", "😀", "\u200b", "\r", "\x85", "\u3000"]  # fmt: skip


def _texts(n: int, seed: int) -> list[str | None]:
    rng = random.Random(seed)
    out: list[str | None] = []
    for _ in range(n):
        k = rng.random()
        if k < 0.05:
            out.append(None)
        elif k < 0.1:
            out.append("")
        elif k < 0.5:
            out.append(" ".join(rng.choice(["cat", "dog", "on", "the"]) for _ in range(4)))
        else:
            out.append("".join(rng.choice(PIECES) for _ in range(rng.randint(0, 10))))
    return out


def test_clean_array_equals_clean_series_on_every_row():
    values = pa.array(_texts(3000, seed=1))
    for array in (values, values.slice(7, 2000), pa.array([None, None], pa.string())):
        reference = clean_series(pl.Series(array))
        fast = clean_array(array)
        assert fast.text.to_pylist() == reference.text.to_list()
        assert fast.repaired.tolist() == reference.repaired.to_list()
        assert fast.damaged.tolist() == reference.damaged.to_list()
    assert clean_array(values).repaired.any() and clean_array(values).damaged.any()


def test_text_stats_equal_polars_counts():
    text = clean_array(pa.array(_texts(3000, seed=2))).text
    chars, words = text_stats(text)
    series = pl.Series(text)
    assert chars.to_pylist() == series.str.len_chars().to_list()
    assert words.to_pylist() == (series.str.count_matches(" ") + 1).to_list()


def test_ids_are_md5_and_prefixes_their_first_64_bits():
    keys = ["", "a\x1fb", "é\ufffd"] + [f"key {i}" for i in range(100)]
    ids, id64 = hash_keys(pa.array(keys))
    assert ids.to_pylist() == [hashlib.md5(k.encode()).hexdigest() for k in keys]
    assert id64.tolist() == [int(h[:16], 16) for h in ids.to_pylist()]
    assert id_prefixes(ids.slice(5, 10)).tolist() == id64[5:15].tolist()


def test_seen_ids_add_new_flags_exactly_the_repeats():
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 2**64, 800_000, dtype=np.uint64)  # grows the table past 629k ids
    pool[:2] = [0, 2**64 - 1]
    seen, reference = SeenIds(), set()
    for _ in range(20):
        batch = rng.choice(pool, 50_000)
        expected = []
        for value in batch.tolist():
            expected.append(value in reference)
            reference.add(value)
        assert seen.add_new(batch).tolist() == expected
        assert len(seen) == len(reference)
    probe = np.concatenate([pool[:1000], rng.integers(0, 2**64, 1000, dtype=np.uint64)])
    assert seen.contains(probe).tolist() == [v in reference for v in probe.tolist()]
