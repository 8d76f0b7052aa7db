"""Signal sidecars: Parquet tables keyed by manifest `id`, written in resumable chunks.

A sidecar `manifests/<name>/signals/<signal>.parquet` holds one row per manifest id: the column `id`
then the signal's columns. Beside it `<signal>.json` records the parameters, their digest, the model
and the fingerprint of the manifest it was computed from. The manifest itself is never rewritten.

While a signal is computed, each chunk of rows is written to
`signals/.parts/<signal>/<params digest>/part-NNNNN.parquet` (temp file + `os.replace`), so a killed
run keeps every finished chunk. `done_ids` lists ids already computed with the same parameters (the
finished sidecar plus the chunks), so the next run computes only the rest; `finalize` merges
them in manifest order into the sidecar, atomically, and removes the chunks. Ids that left the
manifest (a re-ingest with different input) are dropped at that point.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate import __version__
from curate.errors import SchemaError
from curate.locks import exclusive_lock
from curate.manifest import Manifest

SIDECAR_SCHEMA_VERSION = 1
_PARTS = ".parts"


def params_digest(params: Mapping[str, Any]) -> str:
    """Short stable digest of a parameter dict (JSON with sorted keys)."""
    text = json.dumps(params, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sidecar_path(manifest: Manifest, signal: str) -> Path:
    return manifest.signals_dir / f"{signal}.parquet"


def sidecar_meta_path(manifest: Manifest, signal: str) -> Path:
    return manifest.signals_dir / f"{signal}.json"


def read_sidecar_meta(manifest: Manifest, signal: str) -> dict[str, Any] | None:
    path = sidecar_meta_path(manifest, signal)
    if not path.exists():
        return None
    return json.loads(path.read_text())


def read_sidecar(
    manifest: Manifest,
    signal: str,
    *,
    schema: pa.Schema | None = None,
    columns: list[str] | None = None,
) -> pa.Table | None:
    """The finished sidecar of `signal`, or None when it was never computed.

    With `schema`, raise SchemaError unless the file has those columns with those types.
    """
    path = sidecar_path(manifest, signal)
    if not path.exists():
        return None
    table = pq.read_table(path, columns=columns)
    if schema is not None:
        if columns is not None:
            schema = pa.schema([schema.field(c) for c in columns])
        check_columns(table.schema, schema, where=str(path))
    return table


def check_columns(actual: pa.Schema, expected: pa.Schema, *, where: str) -> None:
    """Raise SchemaError unless every field of `expected` is in `actual` with the same type."""
    problems = []
    for field in expected:
        index = actual.get_field_index(field.name)
        if index < 0:
            problems.append(f"missing column {field.name!r}")
        elif actual.field(index).type != field.type:
            problems.append(
                f"column {field.name!r}: expected {field.type}, found {actual.field(index).type}"
            )
    if problems:
        raise SchemaError(
            f"{where}: {'; '.join(problems)}. Delete it and run `curate score` again to rebuild it."
        )


def write_table_atomic(table: pa.Table, path: Path) -> None:
    """Write Parquet through a temp file in the same folder and `os.replace` it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def write_json_atomic(value: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def signals_lock(manifest: Manifest) -> contextlib.AbstractContextManager[None]:
    """One writer of a manifest's signals at a time; the OS drops the lock if the holder dies."""
    return exclusive_lock(
        manifest.signals_dir / ".lock",
        busy=f"signals of manifest {manifest.name!r} are being written",
    )


@dataclass
class SidecarWriter:
    """Chunked, resumable writer of one sidecar. Use `done_ids`, `write_chunk`, then `finalize`."""

    manifest: Manifest
    signal: str
    schema: pa.Schema  # `id` first, then the signal's columns
    params: Mapping[str, Any]

    def __post_init__(self) -> None:
        if self.schema.names[0] != "id":
            raise ValueError(f"a sidecar schema starts with 'id', found {self.schema.names}")
        self.digest = params_digest(self.params)
        self.parts_dir = self.manifest.signals_dir / _PARTS / self.signal / self.digest
        # Chunks written under other parameters can never be merged: drop them.
        signal_parts = self.parts_dir.parent
        if signal_parts.is_dir():
            for stale in signal_parts.iterdir():
                if stale != self.parts_dir:
                    shutil.rmtree(stale, ignore_errors=True)

    # --- reading what exists ------------------------------------------------------------------

    def _finished_is_current(self) -> bool:
        meta = read_sidecar_meta(self.manifest, self.signal)
        return (
            meta is not None
            and meta.get("params_digest") == self.digest
            and meta.get("schema_version") == SIDECAR_SCHEMA_VERSION
            and sidecar_path(self.manifest, self.signal).exists()
        )

    def _finished(self) -> pa.Table | None:
        if not self._finished_is_current():
            return None
        table = read_sidecar(self.manifest, self.signal)
        if table is None or table.schema.names != self.schema.names:
            return None
        return table.cast(self.schema)

    def _part_files(self) -> list[Path]:
        if not self.parts_dir.is_dir():
            return []
        return sorted(self.parts_dir.glob("part-*.parquet"))

    def done_ids(self) -> pa.Array:
        """Ids already computed with these parameters (finished sidecar and chunks)."""
        arrays: list[pa.Array] = []
        if self._finished_is_current():
            table = pq.read_table(sidecar_path(self.manifest, self.signal), columns=["id"])
            arrays.extend(table.column("id").chunks)
        for part in self._part_files():
            arrays.extend(pq.read_table(part, columns=["id"]).column("id").chunks)
        if not arrays:
            return pa.array([], pa.string())
        return pa.concat_arrays([a.cast(pa.string()) for a in arrays])

    # --- writing ------------------------------------------------------------------------------

    def write_chunk(self, table: pa.Table) -> Path:
        """Write one chunk of computed rows (atomic); returns the part's path."""
        check_columns(table.schema, self.schema, where=f"chunk of signal {self.signal!r}")
        table = table.select(self.schema.names).cast(self.schema)
        existing = self._part_files()
        number = int(existing[-1].stem.split("-")[1]) + 1 if existing else 0
        path = self.parts_dir / f"part-{number:05d}.parquet"
        write_table_atomic(table, path)
        return path

    def finalize(self, manifest_ids: pa.Array, *, extra_meta: Mapping[str, Any] | None = None):
        """Merge finished rows and chunks into the sidecar, in manifest order; returns the table.

        Rows whose id is not in `manifest_ids` are dropped; an id computed twice (a chunk written
        just before a crash, then again) keeps its latest value.
        """
        finished = self._finished()
        parts = [pq.read_table(p).cast(self.schema) for p in self._part_files()]
        if finished is not None and not parts and _same_ids(finished, manifest_ids):
            meta = read_sidecar_meta(self.manifest, self.signal) or {}
            if meta.get("manifest_fingerprint") == self.manifest.fingerprint:
                return finished
        tables = ([finished] if finished is not None else []) + parts
        merged = pa.concat_tables(tables) if tables else self.schema.empty_table()
        merged = _latest_per_id(merged)
        position = pc.index_in(merged.column("id"), value_set=manifest_ids)
        merged = merged.append_column("__pos", position).filter(pc.is_valid(position))
        merged = merged.sort_by("__pos").drop_columns(["__pos"])
        write_table_atomic(merged, sidecar_path(self.manifest, self.signal))
        meta = {
            "signal": self.signal,
            "schema_version": SIDECAR_SCHEMA_VERSION,
            "params": dict(self.params),
            "params_digest": self.digest,
            "columns": {f.name: str(f.type) for f in self.schema},
            "manifest": self.manifest.name,
            "manifest_fingerprint": self.manifest.fingerprint,
            "rows": merged.num_rows,
            "tool": f"curate {__version__}",
            **(extra_meta or {}),
        }
        write_json_atomic(meta, sidecar_meta_path(self.manifest, self.signal))
        shutil.rmtree(self.parts_dir.parent, ignore_errors=True)
        _remove_empty_parents(self.parts_dir.parent, stop=self.manifest.signals_dir)
        return merged


def _remove_empty_parents(path: Path, *, stop: Path) -> None:
    for parent in path.parents:
        if parent == stop or stop not in parent.parents:
            return
        try:
            parent.rmdir()
        except OSError:  # not empty
            return


def _same_ids(table: pa.Table, manifest_ids: pa.Array) -> bool:
    ids = table.column("id").combine_chunks()
    return len(ids) == len(manifest_ids) and bool(pc.all(pc.equal(ids, manifest_ids)).as_py())


def _latest_per_id(table: pa.Table) -> pa.Table:
    """Keep the last row of each id (rows later in `table` were written later)."""
    if table.num_rows == 0:
        return table
    indexed = table.append_column("__row", pa.array(range(table.num_rows), pa.int64()))
    last = indexed.group_by("id").aggregate([("__row", "max")]).column("__row_max")
    if len(last) == table.num_rows:
        return table
    return table.take(last)


def sidecar_up_to_date(manifest: Manifest, signal: str, params: Mapping[str, Any]) -> bool:
    """True when the sidecar exists, was built with `params` and from the manifest as it is now."""
    meta = read_sidecar_meta(manifest, signal)
    return (
        meta is not None
        and meta.get("params_digest") == params_digest(params)
        and meta.get("manifest_fingerprint") == manifest.fingerprint
        and sidecar_path(manifest, signal).exists()
    )


__all__ = [
    "SidecarWriter",
    "check_columns",
    "params_digest",
    "read_sidecar",
    "read_sidecar_meta",
    "sidecar_meta_path",
    "sidecar_path",
    "sidecar_up_to_date",
    "signals_lock",
    "write_json_atomic",
    "write_table_atomic",
]
