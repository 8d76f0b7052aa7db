"""`curate decontaminate`: flag training rows that overlap an evaluation set.

A training row is contaminated by an evaluation row when any of:
- `media_hash`: one of its media files (query, target or negative) has the same content hash as
  one of the evaluation row's (exact file, whatever its name);
- `phash`: its primary media's pHash is within `phash_bits` bits of the evaluation row's, for the
  same media kind (a resized or re-encoded copy); flat one-colour images are never matched;
- `text`: its query or target text, normalised (case, punctuation, Unicode forms), equals the
  evaluation row's query or target text, and has at least `min_text_words` words (so that class
  labels and "yes" do not match everything).

The first reason in that order wins; `contamination_match` is the id of the first matching
evaluation row (in its manifest order), `contamination_eval` the evaluation manifest's name. The
flags go to the training manifest's `contamination` sidecar, which recipes use to exclude rows.
pHashes come from each manifest's phash sidecar, computed first where missing (resumable).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import ConfigError
from curate.manifest import Manifest, open_manifest
from curate.signals.neardup import hamming_first_match
from curate.signals.phash import PHASH_SCHEMA, is_informative
from curate.signals.score import ScoreConfig, score_manifest
from curate.signals.store import (
    SidecarWriter,
    read_sidecar,
    read_sidecar_meta,
    sidecar_path,
    sidecar_up_to_date,
    signals_lock,
)
from curate.signals.text import match_hashes
from curate.workspace import Workspace

DECONTAMINATION_VERSION = 1
REASONS = ("media_hash", "phash", "text")

CONTAMINATION_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("contaminated", pa.bool_(), nullable=False),
        pa.field("contamination_reason", pa.string()),  # media_hash | phash | text
        pa.field("contamination_match", pa.string()),  # id of the evaluation row
        pa.field("contamination_eval", pa.string()),  # name of the evaluation manifest
        pa.field("contamination_distance", pa.int32()),  # pHash bits apart (phash matches)
    ]
)

_ROW_COLUMNS = ["id", "media", "media_hash", "media_kind", "query_text", "target_text"]


@dataclass(frozen=True)
class DecontaminationOptions:
    phash_bits: int | None = 6  # None: do not match by pHash
    min_text_words: int | None = 4  # None: do not match by text
    match_media_hash: bool = True

    def __post_init__(self) -> None:
        if self.phash_bits is not None and not 0 <= self.phash_bits <= 32:
            raise ConfigError(f"phash_bits must be in 0..32, found {self.phash_bits}")
        if self.min_text_words is not None and self.min_text_words < 1:
            raise ConfigError(
                f"min_text_words must be at least 1 (or off), found {self.min_text_words}"
            )


@dataclass(frozen=True)
class DecontaminationResult:
    train: str
    evals: tuple[str, ...]
    path: str
    rows: int
    contaminated: int
    by_reason: dict[str, int]
    by_eval: dict[str, int]
    seconds: float
    up_to_date: bool = False
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Side:
    """The columns matching needs, for one manifest."""

    manifest: Manifest
    ids: pa.Array
    media_hashes: pa.Array  # flattened content hashes of every media item
    media_rows: np.ndarray  # row of each flattened hash
    kinds: np.ndarray
    phash: np.ndarray  # uint64; 0 where missing or flat
    query_text: np.ndarray  # normalised-text hashes, 0 where missing or too short
    target_text: np.ndarray


def _load_side(manifest: Manifest, options: DecontaminationOptions) -> _Side:
    rows = manifest.read_rows(columns=_ROW_COLUMNS)
    ids = rows.column("id").combine_chunks()
    media = rows.column("media").combine_chunks()
    item_hashes = pc.struct_field(pc.list_flatten(media), "content_hash")
    item_rows = pc.list_parent_indices(media).to_numpy(zero_copy_only=False)
    # Rows without a `media` list still have the primary media_hash column.
    hashes = pa.concat_arrays(
        [item_hashes.cast(pa.string()), rows.column("media_hash").combine_chunks()]
    )
    hash_rows = np.concatenate([item_rows, np.arange(len(ids))])
    valid = pc.is_valid(hashes).to_numpy(zero_copy_only=False)
    phash = np.zeros(len(ids), dtype=np.uint64)
    if options.phash_bits is not None:
        table = read_sidecar(manifest, "phash", schema=PHASH_SCHEMA, columns=["id", "phash"])
        assert table is not None
        positions = pc.index_in(ids, value_set=table.column("id").combine_chunks())
        values = pc.take(table.column("phash"), positions)
        phash = pc.fill_null(values, 0).to_numpy(zero_copy_only=False).astype(np.uint64)
        phash = np.where(is_informative(phash), phash, np.uint64(0))
    frame = pl.from_arrow(rows.select(["query_text", "target_text"]))
    assert isinstance(frame, pl.DataFrame)
    min_words = options.min_text_words
    zeros = np.zeros(len(ids), dtype=np.uint64)
    return _Side(
        manifest=manifest,
        ids=ids,
        media_hashes=hashes.filter(pa.array(valid)),
        media_rows=hash_rows[valid],
        kinds=np.asarray(rows.column("media_kind").to_pylist(), dtype=object),
        phash=phash,
        query_text=zeros
        if min_words is None
        else match_hashes(frame["query_text"], min_words=min_words),
        target_text=zeros
        if min_words is None
        else match_hashes(frame["target_text"], min_words=min_words),
    )


def _first_row_by_value(values: pa.Array, rows: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Distinct values and, for each, the smallest row it occurs in."""
    order = np.argsort(rows, kind="stable")
    table = pa.table({"v": pc.take(values, pa.array(order)), "r": rows[order]})
    grouped = table.group_by("v", use_threads=False).aggregate([("r", "min")])
    return grouped.column("v").combine_chunks(), grouped.column("r_min").to_numpy()


def _match_media(train: _Side, evaluation: _Side) -> np.ndarray:
    """Per training row, the first evaluation row sharing a media file (-1: none)."""
    best = np.full(len(train.ids), np.iinfo(np.int64).max, dtype=np.int64)
    if len(train.media_hashes) == 0 or len(evaluation.media_hashes) == 0:
        return np.full(len(train.ids), -1, dtype=np.int64)
    values, first_rows = _first_row_by_value(evaluation.media_hashes, evaluation.media_rows)
    hit = pc.index_in(train.media_hashes, value_set=values)
    found = pc.is_valid(hit).to_numpy(zero_copy_only=False)
    eval_rows = first_rows[pc.fill_null(hit, 0).to_numpy(zero_copy_only=False)]
    np.minimum.at(best, train.media_rows[found], eval_rows[found])
    return np.where(best == np.iinfo(np.int64).max, -1, best)


def _match_phash(train: _Side, evaluation: _Side, bits: int) -> tuple[np.ndarray, np.ndarray]:
    match = np.full(len(train.ids), -1, dtype=np.int64)
    distance = np.full(len(train.ids), -1, dtype=np.int64)
    for kind in sorted({k for k in train.kinds.tolist() if k is not None}):
        t_rows = np.flatnonzero((train.kinds == kind) & (train.phash != 0))
        e_rows = np.flatnonzero((evaluation.kinds == kind) & (evaluation.phash != 0))
        if len(t_rows) == 0 or len(e_rows) == 0:
            continue
        first, dist = hamming_first_match(train.phash[t_rows], evaluation.phash[e_rows], bits)
        hit = first >= 0
        match[t_rows[hit]] = e_rows[first[hit]]
        distance[t_rows[hit]] = dist[hit]
    return match, distance


def _match_text(train: _Side, evaluation: _Side) -> np.ndarray:
    eval_hashes = np.concatenate([evaluation.query_text, evaluation.target_text])
    eval_rows = np.concatenate([np.arange(len(evaluation.ids))] * 2)
    keep = eval_hashes != 0
    if not keep.any():
        return np.full(len(train.ids), -1, dtype=np.int64)
    values, first_rows = _first_row_by_value(pa.array(eval_hashes[keep]), eval_rows[keep])
    best = np.full(len(train.ids), np.iinfo(np.int64).max, dtype=np.int64)
    for side in (train.query_text, train.target_text):
        hit = pc.index_in(pa.array(side), value_set=values)
        found = pc.is_valid(hit).to_numpy(zero_copy_only=False) & (side != 0)
        rows = first_rows[pc.fill_null(hit, 0).to_numpy(zero_copy_only=False)]
        best = np.where(found, np.minimum(best, rows), best)
    return np.where(best == np.iinfo(np.int64).max, -1, best)


def decontaminate(
    workspace: Workspace,
    train: str,
    evals: Sequence[str],
    options: DecontaminationOptions | None = None,
    *,
    score_config: ScoreConfig | None = None,
    progress: bool | None = None,
) -> DecontaminationResult:
    """Write the `contamination` sidecar of manifest `train` against the manifests `evals`."""
    started = time.perf_counter()
    options = options or DecontaminationOptions()
    if not evals:
        raise ConfigError("give at least one evaluation manifest with --eval NAME")
    if train in evals:
        raise ConfigError(f"manifest {train!r} is both the training and an evaluation manifest")
    train_manifest = open_manifest(workspace, train)
    eval_manifests = [open_manifest(workspace, name) for name in evals]
    if options.phash_bits is not None:
        config = score_config or ScoreConfig(signals=("phash",))
        config = ScoreConfig(
            signals=("phash",),
            frames=config.frames,
            chunk_rows=config.chunk_rows,
            workers=config.workers,
        )
        for manifest in [train_manifest, *eval_manifests]:
            score_manifest(workspace, manifest.name, config, progress=progress)

    def phash_digest(manifest: Manifest) -> str | None:
        if options.phash_bits is None:
            return None
        return (read_sidecar_meta(manifest, "phash") or {}).get("params_digest")

    params = {
        "version": DECONTAMINATION_VERSION,
        "options": asdict(options),
        "train_phash": phash_digest(train_manifest),
        "evals": [
            {
                "name": m.name,
                "fingerprint": m.fingerprint,
                "phash": phash_digest(m),
            }
            for m in eval_manifests
        ],
    }
    path = sidecar_path(train_manifest, "contamination")
    with signals_lock(train_manifest):
        if sidecar_up_to_date(train_manifest, "contamination", params):
            table = read_sidecar(train_manifest, "contamination", schema=CONTAMINATION_SCHEMA)
            assert table is not None
            return _result(train, evals, path, table, started, up_to_date=True)
        train_side = _load_side(train_manifest, options)
        n = len(train_side.ids)
        reason = np.full(n, None, dtype=object)
        match = np.full(n, None, dtype=object)
        source = np.full(n, None, dtype=object)
        distance = np.full(n, -1, dtype=np.int64)
        for manifest in eval_manifests:
            eval_side = _load_side(manifest, options)
            eval_ids = np.asarray(eval_side.ids.to_pylist(), dtype=object)
            checks: list[tuple[str, np.ndarray, np.ndarray | None]] = []
            if options.match_media_hash:
                checks.append(("media_hash", _match_media(train_side, eval_side), None))
            if options.phash_bits is not None:
                found, dist = _match_phash(train_side, eval_side, options.phash_bits)
                checks.append(("phash", found, dist))
            if options.min_text_words is not None:
                checks.append(("text", _match_text(train_side, eval_side), None))
            for name, found, dist in checks:
                new = (found >= 0) & (reason == None)  # noqa: E711 - elementwise on objects
                reason[new] = name
                match[new] = eval_ids[found[new]]
                source[new] = manifest.name
                if dist is not None:
                    distance[new] = dist[new]
        table = pa.table(
            {
                "id": train_side.ids,
                "contaminated": pa.array(reason != None, pa.bool_()),  # noqa: E711
                "contamination_reason": pa.array(reason.tolist(), pa.string()),
                "contamination_match": pa.array(match.tolist(), pa.string()),
                "contamination_eval": pa.array(source.tolist(), pa.string()),
                "contamination_distance": pa.array(
                    [None if d < 0 else int(d) for d in distance.tolist()], pa.int32()
                ),
            },
            schema=CONTAMINATION_SCHEMA,
        )
        writer = SidecarWriter(train_manifest, "contamination", CONTAMINATION_SCHEMA, params)
        writer.write_chunk(table)
        table = writer.finalize(train_side.ids, extra_meta={"evals": list(evals)})
    return _result(train, evals, path, table, started, up_to_date=False)


def _result(train, evals, path, table: pa.Table, started: float, *, up_to_date: bool):
    flagged = table.filter(table.column("contaminated"))
    by_reason = {r: 0 for r in REASONS}
    for value in flagged.column("contamination_reason").to_pylist():
        by_reason[value] += 1
    by_eval = {name: 0 for name in evals}
    for value in flagged.column("contamination_eval").to_pylist():
        by_eval[value] += 1
    return DecontaminationResult(
        train=train,
        evals=tuple(evals),
        path=str(path),
        rows=table.num_rows,
        contaminated=flagged.num_rows,
        by_reason=by_reason,
        by_eval=by_eval,
        seconds=round(time.perf_counter() - started, 3),
        up_to_date=up_to_date,
        examples=flagged.slice(0, 10).to_pylist(),
    )
