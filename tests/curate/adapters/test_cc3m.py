"""CC3M/CC12M TSV: the real 2000-line CC3M validation sample, and the faults real TSVs have."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from curate.adapters import all_adapters, detect_format, get_adapter
from curate.adapters.base import AdapterContext
from curate.adapters.cc3m import iter_line_blocks
from curate.errors import ConfigError, InputError
from curate.ingest import IngestOptions, ingest
from curate.workspace import Workspace
from tests.curate.adapters.test_generic import read_drafts, rows_by_index

CC3M = "annotations/cc3m/Validation_GCC-1.1.0-Validation.first2000.tsv"

#: The formats of this part (adapters coco … textpairs); their sniffers must not claim others' files.
PART_A = (
    "coco", "sugarcrepe", "cc3m", "laion", "webdataset", "llava", "openai-jsonl", "msmarco", "nli",
)  # fmt: skip

#: Every real annotation file of the shared data, and the format it must be detected as.
REAL_FILES = {
    "annotations/cc3m/Validation_GCC-1.1.0-Validation.first2000.tsv": "cc3m",
    "annotations/image_text_pairs/img2dataset_sample_image.parquet": "laion",
    "annotations/image_text_pairs/img2dataset_test_1000.parquet": "laion",
    "annotations/llava_style/llama_factory_v1_multimodal_demo.jsonl": "openai-jsonl",
    "annotations/llava_style/llava_instruct_100.json": "llava",
    "annotations/msmarco_splade_toy/triplets_raw.tsv": "msmarco",
    "annotations/sugar_crepe/replace_obj.json": "sugarcrepe",
    "annotations/sugar_crepe/swap_att.json": "sugarcrepe",
    "images/coco_val2017_subset/annotations/instances_val2017.json": "coco",
    "images/llama_factory/mllm_demo.json": "llava",
    # The other part's formats (must not be claimed by ours).
    "annotations/activitynet_captions/2D-TAN_ActivityNet_test.json": "activitynet",
    "annotations/msrvtt/MSRVTT_JSFUSION_test.csv": "msrvtt",
    "annotations/webvid/test_webvid.csv": "webvid",
    "annotations/webvid/video2dataset_benchmark_mp4.parquet": "webvid",
    # Files no format claims: ids lists, labels, URL lists, other tools' layouts.
    "annotations/image_text_pairs/img2dataset_test_1000.txt": None,
    "annotations/kinetics/kinetics_400_labels.csv": None,
    "annotations/msmarco_splade_toy/dev_queries_raw.tsv": None,
    "annotations/msmarco_splade_toy/full_collection_raw.tsv": None,
    "annotations/msmarco_splade_toy/val_queries_raw.tsv": None,
    "annotations/msmarco_splade_toy/qrel.json": None,
    "videos/data-juicer/demo-dataset-videos.jsonl": None,
    "videos/mmaction2/rawvideo_test_anno.json": None,
    "videos/mmaction2/video_text_test_list.json": None,
}


@pytest.mark.parametrize(("relative", "expected"), sorted(REAL_FILES.items()))
def test_detection_on_every_real_file(shared_data: Path, relative: str, expected: str | None):
    path = shared_data / relative
    ours = [name for name in PART_A if get_adapter(name).sniff(path)]
    assert ours == ([expected] if expected in PART_A else [])
    if expected is None:
        with pytest.raises(InputError, match="cannot tell its format"):
            detect_format(path)
    elif expected in all_adapters():  # the other part's adapter may not exist yet
        assert detect_format(path) == expected


def assert_records(table: pa.Table, expected: list[int]) -> None:
    """Nothing lost: exactly these record indexes, each at least once, in input order."""
    indexes = table.column("record_index").to_pylist()
    assert indexes == sorted(indexes), "drafts must come in input order"
    assert sorted(set(indexes)) == expected


def reference_lines(path: Path) -> list[list[str]]:
    """The file split by hand (independent of the adapter) for comparison."""
    return [line.split("\t") for line in path.read_text(encoding="utf-8").split("\n") if line]


def test_real_cc3m_sample(shared_data: Path) -> None:
    path = shared_data / CC3M
    expected = reference_lines(path)
    # PROVENANCE.md says 10000 lines; the file really has 2000 (its name says so too).
    assert len(expected) == 2000 == path.read_bytes().count(b"\n")
    table = read_drafts("cc3m", path, batch_rows=300)
    batches = [batch.num_rows for batch in get_adapter("cc3m")().read(_ctx(path, 300))]
    assert batches == [300] * 6 + [200]
    assert_records(table, list(range(2000)))
    assert table.column("reject_reason").null_count == 2000
    rows = rows_by_index(table)
    first = rows[0]
    assert first["query_text"] == "author : a life in photography -- in pictures"
    assert first["target_images"] == [
        "https://i.pinimg.com/736x/66/01/6c/66016c3ba27c0e04f39e2bd81a934e3e--anita-ekberg-bob-hope.jpg"
    ]
    assert first["task"] == "caption_retrieval"
    assert json.loads(first["raw"]) == {"caption": first["query_text"], "url": expected[0][1]}
    for index, (caption, url) in enumerate(expected):
        assert rows[index]["query_text"] == caption
        assert rows[index]["target_images"] == [url]
    assert sum(not r["query_text"].isascii() for r in rows.values()) >= 1  # '£' etc. kept


def _ctx(path: Path, batch_rows: int = 50_000, **options: str) -> AdapterContext:
    return AdapterContext(
        input_path=path,
        media_root=path.parent,
        scratch_dir=path.parent / "scratch",
        options=options,
        batch_rows=batch_rows,
    )


def test_faults_are_rejected_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "bad [part*1].tsv"  # glob characters are part of the name
    path.write_bytes(
        b"\xef\xbb\xbfa dog on a beach\thttp://x.org/1.jpg\r\n"  # BOM, CRLF
        b"\n"  # blank: skipped, but counted as a line
        b"only one field\n"
        b"three\tfields\there\n"
        b"\thttp://x.org/2.jpg\n"  # empty caption
        b"a caption without url\t\n"
        b"   \n"
        b"last line, no newline\thttps://x.org/3.jpg"
    )
    table = read_drafts("cc3m", path)
    assert_records(table, [0, 2, 3, 4, 5, 7])
    rows = rows_by_index(table)
    assert rows[0]["query_text"] == "a dog on a beach"
    assert rows[0]["target_images"] == ["http://x.org/1.jpg"]
    assert rows[0]["reject_reason"] is None
    assert rows[2]["reject_reason"] == "malformed_record"
    assert (
        rows[2]["reject_message"]
        == "expected 2 fields (caption, url), found 1 tab-separated field(s)"
    )
    assert json.loads(rows[2]["raw"]) == {"fields": ["only one field"]}
    assert rows[3]["reject_reason"] == "malformed_record"
    assert json.loads(rows[3]["raw"]) == {"fields": ["three", "fields", "here"]}
    assert rows[3]["query_text"] is None and rows[3]["target_images"] is None
    assert rows[4]["reject_reason"] == "empty_text"
    assert rows[5]["reject_reason"] == "malformed_record"
    assert "url" in rows[5]["reject_message"]
    assert rows[7]["query_text"] == "last line, no newline"


@pytest.mark.parametrize("batch_rows", [1, 3, 50_000])
def test_bad_utf8_becomes_replacement_characters(tmp_path: Path, batch_rows: int) -> None:
    path = tmp_path / "damaged.tsv"
    good = [f"caption {i}\thttp://x.org/{i}.jpg\n".encode() for i in range(7)]
    path.write_bytes(
        b"".join(good[:5]) + b"caf\xe9 latte \xff\thttp://x.org/c.jpg\n" + b"".join(good[5:])
    )
    table = read_drafts("cc3m", path, batch_rows=batch_rows)
    assert_records(table, list(range(8)))
    rows = rows_by_index(table)
    # Not rejected here: the core sees U+FFFD and rejects it as encoding_damage.
    assert rows[5]["query_text"] == "caf\ufffd latte \ufffd"
    assert rows[5]["reject_reason"] is None
    assert rows[6]["query_text"] == "caption 5" and rows[7]["query_text"] == "caption 6"
    batches = [b.num_rows for b in get_adapter("cc3m")().read(_ctx(path, batch_rows))]
    assert all(n == batch_rows for n in batches[:-1])


def test_bad_bytes_deep_in_a_big_file(tmp_path: Path) -> None:
    """Polars may have streamed many batches before it meets the bad bytes: none is repeated."""
    path = tmp_path / "late.tsv"
    head = "".join(f"caption {i}\thttp://x.org/{i}.jpg\n" for i in range(300_000)).encode()
    path.write_bytes(head + b"bad \xff\thttp://x.org/bad.jpg\n" + b"tail\thttp://x.org/t.jpg\n")
    frames = list(iter_line_blocks(path, batch_rows=1000))
    assert [f.height for f in frames[:-1]] == [1000] * 300
    indexes = [i for f in frames for i in f["record_index"].to_list()]
    assert indexes == list(range(300_002))
    assert frames[-1]["line"].to_list()[-2:] == [
        "bad \ufffd\thttp://x.org/bad.jpg",
        "tail\thttp://x.org/t.jpg",
    ]


def test_line_reader_is_exact_across_batches(tmp_path: Path) -> None:
    path = tmp_path / "lines.tsv"
    lines = [f"line {i}" if i % 7 else "" for i in range(1000)]
    path.write_text("\n".join(lines) + "\n")
    frames = list(iter_line_blocks(path, batch_rows=64))
    assert [f.height for f in frames[:-1]] == [64] * (len(frames) - 1)
    got = [(i, line) for f in frames for i, line in f.select("record_index", "line").rows()]
    assert got == [(i, text) for i, text in enumerate(lines) if text]


def test_cc12m_url_first_is_detected(tmp_path: Path, shared_data: Path) -> None:
    pairs = reference_lines(shared_data / CC3M)[:20]
    path = tmp_path / "cc12m.tsv"
    path.write_text("".join(f"{url}\t{caption}\n" for caption, url in pairs))
    assert detect_format(path) == "cc3m"
    rows = rows_by_index(read_drafts("cc3m", path))
    assert rows[3]["query_text"] == pairs[3][0]
    assert rows[3]["target_images"] == [pairs[3][1]]
    # Forcing the wrong order swaps them, which is what the option is for.
    forced = rows_by_index(read_drafts("cc3m", path, {"order": "caption,url"}))
    assert forced[3]["query_text"] == pairs[3][1]
    with pytest.raises(ConfigError, match="order"):
        read_drafts("cc3m", path, {"order": "text,url"})
    with pytest.raises(ConfigError, match="does not understand"):
        read_drafts("cc3m", path, {"colour": "red"})


def test_sniff_needs_two_fields_and_one_url(tmp_path: Path) -> None:
    sniff = get_adapter("cc3m").sniff
    cases = {
        "ok.tsv": "a cat\thttps://x.org/c.jpg\nb\thttp://y.org/d.png\n",
        "three.tsv": "a\tb\thttps://x.org/c.jpg\n",
        "nourl.tsv": "a cat\ta dog\n",
        "twourls.tsv": "https://a.org/x\thttps://x.org/c.jpg\n",
        "mixed.tsv": "a cat\thttps://x.org/c.jpg\nhttps://x.org/c.jpg\ta cat\n",
        "empty.tsv": "",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
    assert sniff(tmp_path / "ok.tsv")
    assert not any(sniff(tmp_path / n) for n in cases if n != "ok.tsv")
    assert not sniff(tmp_path)


def test_ingest_end_to_end(shared_data: Path, workspace: Workspace) -> None:
    result = ingest(shared_data / CC3M, IngestOptions(name="cc3m"), workspace)
    stats = result.stats
    assert stats["read"] == 2000 == stats["accepted"] + stats["rejected"]
    assert stats["by_pair"] == {"t2i": stats["accepted"]}
    assert stats["remote_media"] >= stats["accepted"]
    rows = result.manifest.read_rows(["target_images", "media_remote", "record_index"])
    assert rows.column("media_remote").to_pylist() == [True] * rows.num_rows


def test_damaged_file_gives_every_row_its_own_line(tmp_path):
    """A bad byte deep in a large file: every record keeps the text of its own line, every run
    (reading polars' parallel stream and then switching readers once mixed lines up)."""
    from curate.adapters import get_adapter
    from curate.adapters.base import AdapterContext

    lines = [f"caption number {i}\thttps://example.org/{i}.jpg".encode() for i in range(6000)]
    lines[3001] = b"broken \xff caption\thttps://example.org/x.jpg"
    path = tmp_path / "damaged.tsv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    expected = [line.decode("utf-8", "replace").split("\t")[0] for line in lines]
    for _ in range(5):
        ctx = AdapterContext(
            input_path=path, media_root=tmp_path, scratch_dir=tmp_path / "s", batch_rows=1000
        )
        seen = []
        for batch in get_adapter("cc3m")().read(ctx):
            for index, text in zip(
                batch.column("record_index").to_pylist(),
                batch.column("query_text").to_pylist(),
                strict=True,
            ):
                assert text == expected[index]
                seen.append(index)
        assert seen == list(range(6000))
