"""MSR-VTT: the real JSFusion 1k-A CSV (';', CRLF, no final newline) and the videodatainfo JSON."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from curate.adapters import detect_format
from curate.errors import ConfigError, InputError
from tests.curate.adapters.test_generic import assert_each_record_once, read_drafts, rows_by_index

CSV_PATH = "annotations/msrvtt/MSRVTT_JSFUSION_test.csv"


def real_rows(shared_data: Path) -> list[dict[str, str]]:
    with (shared_data / CSV_PATH).open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter=";"))


def test_jsfusion_csv(shared_data: Path) -> None:
    path = shared_data / CSV_PATH
    assert path.read_bytes().count(b"\r\n") == 1000 and not path.read_bytes().endswith(b"\n")
    table = read_drafts("msrvtt", path)
    assert_each_record_once(table, 1000)
    assert table.column("reject_reason").null_count == 1000
    rows = rows_by_index(table)
    assert rows[0]["source_id"] == "video9770"
    assert rows[0]["query_text"] == "a person is connecting something to system"
    assert rows[0]["target_video"] == "video9770.mp4"
    assert rows[0]["task"] == "video_retrieval"
    assert rows[0]["split"] is None  # the file does not say; `--split test` applies
    assert json.loads(rows[0]["raw"]) == {
        "key": "ret0", "vid_key": "msr9770", "video_id": "video9770",
        "sentence": "a person is connecting something to system",
    }  # fmt: skip
    # The last row has no newline after it and CRLF never leaks into the text.
    assert rows[999]["query_text"] == "bearded guy in grey tshirt talking to the camera"
    assert not any("\r" in r["query_text"] for r in rows.values())
    assert len({r["source_id"] for r in rows.values()}) == 1000


def test_original_comma_delimited_file(shared_data: Path, tmp_path: Path) -> None:
    rows = real_rows(shared_data)[:50]
    rows[3]["sentence"] = "a man, a plan, a canal"  # quoted field with the delimiter inside
    path = tmp_path / "MSRVTT_JSFUSION_test.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["key", "vid_key", "video_id", "sentence"])
        writer.writeheader()
        writer.writerows(rows)
    assert detect_format(path) == "msrvtt"
    table = read_drafts("msrvtt", path, {"video_pattern": "TestVideo/{video_id}.mp4"})
    assert_each_record_once(table, 50)
    got = rows_by_index(table)
    assert got[3]["query_text"] == "a man, a plan, a canal"
    assert got[1]["query_text"] == "a little girl does gymnastics"
    assert got[1]["target_video"] == "TestVideo/video9771.mp4"


def test_csv_faults(tmp_path: Path) -> None:
    path = tmp_path / "faults.csv"
    path.write_text(
        "key;vid_key;video_id;sentence\r\n"
        "ret0;msr1;video1;a dog runs\r\n"
        "ret1;msr2;video2;   \r\n"
        "ret2;msr3;;a cat sleeps\r\n"
        "ret3;msr4;video4;"
    )
    table = read_drafts("msrvtt", path)
    assert_each_record_once(table, 4)
    rows = rows_by_index(table)
    assert rows[0]["reject_reason"] is None
    assert rows[1]["reject_reason"] == "empty_text"
    assert (
        rows[2]["reject_reason"] == "malformed_record" and "video_id" in rows[2]["reject_message"]
    )
    assert rows[2]["query_text"] is None and rows[2]["raw"] is not None
    assert rows[3]["reject_reason"] == "empty_text"


def test_missing_column_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "no_video.csv"
    path.write_text("key;vid_key;caption\nret0;msr1;a dog\n")
    with pytest.raises(InputError, match=r"'video_id'.*'sentence'.*'key', 'vid_key', 'caption'"):
        read_drafts("msrvtt", path)


def test_bad_video_pattern(shared_data: Path) -> None:
    with pytest.raises(ConfigError, match=r"\{video_id\}"):
        read_drafts("msrvtt", shared_data / CSV_PATH, {"video_pattern": "{vid}.mp4"})


def videodatainfo(shared_data: Path) -> dict:
    """A small file in the official layout, with real MSR-VTT captions from the JSFusion CSV."""
    rows = real_rows(shared_data)
    return {
        "info": {"contributor": "Microsoft MSM group", "year": "2016", "version": "1.0"},
        "videos": [
            {"category": 9, "url": "https://www.youtube.com/watch?v=9lZi22qLlEo",
             "video_id": rows[0]["video_id"], "start time": 137.72, "end time": 149.44,
             "split": "test", "id": 9770},
            {"category": 16, "url": "https://www.youtube.com/watch?v=w4JM08PDEng",
             "video_id": "video0", "start time": 184.33, "end time": 195.31,
             "split": "train", "id": 0},
            {"category": 3, "url": "https://www.youtube.com/watch?v=PeUHy0A1GF0",
             "video_id": "video6513", "start time": 41.2, "end time": 52.96,
             "split": "validate", "id": 6513},
        ],
        "sentences": [
            {"caption": rows[0]["sentence"], "video_id": rows[0]["video_id"], "sen_id": 0},
            {"caption": rows[1]["sentence"], "video_id": "video0", "sen_id": 1},
            {"caption": rows[2]["sentence"], "video_id": "video6513", "sen_id": 2},
            {"caption": "  ", "video_id": "video0", "sen_id": 3},
            {"caption": rows[3]["sentence"], "video_id": "video99999", "sen_id": 4},
            {"caption": 42, "video_id": "video0", "sen_id": 5},
            {"caption": rows[4]["sentence"], "sen_id": 6},
        ],
    }  # fmt: skip


def test_videodatainfo_json(shared_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "train_val_videodatainfo.json"
    data = videodatainfo(shared_data)
    path.write_text(json.dumps(data))
    assert detect_format(path) == "msrvtt"
    table = read_drafts("msrvtt", path)
    assert_each_record_once(table, 7)
    rows = rows_by_index(table)
    assert (rows[0]["split"], rows[0]["source_id"]) == ("test", "video9770")
    assert rows[0]["query_text"] == "a person is connecting something to system"
    assert rows[0]["target_video"] == "video9770.mp4"
    assert rows[0]["target_clip_start"] is None  # distributed files are already the clips
    assert rows[1]["split"] == "train" and rows[2]["split"] == "validate"
    assert json.loads(rows[1]["raw"])["video"]["start time"] == 184.33
    assert rows[3]["reject_reason"] == "empty_text"
    assert (
        rows[4]["reject_reason"] == "malformed_record" and "video99999" in rows[4]["reject_message"]
    )
    assert rows[5]["reject_reason"] == "malformed_record"
    assert rows[6]["reject_reason"] == "malformed_record"


def test_bad_json_is_a_clear_error(shared_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "train_val_videodatainfo.json"
    path.write_text(json.dumps(videodatainfo(shared_data))[:-40])
    with pytest.raises(InputError, match="not valid JSON"):
        read_drafts("msrvtt", path)


def test_bad_utf8_becomes_replacement_characters(tmp_path: Path) -> None:
    # One byte of Latin-1 in a UTF-8 file: the row is kept with U+FFFD, which ingest flags as
    # encoding damage for that record only, instead of the whole file failing to read.
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        b"key;vid_key;video_id;sentence\r\nret0;msr1;video1;a caf\xe9 scene\r\nret1;msr2;video2;ok"
    )
    table = read_drafts("msrvtt", path)
    assert_each_record_once(table, 2)
    assert table.column("query_text").to_pylist() == ["a caf\ufffd scene", "ok"]
