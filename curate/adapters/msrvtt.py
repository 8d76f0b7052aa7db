"""MSR-VTT: the JSFusion 1k-A CSV and the official `train_val_videodatainfo.json`.

Both become text-to-video retrieval drafts (one per caption) whose target is the video file named
by `video_pattern` (default "{video_id}.mp4", relative to the media root).

- CSV (`key;vid_key;video_id;sentence`): the JSFusion test split is often re-saved with ';'
  delimiters and CRLF line ends; the original uses ','. The delimiter is detected from the header.
  A record is one data row. The file does not say its split: pass `--split test` for 1k-A.
- JSON (`{videos: [{video_id, split, ...}], sentences: [{video_id, caption, sen_id}]}`): a record
  is one entry of `sentences`; its split is the `split` of its video as written ("train",
  "validate", "test"). The videos' "start time"/"end time" locate the clip in its YouTube source;
  the distributed video files are already those clips, so no clip bounds are set.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
import pyarrow as pa

from curate.adapters import register
from curate.adapters.base import Adapter, AdapterContext, batched_drafts, draft, raw_json, rejected
from curate.adapters.generic import (
    blank,
    check_options,
    check_pattern,
    format_pattern,
    input_files,
    iter_draft_tables,
    load_json,
    pattern_expr,
    raw_expr,
    read_head,
    reject_exprs,
    require_columns,
    scan_csv,
    sniff_csv_header,
)
from curate.errors import InputError

TASK = "video_retrieval"
CSV_COLUMNS = {"video_id": "the video of each caption", "sentence": "the caption"}
_JSON_HEAD = re.compile(r'"videos"\s*:\s*\[\s*\{[^\]]*?"video_id"\s*:', re.DOTALL)


@register
class MsrvttAdapter(Adapter):
    name = "msrvtt"
    version = "1"
    description = (
        "MSR-VTT captions: the JSFusion 1k-A CSV (';' or ',' delimited, header "
        "key,vid_key,video_id,sentence) or the official train_val_videodatainfo.json; "
        "text-to-video pairs."
    )
    patterns = ("MSRVTT_JSFUSION_test.csv", "train_val_videodatainfo.json", "*.csv", "*.json")
    option_help: ClassVar[dict[str, str]] = {
        "video_pattern": "video file of a video_id, relative to the media root "
        "(default '{video_id}.mp4')",
    }

    @classmethod
    def sniff(cls, path: Path) -> bool:
        header = sniff_csv_header(path)
        if header is not None:
            return {"video_id", "sentence"} <= set(header[0])
        head = read_head(path)
        return bool(head and head.lstrip().startswith("{") and _JSON_HEAD.search(head))

    def read(self, ctx: AdapterContext) -> Iterator[pa.Table]:
        check_options(type(self), ctx.options)
        pattern = check_pattern(
            ctx.options.get("video_pattern", "{video_id}.mp4"),
            option="video_pattern",
            fields=("video_id",),
        )
        for path in input_files(ctx.input_path, (".csv", ".json")):
            if (read_head(path, 4096) or "").lstrip().startswith("{"):
                yield from self._read_json(path, pattern, ctx.batch_rows)
            else:
                yield from self._read_csv(path, pattern, ctx.batch_rows)

    # -- CSV: vectorised ---------------------------------------------------------------------

    @staticmethod
    def _read_csv(path: Path, pattern: str, batch_rows: int) -> Iterator[pa.Table]:
        header = sniff_csv_header(path)
        if header is None:
            raise InputError(f"{path}: not a delimited file with a header line")
        _, delimiter = header
        lf = scan_csv(path, delimiter)
        require_columns(path, lf.collect_schema().names(), CSV_COLUMNS)
        columns = lf.collect_schema().names()
        video_id = pl.col("video_id").str.strip_chars()
        yield from iter_draft_tables(
            lf,
            path,
            batch_rows,
            [
                raw_expr(columns).alias("raw"),
                pl.lit(TASK).alias("task"),
                video_id.alias("source_id"),
                pl.col("sentence").alias("query_text"),
                pattern_expr(pattern, {"video_id": video_id}, option="video_pattern").alias(
                    "target_video"
                ),
                *reject_exprs(
                    [
                        (blank(pl.col("video_id")), "malformed_record", "the row has no video_id"),
                        (blank(pl.col("sentence")), "empty_text", "the row has no sentence"),
                    ]
                ),
            ],
        )

    # -- JSON: record at a time ---------------------------------------------------------------

    @staticmethod
    def _read_json(path: Path, pattern: str, batch_rows: int) -> Iterator[pa.Table]:
        document = load_json(path)
        if not (
            isinstance(document, dict)
            and isinstance(document.get("videos"), list)
            and isinstance(document.get("sentences"), list)
        ):
            raise InputError(
                f"{path}: expected the MSR-VTT videodatainfo layout "
                "{videos: [{video_id, split, ...}], sentences: [{video_id, caption, sen_id}]}; "
                f"found a JSON {type(document).__name__}"
                + (f" with keys {sorted(document)[:10]}" if isinstance(document, dict) else "")
            )
        videos: dict[str, dict[str, Any]] = {}
        for video in document["videos"]:
            if isinstance(video, dict) and isinstance(video.get("video_id"), str):
                videos[video["video_id"]] = video

        def rows() -> Iterator[dict[str, Any]]:
            for index, sentence in enumerate(document["sentences"]):
                yield _sentence_draft(path, index, sentence, videos, pattern)

        yield from batched_drafts(rows(), batch_rows=batch_rows)


def _sentence_draft(
    path: Path, index: int, sentence: Any, videos: dict[str, dict[str, Any]], pattern: str
) -> dict[str, Any]:
    if not isinstance(sentence, dict):
        return rejected(
            record_index=index, input_file=path, reason="malformed_record",
            message=f"sentence entry is a JSON {type(sentence).__name__}, not an object",
            raw=raw_json(sentence), task=TASK,
        )  # fmt: skip
    video_id = sentence.get("video_id")
    video = videos.get(video_id) if isinstance(video_id, str) else None
    raw = raw_json({"sentence": sentence, "video": video})
    if not isinstance(video_id, str) or not video_id.strip():
        return rejected(
            record_index=index, input_file=path, reason="malformed_record",
            message="sentence has no video_id", raw=raw, task=TASK,
        )  # fmt: skip
    if video is None:
        return rejected(
            record_index=index, input_file=path, reason="malformed_record",
            message=f"video_id {video_id!r} is not listed in 'videos', so its split is unknown",
            raw=raw, task=TASK,
        )  # fmt: skip
    caption = sentence.get("caption")
    if caption is not None and not isinstance(caption, str):
        return rejected(
            record_index=index, input_file=path, reason="malformed_record",
            message=f"caption is a JSON {type(caption).__name__}, not text", raw=raw, task=TASK,
        )  # fmt: skip
    if caption is None or not caption.strip():
        return rejected(
            record_index=index, input_file=path, reason="empty_text",
            message="sentence has no caption", raw=raw, task=TASK,
        )  # fmt: skip
    split = video.get("split")
    return draft(
        record_index=index,
        input_file=path,
        task=TASK,
        raw=raw,
        split=split if isinstance(split, str) and split else None,
        source_id=video_id,
        query_text=caption,
        target_video=format_pattern(pattern, option="video_pattern", video_id=video_id),
    )
