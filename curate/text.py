"""Text repair and normalisation, vectorised over columns.

Real captions arrive with mojibake (MS MARCO's `donâ€™t`: UTF-8 read as cp1252), stray and non-breaking
whitespace, and sometimes bytes that were already replaced by U+FFFD. We repair what can be repaired
(ftfy's encoding fixer, run only on the few rows that contain suspicious characters so that clean
corpora pay nothing), normalise whitespace and Unicode (NFC), and flag what cannot be repaired.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import ftfy
import polars as pl

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
    normalised = values.str.replace_all(r"\s+", " ").str.strip_chars()
    normalised = pl.select(
        pl.when(normalised.str.len_chars() == 0).then(None).otherwise(normalised).alias(values.name)
    ).to_series()
    damaged = normalised.str.contains(REPLACEMENT_CHARACTER, literal=True).fill_null(False)
    return CleanedText(text=normalised, repaired=repaired, damaged=damaged)


def word_counts(values: pl.Series) -> pl.Series:
    """Whitespace-separated word counts of already normalised text (null stays null)."""
    return (values.str.count_matches(" ") + 1).cast(pl.Int32)
