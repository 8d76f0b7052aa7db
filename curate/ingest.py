"""`curate ingest`: one native corpus → one typed manifest plus a ledger of every rejected record.

The adapter of the format reads drafts (curate/adapters); this module does for every format alike:
text repair and normalisation, modality and pair codes, media path resolution (rejecting paths that
escape the media root), probing (curate/probe.py), stable ids, duplicate detection, and safe,
resumable writing. Every record read ends as exactly one manifest row or one ledger row.

Layout while running: `manifests/.<name>.partial-<fingerprint>/` with one Parquet part per adapter
batch and a `parts/<k>.json` marker written after the part, so a killed run resumes at the first
batch without a marker. At the end the folder is completed (`stats.json`, `ingest.json`,
`_COMPLETE`) and renamed into place in one step.

Speed (benchmarks/ingest.py): batches flow through a pipeline (read ahead, process, write behind),
and a batch is processed as whole Arrow/numpy columns, skipping what it does not need (empty
columns, text with nothing to clean, resolution and probing when all media are URLs). The output
is the same as processing row by row: same rows in the same order, same ids, ledger and counts.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate import __version__
from curate.adapters import AdapterContext, detect_format, get_adapter, is_data_file_name
from curate.adapters.generic import check_options
from curate.errors import InputError
from curate.ids import SeenIds, hash_keys, id_prefixes
from curate.locks import exclusive_lock
from curate.manifest import COMPLETE_MARKER, Manifest
from curate.schema import (
    DRAFT_SCHEMA,
    LEDGER_SCHEMA,
    MANIFEST_SCHEMA,
    MANIFEST_SCHEMA_VERSION,
    MEDIA_ITEM_TYPE,
    MODALITIES,
    check_schema,
    pair_code,
)
from curate.text import clean_array, text_stats
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
    """Everything that decides the content of a manifest, and how it is built.

    All but `probe_workers`, `replace` and `require_rows` (and `format` as given: the format
    read counts) go into the input fingerprint that tells an up-to-date manifest.
    """

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
    replace: bool = False  # rebuild an existing manifest, even one built from this very input
    #: Refuse a result with no accepted row: raise instead of putting it in place, so that an
    #: existing manifest stays and a fixed rerun is not taken for up to date. The attempt's
    #: ledger and stats are kept in `manifests/.<name>.rejected/` for inspection.
    require_rows: bool = False

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
    check_options(adapter_cls, options.adapter_options)
    media_root = (options.media_root or (path if path.is_dir() else path.parent)).expanduser()
    if not media_root.is_dir():
        raise InputError(f"media root {media_root} is not a folder; pass an existing --media-root")
    media_root = media_root.resolve()

    workspace.manifests.mkdir(parents=True, exist_ok=True)
    final_dir = workspace.manifest_dir(options.name)
    with exclusive_lock(
        workspace.manifests / f".{options.name}.lock",
        busy=f"manifest {options.name!r} is being written",
    ):
        files_digest = _input_files_digest(path)
        fingerprint = _input_fingerprint(files_digest, options, adapter_cls)
        if (final_dir / COMPLETE_MARKER).exists() and not options.replace:
            existing = Manifest(options.name, final_dir)
            if existing.ingest_info.get("input_fingerprint") == fingerprint:
                return IngestResult(existing, existing.stats, up_to_date=True)
            changed = _what_changed(existing.ingest_info, path, files_digest, options, adapter_cls)
            raise InputError(
                f"manifest {options.name!r} already exists in {workspace.manifests} and was "
                f"built from different input or options ({changed}); pass --replace to "
                "rebuild it, or choose another --name"
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
        adapter = adapter_cls()
        stats = _write_parts(adapter.read(ctx), run, work_dir, progress)
        stats["adapter_changes"] = dict(sorted(adapter.changes().items()))
        read_files = stats.pop("input_files")
        stats["files_with_records"] = len(read_files)
        stats["files_without_records"] = _files_without_records(path, read_files)
        stats["fingerprint"] = _files_fingerprint(sorted((work_dir / "rows").glob("*.parquet")))
        info = {
            "name": options.name,
            "input": str(path),
            "input_fingerprint": fingerprint,
            "fingerprint_scheme": FINGERPRINT_SCHEME,
            "input_files_digest": files_digest,
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
        if options.require_rows and not stats["accepted"]:
            _refuse_empty(work_dir, path, stats)
        _swap_into_place(work_dir, final_dir)
        # A failed attempt kept for inspection is stale once the manifest is built.
        shutil.rmtree(workspace.manifests / f".{options.name}.rejected", ignore_errors=True)
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
    """Process the adapter's batches in order, as a three-stage pipeline.

    A thread reads the next batch while this one is processed, and another writes the previous
    one's files: the adapters' parsing (polars, DuckDB) and the Parquet encoder release the GIL,
    so on a multi-core machine reading, processing and writing overlap. At most four batches are
    held at once, so memory stays bounded by the batch size. Processing itself stays in order on
    this thread (duplicate detection depends on every earlier batch).
    """
    for sub in ("rows", "ledger", "parts"):
        (work_dir / sub).mkdir(parents=True, exist_ok=True)
    totals: dict[str, Any] = _empty_counts()
    read_so_far = 0
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="curate-ingest-write") as writer,
        contextlib.closing(_read_ahead(batches)) as ahead,  # stops the reader on errors too
    ):
        writing: Future[None] | None = None
        for index, drafts in enumerate(ahead):
            marker = work_dir / "parts" / f"{index:05d}.json"
            rows_file = work_dir / "rows" / f"part-{index:05d}.parquet"
            ledger_file = work_dir / "ledger" / f"part-{index:05d}.parquet"
            if marker.exists():  # done by an earlier, interrupted run
                counts = json.loads(marker.read_text())
                if rows_file.exists():
                    ids = pq.read_table(rows_file, columns=["id"]).column("id").combine_chunks()
                    run.seen.add(id_prefixes(ids))
            else:
                check_schema(
                    drafts.schema, DRAFT_SCHEMA, where=f"output of adapter {run.adapter_name}"
                )
                rows, ledger, counts = _process_batch(drafts, run)
                if writing is not None:
                    writing.result()  # one part written at a time, in order; raises its error
                writing = writer.submit(
                    _write_part, rows, ledger, counts, rows_file, ledger_file, marker
                )
            _add_counts(totals, counts)
            read_so_far += counts["read"]
            if progress:
                progress("records", read_so_far)
        if writing is not None:
            writing.result()
    return totals


def _write_part(
    rows: pa.Table,
    ledger: pa.Table,
    counts: dict[str, Any],
    rows_file: Path,
    ledger_file: Path,
    marker: Path,
) -> None:
    _write_parquet(rows, rows_file)
    _write_parquet(ledger, ledger_file)
    _write_json(marker, counts)  # last: a part without its marker is redone on resume


def _read_ahead(batches: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """The items of `batches`, each next one read in a thread while the current one is in use.

    Only one batch is read ahead, so memory grows by one batch, not by a queue of them.
    """
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="curate-ingest-read")
    reading: Future[pa.Table | None] | None = None
    try:
        reading = reader.submit(next, batches, None)
        while (batch := reading.result()) is not None:
            reading = reader.submit(next, batches, None)
            yield batch
    finally:
        if reading is not None:
            reading.cancel()
        reader.shutdown(wait=True)
        # After the reader has stopped (a running generator cannot be closed), so that the
        # adapter's own clean-up runs when ingest stops early.
        close = getattr(batches, "close", None)
        if close is not None:
            close()


class _Verdicts:
    """The reject reason and message of each row of a batch; the first reason found is kept."""

    def __init__(self, reasons: pa.Array, messages: pa.Array) -> None:
        n = len(reasons)
        self.open = ~_valid(reasons)  # rows not rejected (yet)
        self.reason = np.full(n, None, dtype=object)
        self.message = np.full(n, None, dtype=object)
        by_adapter = np.flatnonzero(~self.open)
        if len(by_adapter):
            self.reason[by_adapter] = reasons.take(by_adapter).to_pylist()
            self.message[by_adapter] = messages.take(by_adapter).to_pylist()

    def reject(self, mask: np.ndarray, why: str, text: str) -> None:
        """Reject the rows of `mask` not rejected yet, all for the same reason."""
        rows = np.flatnonzero(mask & self.open)
        if len(rows):
            self.open[rows] = False
            self.reason[rows] = why
            self.message[rows] = text

    def reject_rows(self, rows: np.ndarray, whys: np.ndarray, texts: np.ndarray) -> None:
        """Reject `rows[i]` for `whys[i]` (with `texts[i]`) where not rejected yet."""
        keep = self.open[rows]
        rows = rows[keep]
        self.open[rows] = False
        self.reason[rows] = whys[keep]
        self.message[rows] = texts[keep]


def _process_batch(drafts: pa.Table, run: _Run) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """Manifest rows, ledger rows and counts of one batch of drafts.

    Every step works on whole Arrow/numpy columns and skips what the batch does not need: a
    column that is entirely null, text without any character that cleaning would change, media
    resolution and probing when all media are URLs. Rejections are recorded in order, and a row
    keeps the first reason found: text damage, then empty sides, then media, then duplicates.
    """
    n = drafts.num_rows
    # Columns only passed through or taken from stay in their chunks (copying `raw`, the
    # largest, alone would cost more than the whole text cleaning).
    col: dict[str, pa.Array | pa.ChunkedArray] = {
        name: drafts.column(name)
        if name in _PASSED_THROUGH
        else drafts.column(name).combine_chunks()
        for name in DRAFT_SCHEMA.names
    }
    verdicts = _Verdicts(col["reject_reason"], col["reject_message"])

    # Text: repair, normalise, flag what cannot be repaired.
    repaired = np.zeros(n, dtype=bool)
    had_text: dict[str, np.ndarray] = {}
    text: dict[str, pa.Array] = {}
    for column in _TEXT_COLUMNS:
        had_text[column] = _valid(col[column]) & (_lengths(col[column]) > 0)
        cleaned = clean_array(col[column])
        text[column] = cleaned.text
        repaired |= cleaned.repaired
        verdicts.reject(
            cleaned.damaged,
            "encoding_damage",
            f"{column} contains U+FFFD: characters were lost before ingest and cannot be "
            "repaired; re-export the source file as UTF-8",
        )
    negatives, negatives_repaired, negatives_damaged = _clean_negatives(col["negative_texts"])
    repaired |= negatives_repaired
    verdicts.reject(
        negatives_damaged,
        "encoding_damage",
        "a negative text contains U+FFFD; re-export the source file as UTF-8",
    )

    # Modalities and pair codes.
    modality = {side: _modality_codes(side, col, text) for side in ("query", "target")}
    for side in ("query", "target"):
        empty = modality[side] < 0
        verdicts.reject(
            empty & had_text[f"{side}_text"],
            "empty_text",
            f"the {side} text is empty after normalising whitespace, and the {side} has no media",
        )
        verdicts.reject(
            empty,
            "malformed_record",
            f"the record has no {side}: no text, image or video was found for it",
        )

    # Media: resolve, probe, attach.
    items = _media_items(col, verdicts.open, run)
    if items.failed is not None:
        verdicts.reject_rows(*items.failed)
    media = _attach_media(items, n)
    for column, values in items.replaced_columns(col).items():
        col[column] = values
    video_durations = _side_video_durations(items, n)
    for side, probed in video_durations.items():
        start = col[f"{side}_clip_start"]
        if start.null_count == n:
            continue
        starts = start.to_numpy(zero_copy_only=False)  # NaN where null
        late = np.flatnonzero((starts >= probed - _CLIP_TOLERANCE) & verdicts.open)  # NaN: no
        if len(late):
            verdicts.reject_rows(
                late,
                np.full(len(late), "malformed_record", dtype=object),
                np.array(
                    [
                        f"the {side} clip starts at {starts[row]:g} s, at or after (or within "
                        f"{_CLIP_TOLERANCE * 1000:g} ms of) the end of its video "
                        f"({probed[row]:g} s as probed); check the clip times or the file"
                        for row in late
                    ],
                    dtype=object,
                ),
            )
    # Clip ends past the real file's end (annotated durations and real files often differ by a
    # fraction of a second) move to the last instant of the file. Before ids: a row's id is the
    # hash of what the manifest holds, so two records that become the same clip are duplicates.
    clamped_ends = np.zeros(n, dtype=np.int8)
    for side, probed in video_durations.items():
        end = col[f"{side}_clip_end"]
        if end.null_count == n:
            continue
        ends = end.to_numpy(zero_copy_only=False)
        past = ends > probed + _CLIP_TOLERANCE  # False where either is NaN
        if past.any():
            clamped_ends += past
            col[f"{side}_clip_end"] = pa.array(np.where(past, probed, ends), mask=~_valid(end))

    # Ids and duplicates.
    split = pc.fill_null(col["split"], run.options.split)
    pair = _PAIRS.take(
        _code_indices(
            modality["query"] * len(MODALITIES) + modality["target"],
            (modality["query"] < 0) | (modality["target"] < 0),
        )
    )
    candidates = np.flatnonzero(verdicts.open)
    ids = pa.array([], pa.string())
    if len(candidates):
        keys = _id_keys(
            [
                col["task"],
                split,
                pair,
                text["instruction"],
                text["query_text"],
                text["target_text"],
                negatives,
                media.refs_query,
                media.refs_target,
                col["query_clip_start"],
                col["query_clip_end"],
                col["target_clip_start"],
                col["target_clip_end"],
            ],
            candidates,
            run.source,
        )
        ids, id64 = hash_keys(keys)
        # Duplicates: an id seen in an earlier batch, or earlier in this one.
        duplicate = run.seen.add_new(id64)
        if duplicate.any():
            duplicate_ids = ids.filter(pa.array(duplicate)).to_pylist()
            verdicts.reject_rows(
                candidates[duplicate],
                np.full(len(duplicate_ids), "duplicate_id", dtype=object),
                np.array(
                    [
                        f"same content as an earlier record of this manifest (id {id_})"
                        for id_ in duplicate_ids
                    ],
                    dtype=object,
                ),
            )
            ids = ids.filter(pa.array(~duplicate))

    accepted = np.flatnonzero(verdicts.open)
    rejected = np.flatnonzero(~verdicts.open)

    def pick(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        return values if len(accepted) == n else values.take(accepted)

    modalities = {
        side: _MODALITY_NAMES.take(_code_indices(modality[side], modality[side] < 0))
        for side in modality
    }
    primary = media.primary
    if col["annotated_duration"].null_count < n:
        primary = {**primary, "duration": _with_annotated(primary, col["annotated_duration"])}
    duration = primary["duration"]
    if any(col[c].null_count < n for c in _CLIP_COLUMNS):
        duration = _clip_durations(col, primary)
    query_text, target_text = pick(text["query_text"]), pick(text["target_text"])
    query_chars, query_words = text_stats(query_text)
    target_chars, target_words = text_stats(target_text)
    k = len(accepted)
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        "id": ids,
        "source": pa.repeat(run.source, k),
        "split": pick(split),
        "task": pick(col["task"]),
        "pair": pick(pair),
        "query_modality": pick(modalities["query"]),
        "target_modality": pick(modalities["target"]),
        "source_id": pick(col["source_id"]),
        "instruction": pick(text["instruction"]),
        "query_text": query_text,
        "target_text": target_text,
        "negative_texts": pick(negatives),
        **{name: pick(col[name]) for name in _MEDIA_DRAFT_COLUMNS},
        **{name: pick(col[name]) for name in _CLIP_COLUMNS},
        "media": pick(media.lists),
        "media_kind": pick(media.primary["kind"]),
        "media_remote": pick(media.primary["remote"]),
        "width": pick(media.primary["width"]),
        "height": pick(media.primary["height"]),
        "duration": pick(duration),
        "fps": pick(media.primary["fps"]),
        "frame_count": pick(media.primary["frame_count"]),
        "codec": pick(media.primary["codec"]),
        "rotation": pick(media.primary["rotation"]),
        "media_bytes": pick(media.primary["bytes"]),
        "media_hash": pick(media.primary["content_hash"]),
        "query_chars": query_chars,
        "query_words": query_words,
        "target_chars": target_chars,
        "target_words": target_words,
        "text_repaired": pa.array(repaired[accepted]),
        "input_file": pick(col["input_file"]),
        "record_index": pick(col["record_index"]),
        "adapter": pa.repeat(run.adapter_name, k),
        "adapter_version": pa.repeat(run.adapter_version, k),
    }
    rows = _table(columns, MANIFEST_SCHEMA)
    reasons = verdicts.reason[rejected]
    ledger = _table(
        {
            "source": pa.repeat(run.source, len(rejected)),
            "input_file": _take(col["input_file"], rejected),
            "record_index": _take(col["record_index"], rejected),
            "reason": pa.array(reasons, pa.string()),
            "message": pa.array([m or "" for m in verdicts.message[rejected]], pa.string()),
            "raw": _take(col["raw"], rejected),
            "adapter": pa.repeat(run.adapter_name, len(rejected)),
            "adapter_version": pa.repeat(run.adapter_version, len(rejected)),
        },
        LEDGER_SCHEMA,
    )

    counts = _empty_counts()
    counts["read"] = n
    counts["accepted"] = k
    counts["rejected"] = len(rejected)
    counts["rejected_by_reason"] = dict(Counter(reasons.tolist()))
    counts["by_pair"] = _value_counts(columns["pair"])
    counts["by_source"] = {run.source: k} if k else {}
    counts["by_split"] = _value_counts(columns["split"])
    counts["by_task"] = _value_counts(columns["task"])
    counts["text_repaired"] = int(repaired[accepted].sum())
    counts["clip_ends_clamped"] = int(clamped_ends[accepted].sum())
    counts["reject_examples"] = {
        reason: verdicts.message[rejected[reasons == reason][0]] or ""
        for reason in counts["rejected_by_reason"]
    }
    counts["input_files"] = sorted(pc.unique(col["input_file"]).to_pylist())
    counts["remote_media"] = int(pc.sum(pc.fill_null(columns["media_remote"], False)).as_py() or 0)
    return rows, ledger, counts


def _table(columns: Mapping[str, pa.Array | pa.ChunkedArray], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_arrays([columns[f.name].cast(f.type) for f in schema], schema=schema)


@functools.lru_cache(maxsize=64)
def _nulls(n: int, type_: pa.DataType) -> pa.Array:
    """A null array, shared (Arrow arrays are immutable): most batches have the same length."""
    return pa.nulls(n, type_)


def _take(values: pa.Array | pa.ChunkedArray, rows: np.ndarray) -> pa.Array | pa.ChunkedArray:
    """`values.take(rows)`; with no rows, an empty array at once (Arrow's `take` of nothing
    still costs milliseconds on a batch of long strings, and most batches reject nothing)."""
    return values.take(rows) if len(rows) else pa.array([], values.type)


def _value_counts(values: pa.Array) -> dict[str, int]:
    return {
        str(item["values"]): int(item["counts"]) for item in pc.value_counts(values).to_pylist()
    }


def _valid(values: pa.Array) -> np.ndarray:
    if values.null_count == 0:
        return np.ones(len(values), dtype=bool)
    return values.is_valid().to_numpy(zero_copy_only=False)


def _lengths(values: pa.Array) -> np.ndarray:
    """Length of each string (bytes) or list; 0 for nulls."""
    if pa.types.is_list(values.type):
        return pc.fill_null(values.value_lengths(), 0).to_numpy()
    return pc.fill_null(pc.binary_length(values), 0).to_numpy()


def _clean_negatives(values: pa.ListArray) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Each negative cleaned like a text; empty ones dropped, and a list left empty becomes null."""
    n = len(values)
    repaired = np.zeros(n, dtype=bool)
    damaged = np.zeros(n, dtype=bool)
    if values.null_count == n:
        return values, repaired, damaged
    lengths = _lengths(values)
    parents = np.repeat(np.arange(n), lengths)
    cleaned = clean_array(values.flatten())
    repaired[parents[cleaned.repaired]] = True
    damaged[parents[cleaned.damaged]] = True
    kept = _valid(cleaned.text)
    counts = np.bincount(parents[kept], minlength=n)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    lists = pa.ListArray.from_arrays(
        pa.array(offsets), cleaned.text.filter(pa.array(kept)), mask=pa.array(counts == 0)
    )
    return lists.cast(values.type), repaired, damaged


def _modality_codes(
    side: str, col: Mapping[str, pa.Array], text: Mapping[str, pa.Array]
) -> np.ndarray:
    """Index into MODALITIES of each row's side, -1 where the side is empty."""
    has_text = _valid(text[f"{side}_text"])
    has_image = _lengths(col[f"{side}_images"]) > 0
    video = col[f"{side}_video"]
    has_video = _valid(video) & (_lengths(video) > 0)
    code = {name: MODALITIES.index(name) for name in MODALITIES}
    return np.select(
        [has_video & has_text, has_video, has_image & has_text, has_image, has_text],
        [code["video+text"], code["video"], code["image+text"], code["image"], code["text"]],
        -1,
    )


def _code_indices(codes: np.ndarray, missing: np.ndarray) -> pa.Array:
    return pa.array(np.where(missing, 0, codes), mask=missing)


#: Draft columns that ingest copies to the manifest or ledger without looking into them.
_PASSED_THROUGH = frozenset({"raw", "input_file", "record_index", "source_id", "task"})
_MODALITY_NAMES = pa.array(MODALITIES, pa.string())
#: Pair code of (query modality index * 5 + target modality index), e.g. "t2i".
_PAIRS = pa.array([pair_code(q, t) for q in MODALITIES for t in MODALITIES], pa.string())
_MEDIA_DRAFT_COLUMNS = (
    "query_images",
    "target_images",
    "negative_images",
    "query_video",
    "target_video",
)
_CLIP_COLUMNS = ("query_clip_start", "query_clip_end", "target_clip_start", "target_clip_end")


# --- media --------------------------------------------------------------------------------------

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
#: Arrow type of each per-item column: the media struct's fields, plus the reference used in ids
#: and the failure of an item that cannot be used.
_ITEM_TYPES: dict[str, pa.DataType] = {
    **{f.name: f.type for f in MEDIA_ITEM_TYPE},
    "ref": pa.string(),
    "fail_reason": pa.string(),
    "fail_message": pa.string(),
}
_ROLES = pa.array(list(_ROLE_RANK), pa.string())  # indexed by role rank
_KINDS = ("image", "video")


@dataclass(frozen=True)
class _Items:
    """The media items of a batch's open rows, sorted by (row, role rank, order in the role)."""

    rows: np.ndarray  # the draft row of each item
    rank: np.ndarray  # its role rank (query, target, negative)
    columns: dict[str, pa.Array]  # one per name of _ITEM_TYPES
    #: (rows, reasons, messages) of the first unusable item of each row that has one.
    failed: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    #: Local paths as written -> the resolved absolute path, where they differ.
    resolved: dict[str, str]

    def replaced_columns(self, col: Mapping[str, pa.Array]) -> dict[str, pa.Array]:
        """The draft media columns with written local paths replaced by resolved ones."""
        out: dict[str, pa.Array] = {}
        if not self.resolved:
            return out
        for name in _MEDIA_DRAFT_COLUMNS:
            values = col[name]
            if values.null_count == len(values):
                continue
            series = pl.Series(values)
            if pa.types.is_list(values.type):
                series = series.list.eval(pl.element().replace(self.resolved))
            else:
                series = series.replace(self.resolved)
            out[name] = series.to_arrow().cast(values.type)
        return out


def _media_items(col: Mapping[str, pa.Array], open_rows: np.ndarray, run: _Run) -> _Items:
    """Every non-empty media reference of the open rows, resolved and probed.

    URLs are recorded as remote media as they are; only local paths are resolved against the
    media root and probed (each distinct path once per run). A batch of URLs only (CC3M, LAION)
    therefore never leaves Arrow: no join, no Python loop per item.
    """
    n = len(open_rows)
    parts: list[tuple[int, int, np.ndarray, pa.Array]] = []  # (rank, kind, rows, written)
    for role, column, kind, is_list in _MEDIA_COLUMNS:
        values = col[column]
        if values.null_count == n:
            continue
        if is_list:
            parents = np.repeat(np.arange(n), _lengths(values))
            values = values.flatten()
        else:
            parents = np.arange(n)
        keep = np.flatnonzero(_valid(values) & (_lengths(values) > 0) & open_rows[parents])
        if len(keep) < len(values):
            values = values.take(keep)
        parts.append((_ROLE_RANK[role], _KINDS.index(kind), parents[keep], values))
    parts = [part for part in parts if len(part[2])]
    if not parts:
        return _Items(
            rows=np.zeros(0, dtype=np.int64),
            rank=np.zeros(0, dtype=np.int8),
            columns={name: pa.nulls(0, type_) for name, type_ in _ITEM_TYPES.items()},
            failed=None,
            resolved={},
        )
    rows = np.concatenate([part[2] for part in parts])
    rank = np.concatenate([np.full(len(part[2]), part[0], dtype=np.int8) for part in parts])
    kind = np.concatenate([np.full(len(part[2]), part[1], dtype=np.int8) for part in parts])
    written = (
        parts[0][3] if len(parts) == 1 else pa.concat_arrays([part[3] for part in parts])
    ).cast(pa.string())
    # Items of one column are in row order already; those of several columns are sorted by
    # row, role and position among the items of that column in the row, once they are probed.
    order = (
        np.concatenate([_order_within_row(part[2]) for part in parts]) if len(parts) > 1 else None
    )
    kinds = pa.array(_KINDS, pa.string()).take(pa.array(kind))
    remote = pl.Series(written).str.contains(_URL_PATTERN).to_numpy()
    columns: dict[str, pa.Array] = {
        name: _nulls(len(rows), type_) for name, type_ in _ITEM_TYPES.items()
    }
    columns.update(
        role=_ROLES.take(pa.array(rank)),
        kind=kinds,
        path=written,
        ref=written,
        remote=pa.array(remote),
    )
    failed = None
    resolved: dict[str, str] = {}
    local = np.flatnonzero(~remote)
    if len(local):
        items = pl.DataFrame({"written": written.take(local), "kind": kinds.take(local)})
        probed = pl.DataFrame(
            _resolve_and_probe(items.unique(maintain_order=True).iter_rows(), run),
            schema=_PROBE_SCHEMA,
        )
        joined = items.join(probed, on=["written", "kind"], how="left", maintain_order="left")
        found = joined.to_arrow()
        for name in ("path", "ref", "fail_reason", "fail_message", *_MEDIA_FIELDS):
            columns[name] = _scatter(columns[name], local, found.column(name).combine_chunks())
        resolved = {
            written_: path
            for written_, path in probed.select("written", "path").iter_rows()
            if path is not None and path != written_
        }
        failing = np.flatnonzero(_valid(columns["fail_reason"]))
        if len(failing) and order is not None:
            failing = failing[_item_order(rows[failing], rank[failing], order[failing])]
        if len(failing):
            # The first unusable item of a row (in item order) decides its reject reason.
            first = np.r_[True, rows[failing][1:] != rows[failing][:-1]]
            failing = failing[first]
            failed = (
                rows[failing],
                np.asarray(columns["fail_reason"].take(failing).to_pylist(), dtype=object),
                np.asarray(columns["fail_message"].take(failing).to_pylist(), dtype=object),
            )
    if order is not None:
        sort = _item_order(rows, rank, order)
        rows, rank = rows[sort], rank[sort]
        columns = {name: values.take(pa.array(sort)) for name, values in columns.items()}
    return _Items(rows=rows, rank=rank, columns=columns, failed=failed, resolved=resolved)


def _item_order(rows: np.ndarray, rank: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The permutation that sorts items by (row, role rank, order), as polars has always sorted
    them (same key types, same input order).

    polars' multi-column sort does not keep ties in input order: an image and a video of the
    same role in one row, both first of their column, come out video first. Ids depend on the
    order of a side's media, so the order is kept exactly; a stable sort would change them.
    """
    keys = pl.DataFrame(
        {
            "_row": rows.astype(np.uint32),
            "role_rank": rank.astype(np.int32),
            "order": order.astype(np.int64),
        }
    )
    return keys.with_row_index("_i").sort("_row", "role_rank", "order")["_i"].to_numpy()


def _order_within_row(rows: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal row numbers (rows are sorted)."""
    if len(rows) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[True, rows[1:] != rows[:-1]]
    start_positions = np.maximum.accumulate(np.where(starts, np.arange(len(rows)), 0))
    return np.arange(len(rows)) - start_positions


def _scatter(values: pa.Array, positions: np.ndarray, new: pa.Array) -> pa.Array:
    """`values` with `values[positions[i]]` replaced by `new[i]`."""
    if len(positions) == len(values):
        return new.cast(values.type)
    take = np.arange(len(values), dtype=np.int64)
    take[positions] = len(values) + np.arange(len(positions))
    return pa.concat_arrays([values, new.cast(values.type)]).take(pa.array(take))


def _resolve_and_probe(local: Iterable[tuple[str, str]], run: _Run) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    to_probe: dict[tuple[Path, str], list[dict[str, Any]]] = {}
    for written, kind in local:
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
    if Path(written).expanduser().is_absolute():
        # Typical of an export or a list written by another tool: every path is absolute.
        fix = (
            "the path is absolute: pass a --media-root that contains the files (a common "
            "parent), or --allow-outside"
        )
    elif ".." in Path(written).parts:
        fix = (
            "fix the path, pass a --media-root that contains it, strip a leading folder "
            "(the generic and openai-jsonl formats take --option media_strip_prefix=...), or "
            "--allow-outside"
        )
    else:
        fix = "a symlink points out of it: pass a --media-root that contains its target, or --allow-outside"
    return (
        None,
        written,
        (
            "path_escape",
            f"{written!r} resolves to {resolved}, outside the media root {run.media_root}; {fix}",
        ),
    )


@dataclass(frozen=True)
class _Media:
    lists: pa.Array  # the `media` column: every item of the row ([] when none)
    refs_query: pa.Array  # the query's media references joined by U+001E, for ids
    refs_target: pa.Array
    primary: dict[str, pa.Array]  # role, kind, remote and probe fields of the primary item


def _attach_media(items: _Items, n: int) -> _Media:
    """Group the items by draft row through list offsets (they are sorted by row already)."""
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(items.rows, minlength=n), out=offsets[1:])
    structs = pa.StructArray.from_arrays(
        [items.columns[f.name] for f in MEDIA_ITEM_TYPE], fields=list(MEDIA_ITEM_TYPE)
    )
    lists = pa.ListArray.from_arrays(pa.array(offsets), structs)
    # The primary media item: the target's first, else the query's first.
    primary = np.full(n, -1, dtype=np.int64)
    positions = np.arange(len(items.rows))
    for rank in (0, 1):  # the target (rank 1) overwrites the query
        mask = items.rank == rank
        side_rows, side_positions = items.rows[mask], positions[mask]
        if len(side_rows):
            first = np.r_[True, side_rows[1:] != side_rows[:-1]]
            primary[side_rows[first]] = side_positions[first]
    take = pa.array(np.maximum(primary, 0), mask=primary < 0)
    picked = {
        name: _nulls(n, _ITEM_TYPES[name])
        if items.columns[name].null_count == len(positions)  # e.g. no probe data for URLs
        else items.columns[name].take(take)
        for name in ("role", "kind", "remote", *_MEDIA_FIELDS)
    }
    refs = items.columns["ref"]
    return _Media(
        lists=lists,
        refs_query=_joined_refs(
            items.rows[items.rank == 0], refs.filter(pa.array(items.rank == 0)), n
        ),
        refs_target=_joined_refs(
            items.rows[items.rank == 1], refs.filter(pa.array(items.rank == 1)), n
        ),
        primary=picked,
    )


def _joined_refs(rows: np.ndarray, refs: pa.Array, n: int) -> pa.Array:
    """Per draft row, its references joined by U+001E (null where it has none)."""
    if len(rows) == 0:
        return pa.nulls(n, pa.string())
    if len(rows) == n and (rows == np.arange(n)).all():  # one reference in every row
        return refs
    counts = np.bincount(rows, minlength=n)
    if counts.max() == 1:  # the common case: one image or video a side
        where = np.full(n, -1, dtype=np.int64)
        where[rows] = np.arange(len(rows))
        return refs.take(pa.array(np.maximum(where, 0), mask=where < 0))
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    lists = pa.ListArray.from_arrays(pa.array(offsets), refs)
    return pl.Series(lists).list.join("\x1e").to_arrow().cast(pa.string())


def _with_annotated(primary: Mapping[str, pa.Array], annotated: pa.Array) -> pa.Array:
    """The primary item's probed duration, or the corpus's annotation for a video not probed."""
    unprobed_video = pc.and_(
        pc.fill_null(pc.equal(primary["kind"], "video"), False), pc.is_null(primary["duration"])
    )
    return pc.if_else(unprobed_video, annotated, primary["duration"])


#: Seconds by which a clip may pass its video's probed end before it counts as past it (float
#: noise of annotation files, e.g. 113.26 against a duration of 113.2599999).
_CLIP_TOLERANCE = 1e-3


def _side_video_durations(items: _Items, n: int) -> dict[str, np.ndarray]:
    """Per draft row, the probed duration of the query's and of the target's video (NaN where
    the side has no video, or it was not probed)."""
    out = {}
    is_video = pc.fill_null(pc.equal(items.columns["kind"], "video"), False).to_numpy(
        zero_copy_only=False
    )
    durations = items.columns["duration"].to_numpy(zero_copy_only=False)
    for rank, side in enumerate(("query", "target")):
        probed = np.full(n, np.nan)
        mask = is_video & (items.rank == rank)
        probed[items.rows[mask]] = durations[mask]
        out[side] = probed
    return out


def _clip_durations(col: Mapping[str, pa.Array], primary: Mapping[str, pa.Array]) -> pa.Array:
    """The primary media's duration, or its clip's length when the side has a clip."""
    is_query = pc.fill_null(pc.equal(primary["role"], "query"), False)
    start = pc.if_else(is_query, col["query_clip_start"], col["target_clip_start"])
    end = pc.if_else(is_query, col["query_clip_end"], col["target_clip_end"])
    # Rounded to microseconds: 55.15 - 48.94 would otherwise read 6.210000000000001.
    length = pc.round(
        pc.subtract(pc.coalesce(end, primary["duration"]), pc.fill_null(start, 0.0)), 6
    )
    return pc.if_else(pc.or_(pc.is_valid(start), pc.is_valid(end)), length, primary["duration"])


def _id_keys(parts: list[pa.Array], candidates: np.ndarray, source: str) -> pa.Array:
    """The normalised content a row's id is the hash of (stable across re-ingests and machines).

    The key joins the source and `parts` (nulls as "", lists joined by U+001E) with U+001F, for
    the `candidates` rows only. Changing it changes every id: keep it exactly.
    """
    frame: dict[str, pa.Array | pa.ChunkedArray] = {}
    exprs: list[pl.Expr] = [pl.lit(source)]
    for i, values in enumerate(parts):
        if values.null_count == len(values):
            exprs.append(pl.lit(""))
            continue
        if len(candidates) < len(values):
            values = values.take(candidates)
        if (constant := _constant_string(values)) is not None:  # e.g. task, split, pair
            exprs.append(pl.lit(constant))
        else:
            name = f"part{i}"
            frame[name] = values
            if pa.types.is_list(values.type):
                exprs.append(pl.col(name).list.join("\x1e").fill_null(""))
            else:
                exprs.append(pl.col(name).cast(pl.String).fill_null(""))
    key = pl.concat_str(exprs, separator="\x1f")
    if not frame:  # literals only: one key for every row
        return pa.repeat(pl.select(key).item(), len(candidates))
    return pl.from_arrow(pa.table(frame)).select(key).to_series().to_arrow()


def _constant_string(values: pa.Array | pa.ChunkedArray) -> str | None:
    """The value of a string column that holds one value in every row, else None."""
    if not pa.types.is_string(values.type) or values.null_count:
        return None
    first = values[0]
    if values[len(values) // 2] != first or values[len(values) - 1] != first:
        return None  # the usual answer for texts and paths, without a pass over them
    bounds = pc.min_max(values)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    return low if low == high else None


# --- counts -------------------------------------------------------------------------------------

_COUNTER_KEYS = ("rejected_by_reason", "by_pair", "by_source", "by_split", "by_task")
_SCALAR_KEYS = (
    "read",
    "accepted",
    "rejected",
    "text_repaired",
    "clip_ends_clamped",
    "remote_media",
)


def _empty_counts() -> dict[str, Any]:
    return {
        **{k: 0 for k in _SCALAR_KEYS},
        **{k: {} for k in _COUNTER_KEYS},
        "reject_examples": {},  # reason -> the message of its first rejected record
        "input_files": [],  # the files that gave records (dropped from the final stats)
    }


def _add_counts(total: dict[str, Any], part: Mapping[str, Any]) -> None:
    for key in _SCALAR_KEYS:
        total[key] += int(part.get(key, 0))
    for key in _COUNTER_KEYS:
        merged = Counter(total[key])
        merged.update(part.get(key, {}))
        total[key] = dict(sorted(merged.items()))
    for reason, message in part.get("reject_examples", {}).items():
        total["reject_examples"].setdefault(reason, message)
    if part.get("input_files"):
        total["input_files"] = sorted(set(total["input_files"]) | set(part["input_files"]))


# --- files --------------------------------------------------------------------------------------


_LISTED_FILES = 20


def _files_without_records(path: Path, read_files: list[str]) -> dict[str, Any]:
    """For a folder input: the data files in it from which the adapter read no record (files of
    another format, or empty ones), so that a skipped file is never silent. Capped list."""
    if not path.is_dir():
        return {"count": 0, "files": []}
    read = set(read_files)
    skipped = sorted(
        str(p.relative_to(path))
        for p in path.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
        and is_data_file_name(p.name)  # the rule format detection uses: docs, media are not
        and str(p) not in read
    )
    return {"count": len(skipped), "files": skipped[:_LISTED_FILES]}


#: Bumped when what the input fingerprint covers changes, so that a manifest built under the old
#: scheme is reported as such rather than as changed input.
FINGERPRINT_SCHEME = 2


def _input_files_digest(path: Path) -> str:
    """Digest of the input file(s) as they lie on disk: path, size and modified time."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        stat = file.stat()
        digest.update(f"{file}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _input_fingerprint(files_digest: str, options: IngestOptions, adapter_cls: type) -> str:
    digest = hashlib.sha256(files_digest.encode())
    content = _fingerprinted_options(options)
    digest.update(json.dumps(content, sort_keys=True).encode())
    digest.update(
        f"{adapter_cls.name}\0{adapter_cls.version}\0{MANIFEST_SCHEMA_VERSION}\0{__version__}"
        f"\0{FINGERPRINT_SCHEME}".encode()
    )
    return digest.hexdigest()


#: Options that say how a manifest is built (how fast, what to do when it exists or is empty),
#: never what it holds; and `format` as given (None when detected): the format read is
#: fingerprinted by its adapter's name, so naming the detected format changes nothing.
_NOT_CONTENT_OPTIONS = frozenset({"probe_workers", "replace", "require_rows", "format"})


def _fingerprinted_options(options: IngestOptions) -> dict[str, Any]:
    return _jsonable({k: v for k, v in asdict(options).items() if k not in _NOT_CONTENT_OPTIONS})


def _what_changed(
    info: Mapping[str, Any],
    path: Path,
    files_digest: str,
    options: IngestOptions,
    adapter_cls: type,
) -> str:
    """What differs between an existing manifest's ingest.json and this run, in a few words."""
    if info.get("fingerprint_scheme") != FINGERPRINT_SCHEME:
        return "it was built by an older curate, which fingerprinted its input differently"
    changes = []
    if info.get("input") != str(path):
        changes.append(f"input was {info.get('input')}, now {path}")
    elif info.get("input_files_digest") != files_digest:
        changes.append("the input file(s) changed on disk since: size or modified time")
    if info.get("format") != adapter_cls.name:
        changes.append(f"format was {info.get('format')}, now {adapter_cls.name}")
    elif info.get("adapter_version") != adapter_cls.version:
        changes.append(
            f"{adapter_cls.name} reader version was {info.get('adapter_version')}, now "
            f"{adapter_cls.version}"
        )
    if info.get("curate_version") != __version__:
        changes.append(f"curate was {info.get('curate_version')}, now {__version__}")
    old = {k: v for k, v in (info.get("options") or {}).items() if k not in _NOT_CONTENT_OPTIONS}
    new = _fingerprinted_options(options)
    # Adapter options compare key by key, like the others.
    old_adapter, new_adapter = old.pop("adapter_options", {}), new.pop("adapter_options", {})
    changes += [
        f"{key} was {old.get(key)!r}, now {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]
    changes += [
        f"--option {key} was {old_adapter.get(key)!r}, now {new_adapter.get(key)!r}"
        for key in sorted(set(old_adapter) | set(new_adapter))
        if old_adapter.get(key) != new_adapter.get(key)
    ]
    return "; ".join(changes) or "a curate setting that is not shown changed"


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


#: Columns with (nearly) one value a row: ids, texts, paths. Dictionary encoding only helps
#: columns with few distinct values (source, pair, task, codec, ...); on these the encoder builds
#: a dictionary, overflows it and falls back to plain pages, which was a third of the write time.
_DISTINCT_LEAVES = frozenset(
    {
        "id",
        "source_id",
        "instruction",
        "query_text",
        "target_text",
        "negative_texts.list.element",
        "query_images.list.element",
        "target_images.list.element",
        "negative_images.list.element",
        "query_video",
        "target_video",
        "media.list.element.path",
        "media.list.element.content_hash",
        "media_hash",
        "record_index",
        "raw",
        "message",
    }
)
#: Free text and paths: min/max statistics cannot prune anything on them, so none are written.
_NO_STATISTICS_LEAVES = _DISTINCT_LEAVES - {"record_index"}


def _parquet_leaves(schema: pa.Schema) -> list[str]:
    """Parquet column paths of an Arrow schema ("media.list.element.path", ...)."""

    def walk(path: str, type_: pa.DataType) -> Iterator[str]:
        if pa.types.is_list(type_):
            yield from walk(f"{path}.list.element", type_.value_type)
        elif pa.types.is_struct(type_):
            for child in type_:
                yield from walk(f"{path}.{child.name}", child.type)
        else:
            yield path

    return [leaf for f in schema for leaf in walk(f.name, f.type)]


def _write_parquet(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    leaves = _parquet_leaves(table.schema)
    pq.write_table(
        table,
        tmp,
        compression="zstd",
        use_dictionary=[leaf for leaf in leaves if leaf not in _DISTINCT_LEAVES],
        write_statistics=[leaf for leaf in leaves if leaf not in _NO_STATISTICS_LEAVES],
    )
    os.replace(tmp, path)


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _refuse_empty(work_dir: Path, path: Path, stats: Mapping[str, Any]) -> None:
    """Keep a build that accepted nothing aside, for its ledger, and raise: see `require_rows`."""
    kept = work_dir.with_name(work_dir.name.split(".partial-")[0] + ".rejected")
    shutil.rmtree(kept, ignore_errors=True)
    (work_dir / COMPLETE_MARKER).unlink()  # not a manifest: nothing may list or mix it
    os.replace(work_dir, kept)
    if not stats["read"]:
        raise InputError(
            f"{path}: no records were read; check that it is a non-empty file of this format "
            "(`curate formats`)"
        )
    reason, count = max(stats["rejected_by_reason"].items(), key=lambda kv: kv[1])
    example = (stats.get("reject_examples") or {}).get(reason)
    raise InputError(
        f"{path}: nothing accepted, all {stats['read']:,} records were rejected ({count:,} as "
        f"{reason}{', e.g. ' + example if example else ''}); no manifest was written (the "
        f"ledger is in {kept}); fix the input or options and rerun"
    )


def _remove_stale_partials(manifests: Path, name: str, *, keep: Path) -> None:
    for stale in manifests.glob(f".{name}.partial-*"):
        if stale != keep:
            shutil.rmtree(stale, ignore_errors=True)


def _swap_into_place(work_dir: Path, final_dir: Path) -> None:
    if final_dir.exists():
        # Signal sidecars are keyed by content ids, so they stay valid for the rows that remain;
        # `curate score` drops ids that left and computes only the new ones.
        signals = final_dir / "signals"
        if signals.is_dir():
            shutil.copytree(signals, work_dir / "signals")
        retired = final_dir.with_name(f".{final_dir.name}.retired-{os.getpid()}")
        os.replace(final_dir, retired)
        os.replace(work_dir, final_dir)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(work_dir, final_dir)
