"""SugarCrepe: the real swap_att / replace_obj files against the COCO subset's images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.adapters import detect_format
from curate.errors import InputError
from curate.ingest import IngestOptions, ingest
from curate.workspace import Workspace
from tests.curate.adapters.test_cc3m import assert_records
from tests.curate.adapters.test_generic import read_drafts, rows_by_index

SWAP_ATT = "annotations/sugar_crepe/swap_att.json"
REPLACE_OBJ = "annotations/sugar_crepe/replace_obj.json"
VAL2017 = "images/coco_val2017_subset/val2017"


@pytest.mark.parametrize(("relative", "count"), [(SWAP_ATT, 666), (REPLACE_OBJ, 1652)])
def test_real_files(shared_data: Path, relative: str, count: int) -> None:
    path = shared_data / relative
    entries = json.loads(path.read_text())
    assert len(entries) == count
    table = read_drafts("sugarcrepe", path, media_root=shared_data / VAL2017)
    assert_records(table, list(range(count)))
    assert table.column("reject_reason").null_count == count
    rows = rows_by_index(table)
    for index, (key, entry) in enumerate(entries.items()):
        row = rows[index]
        assert row["source_id"] == key
        assert row["query_images"] == [entry["filename"]]
        assert row["target_text"] == entry["caption"]
        assert row["negative_texts"] == [entry["negative_caption"]]
        assert row["task"] == "caption_retrieval"
        assert row["query_text"] is None and row["target_images"] is None
        assert json.loads(row["raw"]) == {key: entry}


def test_known_entry(shared_data: Path) -> None:
    rows = rows_by_index(read_drafts("sugarcrepe", shared_data / SWAP_ATT))
    assert rows[0]["query_images"] == ["000000565045.jpg"]
    assert rows[0]["target_text"] == "Blue bathroom with two white towels hanging by the shower."
    assert rows[0]["negative_texts"] == [
        "White bathroom with two blue towels hanging by the shower."
    ]


def test_end_to_end_missing_images_are_the_cores(shared_data: Path, workspace: Workspace) -> None:
    path = shared_data / SWAP_ATT
    present = {p.name for p in (shared_data / VAL2017).iterdir()}
    entries = json.loads(path.read_text()).values()
    expected = sum(e["filename"] in present for e in entries)
    assert expected == 17
    options = IngestOptions(name="sc", media_root=shared_data / VAL2017)
    stats = ingest(path, options, workspace).stats
    assert stats["read"] == 666
    assert stats["accepted"] == expected
    assert stats["by_pair"] == {"i2t": expected}
    assert stats["rejected_by_reason"] == {"missing_media": 666 - expected}


def test_faults(tmp_path: Path) -> None:
    path = tmp_path / "sc.json"
    path.write_text(
        json.dumps(
            {
                "0": {"filename": "a.jpg", "caption": "a cat", "negative_caption": "a dog"},
                "1": {"filename": "b.jpg", "caption": ""},
                "2": {"caption": "no file"},
                "3": {"filename": "c.jpg", "caption": "x", "negative_caption": ["list"]},
                "4": "not an object",
                "5": {"filename": "d.jpg", "caption": "no negative"},
            }
        )
    )
    assert detect_format(path) == "sugarcrepe"
    table = read_drafts("sugarcrepe", path)
    assert_records(table, list(range(6)))
    assert table.column("reject_reason").to_pylist() == [
        None,
        "empty_text",
        "malformed_record",
        "malformed_record",
        "malformed_record",
        None,
    ]
    assert table.column("negative_texts")[5].as_py() is None
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="SugarCrepe"):
        read_drafts("sugarcrepe", path)
