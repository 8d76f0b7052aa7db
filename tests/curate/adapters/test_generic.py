"""The generic mapping adapter and the helpers the other adapters of part B share."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.adapters import all_adapters, detect_format, get_adapter
from curate.adapters.base import Adapter, AdapterContext
from curate.adapters.generic import check_options, detect_delimiter, first_json_item, infer_task
from curate.errors import ConfigError, InputError
from curate.schema import DRAFT_SCHEMA

#: The adapters this part of the project owns; their sniffers must not claim others' files.
PART_B = ("msrvtt", "webvid", "activitynet", "didemo", "mmeb", "unite", "covr", "generic")


def read_drafts(
    fmt: str,
    path: Path,
    options: Mapping[str, str] | None = None,
    *,
    media_root: Path | None = None,
    batch_rows: int = 50_000,
) -> pa.Table:
    """Every draft an adapter yields for `path`, checked against DRAFT_SCHEMA."""
    ctx = AdapterContext(
        input_path=path,
        media_root=media_root or (path if path.is_dir() else path.parent),
        scratch_dir=path.parent / "scratch",
        options=dict(options or {}),
        batch_rows=batch_rows,
    )
    batches = list(get_adapter(fmt)().read(ctx))
    for batch in batches:
        assert batch.schema.equals(DRAFT_SCHEMA), batch.schema
        assert batch.num_rows <= batch_rows
    return pa.concat_tables(batches) if batches else DRAFT_SCHEMA.empty_table()


def assert_each_record_once(table: pa.Table, records: int) -> None:
    """Nothing lost: every record index appears once over drafts and adapter rejects."""
    indexes = table.column("record_index").to_pylist()
    assert sorted(indexes) == list(range(records))
    assert indexes == sorted(indexes), "drafts must come in input order"


def rows_by_index(table: pa.Table) -> dict[int, dict]:
    return {row["record_index"]: row for row in table.to_pylist()}


DJ_OPTIONS = {
    "query_text": "text",
    "target_video": "videos",
    "strip_tokens": "<__dj__video>",
    "media_strip_prefix": "../../tests/ops/data/",
}


def test_data_juicer_jsonl_maps_videos_and_strips_tokens(shared_data: Path) -> None:
    path = shared_data / "videos/data-juicer/demo-dataset-videos.jsonl"
    table = read_drafts("generic", path, DJ_OPTIONS)
    assert_each_record_once(table, 6)
    rows = rows_by_index(table)
    assert rows[0]["query_text"].strip() == "a cartoon"
    assert rows[1]["query_text"].strip() == "一段卡通"
    assert "<__dj__video>" not in "".join(r["query_text"] for r in rows.values())
    # The prefix is gone, so the paths resolve under the media root (the file's folder).
    assert [rows[i]["target_video"] for i in range(6)] == [
        "video1.mp4", "video1.mp4", "video2.mp4", "video2.mp4", "video3.mp4", "video3.mp4",
    ]  # fmt: skip
    assert all((path.parent / rows[i]["target_video"]).is_file() for i in range(6))
    assert {r["task"] for r in rows.values()} == {"video_retrieval"}
    assert json.loads(rows[0]["raw"])["videos"] == ["../../tests/ops/data/video1.mp4"]


def test_data_juicer_without_prefix_option_keeps_the_escaping_path(shared_data: Path) -> None:
    path = shared_data / "videos/data-juicer/demo-dataset-videos.jsonl"
    options = {k: v for k, v in DJ_OPTIONS.items() if k != "media_strip_prefix"}
    table = read_drafts("generic", path, options)
    # Paths stay as written; ingest rejects them as escaping the media root.
    assert table.column("target_video")[0].as_py() == "../../tests/ops/data/video1.mp4"


def test_media_prefix_is_prepended_to_relative_paths(shared_data: Path) -> None:
    path = shared_data / "videos/data-juicer/demo-dataset-videos.jsonl"
    options = {**DJ_OPTIONS, "media_prefix": "videos/data-juicer/"}
    table = read_drafts("generic", path, options, media_root=shared_data)
    assert table.column("target_video")[2].as_py() == "videos/data-juicer/video2.mp4"


def test_kinetics_csv_with_a_mapping(shared_data: Path) -> None:
    path = shared_data / "annotations/kinetics/kinetics_400_labels.csv"
    table = read_drafts(
        "generic",
        path,
        {"query_text": "name", "target_text": "id", "source_id": "id", "task": "classification"},
    )
    assert_each_record_once(table, 400)
    rows = rows_by_index(table)
    assert rows[0]["query_text"] == "abseiling"
    assert rows[0]["source_id"] == "0"
    assert rows[399]["query_text"] == "zumba"
    assert {r["task"] for r in rows.values()} == {"classification"}
    assert table.column("reject_reason").null_count == 400


def test_missing_mapped_column_names_file_column_and_existing_columns(shared_data: Path) -> None:
    path = shared_data / "annotations/kinetics/kinetics_400_labels.csv"
    with pytest.raises(InputError) as error:
        read_drafts("generic", path, {"query_text": "caption", "target_text": "name"})
    message = str(error.value)
    assert str(path) in message
    assert "'caption'" in message and "query_text" in message
    assert "'id'" in message and "'name'" in message


def test_missing_mapped_key_in_jsonl(shared_data: Path) -> None:
    path = shared_data / "videos/data-juicer/demo-dataset-videos.jsonl"
    with pytest.raises(InputError, match=r"'video'.*columns: 'videos', 'text'"):
        read_drafts("generic", path, {"query_text": "text", "target_video": "video"})


def test_laion_style_parquet_keeps_urls_as_urls(shared_data: Path) -> None:
    path = shared_data / "annotations/image_text_pairs/img2dataset_test_1000.parquet"
    table = read_drafts("generic", path, {"query_text": "TEXT", "target_image": "URL"})
    assert_each_record_once(table, 1000)
    first = pq.read_table(path).slice(0, 1).to_pylist()[0]
    row = rows_by_index(table)[0]
    assert row["query_text"] == first["TEXT"]
    assert row["target_images"] == [first["URL"]]
    assert row["target_images"][0].startswith("http")
    assert row["task"] == "caption_retrieval"
    assert json.loads(row["raw"])["__index_level_0__"] == first["__index_level_0__"]


def test_jsonl_bad_line_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        '{"caption": "a dog", "image": "a.jpg"}\n'
        "\n"
        '{"caption": "a cat", "image": \n'
        '["not", "an object"]\n'
        '{"caption": "", "image": "c.jpg"}\n'
        '{"caption": "a cow", "image": ["d.jpg", "e.jpg"]}\n'
        "\n\n"
    )
    table = read_drafts("generic", path, {"query_text": "caption", "target_image": "image"})
    assert_each_record_once(table, 5)
    rows = rows_by_index(table)
    assert rows[0]["target_images"] == ["a.jpg"] and rows[0]["reject_reason"] is None
    assert rows[1]["reject_reason"] == "malformed_record"
    assert "line 3" in rows[1]["reject_message"]
    assert rows[1]["raw"] == '{"caption": "a cat", "image":'
    assert rows[2]["reject_reason"] == "malformed_record"
    assert rows[3]["reject_reason"] == "empty_text"
    assert rows[4]["target_images"] == ["d.jpg", "e.jpg"]


def test_clip_columns_and_bad_clips(tmp_path: Path) -> None:
    path = tmp_path / "clips.csv"
    path.write_text(
        "text,video,start,end\n"
        "a man runs,v1.mp4,1.5,4\n"
        "a man sits,v1.mp4,5,2\n"
        "a man waits,v1.mp4,x,2\n"
        "a man naps,v1.mp4,,\n"
    )
    table = read_drafts(
        "generic",
        path,
        {"query_text": "text", "target_video": "video", "clip_start": "start", "clip_end": "end"},
    )
    rows = rows_by_index(table)
    assert (rows[0]["target_clip_start"], rows[0]["target_clip_end"]) == (1.5, 4.0)
    assert (
        rows[1]["reject_reason"] == "malformed_record" and "not after" in rows[1]["reject_message"]
    )
    assert rows[2]["reject_reason"] == "malformed_record" and "'x'" in rows[2]["reject_message"]
    assert rows[3]["target_clip_start"] is None and rows[3]["reject_reason"] is None


def test_json_list_and_several_videos(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text(
        json.dumps(
            [
                {"q": "two clips", "v": ["a.mp4", "b.mp4"]},
                {"q": "one clip", "v": ["a.mp4"], "neg": ["x", "y"]},
            ]
        )
    )
    table = read_drafts(
        "generic", path, {"query_text": "q", "target_video": "v", "negative_text": "neg"}
    )
    rows = rows_by_index(table)
    assert (
        rows[0]["reject_reason"] == "malformed_record" and "2 videos" in rows[0]["reject_message"]
    )
    assert rows[1]["target_video"] == "a.mp4"
    assert rows[1]["negative_texts"] == ["x", "y"]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"query_text": "name"}, "each side"),
        ({"query_text": "name", "target_text": "id", "task": "ranking"}, "task='ranking'"),
        ({"query_text": "name", "target_text": "id", "colour": "red"}, "colour"),
        ({"query_text": "name", "target_text": "id", "clip_start": "id"}, "clip_start"),
    ],
)
def test_bad_options_are_config_errors(shared_data: Path, options: dict, match: str) -> None:
    path = shared_data / "annotations/kinetics/kinetics_400_labels.csv"
    with pytest.raises(ConfigError, match=match):
        read_drafts("generic", path, options)


def test_generic_never_sniffs(shared_data: Path) -> None:
    cls = get_adapter("generic")
    for path in (
        shared_data / "videos/data-juicer/demo-dataset-videos.jsonl",
        shared_data / "annotations/kinetics/kinetics_400_labels.csv",
        shared_data / "annotations/image_text_pairs/img2dataset_test_1000.parquet",
    ):
        assert cls.sniff(path) is False


#: Real files of the other engineer's formats (and files of no format): none of ours may claim them.
OTHER_FILES = (
    "images/coco_val2017_subset/annotations/instances_val2017.json",
    "annotations/sugar_crepe/replace_obj.json",
    "annotations/cc3m/Validation_GCC-1.1.0-Validation.first2000.tsv",
    "annotations/image_text_pairs/img2dataset_test_1000.parquet",
    "annotations/image_text_pairs/img2dataset_sample_image.parquet",
    "annotations/image_text_pairs/img2dataset_test_1000.txt",
    "annotations/llava_style/llava_instruct_100.json",
    "annotations/llava_style/llama_factory_v1_multimodal_demo.jsonl",
    "annotations/msmarco_splade_toy/triplets_raw.tsv",
    "annotations/msmarco_splade_toy/qrel.json",
    "annotations/kinetics/kinetics_400_labels.csv",
    "videos/data-juicer/demo-dataset-videos.jsonl",
    "videos/mmaction2/rawvideo_test_anno.json",
    "videos/mmaction2/video_text_test_list.json",
    "videos/mmaction2/test.mp4",
    "images/llama_factory/mllm_demo.json",
)

#: Real files of our formats and the format detection must give.
OUR_FILES = {
    "annotations/msrvtt/MSRVTT_JSFUSION_test.csv": "msrvtt",
    "annotations/webvid/test_webvid.csv": "webvid",
    "annotations/webvid/video2dataset_benchmark_mp4.parquet": "webvid",
    "annotations/activitynet_captions/2D-TAN_ActivityNet_test.json": "activitynet",
}


@pytest.mark.parametrize("relative", OTHER_FILES)
def test_our_sniffers_do_not_claim_other_files(shared_data: Path, relative: str) -> None:
    adapters = all_adapters()
    claimed = [
        name for name in PART_B if name in adapters and adapters[name].sniff(shared_data / relative)
    ]
    assert claimed == []


@pytest.mark.parametrize(("relative", "fmt"), sorted(OUR_FILES.items()))
def test_detect_format_on_real_files(shared_data: Path, relative: str, fmt: str) -> None:
    # Across ALL registered adapters (the other engineer's too): exactly one claims the file.
    assert detect_format(shared_data / relative) == fmt


def test_sniffers_ignore_folders_and_empty_files(tmp_path: Path) -> None:
    (tmp_path / "empty.json").write_bytes(b"")
    adapters = all_adapters()
    for name in PART_B:
        assert not adapters[name].sniff(tmp_path)
        assert not adapters[name].sniff(tmp_path / "empty.json")
        assert not adapters[name].sniff(tmp_path / "missing.csv")


def test_helpers() -> None:
    assert detect_delimiter("key;vid_key;video_id;sentence") == ";"
    assert detect_delimiter("key,vid_key,video_id,sentence") == ","
    assert detect_delimiter("caption\turl") == "\t"
    assert infer_task("text", "video") == "video_retrieval"
    assert infer_task("video", "text") == "video_retrieval"
    assert infer_task("image", "text") == "caption_retrieval"
    assert infer_task("text", "text") == "text_retrieval"
    assert infer_task("video+text", "video") == "composed_retrieval"
    assert infer_task("image", "image") == "retrieval"
    assert infer_task("text", "image+text") == "retrieval"


def test_first_json_item_reads_only_the_head(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    # The document is longer than the head and is cut mid-way: only the first element matters.
    path.write_text("[" + ",".join(json.dumps({"query": {"text": "x" * 50}}) for _ in range(5000)))
    head = first_json_item(path)
    assert head is not None and head.kind == "list" and head.first == {"query": {"text": "x" * 50}}
    (tmp_path / "obj.json").write_text('{"v1": {"duration": 3, "timestamps": []}, "v2": ')
    head = first_json_item(tmp_path / "obj.json")
    assert head is not None and head.kind == "object" and head.first_key == "v1"


# --------------------------------------------------------------------------------------------
# Headerless CSV/TSV (`--option header=none`) and the unknown-option message.

MSMARCO_QUERIES = "annotations/msmarco_splade_toy/dev_queries_raw.tsv"


def test_headerless_tsv_maps_columns_by_position(shared_data: Path) -> None:
    path = shared_data / MSMARCO_QUERIES
    lines = path.read_text(encoding="utf-8").splitlines()
    first_qid, first_query = lines[0].split("\t")
    last_qid, last_query = lines[-1].split("\t")
    table = read_drafts(
        "generic",
        path,
        {"header": "none", "query_text": "1", "target_text": "0", "source_id": "0"},
    )
    # The first line is data, so it is record 0 and no line is lost.
    assert_each_record_once(table, len(lines))
    rows = rows_by_index(table)
    assert (rows[0]["query_text"], rows[0]["source_id"]) == (first_query, first_qid)
    assert (first_qid, first_query) == ("786786", " Androgen receptor define")
    assert rows[0]["target_text"] == "786786"
    assert json.loads(rows[0]["raw"]) == {"0": "786786", "1": " Androgen receptor define"}
    last = rows[len(lines) - 1]
    assert (last["query_text"], last["source_id"]) == (last_query, last_qid)
    assert table.column("reject_reason").null_count == len(lines)
    assert {r["task"] for r in rows.values()} == {"text_retrieval"}


def test_headed_read_of_a_headerless_file_suggests_header_none(shared_data: Path) -> None:
    # The user's first try: positions look like column names that the header line lacks.
    path = shared_data / MSMARCO_QUERIES
    with pytest.raises(InputError) as error:
        read_drafts("generic", path, {"query_text": "1", "target_text": "0"})
    message = str(error.value)
    assert "'786786'" in message, "the first data line was read as the header"
    assert "--option header=none" in message


def test_headerless_space_delimited_video_list(shared_data: Path) -> None:
    path = shared_data / "videos/mmaction2/video_test_list.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    options = {"header": "none", "query_video": "0", "target_text": "1"}
    # No , ; tab or | on the first line: the delimiter must be named, and the error says how.
    with pytest.raises(InputError, match=r"delimiter=CHAR \(or tab, space\)"):
        read_drafts("generic", path, options)
    table = read_drafts(
        "generic", path, {**options, "delimiter": "space", "task": "classification"}
    )
    assert_each_record_once(table, len(lines))
    video, label = lines[0].split(" ")
    row = rows_by_index(table)[0]
    assert (row["query_video"], row["target_text"]) == (video, label) == ("test.mp4", "0")
    assert row["task"] == "classification"


def test_headerless_csv_with_bad_records(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text(
        "a dog,a.jpg\n"
        ",b.jpg\n"  # no caption
        "a cat\n"  # no image: one field where the first line has two
        "\n"  # blank line: a record with nothing in it
        '"a cow, brown",c.jpg\n'
    )
    table = read_drafts("generic", path, {"header": "none", "query_text": "0", "target_image": "1"})
    assert_each_record_once(table, 5)
    rows = rows_by_index(table)
    assert (rows[0]["query_text"], rows[0]["target_images"]) == ("a dog", ["a.jpg"])
    assert rows[0]["reject_reason"] is None
    assert json.loads(rows[0]["raw"]) == {"0": "a dog", "1": "a.jpg"}
    assert rows[1]["reject_reason"] == "empty_text"
    assert rows[2]["reject_reason"] == "malformed_record"
    assert "target side is empty" in rows[2]["reject_message"]
    assert json.loads(rows[2]["raw"]) == {"0": "a cat", "1": None}
    assert rows[3]["reject_reason"] == "empty_text"
    assert (rows[4]["query_text"], rows[4]["target_images"]) == ("a cow, brown", ["c.jpg"])


def test_headerless_unknown_column_names_the_positions(tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text("1\ta dog\ta.jpg\n2\ta cat\tb.jpg\n")
    with pytest.raises(InputError) as error:
        read_drafts(
            "generic", path, {"header": "none", "query_text": "caption", "target_image": "3"}
        )
    message = str(error.value)
    assert (
        "'caption' (mapped by query_text)" in message and "'3' (mapped by target_image)" in message
    )
    assert "positions 0..2" in message and "3 fields" in message
    # Position 2 exists: the same file reads once the mapping uses positions.
    table = read_drafts("generic", path, {"header": "none", "query_text": "1", "target_image": "2"})
    assert table.column("target_images").to_pylist() == [["a.jpg"], ["b.jpg"]]


def test_headerless_line_longer_than_the_first_fails_in_one_line(tmp_path: Path) -> None:
    # Truncating the extra field would lose data silently; the whole file is refused instead.
    path = tmp_path / "ragged.csv"
    path.write_text("a dog,a.jpg\na cat,b.jpg,extra\n")
    with pytest.raises(InputError) as error:
        read_drafts("generic", path, {"header": "none", "query_text": "0", "target_image": "1"})
    message = str(error.value)
    assert "\n" not in message
    assert "more fields than the first line" in message


@pytest.mark.parametrize(
    ("relative", "options", "match"),
    [
        (
            "annotations/kinetics/kinetics_400_labels.csv",
            {"header": "no", "query_text": "1", "target_text": "0"},
            r"header='no'.*yes, none",
        ),
        (
            "annotations/image_text_pairs/img2dataset_test_1000.parquet",
            {"header": "none", "query_text": "1", "target_image": "0"},
            "header=none is for CSV/TSV files; this one is read as parquet",
        ),
    ],
)
def test_bad_header_options(shared_data: Path, relative: str, options: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        read_drafts("generic", shared_data / relative, options)


def test_unknown_option_error_is_short_and_names_keys(shared_data: Path) -> None:
    path = shared_data / MSMARCO_QUERIES
    with pytest.raises(ConfigError) as error:
        read_drafts("generic", path, {"headr": "none", "query_text": "1", "target_text": "0"})
    message = str(error.value)
    assert len(message) < 500, message
    assert "'headr'" in message and "did you mean 'header'" in message
    assert "query_text" in message and "delimiter" in message and "media_prefix" in message
    assert "curate formats" in message
    # Names only: the option descriptions live in `curate formats`.
    assert "column holding" not in message


class _NoOptionsAdapter(Adapter):
    """Not registered: a format that takes no --option, for check_options alone."""

    name = "demo"
    description = "a format without options"

    def read(self, ctx: AdapterContext) -> Iterator[pa.Table]:
        yield DRAFT_SCHEMA.empty_table()


def test_unknown_option_of_a_format_without_options() -> None:
    with pytest.raises(ConfigError) as error:
        check_options(_NoOptionsAdapter, {"colour": "red", "size": "2"})
    assert str(error.value) == (
        "format 'demo' does not understand options 'colour', 'size'; it takes no --option"
    )


# --- iter_json_list: one element at a time -----------------------------------------------------


def test_iter_json_list_equals_json_loads_whatever_the_buffer_cuts(tmp_path, monkeypatch):
    import random

    from curate.adapters import generic

    monkeypatch.setattr(generic, "JSON_CHUNK_CHARS", 64)  # every element crosses buffer ends
    rng = random.Random(0)
    path = tmp_path / "list.json"
    for trial in range(200):
        document = [
            {"id": i, "text": "é" * rng.randint(0, 150) + '"q"', "x": rng.random() * 10**i}
            for i in range(rng.randint(0, 20))
        ] + [12345678901234567890, -1.5e-7, "s", None, True, [[]], {}]
        rng.shuffle(document)
        text = json.dumps(document, indent=rng.choice([None, 2]), ensure_ascii=trial % 2 == 0)
        path.write_bytes(("\ufeff" * (trial % 5 == 0) + text).encode())
        assert list(generic.iter_json_list(path, expected="a list")) == document


def test_iter_json_list_errors_name_line_and_column(tmp_path, monkeypatch):
    from curate.adapters import generic

    monkeypatch.setattr(generic, "JSON_CHUNK_CHARS", 64)
    path = tmp_path / "bad.json"
    lines = ["[", *(json.dumps({"i": i}) + "," for i in range(100)), '{"i" 1}', "]"]
    path.write_text("\n".join(lines))  # the bad element sits far past the first buffers
    with pytest.raises(
        InputError, match=r"not valid JSON \(Expecting ':' delimiter at line 102, column 6\)"
    ):
        list(generic.iter_json_list(path, expected="a list"))
    for text, message in [
        ('{"a": 1}', "expected a list; found a JSON object"),
        ("", "the file is empty"),
        ("[1, 2", "expected ',' or ']'"),
        ("[1]\nx", "extra data after the list at line 2, column 1"),
    ]:
        path.write_text(text)
        with pytest.raises(InputError, match=re.escape(message)):
            list(generic.iter_json_list(path, expected="a list"))
    path.write_bytes(b'[{"t": "a\xff b"}]')  # not UTF-8: replaced, flagged later per record
    assert list(generic.iter_json_list(path, expected="a list")) == [{"t": "a\ufffd b"}]


def test_iter_json_list_holds_one_element_at_a_time(tmp_path, monkeypatch):
    import tracemalloc

    from curate.adapters import generic

    monkeypatch.setattr(generic, "JSON_CHUNK_CHARS", 1 << 16)
    path = tmp_path / "big.json"
    record = {"conversations": [{"from": "human", "value": "<image>\nwhat is " + "x" * 300}]}
    path.write_text(json.dumps([record] * 20_000))  # 7 MB of JSON
    tracemalloc.start()
    count = sum(1 for _ in generic.iter_json_list(path, expected="a list"))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 20_000
    assert peak < 2_000_000, peak  # json.loads would hold all 20k records (tens of MB)
