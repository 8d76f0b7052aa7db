"""OpenAI-style typed-content JSON Lines: LLaMA-Factory's real v1 multimodal demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.adapters import detect_format
from curate.errors import ConfigError
from curate.ingest import IngestOptions, ingest
from curate.workspace import Workspace
from tests.curate.adapters.test_cc3m import assert_records
from tests.curate.adapters.test_generic import read_drafts

DEMO = "annotations/llava_style/llama_factory_v1_multimodal_demo.jsonl"
IMAGES = "images/llama_factory"


def test_real_demo(shared_data: Path) -> None:
    path = shared_data / DEMO
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-2:] == ["", ""]  # the file ends with a blank line
    records = [json.loads(line) for line in lines if line.strip()]
    assert len(records) == 24
    table = read_drafts(
        "openai-jsonl", path, {"media_strip_prefix": "data/"}, media_root=shared_data / IMAGES
    )
    assert_records(table, list(range(24)))  # the two trailing blank lines are not records
    assert table.num_rows == 48 and table.column("reject_reason").null_count == 48
    rows = table.to_pylist()
    assert rows[0]["query_text"] == "Who are they?"
    assert rows[0]["query_images"] == ["mllm_demo_data/1.jpg"]
    assert rows[0]["target_text"] == "They're Kane and Gretzka from Bayern Munich."
    assert rows[0]["task"] == "instruction"
    for k, record in enumerate(records):
        user, answer = record["messages"][0], record["messages"][1]
        row = rows[2 * k]
        assert row["query_text"] == next(p["value"] for p in user["content"] if p["type"] == "text")
        image = next(p["value"] for p in user["content"] if p["type"] == "image_url")
        assert row["query_images"] == [image.removeprefix("data/")]
        assert (shared_data / IMAGES / row["query_images"][0]).is_file()
        assert row["target_text"] == answer["content"][0]["value"]
        # The follow-up question keeps the conversation's image.
        assert rows[2 * k + 1]["query_images"] == row["query_images"]
    # Without the option the paths stay as written (relative to LLaMA-Factory's root).
    plain = read_drafts("openai-jsonl", path)
    assert plain.column("query_images")[0].as_py() == ["data/mllm_demo_data/1.jpg"]


def test_end_to_end_resolves_the_real_images(shared_data: Path, workspace: Workspace) -> None:
    options = IngestOptions(
        name="v1",
        media_root=shared_data / IMAGES,
        adapter_options={"media_strip_prefix": "data/"},
    )
    result = ingest(shared_data / DEMO, options, workspace)
    stats = result.stats
    # The demo repeats its 6 conversations 4 times: the repeats are duplicates, nothing else.
    lines = (shared_data / DEMO).read_text(encoding="utf-8").splitlines()
    unique = {line for line in lines if line.strip()}
    assert len(unique) == 6
    assert stats["read"] == 48
    assert stats["accepted"] == 2 * len(unique) == stats["by_pair"]["it2t"]
    assert stats["rejected_by_reason"] == {"duplicate_id": 48 - 2 * len(unique)}


def test_faulty_lines(tmp_path: Path) -> None:
    good = {
        "messages": [
            {"role": "system", "content": "You describe images."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is shown?"},
                    {"type": "image_url", "image_url": {"url": "https://x.org/a.jpg"}},
                ],
            },
            {"role": "assistant", "content": "A harbour at dusk."},
            {"role": "user", "content": [{"type": "video", "video": "clips/v.mp4"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Boats leaving."}]},
        ]
    }
    bad_part = {
        "messages": [
            {"role": "user", "content": [{"type": "audio", "value": "a.wav"}]},
            {"role": "assistant", "content": "x"},
        ]
    }
    inline = {
        "messages": [
            {"role": "user", "content": [{"type": "image", "image": "data:image/png;base64,AAA"}]},
            {"role": "assistant", "content": "x"},
        ]
    }
    lines = [json.dumps(good), "{oops", "", json.dumps(bad_part), json.dumps(inline), "[1]"]
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert detect_format(path) == "openai-jsonl"
    table = read_drafts("openai-jsonl", path)
    assert_records(table, [0, 1, 3, 4, 5])
    rows = table.to_pylist()
    assert rows[0]["instruction"] == "You describe images."
    assert rows[0]["query_images"] == ["https://x.org/a.jpg"]
    assert rows[1]["query_text"] is None and rows[1]["query_video"] == "clips/v.mp4"
    assert rows[1]["query_images"] == ["https://x.org/a.jpg"]
    assert rows[1]["target_text"] == "Boats leaving."
    assert rows[2]["reject_reason"] == "malformed_record"
    assert rows[2]["reject_message"].startswith("line 2 is not valid JSON")
    assert rows[2]["raw"] == "{oops"
    assert "audio" in rows[3]["reject_message"]
    assert "data: URL" in rows[4]["reject_message"]
    assert rows[5]["reject_message"].startswith("line 6")
    with pytest.raises(ConfigError):
        read_drafts("openai-jsonl", path, {"strip_prefix": "data/"})
