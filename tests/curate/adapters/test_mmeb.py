"""MMEB-train parquet, built in the real layout with real MMEB texts and real shared images."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.adapters import detect_format
from curate.errors import ConfigError, InputError
from curate.schema import modality_of, pair_code
from tests.curate.adapters.test_generic import assert_each_record_once, read_drafts, rows_by_index

CAT = "sentence_transformers_image_search/cat.jpg"
DOGS = "sentence_transformers_image_search/two_dogs_in_snow.jpg"
DAY = "sentence_transformers_image_search/eiffel-tower-day.jpg"
NIGHT = "sentence_transformers_image_search/eiffel-tower-night.jpg"
COCO = "coco_val2017_subset/val2017/000000010092.jpg"


def row(
    qry: str, qry_image: str, pos: str, pos_image: str = "", neg: str = "", neg_image: str = ""
) -> dict:
    return {
        "qry": qry,
        "qry_image_path": qry_image,
        "pos_text": pos,
        "pos_image_path": pos_image,
        "neg_text": neg,
        "neg_image_path": neg_image,
    }


#: One row per kind of MMEB-train subset, with the subset's real instruction text.
ROWS = {
    "ImageNet_1K": row("<|image_1|>\nRepresent the given image for classification\n", CAT, "tabby, tabby cat"),
    "OK-VQA": row(
        "<|image_1|>\nRepresent the given image with the following question: What is in the image\n",
        CAT, "A cat",
    ),
    "MSCOCO_t2i": row(
        "Find me an everyday image that matches the given caption: Two dogs playing in the snow.\n",
        "", "<|image_1|>\nRepresent the given image.\n", DOGS,
        "<|image_1|>\nRepresent the given image.\n", CAT,
    ),
    "NIGHTS": row(
        "<|image_1|>\nFind a day-to-day image that looks similar to the provided image.\n", DAY,
        "<|image_1|>\nRepresent the given image.\n", NIGHT,
    ),
    "CIRR": row(
        "<|image_1|>\nGiven an image, find a similar everyday image with the described changes: "
        "show it at night\n", DAY, "<|image_1|>\nRepresent the given image.\n", NIGHT,
    ),
    "WebQA": row(
        "Find a Wikipedia image that answers this question: What does the Eiffel Tower look like at night?\n",
        "", "<|image_1|>\nRepresent the given Wikipedia image with related text information: "
        "Eiffel Tower at night. The tower is lit: gold lights.", NIGHT,
    ),
    "N24News": row(
        "<|image_1|>\nRepresent the given news image with the following caption for domain "
        "classification: A plate of food on a table.\n", COCO, "Food", neg="Sports",
    ),
}  # fmt: skip
EXPECTED_PAIRS = ["i2t", "it2t", "t2i", "i2i", "it2i", "t2it", "it2t"]


def write_parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def pair_of(draft: dict) -> str:
    query = modality_of(
        has_text=draft["query_text"] is not None,
        has_image=bool(draft["query_images"]),
        has_video=draft["query_video"] is not None,
    )
    target = modality_of(
        has_text=draft["target_text"] is not None,
        has_image=bool(draft["target_images"]),
        has_video=draft["target_video"] is not None,
    )
    return pair_code(query, target)


def test_modalities_instructions_and_negatives(shared_data: Path, tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "mixed.parquet", list(ROWS.values()))
    assert detect_format(path) == "mmeb"
    table = read_drafts("mmeb", path, media_root=shared_data / "images")
    assert_each_record_once(table, len(ROWS))
    assert table.column("reject_reason").null_count == len(ROWS)
    drafts = [rows_by_index(table)[i] for i in range(len(ROWS))]
    assert [pair_of(d) for d in drafts] == EXPECTED_PAIRS
    for draft in drafts:  # every path resolves to a real shared image
        for path_ in (draft["query_images"] or []) + (draft["target_images"] or []):
            assert (shared_data / "images" / path_).is_file()

    imagenet, okvqa, coco_t2i, nights, cirr, webqa, news = drafts
    assert imagenet["instruction"] == "Represent the given image for classification"
    assert imagenet["query_text"] is None and imagenet["target_text"] == "tabby, tabby cat"
    assert okvqa["instruction"] == "Represent the given image with the following question"
    assert okvqa["query_text"] == "What is in the image"
    assert coco_t2i["instruction"] == "Find me an everyday image that matches the given caption"
    assert coco_t2i["query_text"] == "Two dogs playing in the snow."
    assert coco_t2i["target_text"] is None and coco_t2i["target_images"] == [DOGS]
    assert coco_t2i["negative_images"] == [CAT] and coco_t2i["negative_texts"] is None
    assert nights["instruction"].startswith("Find a day-to-day image")
    assert cirr["query_text"] == "show it at night" and cirr["query_images"] == [DAY]
    # Only the first colon splits: the target text keeps its own.
    assert webqa["target_text"] == "Eiffel Tower at night. The tower is lit: gold lights."
    assert news["negative_texts"] == ["Sports"]
    assert news["query_text"] == "A plate of food on a table."
    # The raw record keeps the target prompt the draft drops.
    assert json.loads(coco_t2i["raw"])["pos_text"] == "<|image_1|>\nRepresent the given image.\n"
    # No subset: the task cannot be known.
    assert {d["task"] for d in drafts} == {"retrieval"} and imagenet["source_id"] is None


def test_subset_from_folder_layout(tmp_path: Path) -> None:
    root = tmp_path / "MMEB-train"
    for subset in ("ImageNet_1K", "OK-VQA", "CIRR", "MSCOCO_t2i"):
        write_parquet(root / subset / "original-00000-of-00001.parquet", [ROWS[subset]] * 3)
    table = read_drafts("mmeb", root)
    by_subset = {r["source_id"]: r["task"] for r in table.to_pylist()}
    assert by_subset == {
        "CIRR": "composed_retrieval",
        "ImageNet_1K": "classification",
        "MSCOCO_t2i": "caption_retrieval",
        "OK-VQA": "vqa",
    }
    assert len(set(table.column("input_file").to_pylist())) == 4
    assert table.column("record_index").to_pylist() == [0, 1, 2] * 4


def test_options(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "okvqa.parquet", [ROWS["OK-VQA"], ROWS["ImageNet_1K"]])
    table = read_drafts("mmeb", path, {"subset": "OK-VQA"})
    assert set(table.column("task").to_pylist()) == {"vqa"}
    assert set(table.column("source_id").to_pylist()) == {"OK-VQA"}
    table = read_drafts("mmeb", path, {"instruction_split": "none", "task": "classification"})
    drafts = table.to_pylist()
    assert drafts[0]["instruction"] is None
    assert drafts[0]["query_text"] == (
        "Represent the given image with the following question: What is in the image"
    )
    assert drafts[1]["query_text"] == "Represent the given image for classification"
    assert drafts[0]["task"] == "classification"
    with pytest.raises(ConfigError, match="instruction_split"):
        read_drafts("mmeb", path, {"instruction_split": "semicolon"})


def test_faults(tmp_path: Path) -> None:
    rows = [
        row("<|image_1|>\nRepresent the given image for classification\n", "", "tench"),
        row(
            "Find me an everyday image that matches the given caption: ", "", "<|image_1|>\nx", CAT
        ),
        row("<|image_1|>\nRepresent the given image", CAT, "", ""),
        row(
            "<|image_1|>\nRepresent the given image",
            CAT,
            "<|image_1|>\nRepresent the given image.",
            "",
        ),
        row("What is this?", "", "a cat"),
    ]
    path = write_parquet(tmp_path / "faults.parquet", rows)
    table = read_drafts("mmeb", path)
    assert_each_record_once(table, 5)
    got = rows_by_index(table)
    assert (
        got[0]["reject_reason"] == "malformed_record"
        and "qry_image_path" in got[0]["reject_message"]
    )
    assert got[1]["reject_reason"] == "empty_text"
    assert got[2]["reject_reason"] == "empty_text" and "positive" in got[2]["reject_message"]
    assert (
        got[3]["reject_reason"] == "malformed_record"
        and "pos_image_path" in got[3]["reject_message"]
    )
    # A text-only query without an instruction stays query text.
    assert got[4]["query_text"] == "What is this?" and got[4]["instruction"] is None


def test_missing_columns(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "bad.parquet", [{"qry": "x", "pos_text": "y"}])
    with pytest.raises(InputError, match=r"'qry_image_path'.*'pos_image_path'.*'qry', 'pos_text'"):
        read_drafts("mmeb", path)
    # Negatives are optional.
    path = write_parquet(
        tmp_path / "noneg.parquet",
        [{"qry": "Find: a dog", "qry_image_path": "", "pos_text": "", "pos_image_path": DOGS}],
    )
    assert read_drafts("mmeb", path).column("negative_texts")[0].as_py() is None
