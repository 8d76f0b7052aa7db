"""Reading mixtures and cutting them into deterministic batches.

A mixture is a name@version in the workspace (through `curate.mixtures.load_mixture`) or a plain
folder holding `mixture.json` and one `<stage>.parquet` per stage (MANIFEST_SCHEMA columns plus
`position`, the training order). Rows are read in `position` order.

Which mixture stage each config stage trains on (`stage_tables`):

1. a config stage trains on the mixture stage its `data` names;
2. when NO config stage finds its `data` and the mixture has exactly one stage, every config
   stage trains on that one stage (the two-stage recipe on one pool of data);
3. otherwise a config stage whose `data` the mixture lacks is skipped (and recorded), and a
   mixture stage that no config stage uses is an error (data would be silently ignored).

Batches: global batch `k` of an epoch holds `batch_size * world_size` rows; rank `r` takes its
`r`-th slice, so one process with the whole global batch sees the same rows as N ranks. With
homogeneous batching every batch holds one modality pair (batches ordered by their first row's
position). The data position of a run is just its step: step `s` is batch `s % n` of epoch
`s // n`, so a resumed run picks up exactly where the killed one stopped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.errors import ConfigError, NotFoundError, SchemaError
from curate.schema import PAIR_CONTENT_COLUMNS
from curate.workspace import Workspace
from train.config import StageConfig, TrainConfig
from train.template import EmbedItem

#: Columns training reads (all MANIFEST_SCHEMA columns, `position` optional).
TRAIN_COLUMNS = (
    "id",
    "pair",
    "query_modality",
    "target_modality",
    *PAIR_CONTENT_COLUMNS,
)
HOMOGENEOUS_HINTS = {"homogeneous", "pair", "by_pair", "homogeneous_by_pair", "modality_pair"}


@dataclass(frozen=True)
class MixtureRef:
    """What training needs of a mixture (duck-types `curate.mixtures.Mixture`)."""

    name: str
    version: str
    path: Path
    stages: dict[str, Path]
    meta: dict[str, Any] = field(default_factory=dict)
    batching: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def open_mixture(ref: str | Path, workspace: Workspace | None = None) -> MixtureRef:
    """A mixture by folder path, or by NAME[@VERSION] in the workspace."""
    path = Path(ref)
    if path.is_dir():
        return _from_folder(path)
    text = str(ref)
    if "/" in text or text.endswith(".parquet"):
        raise NotFoundError(f"mixture folder {text} does not exist")
    try:
        from curate.mixtures import load_mixture
    except ImportError as error:
        raise NotFoundError(
            f"cannot resolve mixture {text!r}: this install has no curate.mixtures; "
            "give the mixture's folder path instead"
        ) from error
    mixture = load_mixture(workspace or Workspace.resolve(), text)
    return MixtureRef(
        name=mixture.name,
        version=mixture.version,
        path=Path(mixture.path),
        stages={k: Path(v) for k, v in mixture.stages.items()},
        meta=dict(mixture.meta),
        batching=mixture.batching,
    )


def _from_folder(path: Path) -> MixtureRef:
    meta: dict[str, Any] = {}
    if (path / "mixture.json").is_file():
        try:
            meta = json.loads((path / "mixture.json").read_text())
        except json.JSONDecodeError as error:
            raise SchemaError(f"{path / 'mixture.json'} is not valid JSON: {error}") from error
    files: dict[str, Path] = {}
    for folder in (path, path / "stages", path / "rows"):
        for f in sorted(folder.glob("*.parquet")):
            files.setdefault(f.stem, f)
    if not files:
        raise NotFoundError(
            f"mixture folder {path} has no <stage>.parquet files; build one with `curate mix`"
        )
    order = meta.get("stages")
    stages: dict[str, Path] = {}
    if isinstance(order, dict):  # curate mix: {stage: {"file": ...}} in recipe order
        for name, info in order.items():
            file = (
                path / str(info.get("file", f"{name}.parquet")) if isinstance(info, dict) else None
            )
            if file is not None and file.is_file():
                stages[name] = file
            elif name in files:
                stages[name] = files[name]
    elif isinstance(order, list):
        for entry in order:
            name = entry if isinstance(entry, str) else (entry or {}).get("name")
            if name in files:
                stages[name] = files[name]
    if not stages:
        stages = files
    batching = meta.get("batching")
    return MixtureRef(
        name=str(meta.get("name") or path.parent.name or path.name),
        version=str(meta.get("version") or path.name),
        path=path,
        stages=stages,
        meta=meta,
        batching=batching if isinstance(batching, str) else None,
    )


def stage_tables(config: TrainConfig, mixture: MixtureRef) -> list[Path | None]:
    """For each config stage, the Parquet it trains on (None: skipped). See the module doc."""
    found = [mixture.stages.get(s.data) for s in config.stages]
    if not any(found):
        if len(mixture.stages) == 1:
            only = next(iter(mixture.stages.values()))
            return [only] * len(config.stages)
        raise ConfigError(
            f"mixture {mixture.ref} has stages {list(mixture.stages)} but config "
            f"{config.name!r} trains on {[s.data for s in config.stages]}; set "
            "--set stages.N.data=STAGE"
        )
    used = {s.data for s, f in zip(config.stages, found, strict=True) if f is not None}
    unused = [n for n in mixture.stages if n not in used]
    if unused:
        raise ConfigError(
            f"mixture {mixture.ref} stages {unused} match no stage of config {config.name!r} "
            f"(which trains on {[s.data for s in config.stages]}); set --set stages.N.data=STAGE"
        )
    return found


def check_stage_table(path: Path) -> pa.Schema:
    """The schema of a mixture stage file; a `SchemaError` when it cannot be trained on."""
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as error:
        raise SchemaError(f"cannot read mixture stage {path}: {error}") from error
    missing = [c for c in TRAIN_COLUMNS if c not in schema.names]
    if missing:
        raise SchemaError(
            f"mixture stage {path} lacks columns {missing}; it must hold MANIFEST_SCHEMA "
            "rows (rebuild it with `curate mix`)"
        )
    return schema


class StageData:
    """The rows of one stage in training order, and the batch plan over them."""

    def __init__(self, path: Path) -> None:
        schema = check_stage_table(path)
        columns = list(TRAIN_COLUMNS) + (["position"] if "position" in schema.names else [])
        table = pq.read_table(path, columns=columns)
        if "position" in table.column_names:
            table = table.take(pc.sort_indices(table, [("position", "ascending")]))
        self.path = path
        self.table = table
        # Pair codes as small integers (millions of rows: no Python string per row).
        encoded = pc.dictionary_encode(table.column("pair")).combine_chunks()
        self.pair_names: list[str] = encoded.dictionary.to_pylist()
        self.pair_codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32)

    @property
    def pairs(self) -> np.ndarray:
        """Each row's pair code ("t2i", ...), as an array of strings."""
        return np.asarray(self.pair_names, dtype=object)[self.pair_codes]

    def __len__(self) -> int:
        return self.table.num_rows

    def plan(
        self, *, global_batch: int, homogeneous: bool, shuffle: bool, seed: int, epoch: int
    ) -> list[np.ndarray]:
        """Row indices of each global batch of `epoch` (deterministic)."""
        n = len(self)
        rng = np.random.default_rng([seed, epoch]) if shuffle else None
        if not homogeneous:
            order = rng.permutation(n) if rng is not None else np.arange(n)
            return [order[i : i + global_batch] for i in range(0, n, global_batch)]
        batches: list[np.ndarray] = []
        for code in np.argsort(self.pair_names):  # pairs in name order
            rows = np.flatnonzero(self.pair_codes == code)
            if rng is not None:
                rows = rng.permutation(rows)
            batches.extend(rows[i : i + global_batch] for i in range(0, len(rows), global_batch))
        if rng is not None:
            return [batches[i] for i in rng.permutation(len(batches))]
        return sorted(batches, key=lambda b: int(b.min()))

    def rows(self, indices: Sequence[int] | np.ndarray) -> list[dict[str, Any]]:
        return self.table.take(pa.array(np.asarray(indices, dtype=np.int64))).to_pylist()


def homogeneous_for(stage: StageConfig, mixture: MixtureRef) -> bool:
    """Whether batches hold one modality pair: the stage's setting, or the mixture's hint."""
    if stage.batching != "auto":
        return stage.batching == "homogeneous"
    hint = (mixture.batching or "").strip().lower()
    return hint in HOMOGENEOUS_HINTS


@dataclass
class PairItems:
    """A row as items to embed: query, positive, and optional hard negative."""

    row_id: str
    query: EmbedItem
    target: EmbedItem
    negative: EmbedItem | None


def pair_items(row: dict[str, Any], *, hard_negatives: bool) -> PairItems:
    negatives = EmbedItem.negatives_of(row) if hard_negatives else []
    return PairItems(
        row_id=str(row["id"]),
        query=EmbedItem.query_of(row),
        target=EmbedItem.target_of(row),
        negative=negatives[0] if negatives else None,
    )


def rank_slice(batch: np.ndarray, *, rank: int, world: int, per_rank: int) -> np.ndarray:
    """This rank's share of a global batch (possibly empty for the last, short batch)."""
    del world
    return batch[rank * per_rank : (rank + 1) * per_rank]


class Prefetcher:
    """Runs `make(key)` for each key in a background thread, `depth` ahead; yields in order.

    Decoding and collating the next batch overlaps with the model's work on this one. An
    exception in `make` is raised in the consumer.
    """

    def __init__(self, make, keys: Sequence[Any], *, depth: int = 2) -> None:
        import queue
        import threading

        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._keys = list(keys)
        self._make = make
        self._thread = threading.Thread(target=self._run, daemon=True, name="curate-prefetch")
        self._thread.start()

    def _run(self) -> None:
        for key in self._keys:
            if self._stop.is_set():
                return
            try:
                item = (True, self._make(key))
            except BaseException as error:  # handed to the consumer
                item = (False, error)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except Exception:  # queue.Full
                    continue
            if not item[0]:
                return

    def __iter__(self):
        for _ in self._keys:
            ok, value = self._queue.get()
            if not ok:
                self.close()
                raise value
            yield value

    def close(self) -> None:
        self._stop.set()
        while not self._queue.empty():
            try:
                self._queue.get_nowait()
            except Exception:
                break
        self._thread.join(timeout=5)
