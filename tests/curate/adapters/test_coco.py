"""COCO captions: a real captions file built from the COCO subset, and the detection-file trap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.adapters import detect_format
from curate.errors import ConfigError, InputError
from curate.ingest import IngestOptions, ingest
from curate.workspace import Workspace
from tests.curate.adapters.test_cc3m import assert_records
from tests.curate.adapters.test_generic import read_drafts, rows_by_index

SUBSET = "images/coco_val2017_subset"
INSTANCES = f"{SUBSET}/annotations/instances_val2017.json"
SUGARCREPE = ("annotations/sugar_crepe/replace_obj.json", "annotations/sugar_crepe/swap_att.json")


def build_captions_file(shared_data: Path, folder: Path) -> tuple[Path, dict, list[dict]]:
    """A real COCO captions file: the subset's image entries + their SugarCrepe captions."""
    instances = json.loads((shared_data / INSTANCES).read_text())
    present = {p.name for p in (shared_data / SUBSET / "val2017").iterdir()}
    images = [i for i in instances["images"] if i["file_name"] in present]
    ids = {i["file_name"]: i["id"] for i in images}
    annotations: list[dict] = []
    for name in SUGARCREPE:
        for entry in json.loads((shared_data / name).read_text()).values():
            if entry["filename"] in ids:
                annotations.append(
                    {
                        "image_id": ids[entry["filename"]],
                        "id": len(annotations) + 1,
                        "caption": entry["caption"],
                    }
                )
    document = {
        "info": instances["info"],
        "licenses": instances["licenses"],
        "images": images,
        "annotations": annotations,
    }
    path = folder / "captions_val2017.json"
    path.write_text(json.dumps(document))
    return path, {i["id"]: i for i in images}, annotations


def test_instances_file_is_detected_and_every_annotation_rejected(shared_data: Path) -> None:
    path = shared_data / INSTANCES
    assert detect_format(path) == "coco"
    document = json.loads(path.read_text())
    table = read_drafts("coco", path)
    assert_records(table, list(range(len(document["annotations"]))))
    assert table.num_rows == 742
    assert set(table.column("reject_reason").to_pylist()) == {"malformed_record"}
    message = table.column("reject_message")[0].as_py()
    assert "instances" in message and "captions" in message
    assert json.loads(table.column("raw")[5].as_py()) == document["annotations"][5]


def test_real_captions_t2i(shared_data: Path, tmp_path: Path) -> None:
    path, images, annotations = build_captions_file(shared_data, tmp_path)
    assert len(annotations) == 59 and len(images) == 34
    assert detect_format(path) == "coco"
    table = read_drafts("coco", path)
    assert_records(table, list(range(59)))
    assert table.column("reject_reason").null_count == 59
    for index, row in rows_by_index(table).items():
        annotation = annotations[index]
        assert row["query_text"] == annotation["caption"]
        assert row["target_images"] == [images[annotation["image_id"]]["file_name"]]
        assert row["source_id"] == str(annotation["image_id"])
        assert row["task"] == "caption_retrieval"
        assert row["query_images"] is None and row["target_text"] is None


def test_directions(shared_data: Path, tmp_path: Path) -> None:
    path, _, annotations = build_captions_file(shared_data, tmp_path)
    i2t = read_drafts("coco", path, {"direction": "i2t"}).to_pylist()
    assert i2t[0]["query_images"] and i2t[0]["target_text"] == annotations[0]["caption"]
    assert i2t[0]["query_text"] is None
    both = read_drafts("coco", path, {"direction": "both"})
    assert both.num_rows == 2 * len(annotations)
    assert_records(both, list(range(len(annotations))))
    with pytest.raises(ConfigError, match="direction"):
        read_drafts("coco", path, {"direction": "sideways"})


def test_end_to_end_probes_the_real_images(
    shared_data: Path, tmp_path: Path, workspace: Workspace
) -> None:
    path, images, annotations = build_captions_file(shared_data, tmp_path)
    options = IngestOptions(name="coco", media_root=shared_data / SUBSET / "val2017")
    result = ingest(path, options, workspace)
    assert result.stats["read"] == 59
    assert result.stats["by_pair"] == {"t2i": result.stats["accepted"]}
    rows = result.manifest.read_rows(["record_index", "width", "height"]).to_pylist()
    for row in rows:
        image = images[annotations[row["record_index"]]["image_id"]]
        assert (row["width"], row["height"]) == (image["width"], image["height"])


def test_faulty_annotations(tmp_path: Path) -> None:
    document = {
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2}],
        "annotations": [
            {"image_id": 1, "caption": "a red bus"},
            {"image_id": 7, "caption": "no such image"},
            {"image_id": 2, "caption": "image without a file name"},
            {"image_id": 1, "caption": "   "},
            {"image_id": 1},
            {"image_id": 1, "caption": 5},
            "not an object",
        ],
    }
    path = tmp_path / "captions.json"
    path.write_text(json.dumps(document))
    table = read_drafts("coco", path)
    assert_records(table, list(range(7)))
    reasons = table.column("reject_reason").to_pylist()
    assert reasons == [None, *["malformed_record"] * 2, "empty_text", *["malformed_record"] * 3]
    assert "7" in table.column("reject_message")[1].as_py()
    assert "instances" not in table.column("reject_message")[4].as_py()
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(InputError, match="annotations"):
        read_drafts("coco", path)
    path.write_text('{"images": [')
    with pytest.raises(InputError, match="not valid JSON"):
        read_drafts("coco", path)
