"""UNITE training JSON, in the structure FusedRetTrainDataset reads, over real shared media."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.adapters import detect_format
from curate.errors import ConfigError, InputError
from tests.curate.adapters.test_generic import assert_each_record_once, read_drafts, rows_by_index
from tests.curate.adapters.test_mmeb import pair_of

CAT = "images/sentence_transformers_image_search/cat.jpg"
DAY = "images/sentence_transformers_image_search/eiffel-tower-day.jpg"
NIGHT = "images/sentence_transformers_image_search/eiffel-tower-night.jpg"
DEMO = "videos/mmaction2/demo.mp4"
DJ1 = "videos/data-juicer/video1.mp4"
DJ2 = "videos/data-juicer/video2.mp4"

RECORDS = [
    {"query": {"text": "two men arm wrestling at a table"}, "candidate": {"video": DEMO},
     "target_modal": "video"},
    {"query": {"text": "<|IMAGE|>", "image": CAT}, "pos": {"text": "a cat lying on a sofa"},
     "target_modal": "text"},
    {"query": {"text": "<|VIDEO|>\nChange the cartoon to a man talking", "video": [DJ1]},
     "candidate": {"video": {"type": "video", "video": DJ2}}, "target_modal": "video"},
    {"query": {"text": "<|IMAGE|> show the same tower at night", "image": [{"type": "image", "image": DAY}]},
     "candidate": {"image": [NIGHT]}, "negative": [{"image": CAT}, {"text": "a tower in daylight"}],
     "target_modal": "image"},
    {"id": 17, "query": {"text": "what is the tallest tower in Paris"},
     "candidate": {"text": "The Eiffel Tower is the tallest structure in Paris."},
     "negative": {"text": "The Louvre is a museum."}},
    {"query": {"text": "two clips", "video": [DJ1, DJ2]}, "candidate": {"text": "x"}},
    {"query": {"text": "no candidate"}},
    {"query": {"text": "   "}, "candidate": {"text": "x"}},
    {"query": {"text": "<|IMAGE|> where is it"}, "candidate": {"text": "x"}},
    ["not", "an", "object"],
    {"query": {"text": "a photo"}, "candidate": {"image": 5}},
]  # fmt: skip


def write(path: Path, records: list) -> Path:
    path.write_text(json.dumps(records, indent=2))
    return path


def test_unite_json(shared_data: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "unite_instruction_tuning.json", RECORDS)
    assert detect_format(path) == "unite"
    table = read_drafts("unite", path, media_root=shared_data)
    assert_each_record_once(table, len(RECORDS))
    rows = rows_by_index(table)
    assert [pair_of(rows[i]) for i in range(5)] == ["t2v", "i2t", "vt2v", "it2i", "t2t"]
    assert [rows[i]["task"] for i in range(5)] == [
        "video_retrieval", "caption_retrieval", "composed_retrieval", "composed_retrieval",
        "text_retrieval",
    ]  # fmt: skip
    assert rows[0]["target_video"] == DEMO
    assert rows[1]["query_text"] is None and rows[1]["query_images"] == [CAT]
    assert rows[2]["query_text"].strip() == "Change the cartoon to a man talking"
    assert (rows[2]["query_video"], rows[2]["target_video"]) == (DJ1, DJ2)
    assert rows[3]["query_text"].strip() == "show the same tower at night"
    assert rows[3]["query_images"] == [DAY] and rows[3]["target_images"] == [NIGHT]
    assert rows[3]["negative_images"] == [CAT]
    assert rows[3]["negative_texts"] == ["a tower in daylight"]
    assert rows[4]["source_id"] == "17" and rows[4]["negative_texts"] == ["The Louvre is a museum."]
    assert json.loads(rows[0]["raw"])["target_modal"] == "video"
    for i in range(5):  # every media path is a real shared file
        for media in (
            (rows[i]["query_images"] or [])
            + (rows[i]["target_images"] or [])
            + [v for v in (rows[i]["query_video"], rows[i]["target_video"]) if v]
        ):
            assert (shared_data / media).is_file(), media

    reasons = {i: (rows[i]["reject_reason"], rows[i]["reject_message"]) for i in range(5, 11)}
    assert reasons[5][0] == "malformed_record" and "2 videos" in reasons[5][1]
    assert reasons[6][0] == "malformed_record" and "candidate" in reasons[6][1]
    assert reasons[7][0] == "empty_text"
    assert reasons[8][0] == "malformed_record" and "<|IMAGE|>" in reasons[8][1]
    assert reasons[9][0] == "malformed_record"
    assert reasons[10][0] == "malformed_record" and "int" in reasons[10][1]


def test_task_option(tmp_path: Path) -> None:
    path = write(tmp_path / "u.json", RECORDS[:2])
    assert set(read_drafts("unite", path, {"task": "instruction"}).column("task").to_pylist()) == {
        "instruction"
    }
    with pytest.raises(ConfigError, match="task"):
        read_drafts("unite", path, {"task": "everything"})


def test_bad_json_and_wrong_top_level(tmp_path: Path) -> None:
    path = tmp_path / "u.json"
    path.write_text(json.dumps(RECORDS)[:-5])
    with pytest.raises(InputError, match="not valid JSON"):
        read_drafts("unite", path)
    path.write_text(json.dumps({"query": {"text": "x"}}))
    with pytest.raises(InputError, match="UNITE JSON list"):
        read_drafts("unite", path)
