"""ActivityNet Captions: the real 2D-TAN val_2 file (4885 videos, 17031 sentences)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from curate.adapters import get_adapter
from curate.adapters.base import AdapterContext
from curate.errors import InputError
from tests.curate.adapters.test_generic import assert_each_record_once, read_drafts, rows_by_index

PATH = "annotations/activitynet_captions/2D-TAN_ActivityNet_test.json"


def test_real_file(shared_data: Path) -> None:
    path = shared_data / PATH
    adapter = get_adapter("activitynet")()
    ctx = AdapterContext(input_path=path, media_root=path.parent, scratch_dir=path.parent)
    table = pa.concat_tables(adapter.read(ctx))
    assert_each_record_once(table, 17031)
    assert table.column("reject_reason").null_count == 17031
    assert pc.count_distinct(table["source_id"]).as_py() == 4885
    assert adapter.clamped_ends == 1

    rows = rows_by_index(table)
    first = rows[0]
    assert first["source_id"] == "v_uqiMw7tQ1Cc"
    assert first["target_video"] == "v_uqiMw7tQ1Cc.mp4"
    assert (first["target_clip_start"], first["target_clip_end"]) == (0.0, 4.14)
    assert first["query_text"].startswith("Two men both dressed in athletic gear")
    # Leading spaces are kept; ingest normalises whitespace.
    assert rows[1]["query_text"].startswith(" One man is holding onto a rope")
    assert (rows[1]["target_clip_start"], rows[1]["target_clip_end"]) == (4.14, 33.36)

    clamped = table.filter(pc.equal(table["source_id"], "v_tXuNa_h804c")).to_pylist()
    assert len(clamped) == 10
    last = clamped[-1]
    assert (last["target_clip_start"], last["target_clip_end"]) == (202.05, 234.93)
    raw = json.loads(last["raw"])
    assert raw["clamped_end_from"] == 234.94 and raw["timestamp"] == [202.05, 234.94]
    assert "clamped_end_from" not in json.loads(clamped[0]["raw"])
    # Every clip lies inside its video (float noise of the file aside).
    durations = {vid: entry["duration"] for vid, entry in json.loads(path.read_text()).items()}
    assert all(
        r["target_clip_end"] <= durations[r["source_id"]] + 1e-6
        and r["target_clip_start"] < r["target_clip_end"]
        for r in table.to_pylist()
    )
    # The video's duration as the file states it travels with every clip of the video.
    assert all(r["annotated_duration"] == durations[r["source_id"]] for r in table.to_pylist())


def test_faults(tmp_path: Path) -> None:
    data = {
        "v_ok": {"duration": 20.0, "timestamps": [[0, 5.5], [5.5, 21]], "sentences": ["A man runs.", " He stops."]},
        "v_bad": {
            "duration": 30.0,
            "timestamps": [[10, 4], [31, 40], [-1, 3], ["a", 3], [2, 2]],
            "sentences": ["end before start", "starts after the end", "negative", "text time", "zero"],
        },
        "v_short": {"duration": 10.0, "timestamps": [[1, 2]], "sentences": ["has one", "   ", "no time"]},
        "v_nosentences": {"duration": 10.0, "timestamps": [[1, 2]]},
        "v_nodur": {"timestamps": [[1, 200]], "sentences": [7]},
    }  # fmt: skip
    path = tmp_path / "val_1.json"
    path.write_text(json.dumps(data))
    adapter = get_adapter("activitynet")
    assert adapter.sniff(path)
    table = read_drafts("activitynet", path, {"video_pattern": "videos/{video_id}.mkv"})
    assert_each_record_once(table, 2 + 5 + 3 + 1 + 1)
    rows = rows_by_index(table)
    assert rows[0]["target_video"] == "videos/v_ok.mkv"
    assert rows[1]["target_clip_end"] == 20.0  # clamped from 21
    reasons = [rows[i]["reject_reason"] for i in range(2, 12)]
    assert reasons == [
        "malformed_record", "malformed_record", "malformed_record", "malformed_record",
        "malformed_record",  # end <= start, start beyond duration, negative, text, zero length
        None, "empty_text", "malformed_record",  # v_short: ok, empty, no timestamp
        "malformed_record",  # v_nosentences: the video entry is one record
        "malformed_record",  # v_nodur: sentence is not text
    ]  # fmt: skip
    assert "not after its start" in rows[2]["reject_message"]
    assert "at or after the video's duration" in rows[3]["reject_message"]
    assert "v_nosentences" in rows[10]["reject_message"]


def test_bad_json_and_wrong_layout(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"v_a": {"duration": 3.0, "timestamps": [[0, 1]], "sentences": ["x"]}')
    with pytest.raises(InputError, match=r"not valid JSON .*line 1"):
        read_drafts("activitynet", path)
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="ActivityNet Captions layout"):
        read_drafts("activitynet", path)


def test_bad_utf8_in_json(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(
        b'{"v_a": {"duration": 9.0, "timestamps": [[0, 3]], "sentences": ["a caf\xe9"]}}'
    )
    table = read_drafts("activitynet", path)
    assert table.column("query_text").to_pylist() == ["a caf\ufffd"]
