"""WebVid metadata: the real video2dataset CSV and parquet samples."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from curate.adapters import detect_format
from curate.adapters.webvid import duration_seconds
from curate.errors import ConfigError, InputError
from tests.curate.adapters.test_generic import assert_each_record_once, read_drafts, rows_by_index

CSV_PATH = "annotations/webvid/test_webvid.csv"
PARQUET_PATH = "annotations/webvid/video2dataset_benchmark_mp4.parquet"


def test_csv_with_remote_urls(shared_data: Path) -> None:
    path = shared_data / CSV_PATH
    table = read_drafts("webvid", path)  # media root = the file's folder: url layout
    assert_each_record_once(table, 20)
    assert table.column("reject_reason").null_count == 20
    row = rows_by_index(table)[0]
    assert row["source_id"] == "1053841541"
    assert row["query_text"].startswith("Travel blogger shoot a story on top of mountains.")
    assert row["target_video"] == (
        "https://ak.picdn.net/shutterstock/videos/1053841541/preview/stock-footage-travel-blogger"
        "-shoot-a-story-on-top-of-mountains-young-man-holds-camera-in-forest.mp4"
    )
    assert row["target_clip_start"] is None and row["target_clip_end"] is None
    raw = json.loads(row["raw"])
    assert raw["duration"] == "PT00H00M17S"
    assert raw["duration_seconds"] == 17.0
    assert raw["page_dir"] == "027701_027750"
    assert rows_by_index(table)[1]["query_text"] == "Horse grazing - seperated on green screen"


def test_page_dir_layout_when_a_media_root_is_given(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / CSV_PATH
    table = read_drafts("webvid", path, media_root=tmp_path)
    assert rows_by_index(table)[0]["target_video"] == "027701_027750/1053841541.mp4"
    # The option wins over the default, both ways.
    table = read_drafts("webvid", path, {"video_root_layout": "url"}, media_root=tmp_path)
    assert rows_by_index(table)[0]["target_video"].startswith("https://")
    table = read_drafts("webvid", path, {"video_root_layout": "page_dir"})
    assert rows_by_index(table)[2]["target_video"] == "022401_022450/1019039938.mp4"


def test_parquet_with_pandas_index(shared_data: Path) -> None:
    path = shared_data / PARQUET_PATH
    table = read_drafts("webvid", path, batch_rows=30)
    assert_each_record_once(table, 100)
    source = pq.read_table(path).to_pylist()
    rows = rows_by_index(table)
    for index in (0, 57, 99):
        assert rows[index]["source_id"] == str(source[index]["videoid"])
        assert rows[index]["query_text"] == source[index]["name"]
        assert rows[index]["target_video"] == source[index]["contentUrl"]
    raw = json.loads(rows[0]["raw"])
    assert raw["__index_level_0__"] == 3350 and raw["duration_seconds"] == 7.0
    expected = [duration_seconds_py(r["duration"]) for r in source]
    assert [json.loads(r["raw"])["duration_seconds"] for r in table.to_pylist()] == expected


def duration_seconds_py(text: str) -> float:
    """Reference for the real files' "PT00H00M17S" shape."""
    hours, rest = text.removeprefix("PT").split("H")
    minutes, secs = rest.removesuffix("S").split("M")
    return int(hours) * 3600.0 + int(minutes) * 60.0 + float(secs)


def test_column_order_does_not_matter(shared_data: Path, tmp_path: Path) -> None:
    with (shared_data / CSV_PATH).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    order = ["contentUrl", "duration", "page_dir", "name", "page_idx", "videoid"]
    path = tmp_path / "reordered.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=order)
        writer.writeheader()
        writer.writerows(rows)
    assert detect_format(path) == "webvid"
    original = read_drafts("webvid", shared_data / CSV_PATH)
    reordered = read_drafts("webvid", path)
    for column in ("source_id", "query_text", "target_video"):
        assert reordered.column(column).to_pylist() == original.column(column).to_pylist()


def test_faults(tmp_path: Path) -> None:
    path = tmp_path / "faults.csv"
    path.write_text(
        "videoid,name,page_idx,page_dir,duration,contentUrl\n"
        "1,A dog,1,000001_000050,seventeen seconds,https://x/1.mp4\n"
        "2,,1,000001_000050,PT00H00M05S,https://x/2.mp4\n"
        "3,A cat,1,000001_000050,PT00H01M05S,\n"
        ",A cow,1,000001_000050,PT00H00M09S,https://x/4.mp4\n"
        "5,A hen,1,000001_000050,,https://x/5.mp4\n"
    )
    table = read_drafts("webvid", path)
    assert_each_record_once(table, 5)
    rows = rows_by_index(table)
    # An unparseable duration is metadata, not a reason to reject.
    assert rows[0]["reject_reason"] is None
    assert json.loads(rows[0]["raw"])["duration_seconds"] is None
    assert rows[1]["reject_reason"] == "empty_text"
    assert (
        rows[2]["reject_reason"] == "malformed_record" and "contentUrl" in rows[2]["reject_message"]
    )
    assert rows[3]["reject_reason"] == "malformed_record" and "videoid" in rows[3]["reject_message"]
    assert rows[4]["reject_reason"] is None
    # With the local layout a missing URL does not matter.
    rows = rows_by_index(read_drafts("webvid", path, {"video_root_layout": "page_dir"}))
    assert rows[2]["reject_reason"] is None and rows[2]["target_video"] == "000001_000050/3.mp4"


def test_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "no_url.csv"
    path.write_text("videoid,name,page_dir,duration\n1,A dog,000001_000050,PT00H00M17S\n")
    with pytest.raises(
        InputError, match=r"'contentUrl'.*'videoid', 'name', 'page_dir', 'duration'"
    ):
        read_drafts("webvid", path, {"video_root_layout": "url"})
    # The local layout does not need the URL column.
    assert read_drafts("webvid", path, {"video_root_layout": "page_dir"}).num_rows == 1
    with pytest.raises(ConfigError, match="video_root_layout"):
        read_drafts("webvid", path, {"video_root_layout": "flat"})


def test_duration_parsing() -> None:
    values = ["PT00H00M17S", "PT1M5.5S", "P1DT2H", "PT2H", "17", "12.5", "pt00h00m03s", "", "PT",
              "P", "seventeen", None, "PT5X"]  # fmt: skip
    parsed = pl.DataFrame({"d": values}).select(duration_seconds(pl.col("d"))).to_series().to_list()
    assert parsed == [
        17.0,
        65.5,
        93600.0,
        7200.0,
        17.0,
        12.5,
        3.0,
        None,
        None,
        None,
        None,
        None,
        None,
    ]
