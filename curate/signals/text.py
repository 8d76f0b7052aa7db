"""Text signals: a hash of the normalised text (for exact-duplicate and leak checks), lengths, and
the repaired-encoding flag that ingest recorded.

"Normalised" here is stricter than ingest's cleaning: Unicode NFKC, lower case, punctuation and
symbols dropped, whitespace collapsed. "A dog, running!" and "a dog running" hash the same; words
and their order still matter. Hashes are the first 8 bytes of BLAKE2b as uint64 (stable across
machines and versions, unlike polars' or Python's own hashes). polars is imported when text is
processed, so a CLIP-only run never loads it.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    import polars as pl

TEXT_SIGNAL_VERSION = 1

TEXT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text_hash", pa.uint64()),  # of normalised query and target text together
        pa.field("query_text_hash", pa.uint64()),
        pa.field("target_text_hash", pa.uint64()),
        pa.field("text_chars", pa.int32()),  # query + target, characters of the cleaned text
        pa.field("text_words", pa.int32()),
        pa.field("encoding_repaired", pa.bool_()),  # ingest repaired mojibake in this row
    ]
)

#: Manifest columns the text signal reads.
TEXT_INPUT_COLUMNS = ("id", "query_text", "target_text", "text_repaired")

_SEPARATOR = "\x1f"  # unit separator: cannot occur in normalised text


def normalise_for_match(values: pl.Series) -> pl.Series:
    """NFKC, lower case, punctuation/symbols removed, whitespace collapsed; empty becomes null.

    >>> import polars as pl
    >>> normalise_for_match(pl.Series(["A  dog, running!", "¡¿", None])).to_list()
    ['a dog running', None, None]
    """
    import polars as pl

    text = (
        values.cast(pl.String)
        .str.normalize("NFKC")
        .str.to_lowercase()
        .str.replace_all(r"[\p{P}\p{S}]+", " ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )
    return pl.select(pl.when(text.str.len_chars() > 0).then(text).alias(values.name)).to_series()


def hash64(text: str) -> int:
    """Stable 64-bit hash of a string (BLAKE2b, 8-byte digest)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def hash_series(values: pl.Series) -> pa.Array:
    """uint64 hashes of a string column; null stays null."""
    return pa.array([None if v is None else hash64(v) for v in values.to_list()], pa.uint64())


def word_count(values: pl.Series) -> pl.Series:
    """Whitespace-separated words (0 for null or blank text)."""
    import polars as pl

    words = (
        values.cast(pl.String)
        .str.strip_chars()
        .str.split(" ")
        .list.eval(pl.element().filter(pl.element().str.len_chars() > 0))
    )
    return words.list.len().fill_null(0).cast(pl.Int32)


def text_signals(rows: pa.Table) -> pa.Table:
    """TEXT_SCHEMA rows for manifest rows (which need the columns in TEXT_INPUT_COLUMNS)."""
    import polars as pl

    frame = pl.from_arrow(rows.select(list(TEXT_INPUT_COLUMNS)))
    assert isinstance(frame, pl.DataFrame)
    query = normalise_for_match(frame["query_text"])
    target = normalise_for_match(frame["target_text"])
    both = pl.select(
        pl.when(query.is_not_null() | target.is_not_null())
        .then(pl.concat_str([query.fill_null(""), target.fill_null("")], separator=_SEPARATOR))
        .alias("both")
    ).to_series()
    query_raw = frame["query_text"].cast(pl.String)
    target_raw = frame["target_text"].cast(pl.String)
    chars = query_raw.str.len_chars().fill_null(0) + target_raw.str.len_chars().fill_null(0)
    words = word_count(query_raw) + word_count(target_raw)
    return pa.table(
        {
            "id": rows.column("id"),
            "text_hash": hash_series(both),
            "query_text_hash": hash_series(query),
            "target_text_hash": hash_series(target),
            "text_chars": pa.array(chars.cast(pl.Int32).to_numpy(), pa.int32()),
            "text_words": pa.array(words.cast(pl.Int32).to_numpy(), pa.int32()),
            "encoding_repaired": rows.column("text_repaired").cast(pa.bool_()),
        },
        schema=TEXT_SCHEMA,
    )


def match_hashes(values: pl.Series, *, min_words: int) -> np.ndarray:
    """Normalised-text hashes for matching as uint64, 0 where the text has fewer than `min_words`
    words (short texts such as class labels or "yes" match everywhere and prove nothing)."""
    normalised = normalise_for_match(values)
    enough = (word_count(normalised.fill_null("")) >= min_words).to_numpy()
    hashes = hash_series(normalised).fill_null(0).to_numpy(zero_copy_only=False)
    return np.where(enough, hashes, np.uint64(0)).astype(np.uint64)
