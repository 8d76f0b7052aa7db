"""`curate score`: compute signal sidecars for a manifest, resuming whatever is already done.

Per-row signals (text, phash, clip) are computed chunk by chunk over the manifest's rows, only for
ids their sidecar does not hold yet under the same parameters; each chunk is written as soon as it
is done, so a killed run loses at most one chunk. Media are loaded once per row for every visual
signal that needs them. The near_dup signal is a global pass over the finished phash (and, when
present, CLIP embedding) sidecars.

Example:
    >>> config = ScoreConfig(signals=("text", "phash", "near_dup"))  # doctest: +SKIP
    >>> score_manifest(Workspace.resolve("ws"), "coco", config)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.errors import ConfigError
from curate.manifest import Manifest, open_manifest
from curate.signals import neardup
from curate.signals.clip import (
    CLIP_SCHEMA,
    CLIP_SIGNAL_VERSION,
    ClipItem,
    ClipModel,
    ClipOptions,
    embedding_schema,
    load_clip,
    score_items,
    weights_label,
)
from curate.signals.frames import FrameSampling
from curate.signals.media import (
    MEDIA_INPUT_COLUMNS,
    LoadedMedia,
    bounded_map,
    caption_for,
    load_media,
    primary_media,
)
from curate.signals.phash import PHASH_SCHEMA, PHASH_SIGNAL_VERSION, hash_frames, is_informative
from curate.signals.store import (
    SidecarWriter,
    read_sidecar,
    read_sidecar_meta,
    sidecar_path,
    sidecar_up_to_date,
    signals_lock,
)
from curate.signals.text import TEXT_INPUT_COLUMNS, TEXT_SCHEMA, TEXT_SIGNAL_VERSION, text_signals
from curate.workspace import Workspace

SIGNALS: tuple[str, ...] = ("text", "phash", "clip", "near_dup")
EMBEDDINGS = "embeddings/clip"  # sidecar of CLIP media embeddings (not a filter column)
NEAR_DUP_VERSION = 1

NEAR_DUP_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        # The manifest position (0-based, in row order) of the cluster's first row; a row with
        # no near-duplicate is its own cluster.
        pa.field("near_dup_cluster", pa.int64(), nullable=False),
        pa.field("near_dup_keep", pa.bool_(), nullable=False),  # one row per cluster is kept
        pa.field("near_dup_size", pa.int32(), nullable=False),
        # What linked this row to its cluster: "phash", "embedding", "phash+embedding"; null alone.
        pa.field("near_dup_method", pa.string()),
    ]
)

#: Called after each chunk is written: (signal, rows in the chunk). Tests raise from it to
#: simulate a run killed half-way.
ChunkCallback = Callable[[str, int], None]


@dataclass(frozen=True)
class NearDupOptions:
    """When two rows count as near-duplicates (either criterion is enough)."""

    phash_bits: int | None = 6  # pHash within this many bits; None: not used
    cosine: float | None = 0.95  # CLIP media embeddings at least this similar; None: not used
    block: int = neardup.DEFAULT_BLOCK
    device: str = "auto"  # where embedding similarities run: auto (cuda if present), cpu, cuda
    #: "media": rows whose primary media are near-duplicates, whatever their text (a COCO image's
    #: five captions form one cluster). "pair": the normalised texts must be equal as well.
    scope: str = "media"

    def __post_init__(self) -> None:
        if self.phash_bits is not None and not 0 <= self.phash_bits <= 32:
            raise ConfigError(f"near_dup phash_bits must be in 0..32, found {self.phash_bits}")
        if self.cosine is not None and not -1.0 <= self.cosine <= 1.0:
            raise ConfigError(f"near_dup cosine must be in [-1, 1], found {self.cosine}")
        if self.phash_bits is None and self.cosine is None:
            raise ConfigError("near_dup needs phash_bits or cosine (or both); both are off")
        if self.block < 1:
            raise ConfigError(f"near_dup block must be positive, found {self.block}")
        if self.scope not in ("media", "pair"):
            raise ConfigError(f"near_dup scope must be 'media' or 'pair', found {self.scope!r}")


@dataclass(frozen=True)
class ScoreConfig:
    """Everything that decides what `curate score` computes. Load from TOML with `from_toml`."""

    signals: tuple[str, ...] = ("text", "phash")
    clip: ClipOptions = field(default_factory=ClipOptions)
    frames: FrameSampling = field(default_factory=FrameSampling)
    near_dup: NearDupOptions = field(default_factory=NearDupOptions)
    chunk_rows: int = 1024  # rows per written chunk: a killed run redoes at most this many
    workers: int = 0  # threads loading media; 0: min(8, CPU count)

    def __post_init__(self) -> None:
        unknown = [s for s in self.signals if s not in SIGNALS]
        if unknown or not self.signals:
            raise ConfigError(
                f"unknown signal(s) {unknown or '(none given)'}; valid: {', '.join(SIGNALS)}"
            )
        if self.chunk_rows < 1:
            raise ConfigError(f"chunk_rows must be at least 1, found {self.chunk_rows}")
        if self.workers < 0:
            raise ConfigError(f"workers must be 0 (auto) or positive, found {self.workers}")

    @property
    def load_workers(self) -> int:
        return self.workers or min(8, os.cpu_count() or 1)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ScoreConfig:
        """Build from a dict shaped like the TOML file's `[score]` table."""
        nested = {"clip": ClipOptions, "frames": FrameSampling, "near_dup": NearDupOptions}
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown score option(s) {sorted(unknown)}; valid: {sorted(known)}")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in nested:
                sub = nested[key]
                sub_known = {f.name for f in fields(sub)}
                if not isinstance(value, Mapping) or set(value) - sub_known:
                    raise ConfigError(
                        f"[score.{key}] takes the keys {sorted(sub_known)}, found "
                        f"{sorted(value) if isinstance(value, Mapping) else value!r}"
                    )
                if key == "clip" and str(value.get("pretrained", "")).lower() == "none":
                    value = {**value, "pretrained": None}  # TOML has no null: "none" = random
                kwargs[key] = sub(**value)
            elif key == "signals":
                kwargs[key] = parse_signals(value)
            else:
                kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def from_toml(cls, path: str | Path) -> ScoreConfig:
        """Read the `[score]` table of a TOML file (see README for the keys)."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path} is not valid TOML: {error}") from None
        return cls.from_mapping(data.get("score", {}))


def parse_signals(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """'clip, phash' or ["clip", "phash"] -> ("clip", "phash"), validated, in canonical order."""
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [item.strip() for item in items if item.strip()]
    unknown = sorted(set(names) - set(SIGNALS))
    if unknown or not names:
        raise ConfigError(
            f"unknown signal(s) {unknown or '(none given)'}; valid: {', '.join(SIGNALS)}"
        )
    return tuple(s for s in SIGNALS if s in names)


@dataclass(frozen=True)
class SignalOutcome:
    """What one signal's pass did."""

    signal: str
    path: str
    rows: int  # rows in the sidecar now
    computed: int  # rows computed in this run
    reused: int  # rows already present (same parameters)
    failed: int  # rows computed in this run whose media could not be read
    #: Wall seconds from the start of the scoring pass to this signal's end. Signals of one run
    #: share one pass over the rows (media are decoded once for phash and CLIP alike), so this is
    #: not the time of this signal alone.
    seconds: float
    errors: tuple[str, ...] = ()  # a few of the failures, for the person at the terminal
    summary: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoreResult:
    manifest: str
    outcomes: tuple[SignalOutcome, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"manifest": self.manifest, "signals": [asdict(o) for o in self.outcomes]}


def score_manifest(
    workspace: Workspace,
    name: str,
    config: ScoreConfig,
    *,
    progress: bool | None = None,
    on_chunk: ChunkCallback | None = None,
) -> ScoreResult:
    """Compute `config.signals` for manifest `name`; see the module docstring.

    `progress`: show a progress bar on stderr (None: when stderr is a terminal).
    """
    manifest = open_manifest(workspace, name)
    signals = set(config.signals)
    if "near_dup" in signals and config.near_dup.phash_bits is not None:
        signals.add("phash")  # near_dup reads the phash sidecar
    if "near_dup" in signals and config.near_dup.scope == "pair":
        signals.add("text")  # and compares text hashes
    with signals_lock(manifest):
        ids = manifest.read_rows(columns=["id"]).column("id").combine_chunks()
        outcomes = _row_signals(manifest, ids, signals, config, progress, on_chunk)
        if "near_dup" in signals:
            outcomes.append(_near_dup(manifest, ids, config))
    return ScoreResult(manifest=name, outcomes=tuple(outcomes))


# --- per-row signals ------------------------------------------------------------------------


def signal_params(signal: str, config: ScoreConfig) -> dict[str, Any]:
    """The parameters recorded with a sidecar; a change in them means recomputing it."""
    frames = {k: v for k, v in asdict(config.frames).items() if k != "timeout_s"}
    if signal == "text":
        return {"version": TEXT_SIGNAL_VERSION}
    if signal == "phash":
        return {"version": PHASH_SIGNAL_VERSION, "frames": frames}
    if signal in ("clip", EMBEDDINGS):
        return {
            "version": CLIP_SIGNAL_VERSION,
            "model": config.clip.model,
            "config_file": config.clip.config_file,
            **weights_label(config.clip),
            "precision": _resolved_precision(config.clip),
            "frames": frames,
        }
    raise ValueError(signal)


def _resolved_precision(options: ClipOptions) -> str:
    if options.precision != "auto":
        return options.precision
    if options.device == "cpu":
        return "fp32"
    import torch

    cuda = options.device.startswith("cuda") or torch.cuda.is_available()
    return "bf16" if cuda else "fp32"


@dataclass
class _Tally:
    computed: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def fail(self, message: str) -> None:
        self.failed += 1
        if len(self.errors) < 5:
            self.errors.append(message)


def _iter_batches(manifest: Manifest, columns: list[str], rows: int) -> Iterator[pa.Table]:
    for path in manifest.row_files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=columns):
            yield pa.Table.from_batches([batch])


def _progress_bar(total: int, enabled: bool | None, name: str):
    from tqdm import tqdm

    disable = (not sys.stderr.isatty()) if enabled is None else not enabled
    return tqdm(total=total, desc=f"score {name}", unit="row", disable=disable, file=sys.stderr)


def _row_signals(
    manifest: Manifest,
    ids: pa.Array,
    signals: set[str],
    config: ScoreConfig,
    progress: bool | None,
    on_chunk: ChunkCallback | None,
) -> list[SignalOutcome]:
    wanted = [s for s in ("text", "phash", "clip") if s in signals]
    if not wanted:
        return []
    writers: dict[str, SidecarWriter] = {}
    if "text" in signals:
        writers["text"] = SidecarWriter(
            manifest, "text", TEXT_SCHEMA, signal_params("text", config)
        )
    if "phash" in signals:
        writers["phash"] = SidecarWriter(
            manifest, "phash", PHASH_SCHEMA, signal_params("phash", config)
        )
    clip_params = signal_params("clip", config) if "clip" in signals else None
    if clip_params is not None:
        writers["clip"] = SidecarWriter(manifest, "clip", CLIP_SCHEMA, clip_params)
        # The schema's dimension is set once the model is known (below).
        writers[EMBEDDINGS] = SidecarWriter(manifest, EMBEDDINGS, embedding_schema(1), clip_params)
    done = {name: writer.done_ids() for name, writer in writers.items()}
    missing_total = {
        name: len(ids) - int(pc.sum(pc.is_in(ids, value_set=done[name])).as_py() or 0)
        for name in writers
    }
    clip: ClipModel | None = None
    if clip_params is not None:
        finished = sidecar_path(manifest, EMBEDDINGS)
        if missing_total["clip"] or missing_total[EMBEDDINGS] or not finished.exists():
            clip = load_clip(config.clip)
            dim = clip.dim
        else:
            dim = pq.read_schema(finished).field("embedding").type.list_size
        writers[EMBEDDINGS].schema = embedding_schema(dim)

    tallies = {name: _Tally() for name in writers}
    columns = sorted(set(MEDIA_INPUT_COLUMNS) | set(TEXT_INPUT_COLUMNS))
    total = _count(_any([pc.invert(pc.is_in(ids, value_set=d)) for d in done.values()]))
    with _progress_bar(total, progress, manifest.name) as bar:
        for rows in _iter_batches(manifest, columns, config.chunk_rows):
            need = {
                name: pc.invert(pc.is_in(rows.column("id"), value_set=done[name]))
                for name in writers
            }
            if "text" in writers and pc.any(need["text"]).as_py():
                chunk = text_signals(rows.filter(need["text"]))
                _write(writers["text"], chunk, tallies["text"], on_chunk)
            any_need = _any(list(need.values()))
            visual = [n for n in ("phash", "clip", EMBEDDINGS) if n in writers]
            visual_need = _any([need[n] for n in visual]) if visual else None
            if visual_need is not None and pc.any(visual_need).as_py():
                _visual_chunk(
                    rows.filter(visual_need),
                    {n: pc.filter(need[n], visual_need) for n in visual},
                    writers,
                    tallies,
                    clip,
                    config,
                    bar,
                    on_chunk,
                )
                any_need = pc.and_(any_need, pc.invert(visual_need))  # counted per row there
            bar.update(_count(any_need))

    outcomes = []
    for name, writer in writers.items():
        table = writer.finalize(ids)
        tally = tallies[name]
        outcomes.append(
            SignalOutcome(
                signal=name,
                path=str(sidecar_path(manifest, name)),
                rows=table.num_rows,
                computed=tally.computed,
                reused=table.num_rows - tally.computed,
                failed=tally.failed,
                seconds=round(time.perf_counter() - tally.started, 3),
                errors=tuple(tally.errors),
                summary=_summary(name, table),
            )
        )
    return outcomes


def _any(masks: list[pa.Array]) -> pa.Array:
    result = masks[0]
    for mask in masks[1:]:
        result = pc.or_(result, mask)
    return result


def _count(mask: pa.Array) -> int:
    return int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)


def _write(writer: SidecarWriter, chunk: pa.Table, tally: _Tally, on_chunk) -> None:
    writer.write_chunk(chunk)
    tally.computed += chunk.num_rows
    if on_chunk is not None:
        on_chunk(writer.signal, chunk.num_rows)


def _visual_chunk(
    rows: pa.Table,
    need: dict[str, pa.Array],
    writers: dict[str, SidecarWriter],
    tallies: dict[str, _Tally],
    clip: ClipModel | None,
    config: ScoreConfig,
    bar,
    on_chunk: ChunkCallback | None,
) -> None:
    """Load each row's primary media once and compute the visual signals it still needs."""
    records = rows.to_pylist()
    want_phash = need["phash"].to_pylist() if "phash" in need else [False] * len(records)
    want_clip = need["clip"].to_pylist() if "clip" in need else [False] * len(records)
    if EMBEDDINGS in need:
        want_clip = [a or b for a, b in zip(want_clip, need[EMBEDDINGS].to_pylist(), strict=True)]
    refs = [primary_media(record) for record in records]

    def prepare(i: int) -> LoadedMedia | None:
        ref = refs[i]
        if ref is None:
            return None
        loaded = load_media(ref, config.frames)
        if loaded.error is None:
            extra: dict[str, Any] = {}
            if want_phash[i]:
                extra["phash"] = hash_frames(loaded.frames, video=ref.kind == "video")
            if want_clip[i] and clip is not None:
                extra["pixels"] = clip.pixels(loaded.frames)
                extra["frames"] = len(loaded.frames)
            loaded.extra = extra
            loaded.frames = []  # only the prepared forms are kept in flight
        return loaded

    phash_rows: list[dict[str, Any]] = []
    clip_rows: list[dict[str, Any]] = []
    embedding_ids: list[str] = []
    embedding_values: list[np.ndarray | None] = []  # float16 vectors, None: no media
    pending: list[tuple[int, ClipItem]] = []
    pending_frames = 0
    label = clip.label if clip is not None else None

    def flush() -> None:
        nonlocal pending, pending_frames
        if not pending:
            return
        assert clip is not None
        scores, embeddings = score_items(clip, [item for _, item in pending])
        for (i, _), score, embedding in zip(pending, scores, embeddings, strict=True):
            clip_rows[i]["clip_score"] = None if np.isnan(score) else float(score)
            embedding_values[i] = embedding.astype(np.float16)
        pending, pending_frames = [], 0

    workers = config.load_workers
    loaded_iter = bounded_map(prepare, range(len(records)), workers=workers, window=4 * workers)
    for i, loaded in enumerate(loaded_iter):
        record, ref = records[i], refs[i]
        error = None if loaded is None else loaded.error
        if want_phash[i]:
            values: dict[str, Any] = {
                "phash": None,
                "dhash": None,
                "phash_frames": None,
                "dhash_frames": None,
                "phash_error": error,
            }
            if loaded is not None and error is None:
                values = loaded.extra["phash"]
            if error is not None:
                tallies["phash"].fail(f"{record['id']}: {error}")
            phash_rows.append({"id": record["id"], **values})
        if want_clip[i]:
            clip_rows.append(
                {
                    "id": record["id"],
                    "clip_score": None,
                    "clip_model": label,
                    "clip_frames": None,
                    "clip_error": error,
                }
            )
            embedding_ids.append(record["id"])
            embedding_values.append(None)
            if error is not None:
                tallies["clip"].fail(f"{record['id']}: {error}")
            elif loaded is not None and ref is not None:
                position = len(clip_rows) - 1
                clip_rows[position]["clip_frames"] = loaded.extra["frames"]
                pending.append(
                    (position, ClipItem(loaded.extra["pixels"], caption_for(record, ref)))
                )
                pending_frames += loaded.extra["frames"]
                if pending_frames >= config.clip.batch_size:
                    flush()
        bar.update(1)
    flush()
    if phash_rows:
        _write(
            writers["phash"],
            pa.Table.from_pylist(phash_rows, PHASH_SCHEMA),
            tallies["phash"],
            on_chunk,
        )
    if clip_rows:
        if "clip" in need:
            keep = need["clip"].to_pylist()
            chosen = [
                row for row, flag in zip(clip_rows, _subset(want_clip, keep), strict=True) if flag
            ]
            if chosen:
                _write(
                    writers["clip"],
                    pa.Table.from_pylist(chosen, CLIP_SCHEMA),
                    tallies["clip"],
                    on_chunk,
                )
        if EMBEDDINGS in need:
            keep = _subset(want_clip, need[EMBEDDINGS].to_pylist())
            chosen = [i for i, flag in enumerate(keep) if flag]
            if chosen:
                table = _embedding_table(
                    [embedding_ids[i] for i in chosen],
                    [embedding_values[i] for i in chosen],
                    writers[EMBEDDINGS].schema,
                )
                _write(writers[EMBEDDINGS], table, tallies[EMBEDDINGS], on_chunk)


def _embedding_table(ids: list[str], vectors: list[np.ndarray | None], schema: pa.Schema):
    """Build the fixed-size-list column from numpy directly (no Python float per element)."""
    dim = schema.field("embedding").type.list_size
    valid = np.array([v is not None for v in vectors], dtype=bool)
    matrix = np.zeros((len(vectors), dim), dtype=np.float16)
    if valid.any():
        matrix[valid] = np.stack([v for v in vectors if v is not None])
    column = pa.FixedSizeListArray.from_arrays(
        pa.array(matrix.ravel(), pa.float16()), dim, mask=pa.array(~valid)
    )
    return pa.table({"id": pa.array(ids, pa.string()), "embedding": column}, schema=schema)


def _subset(selected: list[bool], flags: list[bool]) -> list[bool]:
    """`flags` restricted to the positions where `selected` is true."""
    return [flag for flag, chosen in zip(flags, selected, strict=True) if chosen]


def _summary(signal: str, table: pa.Table) -> dict[str, Any]:
    if signal == "clip" and table.num_rows:
        scores = table.column("clip_score")
        valid = pc.drop_null(scores)
        return {
            "scored": len(valid),
            "mean": None if not len(valid) else round(float(pc.mean(valid).as_py()), 6),
            "min": None if not len(valid) else round(float(pc.min(valid).as_py()), 6),
            "max": None if not len(valid) else round(float(pc.max(valid).as_py()), 6),
        }
    if signal == "phash":
        return {"hashed": table.num_rows - table.column("phash").null_count}
    if signal == "text":
        return {"distinct_texts": len(pc.unique(pc.drop_null(table.column("text_hash"))))}
    if signal == "near_dup":
        keep = table.column("near_dup_keep")
        return {
            "clusters_with_duplicates": len(
                pc.unique(
                    table.filter(pc.greater(table.column("near_dup_size"), 1)).column(
                        "near_dup_cluster"
                    )
                )
            ),
            "dropped": table.num_rows - int(pc.sum(pc.cast(keep, pa.int64())).as_py() or 0),
        }
    return {}


# --- near-duplicates --------------------------------------------------------------------------


def _aligned(table: pa.Table, ids: pa.Array, column: str) -> pa.ChunkedArray | pa.Array:
    """`table[column]` in the order of `ids` (null where an id is absent)."""
    positions = pc.index_in(ids, value_set=table.column("id").combine_chunks())
    return pc.take(table.column(column), positions)


def _near_dup(manifest: Manifest, ids: pa.Array, config: ScoreConfig) -> SignalOutcome:
    started = time.perf_counter()
    options = config.near_dup
    inputs: dict[str, str | None] = {"phash": None, EMBEDDINGS: None}
    if options.phash_bits is not None:
        inputs["phash"] = (read_sidecar_meta(manifest, "phash") or {}).get("params_digest")
    use_embeddings = options.cosine is not None and sidecar_path(manifest, EMBEDDINGS).exists()
    embeddings_meta = (read_sidecar_meta(manifest, EMBEDDINGS) or {}) if use_embeddings else {}
    # Embeddings of a randomly initialised CLIP (the demo's stand-in) put unrelated media close
    # together: a cosine test on them would call most rows duplicates. Only real weights count.
    random_weights = embeddings_meta.get("params", {}).get("weights") == "random"
    notes = (
        {"cosine": "not used: the CLIP embeddings come from random weights"}
        if random_weights
        else {}
    )
    use_embeddings = use_embeddings and not random_weights
    if use_embeddings:
        inputs[EMBEDDINGS] = embeddings_meta.get("params_digest")
    if options.scope == "pair":
        inputs["text"] = (read_sidecar_meta(manifest, "text") or {}).get("params_digest")
    params = {
        "version": NEAR_DUP_VERSION,
        "phash_bits": options.phash_bits,
        "cosine": options.cosine if use_embeddings else None,
        "scope": options.scope,
        "inputs": inputs,
    }
    path = sidecar_path(manifest, "near_dup")

    def outcome(table: pa.Table, *, computed: bool) -> SignalOutcome:
        rows = table.num_rows
        return SignalOutcome(
            "near_dup",
            str(path),
            rows,
            rows if computed else 0,
            0 if computed else rows,
            0,
            round(time.perf_counter() - started, 3),
            summary={**_summary("near_dup", table), **notes},
        )

    if sidecar_up_to_date(manifest, "near_dup", params):
        table = read_sidecar(manifest, "near_dup", schema=NEAR_DUP_SCHEMA)
        assert table is not None
        return outcome(table, computed=False)

    n = len(ids)
    kinds = _aligned(manifest.read_rows(columns=["id", "media_kind"]), ids, "media_kind")
    kinds = np.asarray(kinds.to_pylist(), dtype=object)
    pair_sets: list[np.ndarray] = []
    pair_kinds: list[str] = []  # which criterion found each entry of pair_sets
    linked_phash = np.zeros(n, dtype=bool)
    linked_embedding = np.zeros(n, dtype=bool)
    if options.phash_bits is not None:
        table = read_sidecar(manifest, "phash", schema=PHASH_SCHEMA, columns=["id", "phash"])
        assert table is not None
        hashes = _aligned(table, ids, "phash")
        valid = pc.is_valid(hashes).to_numpy(zero_copy_only=False)
        values = pc.fill_null(hashes, 0).to_numpy(zero_copy_only=False).astype(np.uint64)
        valid &= is_informative(values)
        for kind in _kinds(kinds):
            rows = np.flatnonzero(valid & (kinds == kind))
            pairs = rows[
                neardup.hamming_pairs(values[rows], options.phash_bits, block=options.block)
            ]
            linked_phash[pairs.ravel()] = True
            pair_sets.append(pairs)
            pair_kinds.append("phash")
    if use_embeddings:
        table = read_sidecar(manifest, EMBEDDINGS)
        assert table is not None
        column = _aligned(table, ids, "embedding")
        valid = pc.is_valid(column).to_numpy(zero_copy_only=False)
        dim = table.schema.field("embedding").type.list_size
        flat = pc.list_flatten(pc.drop_null(column)).to_numpy(zero_copy_only=False)
        vectors = np.zeros((n, dim), dtype=np.float32)
        vectors[valid] = flat.astype(np.float32).reshape(-1, dim)
        for kind in _kinds(kinds):
            rows = np.flatnonzero(valid & (kinds == kind))
            pairs = rows[
                neardup.cosine_pairs(
                    vectors[rows],
                    options.cosine,
                    block=options.block,
                    device=_torch_device(options),
                )
            ]
            linked_embedding[pairs.ravel()] = True
            pair_sets.append(pairs)
            pair_kinds.append("embedding")
    if options.scope == "pair" and pair_sets:
        text = read_sidecar(manifest, "text", columns=["id", "text_hash"])
        assert text is not None
        text_hash = pc.fill_null(_aligned(text, ids, "text_hash"), 0).to_numpy(zero_copy_only=False)
        pair_sets = [p[text_hash[p[:, 0]] == text_hash[p[:, 1]]] for p in pair_sets]
        linked_phash[:] = False
        linked_embedding[:] = False
        for pairs, by in zip(pair_sets, pair_kinds, strict=True):
            (linked_phash if by == "phash" else linked_embedding)[pairs.ravel()] = True
    all_pairs = np.concatenate(pair_sets) if pair_sets else np.empty((0, 2), np.int64)
    labels = neardup.connected_components(n, all_pairs)
    sizes = np.bincount(labels, minlength=n)[labels]
    score = None
    clip_table = read_sidecar(manifest, "clip", columns=["id", "clip_score"])
    if clip_table is not None:
        score = pc.fill_null(
            _aligned(clip_table, ids, "clip_score").cast(pa.float64()), float("nan")
        ).to_numpy(zero_copy_only=False)
    id_rank = np.empty(n, dtype=np.int64)
    id_rank[pc.sort_indices(ids).to_numpy()] = np.arange(n)
    keep = neardup.keep_first(labels, score=score, tiebreak=id_rank)
    method = np.full(n, None, dtype=object)
    method[linked_phash] = "phash"
    method[linked_embedding] = "embedding"
    method[linked_phash & linked_embedding] = "phash+embedding"
    result = pa.table(
        {
            "id": ids,
            "near_dup_cluster": pa.array(labels, pa.int64()),
            "near_dup_keep": pa.array(keep, pa.bool_()),
            "near_dup_size": pa.array(sizes.astype(np.int32), pa.int32()),
            "near_dup_method": pa.array(method.tolist(), pa.string()),
        },
        schema=NEAR_DUP_SCHEMA,
    )
    writer = SidecarWriter(manifest, "near_dup", NEAR_DUP_SCHEMA, params)
    writer.write_chunk(result)
    return outcome(writer.finalize(ids), computed=True)


def _torch_device(options: NearDupOptions) -> str | None:
    """None (numpy on the CPU) unless a GPU is asked for or, with "auto", present."""
    if options.device == "cpu":
        return None
    if options.device == "auto":
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            return None
        import torch

        return "cuda" if torch.cuda.is_available() else None
    return options.device


def _kinds(kinds: np.ndarray) -> list[str]:
    return sorted({k for k in kinds.tolist() if k is not None})


__all__ = [
    "EMBEDDINGS",
    "NEAR_DUP_SCHEMA",
    "SIGNALS",
    "NearDupOptions",
    "ScoreConfig",
    "ScoreResult",
    "SignalOutcome",
    "parse_signals",
    "score_manifest",
    "signal_params",
]
