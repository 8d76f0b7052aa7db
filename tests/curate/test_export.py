"""`curate export`: every format, and round trips through the ingest adapters on real media."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.errors import ConfigError, InputError
from curate.export import export_mixture
from curate.ingest import IngestOptions, ingest
from curate.mix import build_mixture
from curate.mixtures import load_mixture
from curate.workspace import Workspace
from tests.curate.mix_fixtures import row, rows, write_manifest, write_recipe

ALL_OF = """
name = "{name}"
[[stages]]
name = "first"
target = "all"
[[stages.components]]
name = "everything"
pairs = {pairs}
weight = 1
"""

COCO = "images/coco_val2017_subset/val2017"


@pytest.fixture()
def media(tmp_path: Path, shared_data: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    for i, name in enumerate(sorted((shared_data / COCO).glob("*.jpg"))[:4]):
        shutil.copy(name, root / f"img{i}.jpg")
    shutil.copy(shared_data / "videos/mmaction2/test.mp4", root / "clip0.mp4")
    shutil.copy(shared_data / "videos/mmaction2/demo.mp4", root / "clip1.mp4")
    return root


def mix_all(ws: Workspace, name: str, pairs: list[str]):
    write_recipe(ws.mixtures, name, ALL_OF.format(name=name, pairs=json.dumps(pairs)))
    return build_mixture(ws, name).mixture


def ids_and_content(table: pa.Table) -> dict[str, tuple]:
    columns = ["instruction", "query_text", "target_text", "negative_texts", "query_images",
               "target_images", "negative_images", "query_video", "target_video", "pair", "task"]  # fmt: skip
    out = {}
    for record in table.select(["id", *columns]).to_pylist():
        out[record["id"]] = tuple(json.dumps(record[c]) for c in columns)
    return out


def test_mmeb_parquet_round_trips_through_the_mmeb_adapter(
    workspace: Workspace, media: Path, tmp_path: Path
):
    original = tmp_path / "MSCOCO_i2t.parquet"
    records = [
        ("<|image_1|> Represent the given image for classification", "img0.jpg", "cat", "", "dog", ""),
        ("<|image_1|> Represent the given image with the following question: What is shown?",
         "img1.jpg", "A plate of food", "", "", ""),
        ("Find me an everyday image that matches the given caption: A dog in snow.", "",
         "<|image_1|> Represent the given image.", "img2.jpg", "", "img3.jpg"),
        ("<|image_1|> Find an image of the same scene: at night", "img3.jpg",
         "<|image_1|> Represent the given image with related text information: night scene",
         "img0.jpg", "", ""),
    ]  # fmt: skip
    names = ["qry", "qry_image_path", "pos_text", "pos_image_path", "neg_text", "neg_image_path"]
    pq.write_table(
        pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in records]), original
    )
    opts = {"source": "mmeb-rt", "media_root": media, "adapter_options": {"task": "retrieval"}}
    ingest(original, IngestOptions(name="orig", format="mmeb", **opts), workspace)
    mixture = mix_all(workspace, "mm", ["i2t", "it2t", "t2i", "it2it"])
    exported = export_mixture(workspace, "mm", format="mmeb-parquet", out=tmp_path / "out")
    assert exported.rows == {"first": 4} and exported.skipped == {} and exported.lossy == {}
    back_file = tmp_path / "out" / "first.parquet"
    assert pq.read_schema(back_file).names == names
    ingest(back_file, IngestOptions(name="back", format="mmeb", **opts), workspace)

    from curate.manifest import open_manifest

    before = ids_and_content(mixture.read_stage("first"))
    after = ids_and_content(open_manifest(workspace, "back").read_rows())
    assert set(before) == set(after) and len(before) == 4
    assert before == after


def test_unite_json_round_trips_through_the_unite_adapter(
    workspace: Workspace, media: Path, tmp_path: Path
):
    original = tmp_path / "unite_train.json"
    records = [
        {"query": {"text": "a bowl of fruit"}, "candidate": {"image": "img0.jpg"}, "target_modal": "image"},
        {"query": {"image": "img1.jpg"}, "candidate": {"text": "two people on a street"}},
        {"query": {"text": "someone is dancing"}, "candidate": {"video": "clip0.mp4"},
         "negative": {"text": "a cat sleeps"}},
        {"query": {"video": ["clip1.mp4"]}, "candidate": {"text": "a short demo clip"}},
        {"query": {"text": "<|IMAGE|>\nWhat is on the table?", "image": "img2.jpg"},
         "candidate": {"text": "a laptop"}},
        {"query": {"text": "<|VIDEO|>\nmake it slower", "video": "clip0.mp4"},
         "candidate": {"video": "clip1.mp4"}, "target_modal": "video"},
        {"query": {"text": "what is a tensor"}, "candidate": {"text": "a multilinear map"},
         "negative": [{"text": "a bird"}, {"image": "img3.jpg"}]},
    ]  # fmt: skip
    original.write_text(json.dumps(records))
    opts = {"source": "unite-rt", "media_root": media}
    ingest(original, IngestOptions(name="uorig", format="unite", **opts), workspace)
    mixture = mix_all(workspace, "um", ["t2i", "i2t", "t2v", "v2t", "it2t", "vt2v", "t2t"])
    exported = export_mixture(workspace, "um", format="unite-json", out=tmp_path / "uout")
    assert exported.rows == {"first": 7} and exported.lossy == {}
    written = json.loads((tmp_path / "uout" / "first.json").read_text())
    by_modal = {r["target_modal"] for r in written}
    assert by_modal == {"image", "text", "video"}
    fused = next(r for r in written if "video" in r["query"] and "text" in r["query"])
    assert fused["query"]["text"].startswith("<|VIDEO|>\n") and fused["target_modal"] == "video"
    ingest(
        tmp_path / "uout" / "first.json",
        IngestOptions(name="uback", format="unite", **opts),
        workspace,
    )

    from curate.manifest import open_manifest

    before = ids_and_content(mixture.read_stage("first"))
    after = ids_and_content(open_manifest(workspace, "uback").read_rows())
    assert len(before) == 7 and before == after


@pytest.fixture()
def small(workspace: Workspace, media: Path) -> Workspace:
    images = [row("coco", i, "t2i", media_root=str(media.parent)) for i in range(3)]
    for i, item in enumerate(images):  # point the primary media at real files
        path = str(media / f"img{i}.jpg")
        item["target_images"] = [path]
        item["media"] = [{**item["media"][0], "path": path}]
    vqa = row("vqa", 0, "it2t", instruction="Answer the question", negative_texts=["no", "maybe"])
    clips = row("webvid", 0, "t2v", target_clip_start=1.0, target_clip_end=3.5)
    write_manifest(workspace, "m", [*images, vqa, clips, *rows("marco", 2, "t2t")])
    mix_all(workspace, "small", ["t2i", "it2t", "t2v", "t2t"])
    return workspace


def test_jsonl_holds_every_row_and_column_in_training_order(small: Workspace, tmp_path: Path):
    result = export_mixture(small, "small", format="jsonl", out=tmp_path / "j")
    lines = (tmp_path / "j" / "first.jsonl").read_text().splitlines()
    table = load_mixture(small, "small").read_stage("first")
    assert [json.loads(line) for line in lines] == table.to_pylist()
    assert result.rows == {"first": 7}
    summary = json.loads((tmp_path / "j" / "export.json").read_text())
    assert summary["mixture"] == result.mixture and summary["files"] == ["first.jsonl"]


def test_unite_and_mmeb_report_what_they_cannot_carry(small: Workspace, tmp_path: Path):
    unite = export_mixture(small, "small", format="unite-json", out=tmp_path / "u")
    assert unite.lossy == {
        "clip span (UNITE has no clip fields; kept under 'clip')": 1,
        "instruction folded into the query text": 1,
    }
    records = json.loads((tmp_path / "u" / "first.json").read_text())
    vqa = next(r for r in records if r["id"] == "vqa-0")
    assert vqa["query"]["text"] == "<|IMAGE|>\nAnswer the question\nvqa caption number 0"
    assert vqa["negative"] == [{"text": "no"}, {"text": "maybe"}]
    clip = next(r for r in records if r["id"] == "webvid-0")
    assert clip["candidate"]["clip"] == [1.0, 3.5]
    mmeb = export_mixture(small, "small", format="mmeb-parquet", out=tmp_path / "m")
    assert mmeb.skipped == {"video (MMEB-train holds images only)": 1}
    assert mmeb.lossy == {"hard negatives beyond the first": 1}
    table = pq.read_table(tmp_path / "m" / "first.parquet").to_pylist()
    assert len(table) == 6
    vqa_row = next(r for r in table if r["pos_text"] == "vqa caption number 0")
    assert vqa_row["qry"] == "<|image_1|> Answer the question: vqa caption number 0"
    assert vqa_row["neg_text"] == "no"
    t2i = next(r for r in table if r["pos_image_path"].endswith("img0.jpg"))
    assert (
        t2i["pos_text"] == "<|image_1|> Represent the given image." and t2i["qry_image_path"] == ""
    )


def test_webdataset_shards_embed_media_and_are_reproducible(
    small: Workspace, media: Path, tmp_path: Path
):
    first = export_mixture(small, "small", format="webdataset", out=tmp_path / "w1", shard_rows=4)
    second = export_mixture(small, "small", format="webdataset", out=tmp_path / "w2", shard_rows=4)
    assert [p.name for p in first.files] == ["first-00000.tar", "first-00001.tar"]
    for a, b in zip(first.files, second.files, strict=True):
        assert a.read_bytes() == b.read_bytes()
    members: dict[str, bytes] = {}
    for shard in first.files:
        with tarfile.open(shard) as archive:
            for member in archive.getmembers():
                assert member.mtime == 0 and member.uname == ""
                members[member.name] = archive.extractfile(member).read()
    table = load_mixture(small, "small").read_stage("first").to_pylist()
    for record in table:
        key = f"{record['position']:09d}"
        assert json.loads(members[f"{key}.json"])["id"] == record["id"]
        assert members[f"{key}.txt"].decode() == (record["target_text"] or record["query_text"])
        if record["source"] == "coco":
            real = Path(record["target_images"][0]).read_bytes()
            assert members[f"{key}.jpg"] == real
    # The video and VQA fixtures name files that do not exist: counted, path kept in the json.
    assert first.lossy == {"media file not found (path kept in .json)": 2}


def test_export_never_overwrites_and_checks_its_options(small: Workspace, tmp_path: Path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="exists already"):
        export_mixture(small, "small", format="jsonl", out=out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    with pytest.raises(ConfigError, match="unknown export format 'csv'"):
        export_mixture(small, "small", format="csv", out=tmp_path / "x")
    assert not (tmp_path / "x").exists()
    relative = export_mixture(
        small, "small", format="unite-json", out=tmp_path / "rel", relative_to=tmp_path
    )
    text = (relative.out / "first.json").read_text()
    assert '"media/img0.jpg"' in text and str(tmp_path) not in text
