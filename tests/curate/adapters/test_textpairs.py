"""Text pairs: the real MS MARCO triples (with their mojibake) and NLI JSON Lines built from real text."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from curate.adapters import detect_format, get_adapter
from curate.errors import ConfigError
from curate.ingest import IngestOptions, ingest
from curate.workspace import Workspace
from tests.curate.adapters.test_cc3m import assert_records
from tests.curate.adapters.test_generic import read_drafts, rows_by_index

TRIPLETS = "annotations/msmarco_splade_toy/triplets_raw.tsv"
COLLECTION = "annotations/msmarco_splade_toy/full_collection_raw.tsv"
#: UTF-8 read as cp1252 and re-encoded: 'â\x80\x99' for '’', 'Â½' for '½'.
MOJIBAKE = re.compile("[ÂÃâ][\x80-\xbf]|Â")


def triples(shared_data: Path) -> list[list[str]]:
    text = (shared_data / TRIPLETS).read_text(encoding="utf-8")
    return [line.split("\t") for line in text.split("\n") if line]


def test_real_msmarco_triples_pass_mojibake_through(shared_data: Path) -> None:
    expected = triples(shared_data)
    assert len(expected) == 100 and {len(r) for r in expected} == {3}
    table = read_drafts("msmarco", shared_data / TRIPLETS)
    assert_records(table, list(range(100)))
    assert table.column("reject_reason").null_count == 100
    rows = rows_by_index(table)
    assert rows[0]["query_text"] == "is a little caffeine ok during pregnancy"
    assert rows[0]["target_text"].startswith("We donâ\x80\x99t know a lot about the effects")
    assert "1Â½ 8-ounce cups" in rows[0]["target_text"]
    assert rows[0]["negative_texts"] == [expected[0][2]]
    assert rows[0]["task"] == "text_retrieval"
    assert rows[0]["query_images"] is None and rows[0]["target_images"] is None
    for index, (query, positive, negative) in enumerate(expected):
        assert (rows[index]["query_text"], rows[index]["target_text"]) == (query, positive)
        assert rows[index]["negative_texts"] == [negative]
    damaged = [i for i, r in rows.items() if MOJIBAKE.search(json.dumps(r, ensure_ascii=False))]
    assert len(damaged) == 35  # as read: the core repairs it
    assert json.loads(rows[7]["raw"]) == dict(
        zip(("query", "positive", "negative"), expected[7], strict=True)
    )


def test_msmarco_ingest_repairs_the_mojibake(shared_data: Path, workspace: Workspace) -> None:
    result = ingest(shared_data / TRIPLETS, IngestOptions(name="marco"), workspace)
    assert result.stats["read"] == 100
    assert result.stats["by_pair"] == {"t2t": result.stats["accepted"]}
    assert result.stats["text_repaired"] == 35
    rows = result.manifest.read_rows(["record_index", "target_text"]).to_pylist()
    first = next(r for r in rows if r["record_index"] == 0)
    assert "don’t" in first["target_text"] and "1½" in first["target_text"]


def test_msmarco_pairs_and_faults(tmp_path: Path) -> None:
    path = tmp_path / "mixed.tsv"
    path.write_text(
        "what is a cat\ta small feline\n"  # a pair
        "what is a dog\ta canine\ta feline\n"  # a triple
        "just one field\n"
        "a\tb\tc\td\n"
        "\tan answer without question\n"
        "a query\tthe positive\t \n",  # blank negative: no hard negative
        encoding="utf-8",
    )
    table = read_drafts("msmarco", path)
    assert_records(table, list(range(6)))
    rows = rows_by_index(table)
    assert rows[0]["negative_texts"] is None and rows[0]["target_text"] == "a small feline"
    assert rows[1]["negative_texts"] == ["a feline"]
    assert [rows[i]["reject_reason"] for i in (2, 3, 4)] == [
        "malformed_record",
        "malformed_record",
        "empty_text",
    ]
    assert "found 4" in rows[3]["reject_message"]
    assert json.loads(rows[3]["raw"]) == {"fields": ["a", "b", "c", "d"]}
    assert rows[5]["reject_reason"] is None and rows[5]["negative_texts"] is None


def test_msmarco_sniff_leaves_id_files_alone(shared_data: Path, tmp_path: Path) -> None:
    sniff = get_adapter("msmarco").sniff
    assert sniff(shared_data / TRIPLETS)
    assert not sniff(shared_data / COLLECTION)  # pid<TAB>passage
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("what is a cat\ta small feline\nwhat is a dog\ta canine\n")
    assert detect_format(pairs) == "msmarco"
    labelled = tmp_path / "sts.tsv"
    labelled.write_text("a man eats\ta person eats\t4.5\n")
    assert not sniff(labelled)


def passages(shared_data: Path) -> list[str]:
    """Real sentences from the MS MARCO toy collection."""
    lines = (shared_data / COLLECTION).read_text(encoding="utf-8").splitlines()
    return [line.split("\t", 1)[1].split(". ")[0] for line in lines[:12]]


def test_nli_triplets_and_labelled_pairs(shared_data: Path, tmp_path: Path) -> None:
    s = passages(shared_data)
    lines = [
        json.dumps({"anchor": s[0], "positive": s[1], "negative": s[2]}),
        json.dumps({"premise": s[3], "hypothesis": s[4], "label": 0}),
        json.dumps({"premise": s[3], "hypothesis": s[5], "label": 2}),  # contradiction
        "",
        json.dumps({"sentence1": s[6], "sentence2": s[7], "label": "entailment"}),
        json.dumps({"sentence1": s[6], "sentence2": s[8], "label": "neutral"}),
        '{"anchor": "broken',
        json.dumps({"anchor": s[9]}),
        json.dumps({"anchor": "  ", "positive": s[10]}),
        json.dumps({"premise": s[10], "entailment": s[11], "contradiction": s[0]}),
    ]
    path = tmp_path / "allnli.jsonl"
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    assert detect_format(path) == "nli"
    table = read_drafts("nli", path)
    assert_records(table, [0, 1, 2, 4, 5, 6, 7, 8, 9])  # line 3 is blank
    rows = rows_by_index(table)
    assert (rows[0]["query_text"], rows[0]["target_text"]) == (s[0], s[1])
    assert rows[0]["negative_texts"] == [s[2]]
    assert rows[0]["task"] == "text_retrieval"
    assert (rows[1]["query_text"], rows[1]["target_text"]) == (s[3], s[4])
    assert rows[2]["reject_reason"] == "not_a_pair"
    assert "label 2 is not entailment" in rows[2]["reject_message"]
    assert rows[4]["reject_reason"] is None and rows[4]["target_text"] == s[7]
    assert rows[5]["reject_reason"] == "not_a_pair" and "'neutral'" in rows[5]["reject_message"]
    assert rows[6]["reject_reason"] == "malformed_record"
    assert rows[6]["reject_message"].startswith("line 7 is not valid JSON")
    assert rows[6]["raw"] == '{"anchor": "broken'
    assert rows[7]["reject_reason"] == "malformed_record"
    assert rows[8]["reject_reason"] == "empty_text"
    assert rows[9]["negative_texts"] == [s[0]]
    # Another labelling convention (label 1 = entailment) is an option away.
    relabelled = rows_by_index(read_drafts("nli", path, {"entailment_label": "2"}))
    assert relabelled[2]["reject_reason"] is None and relabelled[1]["reject_reason"] is not None
    with pytest.raises(ConfigError):
        read_drafts("nli", path, {"labels": "0"})
