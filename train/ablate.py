"""`curate ablate`: train and evaluate a grid of (mixture x loss x seed) cells into a results store.

A cell is one mixture version trained with one resolved config (the loss and seed applied) and
evaluated on one suite. Its run id is a hash of the mixture version, the resolved config hash, the
seed and the loss, so the same cell in another grid, or in a rerun, is the same run folder:
`<workspace>/runs/<run_id>/`.

**Losses.** `losses` sets the loss of the *last config stage that trains on the mixture*: with the
two-stage configs and a mixture that has an `instruction_tuning` stage that is stage 2 (MAMCL by
default, stage 1 keeps symmetric InfoNCE as in UNITE); with a single-stage mixture it is the stage
that trains on it (the only one, or the last one when every config stage trains on that one pool,
see `train.data.stage_tables`). `--set stages.N.loss=...` still sets any stage, but `losses` wins on
the stage it targets. Without `losses`, a cell keeps the config's own loss of that stage.

**Store.** Each finished cell writes `results/cells/<ablation>__<run_id>__<suite>.parquet`
(RESULTS_SCHEMA: one row per task and metric) atomically, then the compacted
`results/results.parquet` is rewritten under a lock. `open_results` queries both with DuckDB.
A cell whose file exists is skipped; an interrupted cell resumes (the trainer restarts from its last
checkpoint, the evaluation reuses cached embeddings); a failed cell is logged in
`results/ablations/<ablation>/log.jsonl` with its error and the grid goes on; a rerun retries it.
`status.json` there and `AblationResult.to_dict()` list the failed cells with their reasons under
`failed`. The mixtures and the suite's manifests are checked before any cell trains.

**Launchers.** `local` trains in this process; `torchrun` runs
`python -m torch.distributed.run --standalone --nproc_per_node N -m curate.cli train ...` per cell
(evaluation then runs here); `slurm` submits one job per cell through submitit (train and
evaluate on the node; all cells run concurrently) and waits for them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.errors import ConfigError, CurateError, NotFoundError
from curate.schema import RESULTS_SCHEMA, check_schema
from curate.workspace import Workspace, check_name
from train.config import TrainConfig, load_train_config
from train.data import MixtureRef, open_mixture, stage_tables
from train.evaluate import EmbedderLoader, EvalResults, evaluate_run
from train.losses import LOSSES
from train.suites import Suite, check_manifests, load_suite

if TYPE_CHECKING:
    import duckdb

Launcher = Literal["local", "torchrun", "slurm"]
LAUNCHERS: Final[tuple[str, ...]] = get_args(Launcher)
CellState = Literal["pending", "skipped", "running", "done", "failed"]

#: Characters of a failure's traceback kept in log.jsonl (the end, where the exception is).
MAX_TRACEBACK: Final = 64_000

#: train_run's signature: (mixture=, workspace=, config=, out_dir=, progress=) -> run folder.
TrainFn = Callable[..., Path]


@dataclass(frozen=True)
class AblationSpec:
    """What to run: the grid (mixtures x losses x seeds), the config and suite, and how."""

    mixtures: tuple[str, ...]
    config: str = "tiny-cpu"
    losses: tuple[str, ...] = ()  # empty: the config's own loss
    seeds: tuple[int, ...] = ()  # empty: the config's own seed
    suite: str = "default"
    overrides: tuple[tuple[str, Any], ...] = ()  # dotted config keys, e.g. ("stages.0.lr", 1e-3)
    name: str = ""  # the ablation's name; default: a hash of the grid
    launcher: Launcher = "local"
    nproc: int = 1  # torchrun processes (GPUs) per cell; slurm GPUs per node
    slurm: Mapping[str, Any] = field(default_factory=dict)  # partition, account, time_min, ...

    def __post_init__(self) -> None:
        if not self.mixtures:
            raise ConfigError("give at least one mixture, e.g. --mixtures demo-image,demo-video")
        if self.launcher not in LAUNCHERS:
            raise ConfigError(f"launcher must be one of {list(LAUNCHERS)}, found {self.launcher!r}")
        unknown = [loss for loss in self.losses if loss not in LOSSES]
        if unknown:
            raise ConfigError(f"unknown losses {unknown}; known: {', '.join(LOSSES)}")
        if self.nproc < 1:
            raise ConfigError(f"nproc must be >= 1, found {self.nproc}")
        if self.name:
            check_name(self.name, what="ablation name")

    @property
    def ablation(self) -> str:
        if self.name:
            return self.name
        text = json.dumps(
            [list(self.mixtures), self.config, list(self.losses), list(self.seeds), self.suite,
             [list(o) for o in self.overrides]],
            sort_keys=True, default=str,
        )  # fmt: skip
        return f"ablation-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class Cell:
    """One (mixture, loss, seed) of the grid with its resolved config and run folder."""

    run_id: str
    mixture: MixtureRef
    config: TrainConfig
    loss: str
    seed: int
    loss_stage: int  # index of the config stage whose loss the grid sets
    run_dir: Path
    pair_shares: dict[str, float]
    source_shares: dict[str, float]

    @property
    def label(self) -> str:
        return f"{self.mixture.name} · {self.loss} · seed {self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "mixture": self.mixture.name,
            "mixture_version": self.mixture.version,
            "config": self.config.name,
            "config_hash": self.config.config_hash(),
            "backbone": self.config.backbone.kind,
            "loss": self.loss,
            "loss_stage": self.config.stages[self.loss_stage].name,
            "seed": self.seed,
            "run_dir": str(self.run_dir),
        }


def mixture_shares(mixture: MixtureRef) -> tuple[dict[str, float], dict[str, float]]:
    """Shares of rows by pair and by source: mixture.json's, else counted from the stages."""
    meta = mixture.meta or {}
    by_pair = meta.get("shares_by_pair")
    by_source = meta.get("shares_by_source")
    if isinstance(by_pair, dict) and isinstance(by_source, dict):
        return {str(k): float(v) for k, v in by_pair.items()}, {
            str(k): float(v) for k, v in by_source.items()
        }
    counts: dict[str, dict[str, int]] = {"pair": {}, "source": {}}
    for path in mixture.stages.values():
        names = pq.read_schema(path).names
        table = pq.read_table(path, columns=[c for c in ("pair", "source") if c in names])
        for column in table.column_names:
            for entry in pc.value_counts(table[column]).to_pylist():
                key = str(entry["values"])
                counts[column][key] = counts[column].get(key, 0) + int(entry["counts"])
    shares = []
    for column in ("pair", "source"):
        total = sum(counts[column].values())
        shares.append({k: v / total for k, v in sorted(counts[column].items())} if total else {})
    return shares[0], shares[1]


def run_id_of(mixture: MixtureRef, config: TrainConfig, seed: int, loss: str) -> str:
    """Readable and stable: <mixture>-<loss>-s<seed>-<hash of version, config, seed, loss>."""
    text = json.dumps([mixture.name, mixture.version, config.config_hash(), seed, loss])
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return check_name(f"{mixture.name[:48]}-{loss}-s{seed}-{digest}", what="run id")


def open_mixtures(refs: Sequence[str], workspace: Workspace) -> list[MixtureRef]:
    """Every mixture of the grid, or one NotFoundError naming each one that cannot be found."""
    opened: list[MixtureRef] = []
    missing: list[str] = []
    for ref in refs:
        try:
            opened.append(open_mixture(ref, workspace))
        except NotFoundError as error:
            missing.append(str(error))
    if len(missing) == 1:
        raise NotFoundError(missing[0])
    if missing:
        raise NotFoundError(
            f"{len(missing)} of the mixtures cannot be found: " + "; ".join(missing)
        )
    return opened


def expand_grid(spec: AblationSpec, workspace: Workspace) -> list[Cell]:
    """Every cell of the grid, in mixture, loss, seed order (resolving errors raise at once)."""
    base = load_train_config(spec.config, dict(spec.overrides))
    seeds = spec.seeds or (base.seed,)
    cells: dict[str, Cell] = {}
    for mixture in open_mixtures(spec.mixtures, workspace):
        trained = [i for i, t in enumerate(stage_tables(base, mixture)) if t is not None]
        loss_stage = trained[-1]
        pair_shares, source_shares = mixture_shares(mixture)
        for loss in spec.losses or (None,):
            for seed in seeds:
                overrides = dict(spec.overrides)
                overrides["seed"] = seed
                if loss is not None:
                    overrides[f"stages.{loss_stage}.loss"] = loss
                config = load_train_config(spec.config, overrides)
                cell_loss = config.stages[loss_stage].loss
                run_id = run_id_of(mixture, config, seed, cell_loss)
                cells.setdefault(
                    run_id,
                    Cell(
                        run_id=run_id,
                        mixture=mixture,
                        config=config,
                        loss=cell_loss,
                        seed=seed,
                        loss_stage=loss_stage,
                        run_dir=workspace.runs / run_id,
                        pair_shares=pair_shares,
                        source_shares=source_shares,
                    ),
                )
    return list(cells.values())


# --- the results store ------------------------------------------------------------------------


def cells_dir(workspace: Workspace) -> Path:
    return workspace.results / "cells"


def cell_file(workspace: Workspace, ablation: str, run_id: str, suite: str) -> Path:
    return cells_dir(workspace) / f"{ablation}__{run_id}__{suite}.parquet"


def store_path(workspace: Workspace) -> Path:
    return workspace.results / "results.parquet"


def result_rows(cell: Cell, results: EvalResults, ablation: str) -> pa.Table:
    """RESULTS_SCHEMA rows of one evaluated cell: one per (task, metric)."""
    rows = [
        {
            "ablation": ablation,
            "run_id": cell.run_id,
            "mixture": cell.mixture.name,
            "mixture_version": cell.mixture.version,
            "pair_shares": list(cell.pair_shares.items()),
            "source_shares": list(cell.source_shares.items()),
            "config": cell.config.name,
            "config_hash": cell.config.config_hash(),
            "backbone": cell.config.backbone.kind,
            "loss": cell.loss,
            "seed": cell.seed,
            "suite": results.suite.name,
            "task": task.task,
            "task_group": task.group,
            "metric": metric,
            "value": float(value),
            "created": results.created,
        }
        for task in results.tasks
        for metric, value in task.metrics.items()
    ]
    return pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA)


def _write_parquet_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


@contextlib.contextmanager
def _store_lock(workspace: Workspace) -> Iterator[None]:
    workspace.results.mkdir(parents=True, exist_ok=True)
    with (workspace.results / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def compact_store(workspace: Workspace) -> Path:
    """Rewrite results/results.parquet from every cell file (atomic, under a lock)."""
    with _store_lock(workspace):
        files = sorted(cells_dir(workspace).glob("*.parquet"))
        tables = []
        for path in files:
            table = pq.read_table(path)
            check_schema(table.schema, RESULTS_SCHEMA, where=f"results cell {path.name}")
            tables.append(table)
        table = pa.concat_tables(tables) if tables else RESULTS_SCHEMA.empty_table()
        if table.num_rows:
            table = table.sort_by(
                [(c, "ascending") for c in ("ablation", "run_id", "suite", "task", "metric")]
            )
        _write_parquet_atomic(table, store_path(workspace))
    return store_path(workspace)


def open_results(workspace: Workspace) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection (through curate.db) with a view `results` over the cell files.

    >>> # con = open_results(ws); con.sql("SELECT task, avg(value) FROM results GROUP BY task")
    """
    from curate.db import connect, duckdb_errors, sql_string

    folder = cells_dir(workspace)
    if not any(folder.glob("*.parquet")):
        raise NotFoundError(f"no results in {folder}; run `curate ablate --mixtures a,b,c` first")
    con = connect(read_paths=[folder])
    with duckdb_errors("reading the results store"):
        con.execute(
            "CREATE VIEW results AS SELECT * FROM read_parquet("
            f"{sql_string(str(folder.resolve()) + '/*.parquet')})"
        )
    return con


# --- events and status ------------------------------------------------------------------------


@dataclass
class CellStatus:
    cell: Cell
    state: CellState = "pending"
    error: str = ""
    seconds: float = 0.0
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # task -> metric -> value

    def to_dict(self) -> dict[str, Any]:
        return {**self.cell.to_dict(), "state": self.state, "error": self.error,
                "seconds": round(self.seconds, 3), "metrics": self.metrics}  # fmt: skip


def one_line(text: str) -> str:
    """`text` with its lines stripped and joined by spaces (reasons in summaries are one line)."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _submitit_error(error: BaseException, name: str) -> bool:
    """Whether `error` is submitit's exception class `name` (or a subclass); submitit is only
    imported by the slurm launcher, so its classes are matched by name."""
    return any(
        k.__name__ == name and k.__module__.startswith("submitit.") for k in type(error).__mro__
    )


def _is_rule(line: str) -> bool:
    """submitit puts a row of dashes above and below the trace or error stream it quotes."""
    stripped = line.strip()
    return len(stripped) >= 10 and set(stripped) == {"-"}


def failure_reason(error: BaseException) -> str:
    """Why a cell failed, on one line, for tables, --json and status.json (log.jsonl keeps the
    full traceback).

    Mostly `Type: message` with newlines collapsed. submitit's FailedJobError quotes the job's
    whole remote traceback between two rules of dashes: its reason is the traceback's last
    non-empty line, the remote exception. Its UncompletedJobError (a job that wrote no result:
    timed out, cancelled, killed) quotes the job's error stream: its reason is the heading
    ("Job 12 ... has not produced any output (state: TIMEOUT)") and the stream's last line.

    >>> failure_reason(ValueError("two\\nlines"))
    'ValueError: two lines'
    """
    text = str(error)
    lines = text.splitlines()
    rules = [i for i, line in enumerate(lines) if _is_rule(line)]
    if rules and _submitit_error(error, "UncompletedJobError"):  # FailedJobError is one too
        end = rules[1] if len(rules) > 1 else len(lines)
        quoted = [line.strip() for line in lines[rules[0] + 1 : end] if line.strip()]
        if quoted and _submitit_error(error, "FailedJobError"):
            return quoted[-1]
        if quoted:
            heading = one_line("\n".join(lines[: rules[0]]))
            return f"{type(error).__name__}: {heading} {quoted[-1]}"
    return one_line(f"{type(error).__name__}: {text}")


def failures(statuses: Sequence[CellStatus]) -> list[dict[str, Any]]:
    """The failed cells as plain data: which cell, its run folder and its one-line reason."""
    return [
        {"run_id": s.cell.run_id, "cell": s.cell.label, "mixture": s.cell.mixture.name,
         "loss": s.cell.loss, "seed": s.cell.seed, "run_dir": str(s.cell.run_dir),
         "error": s.error}
        for s in statuses
        if s.state == "failed"
    ]  # fmt: skip


@dataclass(frozen=True)
class GridProgress:
    """Counts of the grid after an event, for progress displays."""

    total: int
    done: int
    skipped: int
    running: int
    failed: int
    event: str  # started | done | skipped | failed
    cell: Cell


ProgressFn = Callable[[GridProgress], None]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Journal:
    """results/ablations/<name>/: log.jsonl (append-only events) and status.json."""

    def __init__(self, workspace: Workspace, spec: AblationSpec, statuses: list[CellStatus]):
        self.folder = workspace.results / "ablations" / spec.ablation
        self.folder.mkdir(parents=True, exist_ok=True)
        self.spec = spec
        self.statuses = statuses

    def log(self, event: str, status: CellStatus, **extra: Any) -> None:
        line = {"time": _now(), "event": event, "run_id": status.cell.run_id,
                "cell": status.cell.label, **extra}  # fmt: skip
        with (self.folder / "log.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
        self.write_status()

    def write_status(self) -> None:
        data = {
            "ablation": self.spec.ablation,
            "mixtures": list(self.spec.mixtures),
            "config": self.spec.config,
            "losses": list(self.spec.losses),
            "seeds": list(self.spec.seeds),
            "suite": self.spec.suite,
            "overrides": [list(o) for o in self.spec.overrides],
            "launcher": self.spec.launcher,
            "updated": _now(),
            "cells": [s.to_dict() for s in self.statuses],
            "failed": failures(self.statuses),
        }
        tmp = self.folder / f".status.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
        os.replace(tmp, self.folder / "status.json")


# --- launchers --------------------------------------------------------------------------------


def config_file_for(workspace: Workspace, spec: AblationSpec, cell: Cell) -> Path:
    """The cell's resolved config as TOML, for launchers that train in another process."""
    path = workspace.results / "ablations" / spec.ablation / "configs" / f"{cell.run_id}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = cell.config.to_toml()
    if not path.is_file() or path.read_text() != text:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


def torchrun_command(
    cell: Cell, workspace: Workspace, config_file: Path, *, nproc: int
) -> list[str]:
    """The command that trains one cell on `nproc` processes (torchrun's module form)."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={nproc}",
        "-m", "curate.cli", "train",
        "--mixture", str(cell.mixture.path),
        "--config", str(config_file),
        "--out", str(cell.run_dir),
        "--workspace", str(workspace.root),
        "--no-progress",
    ]  # fmt: skip


def _train_torchrun(cell: Cell, workspace: Workspace, spec: AblationSpec) -> None:
    command = torchrun_command(cell, workspace, config_file_for(workspace, spec, cell),
                               nproc=spec.nproc)  # fmt: skip
    log_path = workspace.results / "ablations" / spec.ablation / "logs" / f"{cell.run_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n$ {' '.join(command)}\n".encode())
        log.flush()
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
        raise CurateError(
            f"torchrun exited with code {done.returncode} (log {log_path}): " + " | ".join(tail)
        )


def slurm_parameters(spec: AblationSpec, cell: Cell) -> dict[str, Any]:
    """submitit AutoExecutor parameters for one cell (the `slurm` mapping adds or overrides)."""
    options = dict(spec.slurm)
    params: dict[str, Any] = {
        "name": f"curate-{cell.run_id}"[:100],
        "timeout_min": int(options.pop("time_min", 24 * 60)),
        "nodes": 1,
        "tasks_per_node": 1,  # one launcher process; torchrun starts the ranks
        "gpus_per_node": spec.nproc,
        "cpus_per_task": int(options.pop("cpus_per_task", 8 * spec.nproc)),
    }
    if "mem_gb" in options:
        params["mem_gb"] = int(options.pop("mem_gb"))
    for key in ("partition", "account", "qos", "constraint"):
        if key in options:
            params[f"slurm_{key}"] = str(options.pop(key))
    if options:
        raise ConfigError(
            f"unknown slurm options {sorted(options)}; use partition, account, qos, constraint, "
            "time_min, cpus_per_task, mem_gb"
        )
    return params


@dataclass(frozen=True)
class _JobPayload:
    """What a slurm job needs, as plain data (pickled by submitit)."""

    run_id: str
    mixture_path: str
    config_file: str
    run_dir: str
    workspace: str
    suite: str
    nproc: int


def slurm_cell_job(
    payload: _JobPayload,
    train_fn: TrainFn | None = None,
    load_fn: EmbedderLoader | None = None,
) -> dict[str, Any]:
    """Runs on the node: train (torchrun when several GPUs) and evaluate; returns the results."""
    workspace = Workspace.resolve(payload.workspace)
    config = load_train_config(payload.config_file)
    if payload.nproc > 1 and train_fn is None:
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={payload.nproc}", "-m", "curate.cli", "train",
            "--mixture", payload.mixture_path, "--config", payload.config_file,
            "--out", payload.run_dir, "--workspace", payload.workspace, "--no-progress",
        ]  # fmt: skip
        subprocess.run(command, check=True)
    else:
        if train_fn is None:
            from train.trainer import train_run

            train_fn = train_run
        train_fn(mixture=payload.mixture_path, workspace=workspace, config=config,
                 out_dir=Path(payload.run_dir), progress=False)  # fmt: skip
    results = evaluate_run(Path(payload.run_dir), payload.suite, workspace, load=load_fn)
    return results.to_dict()


def _default_train() -> TrainFn:
    from train.trainer import train_run

    return train_run


# --- the grid ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AblationResult:
    ablation: str
    suite: Suite
    cells: tuple[CellStatus, ...]
    store: Path
    seconds: float
    log: Path | None = None  # results/ablations/<name>/log.jsonl: events, failures' tracebacks

    @property
    def failed(self) -> list[CellStatus]:
        return [s for s in self.cells if s.state == "failed"]

    def counts(self) -> dict[str, int]:
        out = {"done": 0, "skipped": 0, "failed": 0, "pending": 0}
        for s in self.cells:
            out[s.state if s.state in out else "pending"] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "ablation": self.ablation,
            "suite": self.suite.name,
            "store": str(self.store),
            "seconds": round(self.seconds, 3),
            "log": None if self.log is None else str(self.log),
            "counts": self.counts(),
            "cells": [s.to_dict() for s in self.cells],
            "failed": failures(self.cells),
        }


def _metrics_of(table: pa.Table) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for row in table.select(["task", "metric", "value"]).to_pylist():
        out.setdefault(row["task"], {})[row["metric"]] = row["value"]
    return out


def run_ablation(
    spec: AblationSpec,
    workspace: Workspace,
    *,
    train_fn: TrainFn | None = None,
    load_fn: EmbedderLoader | None = None,
    progress: ProgressFn | None = None,
    train_progress: bool = False,
    slurm_cluster: str | None = None,
    poll_s: float = 5.0,
) -> AblationResult:
    """Expand the grid and run every cell not finished yet; see the module docstring.

    `train_fn` (default `train.trainer.train_run`) and `load_fn` (default
    `train.embedder.load_embedder`) can be replaced, e.g. by stand-ins in tests. `slurm_cluster`
    is passed to submitit's AutoExecutor ("debug" runs jobs in this process).
    """
    begin = time.perf_counter()
    suite = load_suite(spec.suite)
    try:
        cells = expand_grid(spec, workspace)
    except NotFoundError as missing_mixture:
        try:  # name the missing manifests too, rather than one problem per attempt
            check_manifests(suite, workspace)
        except NotFoundError as missing_manifest:
            raise NotFoundError(f"{missing_mixture}; also, {missing_manifest}") from None
        raise
    ablation = spec.ablation
    # Every cell to run would train and then fail at evaluation without the suite's manifests:
    # say so before any training (a grid whose cells are all in the store needs none of them).
    if any(not cell_file(workspace, ablation, c.run_id, suite.name).is_file() for c in cells):
        check_manifests(suite, workspace)
    statuses = [CellStatus(cell) for cell in cells]
    journal = _Journal(workspace, spec, statuses)
    journal.write_status()

    def report(event: str, status: CellStatus) -> None:
        if progress is None:
            return
        states = [s.state for s in statuses]
        progress(GridProgress(total=len(states), done=states.count("done"),
                              skipped=states.count("skipped"), running=states.count("running"),
                              failed=states.count("failed"), event=event, cell=status.cell))  # fmt: skip

    def finish(status: CellStatus, results: EvalResults) -> None:
        table = result_rows(status.cell, results, ablation)
        _write_parquet_atomic(table, cell_file(workspace, ablation, status.cell.run_id, suite.name))
        compact_store(workspace)
        status.state = "done"
        status.metrics = _metrics_of(table)
        journal.log("done", status, rows=table.num_rows, seconds=round(status.seconds, 3))
        report("done", status)

    def fail(status: CellStatus, error: BaseException) -> None:
        status.state = "failed"
        status.error = failure_reason(error)
        # The full traceback (a slurm job's remote one included) goes to log.jsonl only; its end
        # is kept when a job's quoted error stream is very long.
        journal.log("failed", status, error=status.error,
                    traceback="".join(traceback.format_exception(error))[-MAX_TRACEBACK:])  # fmt: skip
        report("failed", status)

    todo: list[CellStatus] = []
    for status in statuses:
        path = cell_file(workspace, ablation, status.cell.run_id, suite.name)
        if path.is_file():
            status.state = "skipped"
            status.metrics = _metrics_of(pq.read_table(path))
            journal.log("skipped", status, reason="results already in the store")
            report("skipped", status)
        else:
            todo.append(status)

    if spec.launcher == "slurm":
        _run_slurm(spec, workspace, suite, todo, journal, report, finish, fail,
                   train_fn=train_fn, load_fn=load_fn, cluster=slurm_cluster, poll_s=poll_s)  # fmt: skip
    else:
        train = train_fn or _default_train()
        for status in todo:
            status.state = "running"
            journal.log("started", status, launcher=spec.launcher)
            report("started", status)
            start = time.perf_counter()
            try:
                if spec.launcher == "torchrun":
                    _train_torchrun(status.cell, workspace, spec)
                else:
                    train(mixture=str(status.cell.mixture.path), workspace=workspace,
                          config=status.cell.config, out_dir=status.cell.run_dir,
                          progress=train_progress)  # fmt: skip
                results = evaluate_run(status.cell.run_dir, suite, workspace, load=load_fn)
                status.seconds = time.perf_counter() - start
                finish(status, results)
            except Exception as error:  # a failed cell must not stop the grid
                status.seconds = time.perf_counter() - start
                fail(status, error)
    if not store_path(workspace).is_file() and any(cells_dir(workspace).glob("*.parquet")):
        compact_store(workspace)
    journal.write_status()
    return AblationResult(
        ablation=ablation,
        suite=suite,
        cells=tuple(statuses),
        store=store_path(workspace),
        seconds=time.perf_counter() - begin,
        log=journal.folder / "log.jsonl",
    )


def _run_slurm(
    spec: AblationSpec,
    workspace: Workspace,
    suite: Suite,
    todo: Sequence[CellStatus],
    journal: _Journal,
    report: Callable[[str, CellStatus], None],
    finish: Callable[[CellStatus, EvalResults], None],
    fail: Callable[[CellStatus, BaseException], None],
    *,
    train_fn: TrainFn | None,
    load_fn: EmbedderLoader | None,
    cluster: str | None,
    poll_s: float,
) -> None:
    import submitit

    folder = workspace.results / "ablations" / spec.ablation / "slurm"
    jobs = []
    warned = False
    for status in todo:
        cell = status.cell
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        if cluster is None and executor.cluster != "slurm" and not warned:
            # submitit falls back to local processes where there is no Slurm: say so, since
            # "--launcher slurm" then trains every cell on this machine at once.
            sys.stderr.write(
                f"warning: no Slurm found (sbatch is not on PATH): submitit runs the cells as "
                f"{executor.cluster} processes on this machine\n"
            )
            warned = True
        params = slurm_parameters(spec, cell)
        if executor.cluster != "slurm":  # local/debug executors know only the generic keys
            params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
        executor.update_parameters(**params)
        payload = _JobPayload(
            run_id=cell.run_id,
            mixture_path=str(cell.mixture.path),
            config_file=str(config_file_for(workspace, spec, cell)),
            run_dir=str(cell.run_dir),
            workspace=str(workspace.root),
            suite=str(suite.path or suite.name),
            nproc=spec.nproc,
        )
        try:
            job = executor.submit(slurm_cell_job, payload, train_fn, load_fn)
        except Exception as error:
            fail(status, error)
            continue
        status.state = "running"
        journal.log("started", status, launcher="slurm", job_id=str(job.job_id))
        report("started", status)
        jobs.append((status, job, time.perf_counter()))
    pending = list(jobs)
    while pending:
        still = []
        for status, job, start in pending:
            # Debug jobs run when asked for their outcome; the others are polled.
            if cluster != "debug" and not job.done():
                still.append((status, job, start))
                continue
            error = job.exception()  # waits for a debug job; never enters a debugger
            status.seconds = time.perf_counter() - start
            try:
                if error is not None:
                    raise error
                finish(status, EvalResults.from_dict(job.result(), suite, reused=False))
            except Exception as failure:
                fail(status, failure)
        pending = still
        if pending:
            time.sleep(poll_s)


def summary_rows(
    result: AblationResult, *, preference: Sequence[str] = ("R@1", "P@1", "nDCG@10", "MRR")
) -> tuple[list[str], list[list[str]]]:
    """A table for people: one row per cell, each task's primary metric as a column."""
    picks = []
    for task in result.suite.tasks:
        names = task.metric_names
        picks.append((task.name, next((m for m in preference if m in names), names[0])))
    header = ["mixture", "loss", "seed", "state", *[f"{t} {m}" for t, m in picks]]
    rows = []
    for status in result.cells:
        values = []
        for task, metric in picks:
            value = status.metrics.get(task, {}).get(metric)
            values.append("-" if value is None else f"{value:.3f}")
        cell = status.cell
        # A failure's reason is too long for a column: failure_lines gives it.
        rows.append([cell.mixture.name, cell.loss, str(cell.seed), status.state, *values])
    return header, rows


def failure_lines(result: AblationResult) -> list[str]:
    """One line per failed cell with its reason, to print below the summary table."""
    return [f"failed: {s.cell.label} (run {s.cell.run_id}): {s.error}" for s in result.failed]
