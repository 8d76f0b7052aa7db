"""DiDeMo: a small file in the real layout (no DiDeMo file ships in the shared data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.adapters import detect_format
from curate.adapters.didemo import chunk_seconds, consensus_span
from curate.errors import InputError
from tests.curate.adapters.test_generic import assert_each_record_once, read_drafts, rows_by_index


def record(annotation_id: int, description: str, video: str, times: list) -> dict:
    """One element as DiDeMo's train_data.json writes it."""
    return {
        "num_segments": 6,
        "annotation_id": annotation_id,
        "description": description,
        "reference_description": None,
        "video": video,
        "times": times,
        "dl_link": f"https://multimedia-commons.s3-us-west-2.amazonaws.com/data/videos/mp4/{video[:3]}/{video}.mp4",
        "train_times": times,
        "context": [0, 5],
    }


VIDEO = "12090392@N02_13482799053_87ef417396.mov"
RECORDS = [
    record(0, "a girl is wearing a white top", VIDEO, [[2, 2], [2, 2], [2, 3], [2, 2]]),
    record(1, "camera zooms in", VIDEO, [[0, 1], [3, 4], [0, 1], [3, 4]]),  # tie -> earliest
    record(2, "the dog jumps", "10015567@N08_3655084291_d8b58466fa.mov", [[4, 5], [5, 5], [1, 1], [0, 0]]),
    record(3, "   ", VIDEO, [[1, 1], [1, 1], [1, 1], [1, 1]]),
    record(4, "end before start", VIDEO, [[3, 1], [3, 3], [3, 3], [3, 3]]),
    record(5, "no times", VIDEO, []),
    record(6, "fractional chunk", VIDEO, [[1.5, 2], [1, 2], [1, 2], [1, 2]]),
    {"annotation_id": 7, "description": "no video", "times": [[0, 0]]},
]  # fmt: skip


def test_consensus_and_seconds() -> None:
    assert consensus_span([(2, 2), (2, 2), (2, 3), (2, 2)]) == (2, 2)
    assert consensus_span([(3, 4), (0, 1), (3, 4), (0, 1)]) == (0, 1)
    assert consensus_span([(4, 5), (5, 5), (1, 1), (0, 0)]) == (0, 0)
    assert consensus_span([(1, 3), (1, 2)]) == (1, 2)
    assert chunk_seconds((0, 0)) == (0.0, 5.0)
    assert chunk_seconds((2, 3)) == (10.0, 20.0)
    assert chunk_seconds((5, 5)) == (25.0, 30.0)


def test_didemo_file(tmp_path: Path) -> None:
    path = tmp_path / "train_data.json"
    path.write_text(json.dumps(RECORDS))
    assert detect_format(path) == "didemo"
    table = read_drafts("didemo", path)
    assert_each_record_once(table, len(RECORDS))
    rows = rows_by_index(table)
    first = rows[0]
    assert first["query_text"] == "a girl is wearing a white top"
    assert first["target_video"] == VIDEO
    assert (first["target_clip_start"], first["target_clip_end"]) == (10.0, 15.0)
    assert first["source_id"] == "0" and first["task"] == "video_retrieval"
    assert json.loads(first["raw"])["times"] == [[2, 2], [2, 2], [2, 3], [2, 2]]
    assert (rows[1]["target_clip_start"], rows[1]["target_clip_end"]) == (0.0, 10.0)
    assert (rows[2]["target_clip_start"], rows[2]["target_clip_end"]) == (0.0, 5.0)
    assert [rows[i]["reject_reason"] for i in range(3, 8)] == [
        "empty_text", "malformed_record", "malformed_record", "malformed_record", "malformed_record",
    ]  # fmt: skip
    assert "[3, 1]" in rows[4]["reject_message"]


def test_video_pattern(tmp_path: Path) -> None:
    path = tmp_path / "val_data.json"
    path.write_text(json.dumps(RECORDS[:1]))
    table = read_drafts("didemo", path, {"video_pattern": "videos/{stem}.mp4"})
    assert (
        table.column("target_video")[0].as_py() == "videos/12090392@N02_13482799053_87ef417396.mp4"
    )


def test_not_a_list(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"annotation_id": 1}))
    with pytest.raises(InputError, match="DiDeMo JSON list"):
        read_drafts("didemo", path)
    path.write_text(json.dumps(RECORDS)[:-10])
    with pytest.raises(InputError, match="not valid JSON"):
        read_drafts("didemo", path)
