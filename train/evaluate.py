"""Retrieval evaluation of a trained run on a suite of manifests.

`evaluate_run(run_dir, suite, workspace)` embeds each task's queries and candidates with the run's
final weights (at the suite's frame count and pixel budget), scores them (`train.topk`) and writes

  <run>/eval/<suite>/results.parquet   one row per (task, metric): EVAL_SCHEMA
  <run>/eval/<suite>/results.json      the suite's settings, per-task counts and metrics (last)

A finished evaluation (results.json with the same fingerprint: suite settings, manifest
fingerprints, run weights) is returned without recomputing.

How a task is built from a manifest (`build_task`):

- Queries are deduplicated by content (text, instruction, media content hashes, clip bounds);
  candidates likewise, so a caption shared by two images, or an image listed once per caption,
  is one candidate. Every row adds (its query, its target) to the relevance, so a query has
  several positives when several rows share it: 5 captions of a COCO image for i2t, 20 of an
  MSR-VTT video for v2t. A hit on any positive counts (see `train.metrics`).
- Local pools (MMEB style) keep one query per row, ranking its own list.
- Composed pools drop, for each query, the candidate that is its own source media.

Candidate (and query) embeddings are cached per (run weights, media budget, item) under
`<workspace>/.curate-cache/embeddings/`, so a second suite sharing items, or an evaluation killed
halfway, does not embed them again. Items whose media fail to decode get zero vectors (counted in
`skipped_media`, never cached) and rank last under pessimistic ties.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.errors import ConfigError, NotFoundError
from curate.manifest import open_manifest
from curate.schema import PAIR_CONTENT_COLUMNS
from curate.workspace import Workspace
from train.metrics import needed_depth, positions_from_scores, retrieval_metrics
from train.suites import Suite, TaskSpec, load_suite, reverse_direction
from train.template import EmbedItem
from train.topk import Relevance, rank_search

if TYPE_CHECKING:
    from train.embedder import Embedder

EVAL_SCHEMA_VERSION: Final = 1

#: One row per (task, metric) of one evaluation of one run.
EVAL_SCHEMA: Final = pa.schema(
    [
        pa.field("suite", pa.string(), nullable=False),
        pa.field("task", pa.string(), nullable=False),
        pa.field("task_group", pa.string(), nullable=False),
        pa.field("direction", pa.string(), nullable=False),
        pa.field("pool", pa.string(), nullable=False),
        pa.field("manifest", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("queries", pa.int64(), nullable=False),
        pa.field("candidates", pa.int64(), nullable=False),
        pa.field("video_frames", pa.int64(), nullable=False),
        pa.field("max_pixels", pa.int64(), nullable=False),
        pa.field("ties", pa.string(), nullable=False),
        pa.field("created", pa.string(), nullable=False),
    ],
    metadata={"curate.schema": "eval", "curate.schema_version": str(EVAL_SCHEMA_VERSION)},
)

_COLUMNS: Final = [
    "id",
    "split",
    "pair",
    *PAIR_CONTENT_COLUMNS,
    "media",
]

#: Loads the embedder of a run at a media budget: (run_dir, video_frames=, max_pixels=, device=).
EmbedderLoader = Callable[..., "Embedder"]


# --- items and their keys ---------------------------------------------------------------------


def item_key(item: EmbedItem, hashes: Mapping[str, str]) -> str:
    """Content key of an item: text, instruction, media content hashes and clip bounds.

    `hashes` maps media paths to their content hash (paths without one stand for themselves).
    """
    parts = [
        item.text or "",
        item.instruction or "",
        [hashes.get(p) or p for p in item.images],
        (hashes.get(item.video) or item.video) if item.video else "",
        item.clip_start,
        item.clip_end,
    ]
    text = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def media_only(item: EmbedItem) -> EmbedItem:
    """The media part of an item (what a composed query must not retrieve)."""
    return EmbedItem(images=item.images, video=item.video, clip_start=item.clip_start,
                     clip_end=item.clip_end)  # fmt: skip


@dataclass(frozen=True)
class TaskData:
    """The queries, candidates and relevance of one task, ready to embed and score."""

    spec: TaskSpec
    queries: list[EmbedItem]
    query_keys: list[str]
    candidates: list[EmbedItem]
    candidate_keys: list[str]
    positives: Relevance  # per query: indices into candidates
    exclude: Relevance | None = None  # composed pools: each query's own media
    lists: list[np.ndarray] | None = None  # local pools: each query's candidate list
    rows: int = 0  # manifest rows read
    source_pair: str = ""
    swapped: bool = False
    notes: tuple[str, ...] = ()


class _Table:
    """Deduplicated items by key, in first-seen order."""

    def __init__(self) -> None:
        self.items: list[EmbedItem] = []
        self.keys: list[str] = []
        self.index: dict[str, int] = {}

    def add(self, item: EmbedItem, key: str) -> int:
        found = self.index.get(key)
        if found is None:
            found = self.index[key] = len(self.items)
            self.items.append(item)
            self.keys.append(key)
        return found


def _read_rows(spec: TaskSpec, workspace: Workspace) -> tuple[list[dict[str, Any]], str, bool]:
    manifest = open_manifest(workspace, spec.manifest)
    table = manifest.read_rows(_COLUMNS)
    if spec.split:
        table = table.filter(pc.equal(table["split"], spec.split))
        if table.num_rows == 0:
            splits = sorted(set(manifest.read_rows(["split"])["split"].to_pylist()))
            raise ConfigError(
                f"task {spec.name!r}: manifest {spec.manifest!r} has no rows of split "
                f"{spec.split!r} (splits: {', '.join(splits) or 'none'}); fix `split` in the suite"
            )
    pairs = sorted(set(table["pair"].to_pylist()))
    reverse = reverse_direction(spec.direction)
    if spec.source_pair:
        wanted = spec.source_pair
    elif spec.direction in pairs:
        wanted = spec.direction
    else:
        wanted = reverse
    chosen = table.filter(pc.equal(table["pair"], wanted))
    if chosen.num_rows == 0:
        raise ConfigError(
            f"task {spec.name!r}: manifest {spec.manifest!r} has no {spec.direction} rows "
            f"{'nor ' + reverse + ' rows to swap ' if not spec.source_pair else ''}(pairs: "
            f"{', '.join(pairs) or 'none'}); check `manifest`, `direction` and `split`"
        )
    return chosen.to_pylist(), wanted, wanted != spec.direction


def build_task(spec: TaskSpec, workspace: Workspace) -> TaskData:
    """Queries, deduplicated candidates and relevance of `spec` from its manifest."""
    rows, source_pair, swapped = _read_rows(spec, workspace)
    queries, candidates = _Table(), _Table()
    notes: list[str] = []
    pairs: list[tuple[int, int, int]] = []  # (row, query index, candidate index)
    media_keys: dict[int, str] = {}  # query index -> key of its own media (composed)
    row_queries: list[EmbedItem] = []
    row_query_keys: list[str] = []
    negatives_per_row: list[list[int]] = []
    for r, row in enumerate(rows):
        hashes = {m["path"]: m["content_hash"] for m in row.get("media") or () if m.get("path")}
        if swapped:
            query = EmbedItem.target_of(row)
            target = dataclasses.replace(EmbedItem.query_of(row), instruction=None)
        else:
            query = EmbedItem.query_of(row)
            target = EmbedItem.target_of(row)
        if spec.instruction:
            query = dataclasses.replace(query, instruction=spec.instruction)
        q_key = item_key(query, hashes)
        c = candidates.add(target, item_key(target, hashes))
        if spec.pool == "local":
            row_queries.append(query)
            row_query_keys.append(q_key)
            q = len(row_queries) - 1
            if spec.local_candidates == "negatives" and not swapped:
                negs = EmbedItem.negatives_of(row)
                negatives_per_row.append([candidates.add(n, item_key(n, hashes)) for n in negs])
        else:
            q = queries.add(query, q_key)
            if spec.pool == "composed" and (query.images or query.video):
                media_keys[q] = item_key(media_only(query), hashes)
        pairs.append((r, q, c))

    # Relevance by query content: a candidate is a positive of every query equal to a row's query.
    relevant: dict[str, set[int]] = {}
    key_of_q = row_query_keys if spec.pool == "local" else queries.keys
    for _, q, c in pairs:
        relevant.setdefault(key_of_q[q], set()).add(c)

    lists: list[np.ndarray] | None = None
    if spec.pool == "local":
        q_items, q_keys = row_queries, row_query_keys
        lists = []
        positives_lists = []
        n_c = len(candidates.items)
        short = 0
        for q, (_, _, c) in enumerate(pairs):
            rel = relevant[q_keys[q]]
            if spec.local_candidates == "negatives":
                if swapped:
                    raise ConfigError(
                        f"task {spec.name!r}: local lists from row negatives need rows of the "
                        f"task's own direction ({spec.direction}), found only {source_pair} rows; "
                        'use local_candidates = "sampled"'
                    )
                members = [c, *[n for n in negatives_per_row[q] if n != c]]
                if len(members) == 1:
                    short += 1
            else:
                rng = np.random.default_rng([spec.seed, q])
                pool = np.setdiff1d(np.arange(n_c), np.fromiter(rel, dtype=np.int64))
                take = min(spec.local_size - 1, pool.size)
                if take < spec.local_size - 1:
                    short += 1
                members = [c, *rng.choice(pool, size=take, replace=False).tolist()]
            members = list(dict.fromkeys(members))
            lists.append(np.asarray(members, dtype=np.int64))
            positives_lists.append([i for i, m in enumerate(members) if m in rel])
        if short:
            notes.append(
                f"{short} of {len(pairs)} queries have a shorter candidate list than asked "
                "(too few negatives or distractors)"
            )
        if spec.local_candidates == "negatives" and short == len(pairs):
            raise ConfigError(
                f"task {spec.name!r}: no row of {spec.manifest!r} has negatives, so every local "
                'list would hold only the positive; use local_candidates = "sampled" with '
                "local_size"
            )
        positives = Relevance.from_lists(positives_lists)
        exclude = None
    else:
        q_items, q_keys = queries.items, queries.keys
        positives = Relevance.from_lists([sorted(relevant[k]) for k in q_keys])
        exclude = None
        if spec.pool == "composed":
            exclude = Relevance.from_lists(
                [
                    [candidates.index[media_keys[q]]]
                    if q in media_keys and media_keys[q] in candidates.index
                    else []
                    for q in range(len(q_items))
                ]
            )

    if spec.max_queries and len(q_items) > spec.max_queries:
        keep = sorted(np.argsort(np.asarray(q_keys), kind="stable")[: spec.max_queries].tolist())
        notes.append(f"kept {spec.max_queries} of {len(q_items)} queries (max_queries)")
        q_items = [q_items[i] for i in keep]
        q_keys = [q_keys[i] for i in keep]
        positives = Relevance.from_lists([positives.row(i) for i in keep])
        if exclude is not None:
            exclude = Relevance.from_lists([exclude.row(i) for i in keep])
        if lists is not None:
            lists = [lists[i] for i in keep]
    return TaskData(
        spec=spec,
        queries=list(q_items),
        query_keys=list(q_keys),
        candidates=candidates.items,
        candidate_keys=candidates.keys,
        positives=positives,
        exclude=exclude,
        lists=lists,
        rows=len(rows),
        source_pair=source_pair,
        swapped=swapped,
        notes=tuple(notes),
    )


# --- embedding with a cache -------------------------------------------------------------------


class EmbeddingCache:
    """Embeddings by item key for one embedder; each addition is one atomically written file."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.vectors: dict[str, np.ndarray] = {}
        if folder is not None and folder.is_dir():
            for part in sorted(folder.glob("part-*.npz")):
                try:
                    with np.load(part, allow_pickle=False) as data:
                        self.vectors.update(
                            zip(data["keys"].tolist(), data["vectors"], strict=True)
                        )
                except (OSError, ValueError, KeyError):
                    continue  # a damaged part only costs recomputation

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        if not len(keys):
            return
        for k, v in zip(keys, vectors, strict=True):
            self.vectors[k] = v
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        tmp = self.folder / f".{name}.tmp.npz"
        np.savez(tmp, keys=np.asarray(list(keys)), vectors=np.asarray(vectors, dtype=np.float32))
        os.replace(tmp, self.folder / f"{name}.npz")


def embed_items(
    embedder: Embedder,
    items: Sequence[EmbedItem],
    keys: Sequence[str],
    cache: EmbeddingCache,
    *,
    batch_size: int = 16,
    progress: bool = False,
    chunk: int = 512,
) -> np.ndarray:
    """(n, dim) float32 embeddings of `items`, each distinct key embedded at most once.

    New embeddings are cached every `chunk` items, so a killed evaluation keeps what it did.
    Zero vectors (media that failed to decode) are not cached: a later run tries again.
    """
    todo: dict[str, EmbedItem] = {}
    for item, key in zip(items, keys, strict=True):
        if key not in cache.vectors and key not in todo:
            todo[key] = item
    todo_keys = list(todo)
    zero: set[str] = set()  # failed media: zero vectors for this call only
    for start in range(0, len(todo_keys), chunk):
        part = todo_keys[start : start + chunk]
        vectors = embedder.embed([todo[k] for k in part], batch_size=batch_size, progress=progress)
        array = vectors.float().cpu().numpy()
        good = np.linalg.norm(array, axis=1) > 0
        cache.add([k for k, g in zip(part, good, strict=True) if g], array[good])
        zero.update(k for k, g in zip(part, good, strict=True) if not g)
    out = np.zeros((len(keys), embedder.dim), dtype=np.float32)
    for i, key in enumerate(keys):
        if key not in zero:
            out[i] = cache.vectors[key]
    return out


# --- scoring ----------------------------------------------------------------------------------


def score_task(
    data: TaskData,
    query_emb: np.ndarray,
    candidate_emb: np.ndarray,
    *,
    ties: str = "pessimistic",
    device: str = "cpu",
) -> dict[str, float]:
    """The task's metrics from query and candidate embeddings."""
    import torch

    names = data.spec.metric_names
    depth = max(needed_depth(names), 1)
    if data.lists is not None:
        return _score_local(data, query_emb, candidate_emb, ties=ties, names=names, depth=depth)
    q = torch.from_numpy(np.ascontiguousarray(query_emb)).to(device)
    c = torch.from_numpy(np.ascontiguousarray(candidate_emb)).to(device)
    found = rank_search(q, c, data.positives, k=depth, depth=depth, ties=ties,  # type: ignore[arg-type]
                        exclude=data.exclude)  # fmt: skip
    positions = found.positions(depth)
    return retrieval_metrics(
        found.ranks, positions, n_relevant=data.positives.counts(), names=names
    )


def _score_local(
    data: TaskData,
    query_emb: np.ndarray,
    candidate_emb: np.ndarray,
    *,
    ties: str,
    names: Sequence[str],
    depth: int,
    budget_bytes: int = 256 * 2**20,
) -> dict[str, float]:
    assert data.lists is not None
    positions: list[np.ndarray] = []
    width_all = max(len(x) for x in data.lists)
    chunk = max(1, budget_bytes // (width_all * candidate_emb.shape[1] * 8))
    for start in range(0, len(data.lists), chunk):
        lists = data.lists[start : start + chunk]
        width = max(len(x) for x in lists)
        index = np.zeros((len(lists), width), dtype=np.int64)
        valid = np.zeros((len(lists), width), dtype=bool)
        for i, members in enumerate(lists):
            index[i, : len(members)] = members
            valid[i, : len(members)] = True
        # One product per query, all in float64: a query's scores are computed alike.
        scores = np.einsum(
            "qd,qld->ql",
            query_emb[start : start + len(lists)].astype(np.float64),
            candidate_emb[index].astype(np.float64),
        )
        rel = [data.positives.row(start + i) for i in range(len(lists))]
        positions.extend(positions_from_scores(scores, rel, ties=ties, valid=valid))  # type: ignore[arg-type]
    ranks = np.array([int(p.min()) for p in positions], dtype=np.int64)
    return retrieval_metrics(ranks, positions, n_relevant=data.positives.counts(), names=names)


# --- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskResult:
    task: str
    group: str
    direction: str
    pool: str
    manifest: str
    metrics: dict[str, float]
    queries: int
    candidates: int
    positives: int  # (query, positive) pairs
    rows: int
    source_pair: str
    video_frames: int
    max_pixels: int
    skipped_media: int = 0
    seconds: float = 0.0
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["notes"] = list(self.notes)
        return data


@dataclass(frozen=True)
class EvalResults:
    suite: Suite
    tasks: tuple[TaskResult, ...]
    run: str
    embedder: str  # fingerprint of the weights evaluated
    fingerprint: str  # of suite + manifests + weights: same fingerprint, same results
    created: str
    manifests: dict[str, str] = field(default_factory=dict)  # name -> fingerprint
    seconds: float = 0.0
    reused: bool = False  # read from a previous evaluation

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": EVAL_SCHEMA_VERSION,
            "suite": self.suite.to_dict(),
            "tasks": [t.to_dict() for t in self.tasks],
            "run": self.run,
            "embedder": self.embedder,
            "fingerprint": self.fingerprint,
            "created": self.created,
            "manifests": self.manifests,
            "seconds": self.seconds,
        }

    def table(self) -> pa.Table:
        """EVAL_SCHEMA rows: one per (task, metric)."""
        rows = [
            {
                "suite": self.suite.name,
                "task": t.task,
                "task_group": t.group,
                "direction": t.direction,
                "pool": t.pool,
                "manifest": t.manifest,
                "metric": metric,
                "value": float(value),
                "queries": t.queries,
                "candidates": t.candidates,
                "video_frames": t.video_frames,
                "max_pixels": t.max_pixels,
                "ties": self.suite.ties,
                "created": self.created,
            }
            for t in self.tasks
            for metric, value in t.metrics.items()
        ]
        return pa.Table.from_pylist(rows, schema=EVAL_SCHEMA)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], suite: Suite, *, reused: bool = True
    ) -> EvalResults:
        order = {t.name: t.metric_names for t in suite.tasks}

        def ordered(task: Mapping[str, Any]) -> dict[str, float]:  # JSON sorted the keys
            names = order.get(task["task"], ())
            metrics = task["metrics"]
            return {m: metrics[m] for m in [*names, *sorted(metrics)] if m in metrics}

        tasks = tuple(
            TaskResult(**{**t, "metrics": ordered(t), "notes": tuple(t.get("notes", ()))})
            for t in data["tasks"]
        )
        return cls(
            suite=suite,
            tasks=tasks,
            run=data["run"],
            embedder=data["embedder"],
            fingerprint=data["fingerprint"],
            created=data["created"],
            manifests=dict(data.get("manifests", {})),
            seconds=float(data.get("seconds", 0.0)),
            reused=reused,
        )


def eval_dir(run_dir: Path, suite: str) -> Path:
    return Path(run_dir) / "eval" / suite


def resolve_run(workspace: Workspace, run: str | Path) -> Path:
    """A run folder given as a path, or as a run id under <workspace>/runs/."""
    path = Path(run).expanduser()
    if path.is_dir():
        return path.resolve()
    by_id = workspace.runs / str(run)
    if by_id.is_dir():
        return by_id.resolve()
    known = (
        sorted(p.name for p in workspace.runs.iterdir() if p.is_dir())[:20]
        if workspace.runs.is_dir()
        else []
    )
    raise NotFoundError(
        f"no run folder {run!s} (nor {by_id}); known runs: {', '.join(known) or 'none'}; "
        "train one with `curate train` or `curate ablate`"
    )


def weights_fingerprint(run_dir: Path) -> str:
    """Hash of what decides a run's embeddings: its final weights and resolved config."""
    digest = hashlib.sha256()
    files = [run_dir / "config.toml", *sorted((run_dir / "final").glob("*"))]
    base = run_dir / "base"
    if base.is_dir():
        files.extend(sorted(p for p in base.rglob("*") if p.is_file()))
    found = False
    for path in files:
        if path.is_file():
            found = True
            digest.update(path.relative_to(run_dir).as_posix().encode())
            with path.open("rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 20), b""):
                    digest.update(block)
    if not found:  # a stand-in run without weights: its folder is its identity
        digest.update(str(run_dir.resolve()).encode())
    return digest.hexdigest()[:16]


def _write_atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_results(results: EvalResults, out: Path) -> None:
    """results.parquet, then results.json (the completion marker), each atomically."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".results.parquet.{os.getpid()}.tmp"
    pq.write_table(results.table(), tmp)
    os.replace(tmp, out / "results.parquet")
    text = json.dumps(results.to_dict(), indent=2, sort_keys=True, ensure_ascii=False)
    _write_atomic_bytes(out / "results.json", (text + "\n").encode())


def read_results(run_dir: Path, suite: Suite) -> EvalResults | None:
    path = eval_dir(run_dir, suite.name) / "results.json"
    if not path.is_file():
        return None
    try:
        return EvalResults.from_dict(json.loads(path.read_text()), suite)
    except (ValueError, KeyError, TypeError):
        return None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def evaluate_run(
    run_dir: str | Path,
    suite: str | Path | Suite,
    workspace: Workspace,
    *,
    load: EmbedderLoader | None = None,
    device: str | None = None,
    progress: bool = False,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> EvalResults:
    """Evaluate a run's final weights on `suite` and write the results into the run folder.

    `load(run_dir, video_frames=, max_pixels=, device=)` gives the embedder (default:
    `train.embedder.load_embedder`). Returns the stored results when they are up to date.
    """
    run = resolve_run(workspace, run_dir)
    spec = suite if isinstance(suite, Suite) else load_suite(suite)
    manifests = {t.manifest: open_manifest(workspace, t.manifest).fingerprint for t in spec.tasks}
    weights = weights_fingerprint(run)
    fingerprint = hashlib.sha256(
        json.dumps([spec.fingerprint(), manifests, weights, EVAL_SCHEMA_VERSION]).encode()
    ).hexdigest()[:16]
    if not force:
        previous = read_results(run, spec)
        if previous is not None and previous.fingerprint == fingerprint:
            return previous
    if load is None:
        from train.embedder import load_embedder

        load = load_embedder
    say = log or (lambda message: print(message, file=sys.stderr) if progress else None)
    begin = time.perf_counter()
    device = device or _default_device()
    results: list[TaskResult] = []
    budgets: dict[tuple[int, int], list[TaskSpec]] = {}
    for task in spec.tasks:
        budgets.setdefault((spec.frames_of(task), spec.pixels_of(task)), []).append(task)
    by_name: dict[str, TaskResult] = {}
    for (frames, pixels), tasks in budgets.items():
        embedder = load(run, video_frames=frames, max_pixels=pixels, device=device)
        cache = EmbeddingCache(workspace.cache / "embeddings" / f"{weights}-f{frames}-p{pixels}")
        for task in tasks:
            start = time.perf_counter()
            skipped_before = int(getattr(embedder, "skipped", 0))
            data = build_task(task, workspace)
            say(f"{spec.name}/{task.name}: {len(data.queries)} queries, "
                f"{len(data.candidates)} candidates")  # fmt: skip
            q = embed_items(embedder, data.queries, data.query_keys, cache,
                            batch_size=spec.batch_size, progress=progress)  # fmt: skip
            c = embed_items(embedder, data.candidates, data.candidate_keys, cache,
                            batch_size=spec.batch_size, progress=progress)  # fmt: skip
            metrics = score_task(data, q, c, ties=spec.ties, device=device)
            by_name[task.name] = TaskResult(
                task=task.name,
                group=task.task_group,
                direction=task.direction,
                pool=task.pool,
                manifest=task.manifest,
                metrics=metrics,
                queries=len(data.queries),
                candidates=len(data.candidates),
                positives=int(data.positives.indices.size),
                rows=data.rows,
                source_pair=data.source_pair,
                video_frames=frames,
                max_pixels=pixels,
                skipped_media=int(getattr(embedder, "skipped", 0)) - skipped_before,
                seconds=round(time.perf_counter() - start, 3),
                notes=data.notes,
            )
    results = [by_name[t.name] for t in spec.tasks]
    out = EvalResults(
        suite=spec,
        tasks=tuple(results),
        run=str(run),
        embedder=weights,
        fingerprint=fingerprint,
        created=_now(),
        manifests=manifests,
        seconds=round(time.perf_counter() - begin, 3),
    )
    write_results(out, eval_dir(run, spec.name))
    return out
