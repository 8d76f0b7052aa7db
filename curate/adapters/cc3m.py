"""CC3M / CC12M: headerless TSV of `caption<TAB>url` (CC12M writes `url<TAB>caption`).

Each non-blank line is one text→image caption pair whose image is the URL (the ingest core records
it as remote media). Polars streams the lines through one vectorised query (split, checks, raw
JSON), so a 5M-line file is read in bounded memory without a Python loop per line. Lines with another field
count, or without a URL, are rejected as `malformed_record`; an empty caption as `empty_text`.
Bytes that are not UTF-8 become U+FFFD (the core then rejects the text as `encoding_damage`).

This module also holds the streaming line reader that `textpairs` (MS MARCO TSV) reuses.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import polars as pl
import pyarrow as pa

from curate.adapters import register
from curate.adapters.base import Adapter, AdapterContext
from curate.adapters.generic import check_options, frame_to_drafts
from curate.errors import ConfigError, InputError

#: Bytes read per block; each block is cut at its last line end and split by polars at once.
BLOCK_BYTES = 32 << 20
#: Bytes a sniff may look at.
SNIFF_BYTES = 8192

_URL_RE = re.compile(r"^(?:https?|ftp)://", re.IGNORECASE)


def is_url(text: str) -> bool:
    """>>> is_url("https://x.org/a.jpg"), is_url("a/b.jpg")
    (True, False)
    """
    return bool(_URL_RE.match(text.strip()))


def head_lines(path: Path, *, nbytes: int = SNIFF_BYTES, max_lines: int = 20) -> list[str] | None:
    """The first complete, non-blank lines of a text file, or None when it is not one.

    Only `nbytes` are read; a line cut by that limit is dropped. Binary files (NUL bytes) and
    folders give None.
    """
    try:
        if not path.is_file():
            return None
        with path.open("rb") as handle:
            data = handle.read(nbytes + 1)
    except OSError:
        return None
    complete = len(data) <= nbytes
    data = data[:nbytes].removeprefix(codecs.BOM_UTF8)
    if b"\x00" in data:
        return None
    lines = data.decode("utf-8", "replace").split("\n")
    if not complete:
        lines = lines[:-1]
    return [line.removesuffix("\r") for line in lines if line.strip()][:max_lines]


def _non_blank(lines: pl.LazyFrame) -> pl.LazyFrame:
    line = pl.col("line")
    return lines.with_columns(
        pl.col("record_index").cast(pl.Int64),
        # A UTF-8 BOM only ever sits at the start of the file.
        pl.when(pl.col("record_index") == 0).then(line.str.strip_prefix("\ufeff")).otherwise(line),
    ).filter(line.str.contains(r"\S"))


def iter_line_blocks(
    path: Path,
    build: Callable[[pl.LazyFrame], pl.LazyFrame] = lambda lines: lines,
    *,
    batch_rows: int,
) -> Iterator[pl.DataFrame]:
    """Yield frames `build(lines)` of at most `batch_rows` rows covering the lines of `path`, in order.

    `lines` is a LazyFrame `(record_index: Int64, line: String)` of the non-blank lines; `build`
    adds the draft columns, so that polars streams the file through one parallel query.
    `record_index` is the 0-based physical line number (blank lines are skipped but counted), so
    a rejected line is found with `sed -n "$((i+1))p"`. CRLF endings and a UTF-8 BOM are removed.
    Invalid UTF-8 is replaced by U+FFFD: polars stops at such bytes, and the rest of the file is
    then read in blocks decoded by Python (slower, but only for damaged files).
    """
    yield from rebatch(_line_frames(path, build, batch_rows), max(1, batch_rows))


def _line_frames(
    path: Path, build: Callable[[pl.LazyFrame], pl.LazyFrame], batch_rows: int
) -> Iterator[pl.DataFrame]:
    # Damaged files are read by Python from the start. Switching from polars' parallel stream to
    # the lossy reader in the middle of a file gave rows another line's text now and then.
    if not _is_valid_utf8(path):
        yield from _lossy_blocks(path, build, start=0)
        return
    lines = pl.scan_lines(path, row_index_name="record_index", glob=False)
    for frame in build(_non_blank(lines)).collect_batches(chunk_size=batch_rows):
        if frame.height:
            yield frame


def _is_valid_utf8(path: Path, *, chunk_bytes: int = 1 << 22) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(chunk_bytes), b""):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _lossy_blocks(
    path: Path,
    build: Callable[[pl.LazyFrame], pl.LazyFrame],
    *,
    start: int,
    block_bytes: int = BLOCK_BYTES,
) -> Iterator[pl.DataFrame]:
    offset = 0  # physical line number of the block's first line
    carry = b""
    with path.open("rb") as handle:
        while True:
            block = handle.read(block_bytes)
            data = carry + block
            if block:
                cut = data.rfind(b"\n") + 1
                if cut == 0:  # one line longer than a block: keep reading
                    carry = data
                    continue
                data, carry = data[:cut], data[cut:]
            else:
                carry = b""
            n_lines = (data.count(b"\n") + (not data.endswith(b"\n"))) if data else 0
            if data and offset + n_lines > start:
                text = data.decode("utf-8", "replace").encode("utf-8")
                lines = pl.scan_lines(text, row_index_name="record_index", row_index_offset=offset)
                lines = _non_blank(lines).filter(pl.col("record_index") >= start)
                frame = build(lines).collect()
                if frame.height:
                    yield frame
            offset += n_lines
            if not block:
                return


def rebatch(frames: Iterator[pl.DataFrame], batch_rows: int) -> Iterator[pl.DataFrame]:
    """Frames of exactly `batch_rows` rows (the last may be shorter), whatever the input sizes.

    Ingest resumes a killed run by batch number, so batch boundaries must not depend on how the
    reader happened to chunk the file.
    """
    pending: list[pl.DataFrame] = []
    held = 0
    for frame in frames:
        pending.append(frame)
        held += frame.height
        if held < batch_rows:
            continue
        joined = pl.concat(pending, rechunk=False)
        start = 0
        while held - start >= batch_rows:
            yield joined.slice(start, batch_rows)
            start += batch_rows
        pending, held = [joined.slice(start)], held - start
    if held:
        yield pl.concat(pending, rechunk=False)


def fix_bad_lines(frame: pl.DataFrame, expected: str) -> pl.DataFrame:
    """On the rows flagged `_bad` (wrong field count), put the fields found in `raw` and say
    how many there are; drop the helper columns `_bad` and `line`.

    Done after the query, on those rows only: polars evaluates every `when` branch on every
    row, and per-row text is costly on millions of good lines.
    """
    bad = frame["_bad"]
    if bad.any():
        rows = bad.arg_true()
        fixed = frame.filter(bad).select(
            pl.struct(fields=pl.col("line").str.split("\t")).struct.json_encode().alias("raw"),
            pl.format(
                "expected {}, found {} tab-separated field(s)",
                pl.lit(expected),
                pl.col("line").str.split("\t").list.len(),
            ).alias("reject_message"),
        )
        frame = frame.with_columns(
            frame["raw"].scatter(rows, fixed["raw"]),
            frame["reject_message"].scatter(rows, fixed["reject_message"]),
        )
    return frame.drop("_bad", "line")


def _field(i: int) -> pl.Expr:
    return pl.col("fields").list.get(i, null_on_oob=True)


def _order_of(path: Path, option: str | None) -> str:
    if option is not None:
        if option not in ("caption,url", "url,caption"):
            raise ConfigError(
                f"cc3m: invalid order {option!r}; valid: 'caption,url' (CC3M) or 'url,caption' "
                "(CC12M), e.g. --option order=url,caption"
            )
        return option
    # Auto: the first line with two fields tells which one is the URL.
    for line in head_lines(path) or []:
        fields = line.split("\t")
        if len(fields) == 2:
            return "url,caption" if is_url(fields[0]) and not is_url(fields[1]) else "caption,url"
    return "caption,url"


@register
class CC3MAdapter(Adapter):
    """Headerless `caption<TAB>url` TSV (CC3M; CC12M's `url<TAB>caption` is detected)."""

    name = "cc3m"
    version = "1"
    description = (
        "CC3M/CC12M headerless TSV, caption<TAB>url (or url<TAB>caption) → t2i caption pairs "
        "with remote images"
    )
    patterns = ("*.tsv",)
    option_help: ClassVar[dict[str, str]] = {
        "order": "field order: caption,url (CC3M) or url,caption (CC12M); default: detected",
    }

    @classmethod
    def sniff(cls, path: Path) -> bool:
        """Every first line has exactly two tab fields, one of them (always the same) a URL."""
        lines = head_lines(path)
        if not lines:
            return False
        positions = set()
        for line in lines:
            fields = line.split("\t")
            if len(fields) != 2:
                return False
            urls = [i for i, f in enumerate(fields) if is_url(f)]
            if len(urls) != 1:
                return False
            positions.add(urls[0])
        return len(positions) == 1

    def read(self, ctx: AdapterContext) -> Iterator[pa.Table]:
        check_options(type(self), ctx.options)
        path = Path(ctx.input_path)
        if not path.is_file():
            raise InputError(f"{path}: format cc3m reads one TSV file; this is not a file")
        url_first = _order_of(path, ctx.options.get("order")) == "url,caption"
        caption, url = (_field(1), _field(0)) if url_first else (_field(0), _field(1))
        good = pl.col("fields").list.len() == 2
        has_url = url.str.contains(r"\S")
        has_caption = caption.str.contains(r"\S")
        # Literal branches only: the text for lines with the wrong field count is built by
        # fix_bad_lines for those (rare) lines alone.
        reason = (
            pl.when(~good)
            .then(pl.lit("malformed_record"))
            .when(~has_url)
            .then(pl.lit("malformed_record"))
            .when(~has_caption)
            .then(pl.lit("empty_text"))
        )
        expected = f"2 fields ({'url, caption' if url_first else 'caption, url'})"
        message = (
            pl.when(~good)
            .then(pl.lit(None, pl.String))  # filled in by fix_bad_lines
            .when(~has_url)
            .then(pl.lit("the url field is empty"))
            .when(~has_caption)
            .then(pl.lit("the caption is empty"))
        )

        def build(lines: pl.LazyFrame) -> pl.LazyFrame:
            return lines.with_columns(fields=pl.col("line").str.split("\t")).select(
                "record_index",
                pl.lit(str(path)).alias("input_file"),
                pl.struct(caption=caption, url=url).struct.json_encode().alias("raw"),
                reason.alias("reject_reason"),
                message.alias("reject_message"),
                pl.lit("caption_retrieval").alias("task"),
                caption.alias("query_text"),
                pl.concat_list(url).alias("target_images"),
                (~good).alias("_bad"),
                "line",
            )

        for frame in iter_line_blocks(path, build, batch_rows=ctx.batch_rows):
            yield frame_to_drafts(fix_bad_lines(frame, expected))
