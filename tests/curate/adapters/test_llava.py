"""LLaVA conversations (the real LLaVA-Instruct sample) and LLaMA-Factory's mllm_demo.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.adapters import detect_format
from curate.adapters.llava import clean_text
from curate.errors import ConfigError, InputError
from curate.ingest import IngestOptions, ingest
from curate.workspace import Workspace
from tests.curate.adapters.test_cc3m import assert_records
from tests.curate.adapters.test_generic import read_drafts

LLAVA = "annotations/llava_style/llava_instruct_100.json"
MLLM_DEMO = "images/llama_factory/mllm_demo.json"


def drafts_of(table, index: int) -> list[dict]:
    return [r for r in table.to_pylist() if r["record_index"] == index]


def test_real_llava_instruct(shared_data: Path) -> None:
    path = shared_data / LLAVA
    records = json.loads(path.read_text())
    assert len(records) == 100
    table = read_drafts("llava", path, batch_rows=100)
    assert_records(table, list(range(100)))
    # One draft per (human, gpt) pair: 61 records of 5 pairs, 38 of 4, 1 of 1.
    assert table.num_rows == sum(len(r["conversations"]) // 2 for r in records) == 458
    assert table.column("reject_reason").null_count == 458
    starts = ends = 0
    for index, record in enumerate(records):
        turns = record["conversations"]
        first = turns[0]["value"]
        starts += first.startswith("<image>\n")
        ends += first.endswith("\n<image>")
        for k, row in enumerate(drafts_of(table, index)):
            assert row["task"] == "instruction"
            assert row["source_id"] == record["id"]
            # Every turn carries the conversation's image (see the adapter's docstring).
            assert row["query_images"] == [record["image"]]
            assert row["query_text"] == turns[2 * k]["value"].replace("<image>", "").strip()
            assert "<image>" not in row["query_text"]
            assert row["target_text"] == turns[2 * k + 1]["value"].strip()
            assert json.loads(row["raw"])["conversations"] == turns[2 * k : 2 * k + 2]
    assert (starts, ends) == (46, 54)
    first = drafts_of(table, 0)[0]
    assert first["query_text"] == "What is the man doing in the back of the pickup truck?"
    assert first["query_images"] == ["000000379143.jpg"]


def test_first_turn_only(shared_data: Path) -> None:
    table = read_drafts("llava", shared_data / LLAVA, {"turns": "first"})
    assert table.num_rows == 100
    assert_records(table, list(range(100)))
    with pytest.raises(ConfigError, match="turns"):
        read_drafts("llava", shared_data / LLAVA, {"turns": "some"})


def test_real_llama_factory_demo(shared_data: Path) -> None:
    path = shared_data / MLLM_DEMO
    records = json.loads(path.read_text())
    table = read_drafts("llava", path)
    assert_records(table, list(range(6)))
    assert table.num_rows == 12 and table.column("reject_reason").null_count == 12
    rows = table.to_pylist()
    assert rows[0]["query_text"] == "Who are they?"
    assert rows[0]["target_text"] == "They're Kane and Gretzka from Bayern Munich."
    # Record 0 lists the same image twice (one per <image> token): one image per query.
    assert rows[0]["query_images"] == rows[1]["query_images"] == ["mllm_demo_data/1.jpg"]
    assert rows[1]["query_text"] == "What are they doing?"
    # Record 1's second question has no token: it keeps the conversation's image.
    assert rows[3]["query_images"] == ["mllm_demo_data/2.jpg"]
    # Records 3-5 are the Chinese versions of 0-2, with the same images.
    assert [r["query_images"] for r in rows[6:]] == [r["query_images"] for r in rows[:6]]
    assert not rows[6]["query_text"].isascii()
    for record in records:
        assert sum(m["content"].count("<image>") for m in record["messages"]) == len(
            record["images"]
        )


def test_end_to_end_with_real_images(shared_data: Path, workspace: Workspace) -> None:
    result = ingest(shared_data / MLLM_DEMO, IngestOptions(name="demo"), workspace)
    assert result.stats["read"] == 12 == result.stats["accepted"]
    assert result.stats["by_pair"] == {"it2t": 12}
    rows = result.manifest.read_rows(["query_images", "width", "height", "record_index"])
    first = rows.to_pylist()[0]
    assert first["query_images"] == [
        str(shared_data.resolve() / "images/llama_factory/mllm_demo_data/1.jpg")
    ]
    assert (first["width"], first["height"]) == (300, 168)


def test_llava_images_absent_are_missing_media(shared_data: Path, workspace: Workspace) -> None:
    stats = ingest(shared_data / LLAVA, IngestOptions(name="llava"), workspace).stats
    assert stats["read"] == 458
    assert stats["rejected_by_reason"] == {"missing_media": 458}


def test_faulty_conversations(tmp_path: Path) -> None:
    records = [
        {"id": "ok", "image": "a.jpg", "conversations": [
            {"from": "system", "value": "Answer briefly."},
            {"from": "human", "value": "<image>\nWhat is it?"},
            {"from": "gpt", "value": "A cat."},
        ]},
        {"id": "dangling", "image": "b.jpg", "conversations": [
            {"from": "human", "value": "<image>\nFirst?"},
            {"from": "gpt", "value": "One."},
            {"from": "human", "value": "And then?"},
        ]},
        {"id": "empty-answer", "image": "c.jpg", "conversations": [
            {"from": "human", "value": "<image>"},
            {"from": "gpt", "value": "  "},
        ]},
        {"id": "tokens", "images": ["d.jpg"], "conversations": [
            {"from": "human", "value": "<image><image> compare"},
            {"from": "gpt", "value": "Same."},
        ]},
        {"id": "no-turns", "image": "e.jpg"},
        {"id": "text-only", "conversations": [
            {"from": "human", "value": "What is 2+2?"},
            {"from": "gpt", "value": "4"},
        ]},
        {"id": "bad-role", "conversations": [{"from": "robot", "value": "beep"}]},
        {"id": "answer-first", "image": "f.jpg", "conversations": [
            {"from": "gpt", "value": "Hello!"},
            {"from": "human", "value": "<image>\nWhat is this?"},
            {"from": "gpt", "value": "A dog."},
        ]},
        {"id": "image-only", "image": "g.jpg", "conversations": [
            {"from": "human", "value": "<image>"},
            {"from": "gpt", "value": "A bird on a branch."},
        ]},
        "not an object",
    ]  # fmt: skip
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(records))
    assert detect_format(path) == "llava"
    table = read_drafts("llava", path)
    assert_records(table, list(range(10)))
    by = {i: drafts_of(table, i) for i in range(10)}
    assert by[0][0]["instruction"] == "Answer briefly."
    assert by[0][0]["query_images"] == ["a.jpg"] and by[0][0]["target_text"] == "A cat."
    assert [r["reject_reason"] for r in by[1]] == [None, "malformed_record"]
    assert "no answer" in by[1][1]["reject_message"]
    assert [r["reject_reason"] for r in by[2]] == ["empty_text"]
    assert "2 <image> tokens but 1 image" in by[3][0]["reject_message"]
    assert by[4][0]["reject_reason"] == "malformed_record"
    assert by[5][0]["reject_reason"] is None and by[5][0]["query_images"] is None
    assert "robot" in by[6][0]["reject_message"]
    assert [r["reject_reason"] for r in by[7]] == ["malformed_record", None]
    assert by[8][0]["query_text"] is None and by[8][0]["query_images"] == ["g.jpg"]
    assert by[9][0]["reject_reason"] == "malformed_record"
    path.write_text(json.dumps({"conversations": []}))
    with pytest.raises(InputError, match="JSON list"):
        read_drafts("llava", path)


def test_clean_text() -> None:
    assert clean_text("<image>\nDescribe it.") == "Describe it."
    assert clean_text("Describe it.\n<image>") == "Describe it."
    assert clean_text("Compare <image> and <image> now") == "Compare and now"
    assert clean_text(" <image> ") is None
