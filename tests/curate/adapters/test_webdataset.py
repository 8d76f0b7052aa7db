"""WebDataset shards built with tarfile from the shared real jpgs/mp4s and their real captions."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from curate.adapters import detect_format, get_adapter
from curate.adapters.base import AdapterContext
from curate.ingest import IngestOptions, ingest
from curate.workspace import Workspace

VAL2017 = "images/coco_val2017_subset/val2017"
SWAP_ATT = "annotations/sugar_crepe/swap_att.json"
VIDEOS = "videos/mmaction2"


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def image_samples(shared_data: Path, count: int = 3) -> list[tuple[str, Path, str]]:
    """(key, real jpg, its real SugarCrepe caption) for images present in the COCO subset."""
    present = {p.name for p in (shared_data / VAL2017).iterdir()}
    out: dict[str, tuple[str, Path, str]] = {}
    for entry in json.loads((shared_data / SWAP_ATT).read_text()).values():
        if entry["filename"] in present and entry["filename"] not in out:
            key = f"{len(out):09d}"
            out[entry["filename"]] = (
                key,
                shared_data / VAL2017 / entry["filename"],
                entry["caption"],
            )
    return list(out.values())[:count]


def write_image_shard(shared_data: Path, path: Path) -> list[tuple[str, Path, str]]:
    samples = image_samples(shared_data)
    with tarfile.open(path, "w") as tar:
        for key, image, caption in samples:
            add(tar, f"{key}.jpg", image.read_bytes())
            add(tar, f"{key}.txt", caption.encode())
            meta = {"key": key, "url": f"http://images.cocodataset.org/val2017/{image.name}"}
            add(tar, f"{key}.json", json.dumps({**meta, "status": "success"}).encode())
    return samples


def write_video_shard(shared_data: Path, path: Path) -> list[str]:
    captions = json.loads((shared_data / VIDEOS / "video_text_test_list.json").read_text())
    caption = captions["test.mp4"][0]
    with tarfile.open(path, "w") as tar:
        add(tar, "vid0.mp4", (shared_data / VIDEOS / "test.mp4").read_bytes())
        add(tar, "vid0.txt", caption.encode())
        add(tar, "vid1.mp4", (shared_data / VIDEOS / "rawvideo_dataset/part_0.mp4").read_bytes())
        # video2dataset keeps the caption in the json when there is no .txt
        add(tar, "vid1.json", json.dumps({"caption": captions["test.mp4"][1]}).encode())
    return captions["test.mp4"]


def read(path: Path, scratch: Path, batch_rows: int = 50_000) -> list[dict]:
    ctx = AdapterContext(
        input_path=path, media_root=path.parent, scratch_dir=scratch, batch_rows=batch_rows
    )
    return [row for batch in get_adapter("webdataset")().read(ctx) for row in batch.to_pylist()]


def test_image_shard(shared_data: Path, tmp_path: Path) -> None:
    shard = tmp_path / "00000.tar"
    samples = write_image_shard(shared_data, shard)
    assert detect_format(shard) == "webdataset"
    scratch = tmp_path / "scratch"
    rows = read(shard, scratch)
    assert [r["record_index"] for r in rows] == [0, 1, 2]
    for row, (key, image, caption) in zip(rows, samples, strict=True):
        assert row["reject_reason"] is None
        assert row["task"] == "caption_retrieval"
        assert row["query_text"] == caption
        extracted = Path(row["target_images"][0])
        assert extracted == (scratch / "00000" / f"{key}.jpg").resolve()
        assert extracted.read_bytes() == image.read_bytes()
        assert row["source_id"] == key
        assert json.loads(row["raw"])["json"]["url"].endswith(image.name)
    # A rerun keeps the extracted files (no rewrite) and gives the same drafts.
    before = extracted.stat().st_mtime_ns
    assert read(shard, scratch) == rows
    assert extracted.stat().st_mtime_ns == before
    assert not list(scratch.rglob(".part-*"))


def test_folder_of_image_and_video_shards(shared_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "shards"
    folder.mkdir()
    write_image_shard(shared_data, folder / "00000.tar")
    captions = write_video_shard(shared_data, folder / "00001.tar")
    assert detect_format(folder) == "webdataset"
    rows = read(folder, tmp_path / "scratch", batch_rows=2)
    assert [(Path(r["input_file"]).name, r["record_index"]) for r in rows] == [
        ("00000.tar", 0), ("00000.tar", 1), ("00000.tar", 2), ("00001.tar", 0), ("00001.tar", 1),
    ]  # fmt: skip
    videos = rows[3:]
    assert [v["task"] for v in videos] == ["video_retrieval"] * 2
    assert [v["query_text"] for v in videos] == captions
    assert (
        Path(videos[0]["target_video"]).read_bytes()
        == (shared_data / VIDEOS / "test.mp4").read_bytes()
    )
    assert videos[0]["target_images"] is None


def test_faulty_samples(shared_data: Path, tmp_path: Path) -> None:
    jpg = (shared_data / "images/llama_factory/mllm_demo_data/1.jpg").read_bytes()
    shard = tmp_path / "bad.tar"
    with tarfile.open(shard, "w") as tar:
        add(tar, "a.jpg", jpg)
        add(tar, "a.txt", b"good")
        add(tar, "b.txt", b"a caption but no image")
        add(tar, "c.jpg", jpg)
        add(tar, "c.txt", b"   ")
        add(tar, "d.jpg", jpg)  # no caption at all
        add(tar, "e.jpg", jpg)
        add(tar, "e.json", b"{not json")
        add(tar, "../evil.jpg", jpg)
        add(tar, "../evil.txt", b"escape")
        add(tar, "f.jpg", jpg)
        add(tar, "f.txt", b"caf\xe9")  # bad UTF-8: U+FFFD, the core flags it
    scratch = tmp_path / "scratch"
    rows = read(shard, scratch)
    assert [r["record_index"] for r in rows] == list(range(7))
    assert [r["reject_reason"] for r in rows] == [
        None, "malformed_record", "empty_text", "malformed_record", "malformed_record",
        "path_escape", None,
    ]  # fmt: skip
    assert "no image or video" in rows[1]["reject_message"]
    assert not (tmp_path / "evil.jpg").exists() and not (scratch / "evil.jpg").exists()
    assert rows[6]["query_text"] == "caf\ufffd"


def test_truncated_shard_keeps_what_was_read(shared_data: Path, tmp_path: Path) -> None:
    shard = tmp_path / "00000.tar"
    write_image_shard(shared_data, shard)
    data = shard.read_bytes()
    cut = tmp_path / "cut.tar"
    second = data.index(b"000000001.jpg")  # the header of the second image
    cut.write_bytes(data[: second + 4096])
    rows = read(cut, tmp_path / "scratch")
    assert rows[0]["reject_reason"] is None
    assert rows[-1]["reject_reason"] == "malformed_record"
    assert "truncated" in rows[-1]["reject_message"]
    assert [r["record_index"] for r in rows] == list(range(len(rows)))


def test_end_to_end_probes_extracted_media(
    shared_data: Path, tmp_path: Path, workspace: Workspace
) -> None:
    folder = tmp_path / "shards"
    folder.mkdir()
    samples = write_image_shard(shared_data, folder / "00000.tar")
    write_video_shard(shared_data, folder / "00001.tar")
    result = ingest(folder, IngestOptions(name="wds"), workspace)
    assert result.stats["read"] == 5 == result.stats["accepted"]
    assert result.stats["by_pair"] == {"t2i": 3, "t2v": 2}
    rows = result.manifest.read_rows().to_pylist()
    video = next(r for r in rows if r["pair"] == "t2v" and r["record_index"] == 0)
    assert video["duration"] == pytest.approx(10.0, abs=0.1)
    image = next(r for r in rows if r["pair"] == "t2i" and r["record_index"] == 0)
    with Image.open(samples[0][1]) as expected:
        assert (image["width"], image["height"]) == expected.size
    # The manifest names the extracted copies, inside the workspace's scratch folder.
    assert image["target_images"][0].startswith(str(workspace.root / "media" / "wds"))


def test_gzipped_shard_and_non_tars(shared_data: Path, tmp_path: Path) -> None:
    plain = tmp_path / "00000.tar"
    samples = write_image_shard(shared_data, plain)
    gz = tmp_path / "gz" / "00003.tar.gz"
    gz.parent.mkdir()
    with tarfile.open(gz, "w:gz") as out, tarfile.open(plain) as source:
        for member in source:
            out.addfile(member, source.extractfile(member))
    assert detect_format(gz) == "webdataset"
    rows = read(gz, tmp_path / "scratch")
    assert [r["query_text"] for r in rows] == [caption for _, _, caption in samples]
    assert Path(rows[0]["target_images"][0]).parent == (tmp_path / "scratch" / "00003").resolve()
    sniff = get_adapter("webdataset").sniff
    fake = tmp_path / "fake.tar"
    fake.write_bytes(samples[0][1].read_bytes())  # a jpg named .tar
    other = tmp_path / "docs.tar"
    with tarfile.open(other, "w") as tar:
        add(tar, "README.md", b"# not a dataset")
    assert not sniff(fake) and not sniff(other) and not sniff(tmp_path / "missing.tar")
