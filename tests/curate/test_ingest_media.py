"""Ingest with real media probing: metadata reaches the rows, broken media reaches the ledger."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

import tests.curate.draft_adapter  # noqa: F401  (registers the test-drafts format)
from curate.ingest import IngestOptions, ingest
from tests.curate.test_ingest import assert_nothing_lost, write_drafts


@pytest.fixture()
def broken_media(tmp_path: Path, shared_data: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    cat = shared_data / "images/sentence_transformers_image_search/cat.jpg"
    shutil.copy(cat, root / "cat.jpg")
    (root / "empty.jpg").write_bytes(b"")
    (root / "truncated.jpg").write_bytes(cat.read_bytes()[:2048])
    (root / "notes.mp4").write_text("this is a text file with a video extension\n")
    (root / "pointer.jpg").write_text(
        "version https://git-lfs.github.com/spec/v1\n"
        "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
        "size 12345\n"
    )
    video = shared_data / "videos/mmaction2/test.mp4"
    shutil.copy(video, root / "test.mp4")
    (root / "cut.mp4").write_bytes(video.read_bytes()[: int(video.stat().st_size * 0.4)])
    shutil.copy(shared_data / "videos/mmaction2/rawvideo_dataset/part_0.mp4", root / "part_0.mp4")
    shutil.copy(shared_data / "videos/mmaction2/rawvideo_dataset/part_1.mp4", root / "part_1.mp4")
    shutil.copy(shared_data / "videos/data-juicer/video2.mp4", root / "portrait.mp4")
    return root


def test_probed_metadata_and_media_rejects(tmp_path: Path, broken_media: Path, workspace):
    def image(caption: str, file: str) -> dict:
        return {"task": "caption_retrieval", "query_text": caption, "target_images": [file]}

    def video(caption: str, file: str, **clip) -> dict:
        return {"task": "video_retrieval", "query_text": caption, "target_video": file, **clip}

    source = write_drafts(
        tmp_path / "d.jsonl",
        [
            image("a cat", "cat.jpg"),
            image("nothing", "empty.jpg"),
            image("half a cat", "truncated.jpg"),
            video("not a video", "notes.mp4"),
            image("pointer", "pointer.jpg"),
            video("cut", "cut.mp4"),
            video("arm wrestling", "test.mp4", target_clip_start=2.0, target_clip_end=6.0),
            video("first copy", "part_0.mp4"),
            video("second copy", "part_1.mp4"),
            video("portrait", "portrait.mp4"),
            {"task": "caption_retrieval", "query_images": ["cat.jpg"], "target_text": "a cat"},
        ],
    )
    result = ingest(
        source, IngestOptions(name="m", format="test-drafts", media_root=broken_media), workspace
    )
    assert_nothing_lost(result)
    assert result.stats["rejected_by_reason"] == {
        "corrupt_media": 2,
        "lfs_pointer": 1,
        "not_media": 1,
    }
    rows = {r["record_index"]: r for r in result.manifest.read_rows().to_pylist()}
    # Without --verify-decode a JPEG cut after its header still probes; with it, it is rejected.
    assert rows[2]["width"] == 640
    cat = rows[0]
    assert (cat["width"], cat["height"], cat["codec"], cat["media_kind"]) == (
        640,
        427,
        "jpeg",
        "image",
    )
    assert cat["media_hash"] == hashlib.sha256((broken_media / "cat.jpg").read_bytes()).hexdigest()
    clip = rows[6]
    assert clip["codec"] == "h264" and clip["fps"] == pytest.approx(30.0)
    assert clip["duration"] == pytest.approx(4.0)  # the clip's length, not the file's 10 s
    assert clip["media"][0]["duration"] == pytest.approx(10.0, abs=0.05)
    assert rows[7]["media_hash"] == rows[8]["media_hash"]  # byte-identical files
    assert rows[7]["id"] != rows[8]["id"]
    assert (rows[9]["width"], rows[9]["height"]) == (480, 640)
    assert rows[10]["pair"] == "i2t" and rows[10]["media"][0]["role"] == "query"

    strict = ingest(
        source,
        IngestOptions(
            name="strict", format="test-drafts", media_root=broken_media, verify_decode=True
        ),
        workspace,
    )
    assert_nothing_lost(strict)
    assert strict.stats["rejected_by_reason"]["corrupt_media"] == 3
    ledger = {r["record_index"]: r for r in strict.manifest.read_ledger().to_pylist()}
    assert ledger[2]["reason"] == "corrupt_media" and "truncated.jpg" in ledger[2]["message"]
