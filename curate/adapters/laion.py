"""LAION / img2dataset Parquet: one caption/URL row per record → text→image pairs.

Columns: a URL column (`URL` or `url`) and a caption column (`TEXT`, `caption`, `txt` or `text`),
optionally width, height, similarity, sha256hash, a sample id (`key`, `SAMPLE_ID`); a leftover
pandas index (`__index_level_0__`) is ignored. The URL stays a URL (the core records it as remote);
the extra columns are kept only in `raw`. Read by row-group batches with pyarrow and turned into
drafts by one polars query per batch (no Python loop per row). A folder is read file by file
(sorted); `record_index` is the row number within its file.

Rejects: a null or blank URL → `malformed_record`; a null or blank caption → `empty_text`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.adapters import register
from curate.adapters.base import Adapter, AdapterContext
from curate.adapters.generic import check_options, frame_to_drafts, input_files, parquet_columns
from curate.errors import InputError

TASK = "caption_retrieval"
URL_COLUMNS = ("URL", "url")
TEXT_COLUMNS = ("TEXT", "caption", "txt", "text", "CAPTION")
ID_COLUMNS = ("key", "SAMPLE_ID", "sample_id")
IGNORED_COLUMNS = ("__index_level_0__",)


def _pick(columns: Sequence[str], wanted: Sequence[str]) -> str | None:
    return next((name for name in wanted if name in columns), None)


def _drafts(
    frame: pl.DataFrame, path: Path, url: str, text: str, ident: str | None
) -> pl.DataFrame:
    url_col, text_col = pl.col(url).cast(pl.String), pl.col(text).cast(pl.String)
    no_url = url_col.is_null() | ~url_col.str.contains(r"\S")
    no_text = text_col.is_null() | ~text_col.str.contains(r"\S")
    raw_columns = [c for c in frame.columns if c != "record_index"]
    return frame.select(
        "record_index",
        pl.lit(str(path)).alias("input_file"),
        pl.struct(raw_columns).struct.json_encode().alias("raw"),
        pl.when(no_url)
        .then(pl.lit("malformed_record"))
        .when(no_text)
        .then(pl.lit("empty_text"))
        .alias("reject_reason"),
        pl.when(no_url)
        .then(pl.lit(f"the {url!r} column is empty"))
        .when(no_text)
        .then(pl.lit(f"the caption column {text!r} is empty"))
        .alias("reject_message"),
        pl.lit(TASK).alias("task"),
        (pl.col(ident).cast(pl.String) if ident else pl.lit(None, pl.String)).alias("source_id"),
        text_col.alias("query_text"),
        pl.concat_list(url_col).alias("target_images"),
    )


@register
class LaionAdapter(Adapter):
    """img2dataset/LAION Parquet (URL/TEXT, url/caption, url/txt) → t2i pairs with remote images."""

    name = "laion"
    version = "1"
    description = (
        "LAION/img2dataset Parquet with URL/TEXT, url/caption or url/txt columns → t2i caption "
        "pairs with remote images"
    )
    patterns = ("*.parquet",)

    @classmethod
    def sniff(cls, path: Path) -> bool:
        """Parquet with a `URL`/`url` column and a `TEXT`/`caption`/`txt`/`text` column."""
        if path.is_dir():
            files = sorted(path.glob("*.parquet"))
            path = files[0] if files else path
        columns = parquet_columns(path)
        return (
            columns is not None
            and _pick(columns, URL_COLUMNS) is not None
            and _pick(columns, TEXT_COLUMNS) is not None
        )

    def read(self, ctx: AdapterContext) -> Iterator[pa.Table]:
        check_options(type(self), ctx.options)
        for path in input_files(ctx.input_path, (".parquet",)):
            yield from self._read_file(path, ctx.batch_rows)

    @staticmethod
    def _read_file(path: Path, batch_rows: int) -> Iterator[pa.Table]:
        try:
            parquet = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as error:
            raise InputError(f"{path}: not a readable Parquet file ({error})") from None
        schema = parquet.schema_arrow
        columns = schema.names
        url, text = _pick(columns, URL_COLUMNS), _pick(columns, TEXT_COLUMNS)
        if url is None or text is None:
            raise InputError(
                f"{path}: expected a URL column ({' or '.join(URL_COLUMNS)}) and a caption column "
                f"({', '.join(TEXT_COLUMNS)}); the file has columns: {', '.join(columns)}"
            )
        # Binary columns (img2dataset can embed the image bytes) are not kept in `raw`.
        read = [
            name
            for name in columns
            if name not in IGNORED_COLUMNS
            and not pa.types.is_binary(schema.field(name).type)
            and not pa.types.is_large_binary(schema.field(name).type)
        ]
        ident = _pick(read, ID_COLUMNS)
        offset = 0
        for batch in parquet.iter_batches(batch_size=max(1, batch_rows), columns=read):
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            frame = frame.with_row_index("record_index", offset=offset).with_columns(
                pl.col("record_index").cast(pl.Int64)
            )
            offset += frame.height
            yield frame_to_drafts(_drafts(frame, path, url, text, ident))
