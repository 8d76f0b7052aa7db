"""Sidecar store: chunks, resume bookkeeping, merge order, parameter changes, locking."""

from __future__ import annotations

import pyarrow as pa
import pytest

from curate.errors import LockedError, SchemaError
from curate.signals.store import (
    SidecarWriter,
    read_sidecar,
    read_sidecar_meta,
    sidecar_up_to_date,
    signals_lock,
)

from .conftest import pair

SCHEMA = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("value", pa.int64())])


def rows(ids, offset=0):
    return pa.table({"id": ids, "value": [int(i[1:]) + offset for i in ids]}, schema=SCHEMA)


@pytest.fixture()
def manifest(make_manifest):
    return make_manifest(
        "m", [pair(f"r{i}", query_text=f"text {i}", target_text="t") for i in range(6)]
    )


def manifest_ids(manifest):
    return manifest.read_rows(columns=["id"]).column("id").combine_chunks()


def test_chunks_resume_and_merge_in_manifest_order(manifest):
    writer = SidecarWriter(manifest, "sig", SCHEMA, {"k": 1})
    assert len(writer.done_ids()) == 0
    writer.write_chunk(rows(["r4", "r1"]))
    writer.write_chunk(rows(["r0"]))
    # A new writer (a resumed run) sees the chunks of the interrupted one.
    resumed = SidecarWriter(manifest, "sig", SCHEMA, {"k": 1})
    assert sorted(resumed.done_ids().to_pylist()) == ["r0", "r1", "r4"]
    resumed.write_chunk(rows(["r2", "r3", "r5"]))
    table = resumed.finalize(manifest_ids(manifest))
    assert table.column("id").to_pylist() == [f"r{i}" for i in range(6)]
    assert table.column("value").to_pylist() == list(range(6))
    assert not (manifest.signals_dir / ".parts").exists()
    assert not list(manifest.signals_dir.rglob("*.tmp*"))
    meta = read_sidecar_meta(manifest, "sig")
    assert meta["params"] == {"k": 1} and meta["rows"] == 6
    assert meta["manifest_fingerprint"] == manifest.fingerprint
    assert sidecar_up_to_date(manifest, "sig", {"k": 1})
    assert not sidecar_up_to_date(manifest, "sig", {"k": 2})
    # Finished ids count as done for the next run with the same parameters.
    assert len(SidecarWriter(manifest, "sig", SCHEMA, {"k": 1}).done_ids()) == 6


def test_changed_parameters_recompute_everything(manifest):
    first = SidecarWriter(manifest, "sig", SCHEMA, {"k": 1})
    first.write_chunk(rows(["r0", "r1"]))
    first.finalize(manifest_ids(manifest))
    stale = SidecarWriter(manifest, "sig", SCHEMA, {"k": 1})
    stale.write_chunk(rows(["r2"]))  # left behind by a killed run
    changed = SidecarWriter(manifest, "sig", SCHEMA, {"k": 2})
    assert len(changed.done_ids()) == 0
    assert not stale.parts_dir.exists()  # chunks of other parameters are dropped
    changed.write_chunk(rows(["r3"], offset=100))
    table = changed.finalize(manifest_ids(manifest))
    assert table.to_pylist() == [{"id": "r3", "value": 103}]
    assert read_sidecar_meta(manifest, "sig")["params"] == {"k": 2}


def test_latest_value_wins_and_foreign_ids_are_dropped(manifest):
    writer = SidecarWriter(manifest, "sig", SCHEMA, {})
    writer.write_chunk(rows(["r1", "x99"]))
    writer.write_chunk(rows(["r1"], offset=50))  # recomputed after a crash between chunks
    table = writer.finalize(manifest_ids(manifest))
    assert table.to_pylist() == [{"id": "r1", "value": 51}]


def test_schema_is_checked(manifest):
    writer = SidecarWriter(manifest, "sig", SCHEMA, {})
    with pytest.raises(SchemaError, match="value"):
        writer.write_chunk(pa.table({"id": ["r0"], "other": [1]}))
    writer.write_chunk(rows(["r0"]))
    writer.finalize(manifest_ids(manifest))
    wrong = pa.schema([pa.field("id", pa.string()), pa.field("value", pa.string())])
    with pytest.raises(SchemaError, match="expected string, found int64"):
        read_sidecar(manifest, "sig", schema=wrong)
    assert read_sidecar(manifest, "never") is None


def test_one_writer_at_a_time(manifest):
    blocked = pytest.raises(LockedError, match="being written by pid")
    with signals_lock(manifest), blocked, signals_lock(manifest):
        pass
    with signals_lock(manifest):  # released
        pass
