"""Text repair and normalisation, vectorised over columns.

Real captions arrive with mojibake (MS MARCO's `donâ€™t`: UTF-8 read as cp1252), stray and non-breaking
whitespace, and sometimes bytes that were already replaced by U+FFFD. We repair what can be repaired
(ftfy's encoding fixer, run only on the few rows that contain suspicious characters so that clean
corpora pay nothing), normalise whitespace and Unicode (NFC), and flag what cannot be repaired.

`clean_series` is the definition; `clean_array` gives the same result on an Arrow column about ten
times faster by running it only on the rows a byte scan finds it could change (most captions are
printable ASCII with single spaces, which every step leaves as they are).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

# Characters that appear in UTF-8-decoded-as-Latin-1/cp1252 mojibake: the Latin-1 supplement and the
# cp1252 punctuation block. Rows without any of them cannot hold that kind of damage.
_SUSPECT_PATTERN = "[\u0080-\u00ff\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013-\u2026\u2030\u2039\u203a\u20ac\u2122]"
REPLACEMENT_CHARACTER = "\ufffd"


@dataclass(frozen=True)
class CleanedText:
    text: pl.Series  # cleaned strings; null where the input was null or became empty
    repaired: pl.Series  # bool: the encoding was repaired (mojibake fixed)
    damaged: pl.Series  # bool: damage remains that cannot be repaired (U+FFFD present)


def repair_encoding(text: str) -> str:
    """Fix mojibake only; leaves legitimate curly quotes, ligatures and case alone.

    >>> repair_encoding("donâ€™t")
    'don’t'
    """
    import ftfy  # only rows that look damaged get here; most runs never import it (~45 ms)

    return unicodedata.normalize("NFC", ftfy.fix_encoding(text))


def clean_series(values: pl.Series) -> CleanedText:
    """Repair and normalise a column of strings.

    Whitespace runs (including non-breaking spaces and newlines) collapse to one space and the ends
    are stripped; empty results become null so that "no text" has one representation.
    """
    values = values.cast(pl.String)
    if values.null_count() == len(values):  # common: a column the format does not have
        none = pl.Series(values.name, [False] * len(values), dtype=pl.Boolean)
        return CleanedText(text=values, repaired=none, damaged=none)
    suspect = values.str.contains(_SUSPECT_PATTERN).fill_null(False)
    repaired = pl.Series(values.name, [False] * len(values), dtype=pl.Boolean)
    if suspect.any():
        indices = suspect.arg_true().to_list()
        originals = values.gather(indices).to_list()
        fixed = [repair_encoding(text) for text in originals]
        changed = [new != old for new, old in zip(fixed, originals, strict=True)]
        values = values.scatter(indices, pl.Series(fixed, dtype=pl.String))
        repaired = repaired.scatter(indices, pl.Series(changed, dtype=pl.Boolean))
    # One query: whitespace runs to one space, strip, empty to null, then look for U+FFFD.
    normalised = pl.col("text").str.replace_all(r"\s+", " ").str.strip_chars()
    out = (
        pl.DataFrame({"text": values})
        .lazy()
        .select(
            pl.when(normalised.str.len_chars() == 0).then(None).otherwise(normalised).alias("text")
        )
        .select(
            pl.col("text").alias(values.name),
            pl.col("text").str.contains(REPLACEMENT_CHARACTER, literal=True).fill_null(False),
        )
        .collect()
    )
    return CleanedText(text=out.to_series(0), repaired=repaired, damaged=out.to_series(1))


@dataclass(frozen=True)
class CleanedArray:
    text: pa.Array  # string; null where the input was null or became empty
    repaired: np.ndarray  # bool
    damaged: np.ndarray  # bool


def clean_array(values: pa.Array) -> CleanedArray:
    """`clean_series` of a string column, computed only on the rows that it could change.

    >>> cleaned = clean_array(pa.array(["a  b", "plain", "", None]))
    >>> cleaned.text.to_pylist()
    ['a b', 'plain', None, None]
    """
    values = _string_array(values)
    n = len(values)
    repaired = np.zeros(n, dtype=bool)
    damaged = np.zeros(n, dtype=bool)
    if values.null_count == n:
        return CleanedArray(values, repaired, damaged)
    rows = np.flatnonzero(_may_change(values))
    if len(rows):
        cleaned = clean_series(pl.Series(values.take(rows)))
        repaired[rows] = cleaned.repaired.to_numpy()
        damaged[rows] = cleaned.damaged.to_numpy()
        values = _scatter(values, rows, _string_array(cleaned.text.to_arrow()))
    # Rows that were already "" (no byte to flag) become null like the cleaned ones.
    offsets, _ = _buffers(values)
    empty = (offsets[1:] == offsets[:-1]) & _valid(values)
    if empty.any():
        values = _string_array(pc.if_else(pa.array(empty), pa.scalar(None, pa.string()), values))
    return CleanedArray(values, repaired, damaged)


def text_stats(values: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Characters and words (spaces + 1) of normalised text as int32 columns (null stays null).

    Counted on the UTF-8 bytes: characters are the bytes that do not continue a character.

    >>> chars, words = text_stats(pa.array(["a cat", "é", None]))
    >>> chars.to_pylist(), words.to_pylist()
    ([5, 1, None], [2, 1, None])
    """
    values = _string_array(values)
    offsets, data = _buffers(values)
    starts = offsets[:-1] - offsets[0]
    ends = offsets[1:] - offsets[0]
    continuing = np.flatnonzero((data & 0xC0) == 0x80)  # rare in most captions
    chars = (ends - starts) - np.bincount(
        np.searchsorted(ends, continuing, side="right"), minlength=len(values)
    )
    # Spaces per row by one pass over the bytes; the rows that have bytes cover them exactly.
    words = np.ones(len(values), dtype=np.int32)
    filled = ends > starts
    if filled.any():
        words[filled] += np.add.reduceat(
            (data == 0x20).view(np.uint8), starts[filled], dtype=np.int32
        )
    mask = ~_valid(values) if values.null_count else None
    return (
        pa.array(chars.astype(np.int32), mask=mask),
        pa.array(words.astype(np.int32), mask=mask),
    )


def _may_change(values: pa.StringArray) -> np.ndarray:
    """Rows that cleaning could change: those with a byte outside printable ASCII (mojibake,
    U+FFFD, Unicode or control whitespace), two spaces in a row, or a space at either end."""
    offsets, data = _buffers(values)
    starts = offsets[:-1] - offsets[0]
    ends = offsets[1:] - offsets[0]
    # Bytes outside 0x20-0x7E wrap around to above 94 when 0x20 is subtracted.
    odd = np.flatnonzero((data - np.uint8(0x20)) > 94)
    doubled = np.flatnonzero((data[1:] == 0x20) & (data[:-1] == 0x20))
    flagged = np.zeros(len(values), dtype=bool)
    for positions in (odd, doubled):
        if len(positions):
            flagged[np.searchsorted(ends, positions, side="right")] = True
    filled = ends > starts
    flagged[filled] |= (data[starts[filled]] == 0x20) | (data[ends[filled] - 1] == 0x20)
    return flagged & _valid(values)


def _string_array(values: pa.Array | pa.ChunkedArray) -> pa.StringArray:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.type != pa.string():
        values = values.cast(pa.string())
    return values


def _buffers(values: pa.StringArray) -> tuple[np.ndarray, np.ndarray]:
    """The offsets of `values` and the bytes they span."""
    n = len(values)
    _, offsets_buffer, data_buffer = values.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32, count=n + 1, offset=values.offset * 4)
    if data_buffer is None:
        return offsets, np.zeros(0, dtype=np.uint8)
    data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]]
    return offsets, data


def _valid(values: pa.Array) -> np.ndarray:
    if values.null_count == 0:
        return np.ones(len(values), dtype=bool)
    return values.is_valid().to_numpy(zero_copy_only=False)


def _scatter(values: pa.StringArray, rows: np.ndarray, new: pa.StringArray) -> pa.StringArray:
    """`values` with `values[rows[i]]` replaced by `new[i]` (`rows` ascending)."""
    mask = np.zeros(len(values), dtype=bool)
    mask[rows] = True
    return _string_array(pc.replace_with_mask(values, pa.array(mask), new))
