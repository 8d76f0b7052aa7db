"""Recipe predicates: a whitelist grammar, re-emitted with quoted names and bound values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from curate.db import connect
from curate.errors import ConfigError
from curate.predicate import Parameters, check_columns, parse_predicate

ROWS: list[dict[str, Any]] = [
    {"id": 0, "clip_score": 0.10, "pair": "t2i", "source": "coco", "query_chars": 12,
     "query_text": "a dog", "negative_texts": ["a cat"], "near_dup_keep": True},
    {"id": 1, "clip_score": 0.35, "pair": "i2t", "source": "COCO-val", "query_chars": 40,
     "query_text": "O'Brien's cat", "negative_texts": [], "near_dup_keep": False},
    {"id": 2, "clip_score": None, "pair": "t2t", "source": "msmarco", "query_chars": 7,
     "query_text": None, "negative_texts": None, "near_dup_keep": None},
    {"id": 3, "clip_score": 0.50, "pair": "t2v", "source": "webvid", "query_chars": 300,
     "query_text": "Waves at dusk", "negative_texts": ["a dog", "rain"], "near_dup_keep": True},
]  # fmt: skip
COLUMNS = set(ROWS[0])

# (predicate, the same condition in Python; None counts as false like SQL's WHERE)
CASES: list[tuple[str, Callable[[dict[str, Any]], bool]]] = [
    ("clip_score >= 0.3", lambda r: r["clip_score"] is not None and r["clip_score"] >= 0.3),
    ("clip_score IS NULL", lambda r: r["clip_score"] is None),
    ("NOT clip_score IS NULL AND clip_score < .4", lambda r: r["clip_score"] is not None and r["clip_score"] < 0.4),
    ("pair IN ('t2i', 'i2t')", lambda r: r["pair"] in ("t2i", "i2t")),
    ("pair NOT IN ('t2i', 'i2t')", lambda r: r["pair"] not in ("t2i", "i2t")),
    ("query_chars BETWEEN 10 AND 50", lambda r: 10 <= r["query_chars"] <= 50),
    ("query_chars NOT BETWEEN 10 AND 50", lambda r: not 10 <= r["query_chars"] <= 50),
    ("lower(source) LIKE 'coco%'", lambda r: r["source"].lower().startswith("coco")),
    ("source ILIKE 'COCO'", lambda r: r["source"].lower() == "coco"),
    ("source NOT LIKE 'c%'", lambda r: not r["source"].startswith("c")),
    ("query_text = 'O''Brien''s cat'", lambda r: r["query_text"] == "O'Brien's cat"),
    ("length(query_text) > 5 OR pair == 't2t'", lambda r: (r["query_text"] is not None and len(r["query_text"]) > 5) or r["pair"] == "t2t"),
    ("query_chars * 2 + 1 >= 81 - -1", lambda r: r["query_chars"] * 2 + 1 >= 82),
    ("query_chars % 2 = 0 AND query_chars / 4 > 2", lambda r: r["query_chars"] % 2 == 0 and r["query_chars"] / 4 > 2),
    ("list_contains(negative_texts, 'a dog')", lambda r: r["negative_texts"] is not None and "a dog" in r["negative_texts"]),
    ("len(negative_texts) >= 1", lambda r: r["negative_texts"] is not None and len(r["negative_texts"]) >= 1),
    ("coalesce(clip_score, 1.0) > 0.4", lambda r: (1.0 if r["clip_score"] is None else r["clip_score"]) > 0.4),
    ("near_dup_keep = TRUE", lambda r: r["near_dup_keep"] is True),
    ("near_dup_keep IS NOT NULL AND NOT near_dup_keep", lambda r: r["near_dup_keep"] is False),
    ("\"source\" || '-' || pair = 'coco-t2i'", lambda r: f"{r['source']}-{r['pair']}" == "coco-t2i"),
    ("abs(round(clip_score, 1) - 0.4) < 0.05 OR starts_with(source, 'web')", lambda r: (r["clip_score"] is not None and abs(round(r["clip_score"], 1) - 0.4) < 0.05) or r["source"].startswith("web")),
    ("(pair = 't2i' OR pair = 'i2t') AND NOT (clip_score > 0.3)", lambda r: r["pair"] in ("t2i", "i2t") and r["clip_score"] is not None and not r["clip_score"] > 0.3),
    ("greatest(query_chars, 20) = 20 AND upper(pair) != 'T2T'", lambda r: max(r["query_chars"], 20) == 20 and r["pair"] != "t2t"),
]  # fmt: skip


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return pa.Table.from_pylist(ROWS)


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_predicates_select_what_they_say(table: pa.Table, text: str, expected: Callable):
    predicate = parse_predicate(text)
    check_columns(predicate, COLUMNS)
    params = Parameters()
    sql = predicate.to_sql(params)
    con = connect()
    con.register("t", table)
    got = [
        r[0]
        for r in con.execute(f"SELECT id FROM t WHERE {sql} ORDER BY id", params.values).fetchall()
    ]
    assert got == [r["id"] for r in ROWS if expected(r)]


def test_values_are_bound_and_names_quoted():
    predicate = parse_predicate("query_text = 'x'' OR ''1''=''1' AND clip_score > 0.5")
    params = Parameters()
    sql = predicate.to_sql(params)
    assert "OR" not in sql and "0.5" not in sql and "'" not in sql
    assert '"query_text"' in sql and '"clip_score"' in sql
    assert list(params.values.values()) == ["x' OR '1'='1", 0.5]
    assert predicate.columns == {"query_text", "clip_score"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("clip_score > 0.3; DROP TABLE pool", "';' at position 16 is not allowed"),
        ("clip_score > 0.3;", "';'"),
        ("COPY (SELECT 1) TO '/tmp/leak.csv'", "'COPY' at position 0 is a SQL statement keyword"),
        ("source IN (SELECT source FROM pool)", "'SELECT'"),
        ("read_csv('/etc/passwd') IS NOT NULL", "function 'read_csv' at position 0 is not allowed"),
        ("len(read_text('/etc/passwd')) > 0", "function 'read_text'"),
        ("ATTACH '/tmp/x.db'", "'ATTACH'"),
        ("pair = 't2i' UNION ALL", "'UNION'"),
        ("clip_score > 0.3 -- comment", "comments"),
        ("clip_score > 0.3 /* c */", "comments"),
        ("pair = 't2i", "unterminated string"),
        ('pair = "t2i', "unterminated or empty quoted name"),
        ("clip_score >", "expected a column, a value"),
        ("clip_score > 0.3 pair", "unexpected text after the expression"),
        ("pair IN (source)", "IN lists hold literal values only"),
        ("pair @ 1", "unexpected character '@'"),
        ("getenv('HOME') = ''", "function 'getenv'"),
        ("lower() = 'a'", "lower() takes 1 argument(s), found 0"),
        ("(" * 100 + "clip_score" + ")" * 100, "nested deeper than"),
        ("", "is empty"),
        ("x" * 5000, "the limit is"),
    ],
)
def test_hostile_or_broken_predicates_are_rejected_clearly(text: str, message: str):
    with pytest.raises(ConfigError, match=_escape(message)) as caught:
        parse_predicate(text)
    assert "\n" not in str(caught.value)


def test_unknown_columns_are_named():
    predicate = parse_predicate("clip_score > 0.3 AND bogus = 1")
    with pytest.raises(ConfigError, match=r"unknown column\(s\) \['bogus'\]"):
        check_columns(predicate, COLUMNS)


def _escape(text: str) -> str:
    import re

    return re.escape(text)
