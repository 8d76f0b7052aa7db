"""The generic adapter: JSONL, CSV/TSV or Parquet driven by a column mapping, plus shared helpers.

`--format generic` never guesses: the user maps draft fields to the file's columns with
`--option FIELD=COLUMN`, e.g. for data-juicer's video JSONL:

    curate ingest demo-dataset-videos.jsonl --format generic --name dj \\
        --option query_text=text --option target_video=videos \\
        --option strip_tokens='<__dj__video>' --option media_strip_prefix=../../tests/ops/data/

Mapped columns that the file lacks are reported before any row is read (for JSON Lines: keys
that none of the first 1000 records has). A column may hold a list (images: several per side;
videos: exactly one). A record is one JSONL line that is not blank, one
element of a JSON list, or one data row of a CSV/Parquet file; `record_index` counts them from 0.

A CSV/TSV file without a header line is read with `--option header=none`: every line is a
record (the first is record 0; a blank line is a record with empty columns) and columns are
mapped by 0-based position, e.g. mmaction2's `video label` lists:

    curate ingest video_test_list.txt --format generic --name mm --option header=none \\
        --option delimiter=space --option query_video=0 --option target_text=1 \\
        --option task=classification

The number of columns is that of the first line; a later line with more fields stops the read
(as in a file with a header), one with fewer leaves the missing columns empty.

This module also holds the helpers the other tabular and JSON adapters of this package share
(content sniffing, streaming polars batches, vectorised draft tables); they have no other home
among the files this adapter family owns.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import json
import math
import re
import string
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
import pyarrow as pa

from curate.adapters import register
from curate.adapters.base import Adapter, AdapterContext, batched_drafts, draft, raw_json, rejected
from curate.errors import ConfigError, InputError
from curate.schema import DRAFT_SCHEMA, TASK_KINDS, modality_of

#: How much of a file format sniffing may read.
HEAD_BYTES = 64 * 1024
#: Column that carries the 0-based record number through polars batches.
RECORD_INDEX = "__record_index"
CSV_DELIMITERS = (",", ";", "\t", "|")
VIDEO_EXTENSIONS = (
    ".mp4",
    ".webm",
    ".mkv",
    ".avi",
    ".mov",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".flv",
    ".3gp",
)


# --------------------------------------------------------------------------------------------
# Sniffing helpers: read at most HEAD_BYTES, never raise.


def read_head(path: Path, size: int = HEAD_BYTES) -> str | None:
    """The first `size` bytes of a regular file as text (BOM dropped), or None."""
    try:
        if not path.is_file():
            return None
        with path.open("rb") as handle:
            data = handle.read(size)
    except OSError:
        return None
    return data.decode("utf-8", errors="replace").lstrip("\ufeff")


def detect_delimiter(header_line: str) -> str:
    """The delimiter that splits a CSV header into the most fields.

    >>> detect_delimiter("key;vid_key;video_id;sentence")
    ';'
    """
    best, best_count = ",", 1
    for delimiter in CSV_DELIMITERS:
        fields = next(csv.reader([header_line], delimiter=delimiter), [])
        if len(fields) > best_count:
            best, best_count = delimiter, len(fields)
    return best


def sniff_csv_header(path: Path) -> tuple[list[str], str] | None:
    """Column names and delimiter of a delimited text file with a header line, or None."""
    head = read_head(path)
    if not head or head.lstrip()[:1] in ("{", "["):
        return None
    line = head.splitlines()[0] if head.splitlines() else ""
    if not line.strip():
        return None
    delimiter = detect_delimiter(line)
    columns = [c.strip() for c in next(csv.reader([line], delimiter=delimiter), [])]
    if len(columns) < 2:
        return None
    return columns, delimiter


def parquet_columns(path: Path) -> list[str] | None:
    """Column names from a Parquet footer, or None when `path` is not Parquet."""
    head = None
    try:
        if not path.is_file():
            return None
        with path.open("rb") as handle:
            head = handle.read(4)
    except OSError:
        return None
    if head != b"PAR1":
        return None
    try:
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    except Exception:
        return None


@dataclass(frozen=True)
class JsonHead:
    """The start of a JSON document: its container kind and its first entry."""

    kind: str  # "list" or "object"
    first: Any  # first list element, or the first value of the object
    first_key: str | None = None


def first_json_item(path: Path, size: int = HEAD_BYTES) -> JsonHead | None:
    """Decode only the first element (list) or first key/value (object) of a JSON file."""
    head = read_head(path, size)
    if head is None:
        return None
    text = head.lstrip()
    decoder = json.JSONDecoder()
    try:
        if text.startswith("["):
            position = _skip_space(text, 1)
            value, _ = decoder.raw_decode(text, position)
            return JsonHead("list", value)
        if text.startswith("{"):
            position = _skip_space(text, 1)
            key, position = decoder.raw_decode(text, position)
            position = _skip_space(text, position)
            if not isinstance(key, str) or text[position : position + 1] != ":":
                return None
            value, _ = decoder.raw_decode(text, _skip_space(text, position + 1))
            return JsonHead("object", value, key)
    except (ValueError, IndexError):
        return None
    return None


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


# --------------------------------------------------------------------------------------------
# Reading helpers.


def check_options(cls: type[Adapter], options: Mapping[str, str]) -> None:
    """Unknown --option keys are typos: name them, a close match, and the valid keys by name.

    Only names: the keys' meanings are long (`curate formats` shows them), and listing them would
    make a one-line error of thousands of characters.
    """
    known = list(cls.option_help)
    unknown = sorted(set(options) - set(known))
    if not unknown:
        return
    guesses = [
        match[0]
        for key in unknown
        if (match := difflib.get_close_matches(key, known, n=1, cutoff=0.75))
    ]
    did_you_mean = f" (did you mean {', '.join(map(repr, guesses))}?)" if guesses else ""
    valid = (
        f"its options are: {', '.join(known)} (see `curate formats` for what each means)"
        if known
        else "it takes no --option"
    )
    raise ConfigError(
        f"format {cls.name!r} does not understand option{'s' if len(unknown) > 1 else ''} "
        f"{', '.join(map(repr, unknown))}{did_you_mean}; {valid}"
    )


def option_choice(
    options: Mapping[str, str], key: str, choices: Sequence[str], default: str
) -> str:
    value = options.get(key, default)
    if value not in choices:
        raise ConfigError(f"option {key}={value!r} is invalid; choose one of: {', '.join(choices)}")
    return value


def input_files(input_path: Path, suffixes: Sequence[str]) -> list[Path]:
    """`input_path` itself, or the non-empty files under a folder whose names end with
    `suffixes`, sorted. (An empty file in a folder holds no record; ingest lists it among the
    files that gave none instead of failing on it.)"""
    if input_path.is_file():
        return [input_path]
    if input_path.is_dir():
        found = sorted(
            p
            for p in input_path.rglob("*")
            if p.is_file() and p.name.lower().endswith(tuple(suffixes)) and p.stat().st_size
        )
        if not found:
            raise InputError(
                f"{input_path}: the folder holds no {'/'.join(suffixes)} file; "
                "give a file or a folder that contains them"
            )
        return found
    raise InputError(f"{input_path}: no such file or folder")


#: Characters read at a time by `iter_json_list`; an element longer than this grows the buffer.
JSON_CHUNK_CHARS = 1 << 20
_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def iter_json_list(path: Path, *, expected: str) -> Iterator[Any]:
    """The elements of a file holding one JSON list, decoded one at a time.

    Memory is bounded by the longest element, not the file: LLaVA-665k or a UNITE training
    list is a gigabyte of JSON, which `json.loads` would turn into several gigabytes of Python
    objects at once. Bytes that are not UTF-8 become U+FFFD (ingest flags them per record), as
    in `load_json`. A file that is not a list raises InputError("{path}: expected {expected};
    found a JSON <kind>"); a syntax error raises the same error as `load_json`, with its line
    and column.
    """
    decoder = json.JSONDecoder()
    text_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    with path.open("rb") as handle:
        buffer = ""
        lines_before = 0  # line breaks in the text already dropped from the buffer
        at_end = False

        def more() -> bool:
            nonlocal buffer, at_end
            if at_end:
                return False
            # At least as much as is held: a long element is reached in a few reads.
            chunk = handle.read(max(JSON_CHUNK_CHARS, len(buffer)))
            at_end = not chunk
            buffer += text_decoder.decode(chunk, final=at_end)
            return True

        def invalid(error: json.JSONDecodeError | None, position: int, message: str) -> InputError:
            line = lines_before + buffer.count("\n", 0, position) + 1
            column = position - buffer.rfind("\n", 0, position)
            detail = error.msg if error else message
            return InputError(
                f"{path}: not valid JSON ({detail} at line {line}, column {column}); the whole "
                "file is one JSON document, so fix or re-export it"
            )

        def skip_space(position: int) -> int:
            while True:
                position = _JSON_SPACE.match(buffer, position).end()  # type: ignore[union-attr]
                if position < len(buffer) or not more():
                    return position

        more()
        if buffer.startswith("\ufeff"):
            buffer = buffer[1:]
        position = skip_space(0)
        if buffer[position : position + 1] != "[":
            if position >= len(buffer):
                raise invalid(None, position, "the file is empty")
            kind = {"{": "object", '"': "string"}.get(buffer[position], "value")
            raise InputError(f"{path}: expected {expected}; found a JSON {kind}")
        position = skip_space(position + 1)
        if buffer[position : position + 1] == "]":
            position += 1
        else:
            while True:
                try:
                    value, end = decoder.raw_decode(buffer, position)
                except json.JSONDecodeError as error:
                    # Cut by the buffer's end (an open string, or an error at the very end):
                    # read on. An error well inside the buffer is in the file itself.
                    cut = error.msg.startswith("Unterminated") or error.pos >= len(buffer) - 64
                    if cut and more():
                        continue
                    raise invalid(error, error.pos, "") from None
                # A number cut by the buffer's end ("1.5e" of "1.5e-7") decodes as a shorter one:
                # near the end, read on and decode again.
                if end >= len(buffer) - 64 and more():
                    continue
                yield value
                position = skip_space(end)
                separator = buffer[position : position + 1]
                if separator == "]":
                    position += 1
                    break
                if separator != ",":
                    raise invalid(None, position, "expected ',' or ']' after an element")
                position = skip_space(position + 1)
                if position > JSON_CHUNK_CHARS:  # drop what was decoded; keep the buffer small
                    lines_before += buffer.count("\n", 0, position)
                    buffer, position = buffer[position:], 0
        position = skip_space(position)
        if position < len(buffer):
            raise invalid(None, position, "extra data after the list")


def load_json(path: Path) -> Any:
    """A whole JSON document; undecodable bytes become U+FFFD (ingest flags them per record)."""
    text = path.read_bytes().decode("utf-8", errors="replace").lstrip("\ufeff")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(
            f"{path}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); "
            "the whole file is one JSON document, so fix or re-export it"
        ) from None


def scan_csv(path: Path, separator: str, *, has_header: bool = True) -> pl.LazyFrame:
    """All columns as strings; bad UTF-8 becomes U+FFFD so ingest can flag it per record.

    Without a header the first line is data, and columns are named by 0-based position:
    "0", "1", ... (as many as the first line has fields).
    """
    return pl.scan_csv(
        path,
        separator=separator,
        has_header=has_header,
        with_column_names=None if has_header else _position_names,
        infer_schema=False,
        encoding="utf8-lossy",
        raise_if_empty=False,
    )


def _position_names(columns: list[str]) -> list[str]:
    return [str(position) for position in range(len(columns))]


def scan_table(
    path: Path, *, separator: str | None = None, has_header: bool = True
) -> tuple[pl.LazyFrame, list[str]]:
    """A lazy frame and its column names for a Parquet or delimited text file (by content).

    With `has_header=False` a delimited file's columns are "0", "1", ... (see `scan_csv`).
    """
    columns = parquet_columns(path)
    if columns is not None:
        return pl.scan_parquet(path, glob=False), columns
    if separator is None:
        # The delimiter is the one that splits the first line most; header or data alike.
        header = sniff_csv_header(path)
        if header is None:
            if has_header:
                raise InputError(
                    f"{path}: neither Parquet nor a delimited text file with a header line"
                )
            raise InputError(
                f"{path}: cannot tell the delimiter: the first line splits on none of "
                "',' ';' tab '|'; give it with --option delimiter=CHAR (or tab, space)"
            )
        separator = header[1]
    lf = scan_csv(path, separator, has_header=has_header)
    try:
        columns = list(lf.collect_schema().names())
    except pl.exceptions.PolarsError as error:
        raise InputError(f"{path}: cannot read it as a table: {error}") from None
    return lf, columns


def iter_frames(lf: pl.LazyFrame, path: Path, batch_rows: int) -> Iterator[pl.DataFrame]:
    """Stream `lf` in input order, in frames of at most `batch_rows`, with RECORD_INDEX added."""
    yield from _collect_batches(lf.with_row_index(RECORD_INDEX), path, batch_rows)


def iter_draft_tables(
    lf: pl.LazyFrame, path: Path, batch_rows: int, columns: Sequence[pl.Expr]
) -> Iterator[pa.Table]:
    """Stream DRAFT_SCHEMA tables of `lf` mapped through `columns` (draft-named expressions).

    The mapping runs inside polars' streaming engine, so reading and mapping overlap on all cores
    and only one batch at a time reaches Python. Provenance is added here: `record_index` (the
    row's position in the file) and `input_file`; `columns` may use `pl.col(RECORD_INDEX)`.
    """
    provenance = [
        pl.col(RECORD_INDEX).cast(pl.Int64).alias("record_index"),
        pl.lit(str(path)).alias("input_file"),
    ]
    query = lf.with_row_index(RECORD_INDEX).select(*provenance, *columns)
    for frame in _collect_batches(query, path, batch_rows):
        yield frame_to_drafts(frame)


def _collect_batches(lf: pl.LazyFrame, path: Path, batch_rows: int) -> Iterator[pl.DataFrame]:
    try:
        for frame in lf.collect_batches(chunk_size=batch_rows, maintain_order=True):
            if frame.height:
                yield frame
    except pl.exceptions.PolarsError as error:
        # Polars explains over several lines, some about options we do not expose; the first
        # line says what is wrong, and the error stays one line.
        first_line = next((line for line in str(error).splitlines() if line.strip()), "")
        raise InputError(
            f"{path}: cannot read it as a table ({type(error).__name__}: {first_line[:200]}); "
            "check the delimiter, the quoting and that no row has more fields than the first line"
        ) from None


def require_columns(
    path: Path, present: Iterable[str], required: Mapping[str, str], *, hint: str = ""
) -> None:
    """Raise before reading rows when a needed column is missing.

    `required` maps a column name to what it is used for (shown in the message); `hint`, when
    given, ends the message with how to fix it.
    """
    have = list(present)
    missing = [name for name in required if name not in have]
    if missing:
        needs = "; ".join(f"{name!r} ({required[name]})" for name in missing)
        raise InputError(
            f"{path}: missing column(s) {needs}; the file has columns: "
            f"{', '.join(repr(c) for c in have if c != RECORD_INDEX) or 'none'}"
            + (f"; {hint}" if hint else "")
        )


def raw_expr(columns: Sequence[str]) -> pl.Expr:
    """The record as read, as a JSON object of its columns."""
    return pl.struct([pl.col(c) for c in columns]).struct.json_encode()


def blank(expr: pl.Expr) -> pl.Expr:
    """True where a string is null or only whitespace."""
    return expr.is_null() | (expr.str.strip_chars().str.len_chars() == 0)


def pattern_expr(pattern: str, fields: Mapping[str, pl.Expr], *, option: str) -> pl.Expr:
    """A vectorised `pattern.format(**fields)`; only the named fields are allowed."""
    parts: list[pl.Expr] = []
    used = False
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as error:
        raise ConfigError(f"option {option}={pattern!r} is not a valid pattern: {error}") from None
    for literal, name, spec, conversion in parsed:
        if literal:
            parts.append(pl.lit(literal))
        if name is None:
            continue
        if name not in fields or spec or conversion:
            raise ConfigError(
                f"option {option}={pattern!r} uses {{{name}}}; it may only use "
                f"{', '.join('{' + f + '}' for f in fields)}"
            )
        parts.append(fields[name].cast(pl.String))
        used = True
    if not used:
        raise ConfigError(
            f"option {option}={pattern!r} names no field; include one of "
            f"{', '.join('{' + f + '}' for f in fields)}"
        )
    return pl.concat_str(parts)


def format_pattern(pattern: str, *, option: str, **values: Any) -> str:
    """Record-at-a-time `pattern.format`, with a clear error for unknown fields."""
    try:
        return pattern.format(**values)
    except (KeyError, IndexError, ValueError) as error:
        raise ConfigError(
            f"option {option}={pattern!r} cannot be filled ({error}); it may only use "
            f"{', '.join('{' + f + '}' for f in values)}"
        ) from None


def check_pattern(pattern: str, *, option: str, fields: Sequence[str]) -> str:
    """Validate a record-at-a-time pattern once, before reading records."""
    format_pattern(pattern, option=option, **{f: "x" for f in fields})
    if not any(name in fields for _, name, _, _ in string.Formatter().parse(pattern) if name):
        raise ConfigError(
            f"option {option}={pattern!r} names no field; include one of "
            f"{', '.join('{' + f + '}' for f in fields)}"
        )
    return pattern


#: Draft fields that describe the pair: a rejected draft keeps none of them (like `rejected()`).
CONTENT_FIELDS = tuple(
    name
    for name in DRAFT_SCHEMA.names
    if name not in ("record_index", "input_file", "raw", "reject_reason", "reject_message", "task")
)


def frame_to_drafts(frame: pl.DataFrame) -> pa.Table:
    """A DRAFT_SCHEMA table from a frame holding some draft columns (the rest become null).

    Rows with a `reject_reason` keep only provenance, raw and the reason.
    """
    if "reject_reason" in frame.columns and frame["reject_reason"].is_not_null().any():
        keep = pl.col("reject_reason").is_null()
        frame = frame.with_columns(
            pl.when(keep).then(pl.col(name)).alias(name)
            for name in CONTENT_FIELDS
            if name in frame.columns
        )
    table = frame.to_arrow()
    arrays = []
    for field in DRAFT_SCHEMA:
        if field.name in frame.columns:
            arrays.append(table.column(field.name).cast(field.type))
        else:
            arrays.append(pa.nulls(frame.height, field.type))
    return pa.Table.from_arrays(arrays, schema=DRAFT_SCHEMA)


def reject_exprs(rules: Sequence[tuple[pl.Expr, str, str]]) -> list[pl.Expr]:
    """`reject_reason` and `reject_message` columns from (condition, reason, message) rules.

    The first rule that holds for a row wins; rows no rule matches are not rejected.
    """
    reason = pl.lit(None, pl.String)
    message = pl.lit(None, pl.String)
    for condition, code, text in reversed(rules):
        reason = pl.when(condition).then(pl.lit(code)).otherwise(reason)
        message = pl.when(condition).then(pl.lit(text)).otherwise(message)
    return [reason.alias("reject_reason"), message.alias("reject_message")]


def infer_task(query_modality: str | None, target_modality: str | None) -> str:
    """A task kind from the modalities of a pair, for formats that do not name one.

    >>> infer_task("text", "video")
    'video_retrieval'
    >>> infer_task("image+text", "image")
    'composed_retrieval'
    """
    query = set((query_modality or "").split("+")) - {""}
    target = set((target_modality or "").split("+")) - {""}
    if query == target == {"text"}:
        return "text_retrieval"
    if "text" in query and len(query) == 2 and target == query - {"text"}:
        return "composed_retrieval"
    for text_side, media_side in ((query, target), (target, query)):
        if text_side == {"text"} and media_side == {"video"}:
            return "video_retrieval"
        if text_side == {"text"} and media_side == {"image"}:
            return "caption_retrieval"
    return "retrieval"


def seconds(value: Any) -> float | None:
    """A finite number of seconds from a JSON number or numeric string, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


# --------------------------------------------------------------------------------------------
# The generic adapter.

#: Mapping options: draft field -> (column option, what it is).
MAPPING_OPTIONS: dict[str, str] = {
    "query_text": "column holding the query text",
    "target_text": "column holding the target text",
    "query_image": "column holding the query image path(s) or URL(s); a list column is allowed",
    "target_image": "column holding the target image path(s) or URL(s); a list column is allowed",
    "negative_image": "column holding hard-negative image path(s); a list column is allowed",
    "query_video": "column holding the query video path or URL (a one-element list is allowed)",
    "target_video": "column holding the target video path or URL (a one-element list is allowed)",
    "negative_text": "column holding hard-negative text(s); a list column is allowed",
    "instruction": "column holding an instruction placed in front of the query",
    "source_id": "column holding the record's own id",
    "split": "column holding the split name (else --split applies)",
    "clip_start": "column with the clip start in seconds (applies to the video of the pair)",
    "clip_end": "column with the clip end in seconds (applies to the video of the pair)",
}

_SETTING_OPTIONS: dict[str, str] = {
    "task": f"task kind of every row, one of {', '.join(TASK_KINDS)} (default: from modalities)",
    "strip_tokens": "comma-separated special tokens removed from texts, e.g. '<__dj__video>'",
    "media_strip_prefix": "prefix removed from the start of media paths, e.g. '../../tests/ops/data/'",
    "media_prefix": "prefix added in front of relative media paths (after media_strip_prefix)",
    "file_format": "jsonl, json, csv, tsv or parquet (default: from the file's content and name)",
    "delimiter": "CSV/TSV delimiter: one character, 'tab' or 'space' (default: whichever of "
    ", ; tab | splits the first line most; .tsv files: tab)",
    "header": "'yes' (default): the first CSV/TSV line names the columns; 'none': the file has no "
    "header line, every line is a record and columns are mapped by 0-based position, e.g. "
    "query_text=1",
}

_JSONL_SUFFIXES = (".jsonl", ".ndjson")
FILE_FORMATS = ("jsonl", "json", "csv", "tsv", "parquet")
HEADER_CHOICES = ("yes", "none")
#: Spelled-out delimiters, for characters that are awkward to pass on a command line.
_DELIMITER_NAMES = {"\\t": "\t", "tab": "\t", "space": " "}


@register
class GenericAdapter(Adapter):
    name = "generic"
    version = "1"
    description = (
        "Any JSONL, JSON list, CSV/TSV or Parquet file, driven by a column mapping given with "
        "--option FIELD=COLUMN (e.g. query_text=caption target_image=filepath)."
    )
    patterns = ("*.jsonl", "*.csv", "*.tsv", "*.parquet")
    option_help: ClassVar[dict[str, str]] = {**MAPPING_OPTIONS, **_SETTING_OPTIONS}

    @classmethod
    def sniff(cls, path: Path) -> bool:
        """Never: a mapping must be given explicitly."""
        return False

    def read(self, ctx: AdapterContext) -> Iterator[pa.Table]:
        check_options(type(self), ctx.options)
        mapping = {k: v for k, v in ctx.options.items() if k in MAPPING_OPTIONS}
        settings = _Settings.from_options(ctx.options, mapping)
        for path in input_files(
            ctx.input_path, (*_JSONL_SUFFIXES, ".json", ".csv", ".tsv", ".parquet")
        ):
            kind = settings.file_format or _file_kind(path)
            if not settings.has_header and kind not in ("csv", "tsv"):
                raise ConfigError(
                    f"{path}: option header=none is for CSV/TSV files; this one is read as {kind}, "
                    "whose columns have names: drop header=none"
                )
            if kind == "jsonl":
                records = self._jsonl_records(path, mapping)
            elif kind == "json":
                records = self._json_records(path, mapping)
            else:
                records = self._table_records(path, kind, mapping, settings)
            rows = (
                settings.to_draft(path, index, record, raw, error)
                for index, record, raw, error in records
            )
            yield from batched_drafts(rows, batch_rows=ctx.batch_rows)

    @staticmethod
    def _jsonl_records(
        path: Path, mapping: Mapping[str, str]
    ) -> Iterator[tuple[int, dict[str, Any] | None, str, str | None]]:
        # JSON Lines have no header: the keys of the first records stand in for one.
        require_columns(path, _jsonl_keys(path), _mapped_columns(mapping))
        index = 0
        with path.open("rb") as handle:
            for line_number, raw_line in enumerate(handle, start=1):
                line = raw_line.decode("utf-8", errors="replace").strip().lstrip("\ufeff")
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    yield index, None, line, f"line {line_number} is not valid JSON: {error.msg}"
                else:
                    if isinstance(record, dict):
                        yield index, record, line, None
                    else:
                        kind = type(record).__name__
                        yield (
                            index,
                            None,
                            line,
                            f"line {line_number} is a JSON {kind}, not an object",
                        )
                index += 1

    @staticmethod
    def _json_records(
        path: Path, mapping: Mapping[str, str]
    ) -> Iterator[tuple[int, dict[str, Any] | None, str, str | None]]:
        # Two streamed passes (bounded memory): the keys of every object first, so that a
        # mapped column no object has fails before any record is read.
        expected = "JSON Lines or a JSON list of objects (format 'generic')"
        keys: dict[str, None] = {}
        for record in iter_json_list(path, expected=expected):
            if isinstance(record, dict):
                keys.update(dict.fromkeys(record))
        require_columns(path, keys, _mapped_columns(mapping))
        for index, record in enumerate(iter_json_list(path, expected=expected)):
            if isinstance(record, dict):
                yield index, record, raw_json(record), None
            else:
                yield index, None, raw_json(record), f"element {index} is not a JSON object"

    @staticmethod
    def _table_records(
        path: Path, kind: str, mapping: Mapping[str, str], settings: _Settings
    ) -> Iterator[tuple[int, dict[str, Any] | None, str, str | None]]:
        if kind == "parquet":
            lf, columns = pl.scan_parquet(path, glob=False), parquet_columns(path) or []
        else:
            separator = settings.delimiter or ("\t" if kind == "tsv" else None)
            lf, columns = scan_table(path, separator=separator, has_header=settings.has_header)
        if not settings.has_header:
            _require_positions(path, columns, mapping)
        missing = [column for column in mapping.values() if column not in columns]
        # Digits that are not column names are positions: the file likely has no header line.
        hint = (
            "if the file has no header line, add --option header=none to map columns by "
            "0-based position"
            if missing and kind != "parquet" and all(c.isdigit() for c in missing)
            else ""
        )
        require_columns(path, columns, _mapped_columns(mapping), hint=hint)
        for frame in iter_frames(lf, path, 50_000):
            for row in frame.iter_rows(named=True):
                index = row.pop(RECORD_INDEX)
                yield index, row, raw_json(row), None


#: How many JSON Lines records are read to learn the keys a file has.
KEY_SAMPLE_RECORDS = 1000


def _mapped_columns(mapping: Mapping[str, str]) -> dict[str, str]:
    return {column: f"mapped by {field}" for field, column in mapping.items()}


def _require_positions(path: Path, columns: Sequence[str], mapping: Mapping[str, str]) -> None:
    """With header=none, every mapped column must be a position the first line has."""
    wrong = {field: column for field, column in mapping.items() if column not in columns}
    if not wrong:
        return
    mapped = "; ".join(f"{column!r} (mapped by {field})" for field, column in wrong.items())
    if not columns:
        found = "the file is empty"
    else:
        positions = "0" if len(columns) == 1 else f"0..{len(columns) - 1}"
        found = (
            f"its columns are positions {positions} (the first line has {len(columns)} "
            f"field{'s' if len(columns) != 1 else ''})"
        )
    raise InputError(
        f"{path}: no column {mapped}; with header=none columns are named by 0-based position "
        f"and {found}: map e.g. query_text=0 or change --option delimiter"
    )


def _jsonl_keys(path: Path) -> list[str]:
    """Keys seen in the first KEY_SAMPLE_RECORDS object lines of a JSON Lines file."""
    keys: dict[str, None] = {}
    seen = 0
    with path.open("rb") as handle:
        for raw_line in handle:
            try:
                record = json.loads(raw_line.decode("utf-8", errors="replace").lstrip("\ufeff"))
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                keys.update(dict.fromkeys(record))
                seen += 1
                if seen >= KEY_SAMPLE_RECORDS:
                    break
    return list(keys)


def _file_kind(path: Path) -> str:
    name = path.name.lower()
    if parquet_columns(path) is not None:
        return "parquet"
    if name.endswith(".json"):
        return "json" if (read_head(path, 4096) or "").lstrip().startswith("[") else "jsonl"
    if name.endswith(_JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(".tsv"):
        return "tsv"
    return "csv"


@dataclass(frozen=True)
class _Settings:
    mapping: Mapping[str, str]
    task: str | None
    strip_tokens: tuple[str, ...]
    media_strip_prefix: str
    media_prefix: str
    file_format: str | None
    delimiter: str | None
    has_header: bool

    @classmethod
    def from_options(cls, options: Mapping[str, str], mapping: Mapping[str, str]) -> _Settings:
        query = {"query_text", "query_image", "query_video"} & set(mapping)
        target = {"target_text", "target_image", "target_video"} & set(mapping)
        if not query or not target:
            raise ConfigError(
                "format 'generic' needs a column for each side of the pair: map at least one of "
                "query_text/query_image/query_video and one of target_text/target_image/"
                "target_video, e.g. --option query_text=caption --option target_image=filepath"
            )
        if ("clip_start" in mapping or "clip_end" in mapping) and not (
            {"query_video", "target_video"} & set(mapping)
        ):
            raise ConfigError(
                "options clip_start/clip_end need a mapped query_video or target_video"
            )
        task = options.get("task")
        if task is not None and task not in TASK_KINDS:
            raise ConfigError(
                f"option task={task!r} is invalid; choose one of: {', '.join(TASK_KINDS)}"
            )
        file_format = options.get("file_format")
        if file_format is not None and file_format not in FILE_FORMATS:
            raise ConfigError(
                f"option file_format={file_format!r} is invalid; choose one of: "
                f"{', '.join(FILE_FORMATS)}"
            )
        tokens = tuple(t for t in (options.get("strip_tokens") or "").split(",") if t)
        delimiter = options.get("delimiter")
        if delimiter is not None:
            delimiter = _DELIMITER_NAMES.get(delimiter, delimiter)
            if len(delimiter) != 1:
                raise ConfigError(
                    f"option delimiter={delimiter!r} must be one character, 'tab' or 'space'"
                )
        header = option_choice(options, "header", HEADER_CHOICES, "yes")
        return cls(
            mapping=dict(mapping),
            task=task,
            strip_tokens=tokens,
            media_strip_prefix=options.get("media_strip_prefix", ""),
            media_prefix=options.get("media_prefix", ""),
            file_format=file_format,
            delimiter=delimiter,
            has_header=header == "yes",
        )

    # -- one record ---------------------------------------------------------------------------

    def to_draft(
        self, path: Path, index: int, record: dict[str, Any] | None, raw: str, error: str | None
    ) -> dict[str, Any]:
        task = self.task or "retrieval"
        if record is None:
            return rejected(
                record_index=index, input_file=path, reason="malformed_record",
                message=error or "unreadable record", raw=raw, task=task,
            )  # fmt: skip
        try:
            fields = self._fields(record)
        except _Reject as reject:
            return rejected(
                record_index=index, input_file=path, reason=reject.reason,
                message=reject.message, raw=raw, task=task,
            )  # fmt: skip
        query_modality = modality_of(
            has_text=fields["query_text"] is not None,
            has_image=bool(fields["query_images"]),
            has_video=fields["query_video"] is not None,
        )
        target_modality = modality_of(
            has_text=fields["target_text"] is not None,
            has_image=bool(fields["target_images"]),
            has_video=fields["target_video"] is not None,
        )
        for side, modality in (("query", query_modality), ("target", target_modality)):
            if modality is None:
                text_mapped = f"{side}_text" in self.mapping
                return rejected(
                    record_index=index, input_file=path,
                    reason="empty_text" if text_mapped else "malformed_record",
                    message=f"the {side} side is empty: column(s) "
                    + ", ".join(repr(c) for k, c in self.mapping.items() if k.startswith(side))
                    + " hold nothing",
                    raw=raw, task=task,
                )  # fmt: skip
        return draft(
            record_index=index,
            input_file=path,
            task=self.task or infer_task(query_modality, target_modality),
            raw=raw,
            **fields,
        )

    def _fields(self, record: Mapping[str, Any]) -> dict[str, Any]:
        def value(field: str) -> Any:
            column = self.mapping.get(field)
            return None if column is None else record.get(column)

        fields: dict[str, Any] = {
            "query_text": self._text(value("query_text"), "query_text"),
            "target_text": self._text(value("target_text"), "target_text"),
            "instruction": self._text(value("instruction"), "instruction"),
            "query_images": self._media_list(value("query_image"), "query_image"),
            "target_images": self._media_list(value("target_image"), "target_image"),
            "negative_images": self._media_list(value("negative_image"), "negative_image"),
            "query_video": self._one_video(value("query_video"), "query_video"),
            "target_video": self._one_video(value("target_video"), "target_video"),
            "negative_texts": self._text_list(value("negative_text")),
            "source_id": _scalar_text(value("source_id")),
            "split": _scalar_text(value("split")),
        }
        if "clip_start" in self.mapping or "clip_end" in self.mapping:
            start = _clip_bound(value("clip_start"), self.mapping.get("clip_start"))
            end = _clip_bound(value("clip_end"), self.mapping.get("clip_end"))
            if start is not None and start < 0:
                raise _Reject("malformed_record", f"clip start {start} is negative")
            if start is not None and end is not None and end <= start:
                raise _Reject("malformed_record", f"clip end {end} is not after clip start {start}")
            side = "target" if "target_video" in self.mapping else "query"
            fields[f"{side}_clip_start"] = start
            fields[f"{side}_clip_end"] = end
        return fields

    def _text(self, value: Any, field: str) -> str | None:
        if value is None:
            return None
        if isinstance(value, list | dict):
            raise _Reject(
                "malformed_record",
                f"column {self.mapping[field]!r} ({field}) holds a {type(value).__name__}, not text",
            )
        text = str(value)
        for token in self.strip_tokens:
            text = text.replace(token, " ")
        return text if text.strip() else None

    def _text_list(self, value: Any) -> list[str] | None:
        if value is None:
            return None
        items = value if isinstance(value, list) else [value]
        texts = [t for t in (self._text(v, "negative_text") for v in items) if t is not None]
        return texts or None

    def _media_path(self, value: Any, field: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise _Reject(
                "malformed_record",
                f"column {self.mapping[field]!r} ({field}) holds a {type(value).__name__}, "
                "not a path",
            )
        path = value.strip()
        if not path:
            return None
        if self.media_strip_prefix and path.startswith(self.media_strip_prefix):
            path = path[len(self.media_strip_prefix) :]
        if self.media_prefix and "://" not in path and not path.startswith("/"):
            path = self.media_prefix + path
        return path

    def _media_list(self, value: Any, field: str) -> list[str] | None:
        if value is None:
            return None
        items = value if isinstance(value, list) else [value]
        paths = [p for p in (self._media_path(v, field) for v in items) if p is not None]
        return paths or None

    def _one_video(self, value: Any, field: str) -> str | None:
        paths = self._media_list(value, field)
        if paths is None:
            return None
        if len(paths) > 1:
            raise _Reject(
                "malformed_record",
                f"column {self.mapping[field]!r} ({field}) lists {len(paths)} videos; a manifest "
                "row holds one video per side",
            )
        return paths[0]


class _Reject(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _scalar_text(value: Any) -> str | None:
    if value is None or isinstance(value, list | dict):
        return None
    text = str(value).strip()
    return text or None


def _clip_bound(value: Any, column: str | None) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number = seconds(value)
    if number is None:
        raise _Reject("malformed_record", f"column {column!r} holds {value!r}, not seconds")
    return number


__all__ = [
    "CONTENT_FIELDS",
    "HEAD_BYTES",
    "RECORD_INDEX",
    "GenericAdapter",
    "JsonHead",
    "blank",
    "check_options",
    "check_pattern",
    "detect_delimiter",
    "first_json_item",
    "format_pattern",
    "frame_to_drafts",
    "infer_task",
    "input_files",
    "iter_draft_tables",
    "iter_frames",
    "iter_json_list",
    "load_json",
    "option_choice",
    "parquet_columns",
    "pattern_expr",
    "raw_expr",
    "read_head",
    "reject_exprs",
    "require_columns",
    "scan_csv",
    "scan_table",
    "seconds",
    "sniff_csv_header",
]
