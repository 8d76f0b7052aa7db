"""`curate ingest`: one native corpus → one typed manifest plus a ledger of every rejected record.

The adapter of the format reads drafts (curate/adapters); this module does for every format alike:
text repair and normalisation, modality and pair codes, media path resolution (rejecting paths that
escape the media root), probing (curate/probe.py), stable ids, duplicate detection, and safe,
resumable writing. Every record read ends as exactly one manifest row or one ledger row.

Layout while running: `manifests/.<name>.partial-<fingerprint>/` with one Parquet part per adapter
batch and a `parts/<k>.json` marker written after the part, so a killed run resumes at the first
batch without a marker. At the end the folder is completed (`stats.json`, `ingest.json`,
`_COMPLETE`) and renamed into place in one step.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate import __version__
from curate.adapters import AdapterContext, detect_format, get_adapter
from curate.errors import InputError, LockedError
from curate.ids import SeenIds, hash_keys, id_prefixes
from curate.manifest import COMPLETE_MARKER, Manifest
from curate.schema import (
    DRAFT_SCHEMA,
    LEDGER_SCHEMA,
    MANIFEST_SCHEMA,
    MANIFEST_SCHEMA_VERSION,
    MODALITY_CODES,
    check_schema,
)
from curate.text import clean_series, word_counts
from curate.workspace import Workspace, check_name

ProgressCallback = Callable[[str, int], None]  # (event, count): "records" read so far, ...

_URL_PATTERN = r"^[A-Za-z][A-Za-z0-9+.\-]*://"
_TEXT_COLUMNS = ("query_text", "target_text", "instruction")
_MEDIA_COLUMNS = (
    # (role, draft column, kind, is a list column)
    ("query", "query_images", "image", True),
    ("query", "query_video", "video", False),
    ("target", "target_images", "image", True),
    ("target", "target_video", "video", False),
    ("negative", "negative_images", "image", True),
)
_ROLE_RANK = {"query": 0, "target": 1, "negative": 2}


@dataclass(frozen=True)
class IngestOptions:
    """Everything that decides the content of a manifest (and so its input fingerprint)."""

    name: str
    format: str | None = None
    source: str | None = None  # the corpus name stored in each row; default: the manifest name
    split: str = "train"
    media_root: Path | None = None  # default: the input file's folder (the folder itself for one)
    allow_outside_media_root: bool = False
    verify_decode: bool = False
    probe: bool = True
    probe_workers: int = 4
    probe_timeout: float = 60.0
    batch_rows: int = 50_000
    adapter_options: Mapping[str, str] = field(default_factory=dict)
    replace: bool = False  # replace an existing manifest built from different input

    def __post_init__(self) -> None:
        check_name(self.name, what="manifest name")
        if self.batch_rows < 1:
            raise InputError(f"batch_rows must be at least 1, got {self.batch_rows}")


@dataclass(frozen=True)
class IngestResult:
    manifest: Manifest
    stats: dict[str, Any]
    up_to_date: bool  # nothing was done: the manifest already held this exact input


def ingest(
    input_path: str | Path,
    options: IngestOptions,
    workspace: Workspace,
    *,
    progress: ProgressCallback | None = None,
) -> IngestResult:
    """Ingest `input_path` into `workspace/manifests/<name>/`; see the module docstring."""
    path = Path(input_path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; check the path given to `curate ingest`")
    path = path.resolve()
    format_name = options.format or detect_format(path)
    adapter_cls = get_adapter(format_name)
    unknown = set(options.adapter_options) - set(adapter_cls.option_help)
    if unknown:
        known = ", ".join(f"{k} ({v})" for k, v in adapter_cls.option_help.items()) or "none"
        raise InputError(
            f"format {format_name!r} has no option(s) {sorted(unknown)}; its options: {known}"
        )
    media_root = (options.media_root or (path if path.is_dir() else path.parent)).expanduser()
    if not media_root.is_dir():
        raise InputError(f"media root {media_root} is not a folder; pass an existing --media-root")
    media_root = media_root.resolve()

    workspace.manifests.mkdir(parents=True, exist_ok=True)
    final_dir = workspace.manifest_dir(options.name)
    with _exclusive_lock(workspace.manifests / f".{options.name}.lock", options.name):
        fingerprint = _input_fingerprint(path, options, adapter_cls.name, adapter_cls.version)
        if (final_dir / COMPLETE_MARKER).exists():
            existing = Manifest(options.name, final_dir)
            if existing.ingest_info.get("input_fingerprint") == fingerprint:
                return IngestResult(existing, existing.stats, up_to_date=True)
            if not options.replace:
                raise InputError(
                    f"manifest {options.name!r} already exists in {workspace.manifests} and was "
                    "built from different input or options; pass --replace to rebuild it, or "
                    "choose another --name"
                )
        work_dir = workspace.manifests / f".{options.name}.partial-{fingerprint[:16]}"
        _remove_stale_partials(workspace.manifests, options.name, keep=work_dir)
        scratch_dir = workspace.root / "media" / options.name
        run = _Run(
            options=options,
            source=options.source or options.name,
            adapter_name=adapter_cls.name,
            adapter_version=adapter_cls.version,
            media_root=media_root,
            scratch_dir=scratch_dir.resolve(),
        )
        ctx = AdapterContext(
            input_path=path,
            media_root=media_root,
            scratch_dir=scratch_dir,
            options=dict(options.adapter_options),
            batch_rows=options.batch_rows,
        )
        stats = _write_parts(adapter_cls().read(ctx), run, work_dir, progress)
        stats["fingerprint"] = _files_fingerprint(sorted((work_dir / "rows").glob("*.parquet")))
        info = {
            "name": options.name,
            "input": str(path),
            "input_fingerprint": fingerprint,
            "format": adapter_cls.name,
            "adapter_version": adapter_cls.version,
            "options": _jsonable(asdict(options)),
            "media_root": str(media_root),
            "schema_version": MANIFEST_SCHEMA_VERSION,
            "curate_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        _write_json(work_dir / "stats.json", stats)
        _write_json(work_dir / "ingest.json", info)
        shutil.rmtree(work_dir / "parts")
        (work_dir / COMPLETE_MARKER).write_text("")
        _swap_into_place(work_dir, final_dir)
        manifest = Manifest(options.name, final_dir)
        return IngestResult(manifest, manifest.stats, up_to_date=False)


# --- the run ------------------------------------------------------------------------------------


@dataclass
class _Run:
    options: IngestOptions
    source: str
    adapter_name: str
    adapter_version: str
    media_root: Path
    scratch_dir: Path
    seen: SeenIds = field(default_factory=SeenIds)
    probed: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


def _write_parts(
    batches: Iterator[pa.Table], run: _Run, work_dir: Path, progress: ProgressCallback | None
) -> dict[str, Any]:
    for sub in ("rows", "ledger", "parts"):
        (work_dir / sub).mkdir(parents=True, exist_ok=True)
    totals: dict[str, Any] = _empty_counts()
    read_so_far = 0
    for index, drafts in enumerate(batches):
        marker = work_dir / "parts" / f"{index:05d}.json"
        rows_file = work_dir / "rows" / f"part-{index:05d}.parquet"
        ledger_file = work_dir / "ledger" / f"part-{index:05d}.parquet"
        if marker.exists():  # done by an earlier, interrupted run
            counts = json.loads(marker.read_text())
            if rows_file.exists():
                ids = pq.read_table(rows_file, columns=["id"]).column("id").combine_chunks()
                run.seen.add(id_prefixes(ids))
        else:
            check_schema(drafts.schema, DRAFT_SCHEMA, where=f"output of adapter {run.adapter_name}")
            rows, ledger, counts = _process_batch(drafts, run)
            _write_parquet(rows, rows_file)
            _write_parquet(ledger, ledger_file)
            _write_json(marker, counts)
        _add_counts(totals, counts)
        read_so_far += counts["read"]
        if progress:
            progress("records", read_so_far)
    return totals


def _process_batch(drafts: pa.Table, run: _Run) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    df = pl.from_arrow(drafts).with_row_index("_row")
    assert isinstance(df, pl.DataFrame)
    n = df.height
    reason = df["reject_reason"].cast(pl.String)
    message = df["reject_message"].cast(pl.String)

    def reject(mask: pl.Series, why: pl.Series | str, text: pl.Series | str) -> None:
        """Reject the rows of `mask` not rejected yet (the first reason found is kept)."""
        nonlocal reason, message
        mask = mask.fill_null(False) & reason.is_null()
        if not mask.any():
            return
        whys = why if isinstance(why, pl.Series) else pl.Series([why] * n, dtype=pl.String)
        texts = text if isinstance(text, pl.Series) else pl.Series([text] * n, dtype=pl.String)
        reason = pl.select(pl.when(mask).then(whys).otherwise(reason)).to_series()
        message = pl.select(pl.when(mask).then(texts).otherwise(message)).to_series()

    # Text: repair, normalise, flag what cannot be repaired.
    repaired = pl.Series([False] * n)
    had_text: dict[str, pl.Series] = {}
    for column in _TEXT_COLUMNS:
        had_text[column] = df[column].is_not_null() & (df[column] != "")
        cleaned = clean_series(df[column])
        df = df.with_columns(cleaned.text.alias(column))
        repaired = repaired | cleaned.repaired
        reject(
            cleaned.damaged,
            "encoding_damage",
            f"{column} contains U+FFFD: characters were lost before ingest and cannot be "
            "repaired; re-export the source file as UTF-8",
        )
    df, negatives_repaired, negatives_damaged = _clean_negatives(df)
    repaired = repaired | negatives_repaired
    reject(
        negatives_damaged,
        "encoding_damage",
        "a negative text contains U+FFFD; re-export the source file as UTF-8",
    )

    # Modalities and pair codes.
    df = df.with_columns(
        _modality_expr("query").alias("query_modality"),
        _modality_expr("target").alias("target_modality"),
    )
    for side in ("query", "target"):
        empty = df[f"{side}_modality"].is_null()
        reject(
            empty & had_text[f"{side}_text"],
            "empty_text",
            f"the {side} text is empty after normalising whitespace, and the {side} has no media",
        )
        reject(
            empty,
            "malformed_record",
            f"the record has no {side}: no text, image or video was found for it",
        )

    # Media: resolve, probe, attach.
    media = _media_items(df.filter(reason.is_null()), run)
    if media.height:
        failures = (
            media.filter(pl.col("fail_reason").is_not_null())
            .sort("_row", "role_rank", "order")
            .group_by("_row", maintain_order=True)
            .agg(pl.col("fail_reason").first(), pl.col("fail_message").first())
        )
        joined = df.select("_row").join(failures, on="_row", how="left", maintain_order="left")
        reject(joined["fail_reason"].is_not_null(), joined["fail_reason"], joined["fail_message"])
    df = _attach_media(df, media)

    # Ids and duplicates.
    df = df.with_columns(
        pl.col("split").fill_null(run.options.split),
        pl.lit(run.source).alias("source"),
        (
            pl.col("query_modality").replace_strict(MODALITY_CODES, default=None)
            + pl.lit("2")
            + pl.col("target_modality").replace_strict(MODALITY_CODES, default=None)
        ).alias("pair"),
    )
    ids, id64 = hash_keys(_id_keys(df, run).to_arrow())
    df = df.with_columns(pl.Series("id", ids))
    candidate = reason.is_null().to_numpy()
    duplicate = pl.Series([False] * n)
    if candidate.any():
        import numpy as np

        dup = np.zeros(n, dtype=bool)
        earlier = run.seen.contains(id64)
        first_in_batch = pl.Series(id64).filter(pl.Series(candidate)).is_first_distinct().to_numpy()
        positions = np.flatnonzero(candidate)
        dup[positions] = earlier[positions] | ~first_in_batch
        duplicate = pl.Series(dup)
        run.seen.add(id64[candidate & ~dup])
    if duplicate.any():
        reject(
            duplicate,
            "duplicate_id",
            pl.select(
                pl.concat_str(
                    pl.lit("same content as an earlier record of this manifest (id "),
                    pl.Series(ids),
                    pl.lit(")"),
                )
            ).to_series(),
        )

    accepted = reason.is_null()
    rows = _manifest_rows(df.filter(accepted), repaired.filter(accepted), run)
    ledger = _ledger_rows(
        df.filter(~accepted), reason.filter(~accepted), message.filter(~accepted), run
    )
    counts = _empty_counts()
    counts["read"] = n
    counts["accepted"] = rows.num_rows
    counts["rejected"] = ledger.num_rows
    counts["rejected_by_reason"] = _value_counts(reason.drop_nulls())
    accepted_df = df.filter(accepted)
    for key, column in (
        ("by_pair", "pair"),
        ("by_source", "source"),
        ("by_split", "split"),
        ("by_task", "task"),
    ):
        counts[key] = _value_counts(accepted_df[column])
    counts["text_repaired"] = int(repaired.filter(accepted).sum())
    counts["remote_media"] = int(accepted_df["_p_remote"].fill_null(False).sum())
    return rows, ledger, counts


def _value_counts(values: pl.Series) -> dict[str, int]:
    counted = values.value_counts()
    return {str(k): int(v) for k, v in counted.iter_rows()}


def _clean_negatives(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series, pl.Series]:
    n = df.height
    if df["negative_texts"].null_count() == n:
        none = pl.Series([False] * n)
        return df, none, none
    long = df.select("_row", "negative_texts").explode("negative_texts").with_row_index("_pos")
    cleaned = clean_series(long["negative_texts"])
    long = long.with_columns(
        cleaned.text.alias("negative_texts"),
        cleaned.repaired.alias("_repaired"),
        cleaned.damaged.alias("_damaged"),
    )
    grouped = long.group_by("_row", maintain_order=True).agg(
        pl.col("negative_texts").drop_nulls(),
        pl.col("_repaired").any(),
        pl.col("_damaged").any(),
    )
    grouped = df.select("_row").join(grouped, on="_row", how="left", maintain_order="left")
    negatives = grouped["negative_texts"]
    negatives = pl.select(
        pl.when(negatives.list.len() > 0).then(negatives).otherwise(None).alias("negative_texts")
    ).to_series()
    df = df.with_columns(negatives)
    repaired = grouped["_repaired"].fill_null(False)
    damaged = grouped["_damaged"].fill_null(False)
    assert len(repaired) == n
    return df, repaired, damaged


def _modality_expr(side: str) -> pl.Expr:
    has_text = pl.col(f"{side}_text").is_not_null()
    has_image = pl.col(f"{side}_images").list.len().fill_null(0) > 0
    has_video = pl.col(f"{side}_video").is_not_null() & (pl.col(f"{side}_video") != "")
    return (
        pl.when(has_video & has_text)
        .then(pl.lit("video+text"))
        .when(has_video)
        .then(pl.lit("video"))
        .when(has_image & has_text)
        .then(pl.lit("image+text"))
        .when(has_image)
        .then(pl.lit("image"))
        .when(has_text)
        .then(pl.lit("text"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )


_MEDIA_FIELDS = (
    "width",
    "height",
    "duration",
    "fps",
    "frame_count",
    "codec",
    "rotation",
    "bytes",
    "content_hash",
)
_PROBE_SCHEMA = {
    "written": pl.String,
    "kind": pl.String,
    "path": pl.String,
    "ref": pl.String,
    "remote": pl.Boolean,
    "fail_reason": pl.String,
    "fail_message": pl.String,
    "width": pl.Int32,
    "height": pl.Int32,
    "duration": pl.Float64,
    "fps": pl.Float64,
    "frame_count": pl.Int64,
    "codec": pl.String,
    "rotation": pl.Int16,
    "bytes": pl.Int64,
    "content_hash": pl.String,
}


def _media_items(df: pl.DataFrame, run: _Run) -> pl.DataFrame:
    """One row per media item of the still-accepted drafts, with resolution and probe results."""
    parts = []
    for role, column, kind, is_list in _MEDIA_COLUMNS:
        item = df.select("_row", pl.col(column).alias("written"))
        if is_list:
            item = item.explode("written")
        item = item.filter(pl.col("written").is_not_null() & (pl.col("written") != ""))
        parts.append(
            item.with_columns(
                _order_within_row(item["_row"]).alias("order"),
                pl.lit(role).alias("role"),
                pl.lit(_ROLE_RANK[role]).alias("role_rank"),
                pl.lit(kind).alias("kind"),
            )
        )
    items = pl.concat(parts)
    remote = items["written"].str.contains(_URL_PATTERN)
    local = items.filter(~remote).select("written", "kind").unique(maintain_order=True)
    probe_rows = _resolve_and_probe(local, run)
    remote_items = items.filter(remote).select("written", "kind").unique(maintain_order=True)
    remote_rows = remote_items.with_columns(
        pl.col("written").alias("path"),
        pl.col("written").alias("ref"),
        pl.lit(True).alias("remote"),
    )
    lookup = pl.concat(
        [pl.DataFrame(probe_rows, schema=_PROBE_SCHEMA), remote_rows], how="diagonal_relaxed"
    ).cast(_PROBE_SCHEMA)  # type: ignore[arg-type]
    return items.join(lookup, on=["written", "kind"], how="left", maintain_order="left")


def _order_within_row(rows: pl.Series) -> pl.Series:
    """0, 1, 2, ... within each run of equal row numbers (rows are sorted after an explode)."""
    import numpy as np

    values = rows.to_numpy()
    if len(values) == 0:
        return pl.Series([], dtype=pl.Int64)
    starts = np.r_[True, values[1:] != values[:-1]]
    start_positions = np.maximum.accumulate(np.where(starts, np.arange(len(values)), 0))
    return pl.Series(np.arange(len(values)) - start_positions)


def _resolve_and_probe(local: pl.DataFrame, run: _Run) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    to_probe: dict[tuple[Path, str], list[dict[str, Any]]] = {}
    for written, kind in local.iter_rows():
        key = (written, kind)
        if key in run.probed:
            out.append(run.probed[key])
            continue
        row: dict[str, Any] = {"written": written, "kind": kind, "remote": False}
        resolved, ref, failure = _resolve(written, run)
        row["path"], row["ref"] = (str(resolved) if resolved else None), ref
        if failure:
            row["fail_reason"], row["fail_message"] = failure
        elif not run.options.probe:
            if not resolved.is_file():  # type: ignore[union-attr]
                row["fail_reason"] = "missing_media"
                row["fail_message"] = f"{resolved}: no such file (named as {written!r})"
        else:
            to_probe.setdefault((resolved, kind), []).append(row)  # type: ignore[arg-type]
        run.probed[key] = row
        out.append(row)
    if to_probe:
        from curate.probe import MediaInfo, probe_many

        results = probe_many(
            list(to_probe),
            workers=run.options.probe_workers,
            verify_decode=run.options.verify_decode,
            timeout=run.options.probe_timeout,
        )
        for key, rows in to_probe.items():
            result = results[(key[0], key[1])]
            for row in rows:
                if isinstance(result, MediaInfo):
                    for name in _MEDIA_FIELDS:
                        row[name] = getattr(result, name)
                else:
                    row["fail_reason"] = result.reason
                    row["fail_message"] = f"{result.message} (named as {row['written']!r})"
    return out


def _resolve(written: str, run: _Run) -> tuple[Path | None, str, tuple[str, str] | None]:
    """The absolute path of a media reference, the stable reference used in ids, or a failure."""
    candidate = Path(written).expanduser()
    if not candidate.is_absolute():
        candidate = run.media_root / candidate
    resolved = Path(os.path.realpath(candidate))  # follows symlinks, so a link out is caught
    for root, prefix in ((run.media_root, ""), (run.scratch_dir, "scratch:")):
        if resolved.is_relative_to(root):
            return resolved, prefix + resolved.relative_to(root).as_posix(), None
    if run.options.allow_outside_media_root:
        return resolved, resolved.as_posix(), None
    return (
        None,
        written,
        (
            "path_escape",
            f"{written!r} resolves to {resolved}, outside the media root {run.media_root}; "
            "fix the path, pass the right --media-root, or --allow-outside-media-root",
        ),
    )


def _attach_media(df: pl.DataFrame, media: pl.DataFrame) -> pl.DataFrame:
    """Replace written paths by resolved ones and add the `media` list and primary-media columns.

    `media` rows are grouped by draft row through list offsets over the sorted items rather than a
    hash group-by: this is the hot path of large caption corpora (one media item a row).
    """
    import numpy as np

    n = df.height
    media = media.sort("_row", "role_rank", "order")
    rows = media["_row"].to_numpy().astype(np.int64)
    role_rank = media["role_rank"].to_numpy()

    def lists_of(values: pa.Array, mask: np.ndarray | None = None) -> pa.ListArray:
        chosen_rows = rows if mask is None else rows[mask]
        chosen = values if mask is None else values.filter(pa.array(mask))
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.bincount(chosen_rows, minlength=n), out=offsets[1:])
        return pa.ListArray.from_arrays(pa.array(offsets), chosen)

    item_columns = ["role", "kind", "path", "remote", *_MEDIA_FIELDS]
    items = media.select(item_columns).cast(
        {name: _PROBE_SCHEMA[name] for name in item_columns if name in _PROBE_SCHEMA}  # type: ignore[misc]
    )
    structs = pa.StructArray.from_arrays(
        [c.combine_chunks() for c in items.to_arrow().columns], names=item_columns
    )
    refs = media["ref"].to_arrow()
    columns = {
        "media": pl.from_arrow(lists_of(structs)),
        "_refs_query": pl.from_arrow(lists_of(refs, role_rank == 0)).list.join("\x1e"),
        "_refs_target": pl.from_arrow(lists_of(refs, role_rank == 1)).list.join("\x1e"),
    }
    # The primary media item: the target's first, else the query's first.
    primary = np.full(n, -1, dtype=np.int64)
    positions = np.arange(len(rows))
    for rank in (0, 1):  # the target (rank 1) overwrites the query
        mask = role_rank == rank
        side_rows, side_positions = rows[mask], positions[mask]
        first = np.r_[True, side_rows[1:] != side_rows[:-1]] if len(side_rows) else side_rows
        primary[side_rows[first]] = side_positions[first]
    take = pa.array(primary, mask=primary < 0)
    picked = media.select("role", "kind", "remote", *_MEDIA_FIELDS).to_arrow().take(take)
    for name in picked.column_names:
        columns[f"_p_{name}"] = pl.from_arrow(picked.column(name))
    df = df.with_columns(**{name: series for name, series in columns.items()})  # type: ignore[arg-type]

    local = media.filter(~pl.col("remote").fill_null(False) & pl.col("path").is_not_null())
    replace = dict(local.select("written", "path").unique().iter_rows())
    replace = {k: v for k, v in replace.items() if k != v}
    if replace:
        df = df.with_columns(
            *[
                pl.col(c).list.eval(pl.element().replace(replace))
                for c in ("query_images", "target_images", "negative_images")
            ],
            *[pl.col(c).replace(replace) for c in ("query_video", "target_video")],
        )
    return df


def _media_struct_dtype() -> pl.DataType:
    return pl.Struct(
        {
            "role": pl.String,
            "kind": pl.String,
            "path": pl.String,
            "remote": pl.Boolean,
            **{name: _PROBE_SCHEMA[name] for name in _MEDIA_FIELDS},
        }
    )


def _id_keys(df: pl.DataFrame, run: _Run) -> pl.Series:
    """The normalised content a row's id is the hash of (stable across re-ingests and machines)."""

    def text(column: str) -> pl.Expr:
        return pl.col(column).cast(pl.String).fill_null("")

    return df.select(
        pl.concat_str(
            [
                pl.lit(run.source),
                text("task"),
                text("split"),
                text("pair"),
                text("instruction"),
                text("query_text"),
                text("target_text"),
                pl.col("negative_texts").list.join("\x1e").fill_null(""),
                text("_refs_query"),
                text("_refs_target"),
                text("query_clip_start"),
                text("query_clip_end"),
                text("target_clip_start"),
                text("target_clip_end"),
            ],
            separator="\x1f",
        ).alias("key")
    ).to_series()


def _manifest_rows(df: pl.DataFrame, repaired: pl.Series, run: _Run) -> pa.Table:
    clip_start = (
        pl.when(pl.col("_p_role") == "query")
        .then("query_clip_start")
        .otherwise("target_clip_start")
    )
    clip_end = (
        pl.when(pl.col("_p_role") == "query").then("query_clip_end").otherwise("target_clip_end")
    )
    clip_length = pl.coalesce(clip_end, pl.col("_p_duration")) - clip_start.fill_null(0.0)
    out = df.with_columns(
        pl.col("_p_kind").alias("media_kind"),
        pl.col("_p_remote").alias("media_remote"),
        pl.col("_p_width").alias("width"),
        pl.col("_p_height").alias("height"),
        pl.when(clip_start.is_not_null() | clip_end.is_not_null())
        .then(clip_length)
        .otherwise(pl.col("_p_duration"))
        .alias("duration"),
        pl.col("_p_fps").alias("fps"),
        pl.col("_p_frame_count").alias("frame_count"),
        pl.col("_p_codec").alias("codec"),
        pl.col("_p_rotation").alias("rotation"),
        pl.col("_p_bytes").alias("media_bytes"),
        pl.col("_p_content_hash").alias("media_hash"),
        pl.col("query_text").str.len_chars().cast(pl.Int32).alias("query_chars"),
        word_counts(df["query_text"]).alias("query_words"),
        pl.col("target_text").str.len_chars().cast(pl.Int32).alias("target_chars"),
        word_counts(df["target_text"]).alias("target_words"),
        repaired.alias("text_repaired"),
        pl.lit(run.adapter_name).alias("adapter"),
        pl.lit(run.adapter_version).alias("adapter_version"),
    )
    table = out.select(MANIFEST_SCHEMA.names).to_arrow()
    return table.cast(MANIFEST_SCHEMA)


def _ledger_rows(df: pl.DataFrame, reason: pl.Series, message: pl.Series, run: _Run) -> pa.Table:
    out = df.select(
        pl.lit(run.source).alias("source"),
        pl.col("input_file"),
        pl.col("record_index"),
        reason.alias("reason"),
        message.fill_null("").alias("message"),
        pl.col("raw"),
        pl.lit(run.adapter_name).alias("adapter"),
        pl.lit(run.adapter_version).alias("adapter_version"),
    )
    return out.to_arrow().cast(LEDGER_SCHEMA)


# --- counts -------------------------------------------------------------------------------------

_COUNTER_KEYS = ("rejected_by_reason", "by_pair", "by_source", "by_split", "by_task")
_SCALAR_KEYS = ("read", "accepted", "rejected", "text_repaired", "remote_media")


def _empty_counts() -> dict[str, Any]:
    return {**{k: 0 for k in _SCALAR_KEYS}, **{k: {} for k in _COUNTER_KEYS}}


def _add_counts(total: dict[str, Any], part: Mapping[str, Any]) -> None:
    for key in _SCALAR_KEYS:
        total[key] += int(part.get(key, 0))
    for key in _COUNTER_KEYS:
        merged = Counter(total[key])
        merged.update(part.get(key, {}))
        total[key] = dict(sorted(merged.items()))


# --- files --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path, name: str) -> Iterator[None]:
    """One writer per manifest name; the OS drops the lock if the holder dies (even kill -9)."""
    handle = open(lock_path, "a+")  # noqa: SIM115 - held for the duration of the block
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise LockedError(
                f"manifest {name!r} is being written by {holder}; wait for it to finish "
                "(the lock is released when that process exits)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()


def _input_fingerprint(path: Path, options: IngestOptions, adapter: str, version: str) -> str:
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        stat = file.stat()
        digest.update(f"{file}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    content = _jsonable({k: v for k, v in asdict(options).items() if k != "replace"})
    digest.update(json.dumps(content, sort_keys=True).encode())
    digest.update(f"{adapter}\0{version}\0{MANIFEST_SCHEMA_VERSION}\0{__version__}".encode())
    return digest.hexdigest()


def _files_fingerprint(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict | Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _write_parquet(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _remove_stale_partials(manifests: Path, name: str, *, keep: Path) -> None:
    for stale in manifests.glob(f".{name}.partial-*"):
        if stale != keep:
            shutil.rmtree(stale, ignore_errors=True)


def _swap_into_place(work_dir: Path, final_dir: Path) -> None:
    if final_dir.exists():
        retired = final_dir.with_name(f".{final_dir.name}.retired-{os.getpid()}")
        os.replace(final_dir, retired)
        os.replace(work_dir, final_dir)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(work_dir, final_dir)
