"""WebVid-2M/10M metadata: CSV or Parquet with videoid, name, page_dir, duration, contentUrl.

Columns are found by name (their order varies between releases and re-saves; the video2dataset
parquet adds `__index_level_0__`). Each row becomes one text-to-video draft: `name` is the caption,
the target is either `contentUrl` (remote, recorded as such by ingest) or, with the local
video2dataset/WebVid layout, "{page_dir}/{videoid}.mp4" under the media root.

`video_root_layout`: `url` or `page_dir`. Default: `page_dir` when `--media-root` points somewhere
other than the input file's folder (you have the videos), else `url`.

`duration` is ISO-8601 ("PT00H00M17S"; plain seconds are accepted too). It is metadata of the
source video, not a clip bound: the parsed seconds become the draft's `annotated_duration`, which
gives the manifest's `duration` to videos that are not probed (the URLs), so a recipe's
`video_duration` filter works on them; they are also kept in `raw` as `duration_seconds` (null
when unparseable; such rows are not rejected). Rows without a
caption are rejected as empty_text, rows without the id or path they need as malformed_record.
A record is one data row; the scan streams, so 10M-row files need bounded memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import polars as pl
import pyarrow as pa

from curate.adapters import register
from curate.adapters.base import Adapter, AdapterContext
from curate.adapters.generic import (
    blank,
    check_options,
    input_files,
    iter_draft_tables,
    option_choice,
    parquet_columns,
    pattern_expr,
    reject_exprs,
    require_columns,
    scan_table,
    sniff_csv_header,
)

TASK = "video_retrieval"
LAYOUTS = ("url", "page_dir")
_ISO_DURATION = re.compile(
    r"P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE,
)
_SECONDS = re.compile(r"\d+(?:\.\d+)?")


def parse_duration(text: str | None) -> float | None:
    """Seconds from an ISO-8601 duration or a plain number of seconds; None when neither.

    >>> parse_duration("PT00H00M17S"), parse_duration("P1DT2H"), parse_duration("12.5")
    (17.0, 93600.0, 12.5)
    >>> parse_duration("PT") is None and parse_duration("17 s") is None
    True
    """
    if text is None:
        return None
    text = text.strip()
    if _SECONDS.fullmatch(text):
        return float(text)
    match = _ISO_DURATION.fullmatch(text)
    if match is None or not any(match.groups()):
        return None
    days, hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
    return days * 86400.0 + hours * 3600.0 + minutes * 60.0 + secs


def _parse_durations(values: pl.Series) -> pl.Series:
    # A corpus has few distinct durations (WebVid: seconds up to a minute): parse each once.
    parsed = {value: parse_duration(value) for value in values.unique().to_list()}
    return values.replace_strict(parsed, default=None, return_dtype=pl.Float64)


def duration_seconds(expr: pl.Expr) -> pl.Expr:
    """`parse_duration` over a column, vectorised by parsing each distinct value once."""
    return expr.cast(pl.String).map_batches(
        _parse_durations, return_dtype=pl.Float64, is_elementwise=True
    )


@register
class WebvidAdapter(Adapter):
    name = "webvid"
    version = "2"  # 2: annotated_duration
    description = (
        "WebVid-2M/10M metadata CSV or Parquet (videoid, name, page_dir, duration as ISO-8601, "
        "contentUrl, any column order); text-to-video pairs, remote URLs or the local "
        "page_dir/videoid.mp4 layout."
    )
    patterns = ("results_*.csv", "*webvid*.csv", "*.parquet")
    option_help: ClassVar[dict[str, str]] = {
        "video_root_layout": "url (target = contentUrl) or page_dir (target = "
        "{page_dir}/{videoid}.mp4 under the media root); default page_dir when --media-root is "
        "given, else url",
    }

    @classmethod
    def sniff(cls, path: Path) -> bool:
        columns = parquet_columns(path)
        if columns is None:
            header = sniff_csv_header(path)
            columns = header[0] if header else None
        if not columns:
            return False
        return {"videoid", "name"} <= set(columns) and bool(
            {"contentUrl", "page_dir"} & set(columns)
        )

    def read(self, ctx: AdapterContext) -> Iterator[pa.Table]:
        check_options(type(self), ctx.options)
        for path in input_files(ctx.input_path, (".csv", ".parquet")):
            default = "url" if _same_dir(ctx.media_root, path.parent) else "page_dir"
            layout = option_choice(ctx.options, "video_root_layout", LAYOUTS, default)
            yield from self._read_file(path, layout, ctx.batch_rows)

    @staticmethod
    def _read_file(path: Path, layout: str, batch_rows: int) -> Iterator[pa.Table]:
        lf, columns = scan_table(path)
        required = {"videoid": "the video id", "name": "the caption"}
        if layout == "url":
            required["contentUrl"] = "the video URL (video_root_layout=url)"
        else:
            required["page_dir"] = "the video's folder (video_root_layout=page_dir)"
        require_columns(path, columns, required)
        # Raw keeps every column as read, plus the parsed duration.
        encoded = [pl.col(c) for c in columns]
        if "duration" in columns:
            encoded.append(duration_seconds(pl.col("duration")).alias("duration_seconds"))
        video_id = pl.col("videoid").cast(pl.String).str.strip_chars()
        if layout == "url":
            target = pl.col("contentUrl").cast(pl.String).str.strip_chars()
            target_name = "contentUrl"
        else:
            page_dir = pl.col("page_dir").cast(pl.String).str.strip_chars()
            target = pattern_expr(
                "{page_dir}/{videoid}.mp4",
                {"page_dir": page_dir, "videoid": video_id},
                option="video_root_layout",
            )
            target_name = "page_dir"
        caption = pl.col("name").cast(pl.String)
        missing_id = blank(video_id)
        missing_target = blank(pl.col(target_name).cast(pl.String))
        yield from iter_draft_tables(
            lf,
            path,
            batch_rows,
            [
                pl.struct(encoded).struct.json_encode().alias("raw"),
                pl.lit(TASK).alias("task"),
                video_id.alias("source_id"),
                caption.alias("query_text"),
                target.alias("target_video"),
                (
                    duration_seconds(pl.col("duration"))
                    if "duration" in columns
                    else pl.lit(None, pl.Float64)
                ).alias("annotated_duration"),
                *reject_exprs(
                    [
                        (blank(caption), "empty_text", "the row has no caption (name)"),
                        (missing_id, "malformed_record", "the row has no videoid"),
                        (missing_target, "malformed_record", f"the row has no {target_name}"),
                    ]
                ),
            ],
        )


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a == b
