"""WebVid-CoVR: CSVs in the real header (pth1, pth2, edit, txt1, txt2, scores) and the simple one."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from curate.adapters import detect_format
from curate.errors import InputError
from tests.curate.adapters.test_generic import assert_each_record_once, read_drafts, rows_by_index

#: Rows as WebVid-CoVR writes them (real pairs and edits from the public CoVR validation set).
COVR_ROWS = [
    {
        "pth1": "112/1016223889",
        "pth2": "112/1016223877",
        "edit": "Replace the white lines and dots with green lines and dots.",
        "txt1": "Network of white lines and dots on black",
        "txt2": "Network of green lines and dots on black",
        "scores": "[0.41, 0.43, 0.4]",
    },
    {
        "pth1": "11/4380494",
        "pth2": "16/5975282",
        "edit": "Replace the group of cows and calf with a single white goat.",
        "txt1": "Cows grazing",
        "txt2": "White goat grazing",
        "scores": "[]",
    },
    {"pth1": "91/1007461426", "pth2": "91/1007461447", "edit": "", "txt1": "a", "txt2": "b", "scores": "[]"},
    {"pth1": "", "pth2": "91/1007461447", "edit": "Make it red", "txt1": "a", "txt2": "b", "scores": "[]"},
]  # fmt: skip


def write_csv(path: Path, rows: list[dict], fields: list[str]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_webvid_covr_header(tmp_path: Path) -> None:
    fields = ["txt1", "txt2", "pth1", "pth2", "edit", "scores"]
    path = write_csv(tmp_path / "webvid8m-covr_test.csv", COVR_ROWS, fields)
    assert detect_format(path) == "covr"
    table = read_drafts("covr", path)
    assert_each_record_once(table, 4)
    rows = rows_by_index(table)
    first = rows[0]
    assert first["query_video"] == "112/1016223889.mp4"
    assert first["target_video"] == "112/1016223877.mp4"
    assert first["query_text"] == "Replace the white lines and dots with green lines and dots."
    assert first["task"] == "composed_retrieval"
    assert first["source_id"] is None
    assert json.loads(first["raw"])["txt2"] == "Network of green lines and dots on black"
    assert rows[1]["query_video"] == "11/4380494.mp4"
    assert rows[2]["reject_reason"] == "empty_text"
    assert rows[3]["reject_reason"] == "malformed_record" and "pth1" in rows[3]["reject_message"]


def test_simple_header_with_real_videos(shared_data: Path, tmp_path: Path) -> None:
    rows = [
        {"id": "a1", "source_video": "mmaction2/test.mp4", "target_video": "mmaction2/demo.mp4",
         "edit": "Show arm wrestling instead"},
        {"id": "a2", "source_video": "data-juicer/video1.mp4", "target_video": "data-juicer/video2",
         "edit": "Replace the cartoon with a man"},
    ]  # fmt: skip
    path = write_csv(tmp_path / "pairs.csv", rows, ["id", "source_video", "target_video", "edit"])
    assert detect_format(path) == "covr"
    table = read_drafts("covr", path, media_root=shared_data / "videos")
    got = rows_by_index(table)
    assert got[0]["query_video"] == "mmaction2/test.mp4"  # already has an extension
    assert got[1]["target_video"] == "data-juicer/video2.mp4"
    assert got[0]["source_id"] == "a1"
    for row in got.values():
        assert (shared_data / "videos" / row["query_video"]).is_file()
        assert (shared_data / "videos" / row["target_video"]).is_file()


def test_video_pattern_and_missing_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", COVR_ROWS[:1], ["pth1", "pth2", "edit"])
    table = read_drafts("covr", path, {"video_pattern": "WebVid/8M/train/{path}.mp4"})
    assert table.column("target_video")[0].as_py() == "WebVid/8M/train/112/1016223877.mp4"
    path = write_csv(tmp_path / "no_edit.csv", COVR_ROWS[:1], ["pth1", "pth2", "txt1"])
    with pytest.raises(InputError, match=r"'edit'.*'pth1', 'pth2', 'txt1'"):
        read_drafts("covr", path)
