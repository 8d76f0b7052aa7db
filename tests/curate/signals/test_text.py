"""Text signals: normalised-text hashes, lengths, the repaired flag."""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from curate.signals.text import (
    TEXT_SCHEMA,
    hash64,
    match_hashes,
    normalise_for_match,
    text_signals,
)


def test_normalisation_ignores_case_punctuation_width_and_spacing():
    values = pl.Series(
        ["A  dog, running!", "a dog running", "Ａ DOG — running…", "a cat", "  ", None]
    )
    normalised = normalise_for_match(values).to_list()
    assert normalised[:3] == ["a dog running"] * 3
    assert normalised[3] == "a cat"
    assert normalised[4] is None and normalised[5] is None


def test_text_signals_rows():
    rows = pa.table(
        {
            "id": ["a", "b", "c", "d"],
            "query_text": ["Two dogs in the snow.", "two dogs in the snow", None, "don’t stop"],
            "target_text": [None, None, "A passage, here", "x"],
            "text_repaired": [False, False, False, True],
        }
    )
    table = text_signals(rows)
    assert table.schema == TEXT_SCHEMA
    got = table.to_pylist()
    assert got[0]["text_hash"] == got[1]["text_hash"]
    assert got[0]["query_text_hash"] == hash64("two dogs in the snow")
    assert got[0]["target_text_hash"] is None
    assert got[2]["query_text_hash"] is None and got[2]["text_hash"] is not None
    # The pair hash tells query and target apart: the same text on the other side differs.
    assert got[2]["text_hash"] != hash64("a passage here")
    assert [r["text_chars"] for r in got] == [21, 20, 15, 11]
    assert [r["text_words"] for r in got] == [5, 5, 3, 3]
    assert [r["encoding_repaired"] for r in got] == [False, False, False, True]


def test_match_hashes_skip_short_texts():
    hashes = match_hashes(pl.Series(["a dog", "A man rides a horse.", None]), min_words=4)
    assert hashes[0] == 0 and hashes[2] == 0
    assert hashes[1] == hash64("a man rides a horse")
