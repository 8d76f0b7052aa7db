"""What every ingest adapter is: a small reader that turns one native format into draft batches.

An adapter reads its format and yields `pyarrow.Table` batches with `DRAFT_SCHEMA`: one row per
query/target pair it found, or per record it could not use (with `reject_reason` set, so nothing is
lost). It does not touch media files, normalise text or compute ids: ingest does that for every
format the same way. Tabular formats should read with DuckDB or polars, not by hand.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from curate.schema import DRAFT_SCHEMA

DEFAULT_BATCH_ROWS = 50_000


@dataclass(frozen=True)
class AdapterContext:
    """What an adapter may know about the ingest run."""

    input_path: Path  # the PATH given to `curate ingest` (a file or a folder)
    media_root: Path  # where relative media paths resolve
    scratch_dir: Path  # a folder of this manifest an adapter may write into (e.g. tar members)
    options: Mapping[str, str] = field(default_factory=dict)  # --option key=value pairs
    batch_rows: int = DEFAULT_BATCH_ROWS


class Adapter(ABC):
    """Base class of the format readers. Subclasses set the class attributes and `read`."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    description: ClassVar[str]
    #: File name patterns this format usually has, shown by `curate formats`.
    patterns: ClassVar[tuple[str, ...]] = ()
    #: --option keys the adapter understands, with a one-line help each.
    option_help: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def sniff(cls, path: Path) -> bool:
        """Cheap check whether `path` looks like this format; used by format detection.

        Only return True when the content (not just the extension) fits, so that detection is
        unambiguous; the default never claims a file.
        """
        return False

    @abstractmethod
    def read(self, ctx: AdapterContext) -> Iterator[pa.Table]:
        """Yield DRAFT_SCHEMA batches covering every record of the input."""

    def changes(self) -> dict[str, int]:
        """Records the last `read` altered instead of rejecting, counted by what was done (e.g.
        `{"segment_end_clamped_to_duration": 1}`). Ingest stores them in the manifest's stats
        so that no silent fix goes unseen; each altered record also says so in its `raw`."""
        return {}


def raw_json(value: Any) -> str:
    """The raw record as text for the ledger (stable key order, non-ASCII kept)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def draft(
    *,
    record_index: int,
    input_file: str | Path,
    task: str,
    raw: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """One draft row as a dict; unknown field names fail loudly (they are programming errors)."""
    unknown = set(fields) - set(DRAFT_SCHEMA.names)
    if unknown:
        raise TypeError(f"unknown draft fields {sorted(unknown)}; valid: {DRAFT_SCHEMA.names}")
    return {
        "record_index": record_index,
        "input_file": str(input_file),
        "task": task,
        "raw": raw,
        **fields,
    }


def rejected(
    *,
    record_index: int,
    input_file: str | Path,
    reason: str,
    message: str,
    raw: str | None,
    task: str = "retrieval",
) -> dict[str, Any]:
    """A draft row for a record the adapter itself cannot use."""
    return draft(
        record_index=record_index,
        input_file=input_file,
        task=task,
        raw=raw,
        reject_reason=reason,
        reject_message=message,
    )


def json_lines(
    path: Path, *, task: str
) -> Iterator[tuple[int, Any] | tuple[int, None, dict[str, Any]]]:
    """The records of a JSON Lines file as `(line index, record)`.

    Blank lines are skipped (they are not records; the index still counts them, so it stays the
    physical line number); a UTF-8 BOM and bad bytes are tolerated (U+FFFD). A line that is not
    JSON comes as `(index, None, rejected draft)`, so callers keep it in the ledger.
    """
    with path.open("rb") as handle:
        for index, raw_line in enumerate(handle):
            line = raw_line.decode("utf-8", "replace").strip()
            if index == 0:
                line = line.lstrip("\ufeff")
            if not line:
                continue
            try:
                yield index, json.loads(line)
            except json.JSONDecodeError as error:
                yield (
                    index,
                    None,
                    rejected(
                        record_index=index,
                        input_file=path,
                        reason="malformed_record",
                        message=f"line {index + 1} is not valid JSON: {error.msg}",
                        raw=line,
                        task=task,
                    ),
                )


def batched_drafts(
    rows: Iterable[Mapping[str, Any]], *, batch_rows: int = DEFAULT_BATCH_ROWS
) -> Iterator[pa.Table]:
    """Group draft dicts into DRAFT_SCHEMA tables of at most `batch_rows` rows."""
    batch: list[Mapping[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= batch_rows:
            yield pa.Table.from_pylist(batch, schema=DRAFT_SCHEMA)
            batch = []
    if batch:
        yield pa.Table.from_pylist(batch, schema=DRAFT_SCHEMA)
