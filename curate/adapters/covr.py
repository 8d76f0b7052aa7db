"""WebVid-CoVR composed video retrieval: CSV of (source video, modification text, target video).

The real files (lucas-ventura/CoVR: webvid2m-covr_train.csv, webvid8m-covr_val/test.csv) have the
columns `pth1` (source), `pth2` (target), `edit` (the modification text), plus `txt1`/`txt2`
(the two videos' WebVid captions), `scores`, sometimes `id`. A path is "<page>/<videoid>" without
extension, laid out under the WebVid video folder as "<page>/<videoid>.mp4". A simpler header
`source_video,target_video,edit` is accepted too; values that already end with a video extension
are kept as written.

Each row becomes a vt2v composed_retrieval draft: query_video = source, query_text = edit,
target_video = target; source_id = `id` when present. Captions and scores stay in `raw`. A record
is one data row; rows without edit text are empty_text, rows without a path malformed_record.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import polars as pl
import pyarrow as pa

from curate.adapters import register
from curate.adapters.base import Adapter, AdapterContext
from curate.adapters.generic import (
    VIDEO_EXTENSIONS,
    blank,
    check_options,
    check_pattern,
    input_files,
    iter_draft_tables,
    pattern_expr,
    raw_expr,
    reject_exprs,
    require_columns,
    scan_table,
    sniff_csv_header,
)

TASK = "composed_retrieval"
#: (source column, target column) pairs, in order of preference.
HEADERS = (("pth1", "pth2"), ("source_video", "target_video"))
_EXTENSION_RE = "(" + "|".join(e.replace(".", r"\.") for e in VIDEO_EXTENSIONS) + ")$"


@register
class CovrAdapter(Adapter):
    name = "covr"
    version = "1"
    description = (
        "WebVid-CoVR CSV (pth1, pth2, edit, txt1, txt2, ... or source_video, target_video, edit): "
        "source video + modification text -> target video (vt2v)."
    )
    patterns = ("webvid2m-covr_*.csv", "webvid8m-covr_*.csv", "*.csv")
    option_help: ClassVar[dict[str, str]] = {
        "video_pattern": "file of a video path without extension, relative to the media root "
        "(default '{path}.mp4'; values with a video extension are kept as written)",
    }

    @classmethod
    def sniff(cls, path: Path) -> bool:
        header = sniff_csv_header(path)
        if header is None:
            return False
        columns = set(header[0])
        return "edit" in columns and any({s, t} <= columns for s, t in HEADERS)

    def read(self, ctx: AdapterContext) -> Iterator[pa.Table]:
        check_options(type(self), ctx.options)
        pattern = ctx.options.get("video_pattern", "{path}.mp4")
        check_pattern(pattern, option="video_pattern", fields=("path",))
        for path in input_files(ctx.input_path, (".csv",)):
            yield from self._read_file(path, pattern, ctx.batch_rows)

    @staticmethod
    def _read_file(path: Path, pattern: str, batch_rows: int) -> Iterator[pa.Table]:
        lf, columns = scan_table(path)
        source, target = next(((s, t) for s, t in HEADERS if {s, t} <= set(columns)), HEADERS[0])
        require_columns(
            path,
            columns,
            {
                source: "the source video",
                target: "the target video",
                "edit": "the modification text",
            },
        )

        def video(column: str) -> pl.Expr:
            value = pl.col(column).cast(pl.String).str.strip_chars()
            has_extension = value.str.to_lowercase().str.contains(_EXTENSION_RE)
            return (
                pl.when(has_extension)
                .then(value)
                .otherwise(pattern_expr(pattern, {"path": value}, option="video_pattern"))
            )

        edit = pl.col("edit").cast(pl.String)
        source_path = pl.col(source).cast(pl.String)
        target_path = pl.col(target).cast(pl.String)
        source_id = pl.col("id").cast(pl.String) if "id" in columns else pl.lit(None, pl.String)
        yield from iter_draft_tables(
            lf,
            path,
            batch_rows,
            [
                raw_expr(columns).alias("raw"),
                pl.lit(TASK).alias("task"),
                source_id.alias("source_id"),
                edit.alias("query_text"),
                video(source).alias("query_video"),
                video(target).alias("target_video"),
                *reject_exprs(
                    [
                        (
                            blank(source_path),
                            "malformed_record",
                            f"the row has no source video ({source})",
                        ),
                        (
                            blank(target_path),
                            "malformed_record",
                            f"the row has no target video ({target})",
                        ),
                        (blank(edit), "empty_text", "the row has no modification text (edit)"),
                    ]
                ),
            ],
        )
