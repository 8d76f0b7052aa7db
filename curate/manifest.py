"""Reading finished manifests from a workspace.

A manifest folder `manifests/<name>/` holds:
  rows/part-NNNNN.parquet    MANIFEST_SCHEMA rows
  ledger/part-NNNNN.parquet  LEDGER_SCHEMA rows (rejected records)
  stats.json                 counts (read, accepted, rejected, by reason/pair/source/split)
  ingest.json                options, input fingerprint, tool and adapter versions
  signals/<signal>.parquet   optional sidecar tables keyed by `id` (see `curate score`)
  _COMPLETE                  written last; a folder without it is not a manifest
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import NotFoundError
from curate.schema import LEDGER_SCHEMA, MANIFEST_SCHEMA, check_schema
from curate.workspace import Workspace

COMPLETE_MARKER = "_COMPLETE"


@dataclass(frozen=True)
class Manifest:
    name: str
    path: Path

    @property
    def row_files(self) -> list[Path]:
        return sorted((self.path / "rows").glob("part-*.parquet"))

    @property
    def ledger_files(self) -> list[Path]:
        return sorted((self.path / "ledger").glob("part-*.parquet"))

    @property
    def signals_dir(self) -> Path:
        return self.path / "signals"

    @cached_property
    def stats(self) -> dict[str, Any]:
        return json.loads((self.path / "stats.json").read_text())

    @cached_property
    def ingest_info(self) -> dict[str, Any]:
        return json.loads((self.path / "ingest.json").read_text())

    @property
    def fingerprint(self) -> str:
        """Content hash of the manifest's rows; changes whenever any row changes."""
        return str(self.stats["fingerprint"])

    def read_rows(self, columns: list[str] | None = None) -> pa.Table:
        """All rows in record order (for small manifests; large ones go through DuckDB)."""
        files = self.row_files
        if not files:
            return MANIFEST_SCHEMA.empty_table().select(columns or MANIFEST_SCHEMA.names)
        tables = [pq.read_table(f, columns=columns) for f in files]
        table = pa.concat_tables(tables)
        if columns is None:
            check_schema(table.schema, MANIFEST_SCHEMA, where=f"manifest {self.name!r}")
        return table

    def read_ledger(self) -> pa.Table:
        files = self.ledger_files
        if not files:
            return LEDGER_SCHEMA.empty_table()
        table = pa.concat_tables([pq.read_table(f) for f in files])
        check_schema(table.schema, LEDGER_SCHEMA, where=f"ledger of manifest {self.name!r}")
        return table


def open_manifest(workspace: Workspace, name: str) -> Manifest:
    path = workspace.manifest_dir(name)
    if not (path / COMPLETE_MARKER).exists():
        known = ", ".join(m.name for m in list_manifests(workspace)) or "none yet"
        raise NotFoundError(
            f"no manifest named {name!r} in {workspace.manifests} (known: {known}); "
            "create it with `curate ingest PATH --name NAME`"
        )
    return Manifest(name=name, path=path)


def list_manifests(workspace: Workspace) -> list[Manifest]:
    if not workspace.manifests.is_dir():
        return []
    return [
        Manifest(name=p.name, path=p)
        for p in sorted(workspace.manifests.iterdir())
        # Hidden folders are work in progress or kept failures (`.NAME.partial-*`, `.rejected`).
        if p.is_dir() and not p.name.startswith(".") and (p / COMPLETE_MARKER).exists()
    ]
