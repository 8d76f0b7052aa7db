"""LAION / img2dataset Parquet: the two real img2dataset test files, and the variants in the wild."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.adapters import detect_format
from curate.errors import InputError
from curate.ingest import IngestOptions, ingest
from curate.workspace import Workspace
from tests.curate.adapters.test_cc3m import assert_records
from tests.curate.adapters.test_generic import read_drafts, rows_by_index

TEST_1000 = "annotations/image_text_pairs/img2dataset_test_1000.parquet"
SAMPLE = "annotations/image_text_pairs/img2dataset_sample_image.parquet"


def test_real_url_text_file(shared_data: Path) -> None:
    path = shared_data / TEST_1000
    expected = pq.read_table(path).to_pylist()
    assert len(expected) == 1000 and "__index_level_0__" in expected[0]
    table = read_drafts("laion", path, batch_rows=128)
    assert_records(table, list(range(1000)))
    assert table.column("reject_reason").null_count == 1000
    rows = rows_by_index(table)
    assert (
        rows[0]["query_text"] == "Classical Masterpieces: Xerses & More, Vol. 8 by Various Artists"
    )
    assert rows[0]["target_images"] == [
        "http://direct.rhapsody.com/imageserver/v2/albums/Alb.131805200/images/170x170.jpg"
    ]
    for index, record in enumerate(expected):
        assert rows[index]["query_text"] == record["TEXT"]
        assert rows[index]["target_images"] == [record["URL"]]
        # The leftover pandas index is not part of the record.
        assert json.loads(rows[index]["raw"]) == {"URL": record["URL"], "TEXT": record["TEXT"]}
    assert {r["task"] for r in rows.values()} == {"caption_retrieval"}
    non_ascii = [r for r in rows.values() if not r["query_text"].isascii()]
    assert len(non_ascii) == 64  # NBSP, '®', 'Nenê' ... kept as read
    assert any("\xa0" in r["query_text"] for r in non_ascii)


def test_real_url_txt_file(shared_data: Path) -> None:
    path = shared_data / SAMPLE
    table = read_drafts("laion", path)
    assert_records(table, [0, 1])
    rows = rows_by_index(table)
    assert rows[0]["query_text"] == rows[1]["query_text"] == "Lorem Ipsum"
    hashes = [json.loads(rows[i]["raw"])["sha256hash"] for i in (0, 1)]
    assert hashes[0] != hashes[1]  # the deliberate one-character hash mismatch is in raw


def test_end_to_end_urls_stay_remote(shared_data: Path, workspace: Workspace) -> None:
    stats = ingest(shared_data / TEST_1000, IngestOptions(name="laion"), workspace).stats
    assert stats["read"] == 1000 == stats["accepted"] + stats["rejected"]
    assert stats["by_pair"] == {"t2i": stats["accepted"]}
    assert stats["remote_media"] == stats["accepted"]


def test_variants_and_faults(tmp_path: Path) -> None:
    table = pa.table(
        {
            "key": ["000000000", "000000001", "000000002", "000000003", "000000004"],
            "url": [
                "https://x.org/0.jpg",
                None,
                "  ",
                "https://x.org/3.jpg",
                "https://x.org/4.jpg",
            ],
            "caption": ["a red bus", "no url", "blank url", None, "   "],
            "width": [640, 480, None, 100, 10],
            "similarity": [0.31, 0.28, 0.30, 0.2, 0.1],
            "jpg": [b"\xff\xd8", None, None, None, None],  # img2dataset can embed bytes
        }
    )
    folder = tmp_path / "laion"
    folder.mkdir()
    pq.write_table(table, folder / "part-00000.parquet", row_group_size=2)
    pq.write_table(table.slice(0, 1), folder / "part-00001.parquet")
    assert detect_format(folder / "part-00000.parquet") == "laion"
    drafts = read_drafts("laion", folder, batch_rows=2)
    files = drafts.column("input_file").to_pylist()
    assert files == [str(folder / "part-00000.parquet")] * 5 + [str(folder / "part-00001.parquet")]
    assert drafts.column("record_index").to_pylist() == [0, 1, 2, 3, 4, 0]
    assert drafts.column("reject_reason").to_pylist() == [
        None,
        "malformed_record",
        "malformed_record",
        "empty_text",
        "empty_text",
        None,
    ]
    first = drafts.to_pylist()[0]
    assert first["source_id"] == "000000000"
    assert json.loads(first["raw"]) == {
        "key": "000000000",
        "url": "https://x.org/0.jpg",
        "caption": "a red bus",
        "width": 640,
        "similarity": 0.31,
    }


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = tmp_path / "odd.parquet"
    pq.write_table(pa.table({"url": ["https://x.org/a.jpg"], "title": ["x"]}), path)
    with pytest.raises(InputError, match=r"caption column.*url, title"):
        read_drafts("laion", path)
