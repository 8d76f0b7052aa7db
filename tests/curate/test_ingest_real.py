"""Every format end to end through `ingest` on the real files in ../shared/data.

Expected counts are computed here from the raw files independently of the adapters, and every
manifest must satisfy the nothing-lost invariant (read = accepted + rejected, every record index once).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate.ingest import IngestOptions, ingest
from tests.curate.test_ingest import assert_nothing_lost


def run(path: Path, workspace, name: str, **kw):
    result = ingest(path, IngestOptions(name=name, **kw), workspace)
    assert_nothing_lost(result)
    return result


def test_cc3m_tsv(shared_data: Path, workspace):
    path = shared_data / "annotations/cc3m/Validation_GCC-1.1.0-Validation.first2000.tsv"
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    result = run(path, workspace, "cc3m")  # detected, not named
    assert result.manifest.ingest_info["format"] == "cc3m"
    assert result.stats["read"] == len(lines)
    assert result.stats["accepted"] == len(lines)  # duplicate captions have different URLs
    rows = result.manifest.read_rows(
        columns=["query_text", "target_images", "media_remote", "pair"]
    )
    caption, url = lines[0].split("\t")
    assert rows.column("query_text")[0].as_py() == " ".join(caption.split())
    assert rows.column("target_images")[0].as_py() == [url]
    assert set(rows.column("pair").to_pylist()) == {"t2i"}
    assert all(rows.column("media_remote").to_pylist())


def test_laion_parquet_and_its_duplicate(shared_data: Path, workspace):
    folder = shared_data / "annotations/image_text_pairs"
    big = run(folder / "img2dataset_test_1000.parquet", workspace, "laion")
    assert big.stats["read"] == pq.read_metadata(folder / "img2dataset_test_1000.parquet").num_rows
    small = run(
        folder / "img2dataset_sample_image.parquet", workspace, "laion-sample", format="laion"
    )
    # The two rows hold the same URL and text (only their sha256 column differs).
    assert small.stats["read"] == 2 and small.stats["rejected_by_reason"] == {"duplicate_id": 1}


def test_msmarco_triples_repair_mojibake(shared_data: Path, workspace):
    path = shared_data / "annotations/msmarco_splade_toy/triplets_raw.tsv"
    result = run(path, workspace, "msmarco", format="msmarco")
    assert result.stats["read"] == 100 and result.stats["accepted"] == 100
    assert result.stats["text_repaired"] > 0
    texts = " ".join(
        t or "" for r in result.manifest.read_rows(columns=["query_text", "target_text"]).to_pylist()
        for t in r.values()
    )  # fmt: skip
    assert "â€" not in texts and "Â½" not in texts


def test_sugarcrepe_with_the_coco_subset(shared_data: Path, workspace):
    path = shared_data / "annotations/sugar_crepe/swap_att.json"
    images = shared_data / "images/coco_val2017_subset/val2017"
    records = json.loads(path.read_text())
    present = {p.name for p in images.iterdir()}
    expected = sum(1 for r in records.values() if r["filename"] in present)
    result = run(path, workspace, "sugarcrepe", media_root=images)
    assert result.stats["read"] == len(records)
    assert result.stats["accepted"] == expected > 0
    assert result.stats["rejected_by_reason"] == {"missing_media": len(records) - expected}
    row = result.manifest.read_rows().to_pylist()[0]
    assert row["pair"] == "i2t" and row["negative_texts"] and row["width"] > 0


def test_coco_detection_file_is_not_taken_for_captions(shared_data: Path, workspace):
    path = shared_data / "images/coco_val2017_subset/annotations/instances_val2017.json"
    annotations = len(json.loads(path.read_text())["annotations"])
    result = run(path, workspace, "coco-instances", format="coco")
    assert result.stats["accepted"] == 0
    assert result.stats["rejected_by_reason"] == {"malformed_record": annotations}


def test_msrvtt_csv_without_videos_is_all_accounted_for(shared_data: Path, workspace):
    path = shared_data / "annotations/msrvtt/MSRVTT_JSFUSION_test.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter=";"))
    result = run(path, workspace, "msrvtt", split="test")
    assert result.stats["read"] == len(rows) == 1000
    # The videos are not shipped: every row is kept in the ledger, none is lost.
    assert result.stats["rejected_by_reason"] == {"missing_media": 1000}
    first = result.manifest.read_ledger().to_pylist()[0]
    assert rows[0]["video_id"] in first["message"]


def test_webvid_csv_and_parquet_are_remote(shared_data: Path, workspace):
    folder = shared_data / "annotations/webvid"
    csv_result = run(folder / "test_webvid.csv", workspace, "webvid")
    assert csv_result.stats["read"] == 20 and csv_result.stats["remote_media"] == 20
    parquet = run(
        folder / "video2dataset_benchmark_mp4.parquet", workspace, "webvid-pq", format="webvid"
    )
    assert parquet.stats["read"] == 100
    assert parquet.stats["by_pair"] == {"t2v": parquet.stats["accepted"]}


def test_webvid_durations_come_from_the_csv_for_unprobed_urls(shared_data: Path, workspace):
    path = shared_data / "annotations/webvid/test_webvid.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        records = list(csv.DictReader(handle))
    expected = {}
    for record in records:  # "PT00H00M17S", parsed here independently of the adapter
        h, m, s = (
            int(x) for x in re.fullmatch(r"PT(\d+)H(\d+)M(\d+)S", record["duration"]).groups()
        )
        expected[record["videoid"]] = float(3600 * h + 60 * m + s)
    result = run(path, workspace, "webvid")
    rows = result.manifest.read_rows(columns=["source_id", "duration", "media"]).to_pylist()
    assert {r["source_id"]: r["duration"] for r in rows} == expected
    # Nothing was probed: the media item keeps no duration of its own.
    assert all(r["media"][0]["remote"] and r["media"][0]["duration"] is None for r in rows)


def test_activitynet_clips(shared_data: Path, workspace):
    path = shared_data / "annotations/activitynet_captions/2D-TAN_ActivityNet_test.json"
    data = json.loads(path.read_text())
    sentences = sum(len(v["sentences"]) for v in data.values())
    result = run(path, workspace, "anet", probe=False)
    assert result.stats["read"] == sentences == 17031
    assert result.stats["rejected_by_reason"].get("missing_media") == result.stats["rejected"]
    # v_tXuNa_h804c's last segment ends past the video: kept, clamped, and counted.
    assert result.stats["adapter_changes"] == {"segment_end_clamped_to_duration": 1}


def test_llava_and_llama_factory_conversations(shared_data: Path, workspace):
    llava = run(shared_data / "annotations/llava_style/llava_instruct_100.json", workspace, "llava")
    assert llava.stats["accepted"] == 0  # the COCO train images are not shipped
    assert llava.stats["rejected_by_reason"] == {"missing_media": llava.stats["read"]}
    demo = shared_data / "images/llama_factory/mllm_demo.json"
    result = run(demo, workspace, "mllm-demo", format="llava")
    assert result.stats["accepted"] > 0
    assert set(result.stats["by_pair"]) <= {"it2t", "t2t"}


def test_openai_jsonl_with_its_repo_relative_paths(shared_data: Path, workspace):
    path = shared_data / "annotations/llava_style/llama_factory_v1_multimodal_demo.jsonl"
    records = [line for line in path.read_text().splitlines() if line.strip()]
    result = run(
        path,
        workspace,
        "openai",
        media_root=shared_data / "images/llama_factory/mllm_demo_data",
        adapter_options={"media_strip_prefix": "data/mllm_demo_data/"},
    )
    assert result.stats["accepted"] > 0
    assert len(records) == 24
    inputs = {r["input_file"] for r in result.manifest.read_rows().to_pylist()}
    assert inputs == {str(path.resolve())}


@pytest.mark.parametrize(
    ("file", "prefix"),
    [
        ("demo-dataset-videos.jsonl", "../../tests/ops/data/"),
        ("process_video_on_ray-demo-dataset.jsonl", "./videos/"),
    ],
)
def test_generic_mapping_on_data_juicer_videos(
    shared_data: Path, workspace, file: str, prefix: str
):
    path = shared_data / "videos/data-juicer" / file
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    result = run(
        path,
        workspace,
        "dj",
        format="generic",
        adapter_options={
            "query_text": "text",
            "target_video": "videos",
            "strip_tokens": "<__dj__video>",
            "media_strip_prefix": prefix,
        },
    )
    assert result.stats["read"] == len(records)
    assert result.stats["accepted"] == len(records)
    rows = result.manifest.read_rows().to_pylist()
    assert all("<__dj__video>" not in r["query_text"] for r in rows)
    assert {r["codec"] for r in rows} == {"h264"}


def test_files_of_a_folder_that_gave_no_records_are_listed(shared_data: Path, workspace, tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "test_webvid.csv").symlink_to(shared_data / "annotations/webvid/test_webvid.csv")
    (folder / "notes.md").write_text("about this corpus")  # documentation: not a data file
    (folder / "LICENSE").write_text("CC BY")
    (folder / "SHA256SUMS.sha256").write_text("0 test_webvid.csv")
    (folder / "empty.csv").write_text("")  # no records: listed, not fatal
    (folder / "stray.txt").write_text("a file webvid does not read\n")
    (folder / "clips").mkdir()
    (folder / "clips" / "a.mp4").write_bytes(b"")  # media: not a data file
    result = run(folder, workspace, "webvid-folder", format="webvid")
    assert result.stats["read"] == 20 and result.stats["files_with_records"] == 1
    assert result.stats["files_without_records"] == {
        "count": 2,
        "files": ["empty.csv", "stray.txt"],
    }
