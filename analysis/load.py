"""Read what a report needs from a workspace: results, mixtures, manifests, signals and runs.

Only the results store is required. Everything else is optional: a missing mixture, manifest, run
folder or signal table becomes a note in `ReportInputs.notes`, and the report says what is absent
instead of failing.

The results store is `<workspace>/results/`: `curate ablate` may keep one Parquet file per cell
under `results/cells/` and/or a consolidated `results/results.parquet`. Both are read and a row
that appears twice (same run, suite, task and metric) is kept once, the most recently created.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import CurateError, NotFoundError, SchemaError
from curate.manifest import list_manifests, open_manifest
from curate.schema import RESULTS_SCHEMA, check_schema
from curate.workspace import Workspace, check_name
from train.config import BackboneConfig

#: A results row is identified by these columns; duplicates keep the latest `created`.
RESULT_KEY: tuple[str, ...] = ("run_id", "suite", "task", "metric")
#: At most this many values per signal column are read for a distribution plot.
SIGNAL_SAMPLE = 200_000
#: Evaluation settings a report quotes when a run folder records them.
SUITE_SETTING_HINTS = ("frame", "pixel", "pool", "candidate", "fps", "resolution", "size", "max_")


@dataclass(frozen=True)
class ResultsQuery:
    """Which rows of the store to analyse; empty tuples mean "all"."""

    ablation: str | None = None
    mixtures: tuple[str, ...] = ()
    losses: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    suites: tuple[str, ...] = ()
    configs: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [
            f"{label}={', '.join(map(str, values))}"
            for label, values in (
                ("ablation", (self.ablation,) if self.ablation else ()),
                ("mixtures", self.mixtures),
                ("losses", self.losses),
                ("seeds", self.seeds),
                ("suites", self.suites),
                ("configs", self.configs),
            )
            if values
        ]
        return "; ".join(parts) if parts else "the whole results store"


@dataclass(frozen=True)
class RunInfo:
    """One ablation cell: a mixture version trained with a config, loss and seed."""

    run_id: str
    ablation: str
    mixture: str
    mixture_version: str
    config: str
    config_hash: str
    backbone: str
    loss: str
    seed: int
    pair_shares: Mapping[str, float]
    source_shares: Mapping[str, float]


@dataclass(frozen=True)
class StageRun:
    """One stage of a run's resolved config: its loss, and whether the run trained it."""

    index: int
    name: str
    loss: str  # "" when the config does not name one
    trained: bool | None  # None: meta.json does not record which stages ran


@dataclass(frozen=True)
class RunTraining:
    """What one run actually trained, read from its run folder.

    `stages` come from config.toml (else from meta.json, without losses) and meta.json says which
    of them ran: a mixture without an instruction stage skips the config's instruction stage.
    `settings` is the resolved config as dotted keys without the seed and bookkeeping options,
    so two runs of one grid on different mixtures should have equal settings. What the machine
    decided comes from a finished meta.json instead: the number of processes that trained
    together, the device type and the precision that "auto" resolved to there.
    """

    run_id: str
    config_hash: str
    stages: tuple[StageRun, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    config_recorded: bool = False  # config.toml found and parsed
    stages_recorded: bool = False  # meta.json lists the stages the run trained or skipped
    world_size: int | None = None  # processes of one global batch; None: not recorded
    device: str = ""  # device type trained on, "cuda" or "cpu"; "": not recorded
    precision: str = ""  # resolved compute precision, "bf16" or "fp32"; "": unknown

    @property
    def trained_stages(self) -> tuple[StageRun, ...]:
        """The stages that ran (all of them when meta.json does not say)."""
        return tuple(s for s in self.stages if s.trained is not False)


@dataclass(frozen=True)
class ComponentInfo:
    stage: str
    name: str
    requested: float | None
    available: float | None
    taken: float | None
    shortfall: float | None
    reason: str


@dataclass(frozen=True)
class FilterInfo:
    step: str  # e.g. "text_chars", "signal_min.clip_score", "dedup.text"
    rule: str
    removed: int | None
    note: str


@dataclass(frozen=True)
class MixtureInfo:
    """What a mixture's `mixture.json` says, read tolerantly; `found` is False when absent."""

    name: str
    version: str
    found: bool
    path: str = ""
    description: str = ""
    created: str = ""
    seed: str = ""
    shares_by_pair: Mapping[str, float] = field(default_factory=dict)
    shares_by_source: Mapping[str, float] = field(default_factory=dict)
    stage_shares: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    components: tuple[ComponentInfo, ...] = ()
    lineage: tuple[tuple[str, str], ...] = ()  # (manifest, fingerprint)
    total_rows: int | None = None
    filters: tuple[FilterInfo, ...] = ()  # global filters and dedup, in the order applied


@dataclass(frozen=True)
class ManifestInfo:
    name: str
    read: int | None
    accepted: int | None
    rejected: int | None
    rejected_by_reason: Mapping[str, int]
    by_pair: Mapping[str, int]
    signals: Mapping[str, np.ndarray]  # numeric signal columns, sampled
    flags: Mapping[str, tuple[int, int]]  # boolean signal columns: (true, total)


@dataclass(frozen=True)
class ReportInputs:
    """Everything a report is built from."""

    workspace: Workspace
    query: ResultsQuery
    results: pl.DataFrame  # RESULTS_SCHEMA columns without the share maps
    runs: Mapping[str, RunInfo]
    mixtures: Mapping[tuple[str, str], MixtureInfo]
    manifests: tuple[ManifestInfo, ...]
    configs: Mapping[str, str]  # config_hash -> config.toml text (first run found)
    run_meta: Mapping[str, Mapping[str, Any]]  # run_id -> meta.json
    training: Mapping[str, RunTraining]  # run_id -> what the run trained (from its run folder)
    suites: Mapping[str, Mapping[str, Any]]  # suite -> settings found in run folders
    result_files: tuple[str, ...]
    notes: tuple[str, ...]


# --------------------------------------------------------------------------------------------
# Results store


def result_files(workspace: Workspace) -> list[Path]:
    """Parquet files of the results store: per-cell files and consolidated tables."""
    root = workspace.results
    if not root.is_dir():
        return []
    found = sorted(root.glob("cells/*.parquet")) + sorted(root.glob("*.parquet"))
    # Temporary and hidden files belong to a writer that has not finished.
    return [p for p in found if not p.name.startswith((".", "_")) and p.is_file()]


def _read_result_file(path: Path) -> pa.Table:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as error:
        raise SchemaError(
            f"cannot read results file {path}: {error}. Delete it and rerun `curate ablate`, "
            "which rewrites missing cells"
        ) from error
    missing = [n for n in RESULTS_SCHEMA.names if n not in table.column_names]
    if missing:
        raise SchemaError(
            f"results file {path} lacks columns {missing} of the results schema; "
            "it was written by another version of curate: rerun `curate ablate`"
        )
    table = table.select(RESULTS_SCHEMA.names)
    check_schema(table.schema, RESULTS_SCHEMA, where=f"results file {path}")
    return table


def read_results(workspace: Workspace, query: ResultsQuery = ResultsQuery()) -> pa.Table:
    """All results rows matching `query`, deduplicated, as a RESULTS_SCHEMA table."""
    files = result_files(workspace)
    if not files:
        raise NotFoundError(
            f"no results in {workspace.results} (expected results/results.parquet or "
            "results/cells/*.parquet); run `curate ablate --mixtures a,b,c` first"
        )
    table = pa.concat_tables([_read_result_file(p) for p in files])
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    frame = (
        frame.with_row_index("_order")
        .sort(["created", "_order"])
        .unique(subset=list(RESULT_KEY), keep="last", maintain_order=True)
        .sort("_order")
        .drop("_order")
    )
    _check_requested_values(frame, query, where=str(workspace.results))
    filtered = _apply_query(frame, query)
    if filtered.height == 0:
        raise NotFoundError(
            f"no results match {query.describe()} in {workspace.results}; "
            f"the store has ablations {_distinct(frame, 'ablation')}, "
            f"mixtures {_distinct(frame, 'mixture')}, losses {_distinct(frame, 'loss')}, "
            f"suites {_distinct(frame, 'suite')}"
        )
    return filtered.to_arrow().cast(RESULTS_SCHEMA)


def _distinct(frame: pl.DataFrame, column: str) -> list[Any]:
    return sorted(frame.get_column(column).unique().to_list())


#: The query's list filters: (ResultsQuery field, results column, singular noun, CLI option);
#: each field is named by the noun's plural.
QUERY_LISTS: tuple[tuple[str, str, str, str], ...] = (
    ("mixtures", "mixture", "mixture", "--mixtures"),
    ("losses", "loss", "loss", "--losses"),
    ("seeds", "seed", "seed", "--seeds"),
    ("suites", "suite", "suite", "--suite"),
    ("configs", "config", "config", "--config"),
)


def _conditions(query: ResultsQuery, *, leave_out: str = "") -> list[pl.Expr]:
    """Polars filters for `query`, without the list filter named `leave_out`."""
    conditions = []
    if query.ablation:
        conditions.append(pl.col("ablation") == query.ablation)
    for attribute, column, _, _ in QUERY_LISTS:
        values = getattr(query, attribute)
        if values and attribute != leave_out:
            conditions.append(pl.col(column).is_in(list(values)))
    return conditions


def _apply_query(frame: pl.DataFrame, query: ResultsQuery) -> pl.DataFrame:
    conditions = _conditions(query)
    return frame.filter(*conditions) if conditions else frame


def _check_requested_values(frame: pl.DataFrame, query: ResultsQuery, *, where: str) -> None:
    """Every listed mixture, loss, seed, suite and config must have results: a name that matches
    nothing is a typo, and dropping it silently would report on fewer arms than asked for.

    Each list is checked against the rows the *other* filters keep, so `--losses mamcl --mixtures
    a,b` names `b` when `b` never ran with mamcl. When those rows are empty the caller's "no
    results match" error, which lists what the store holds, says more.
    """
    for attribute, column, what, flag in QUERY_LISTS:
        requested = getattr(query, attribute)
        if not requested:
            continue
        others = _conditions(query, leave_out=attribute)
        scope = frame.filter(*others) if others else frame
        if scope.height == 0:
            continue
        known = _distinct(scope, column)
        unknown = [v for v in requested if v not in set(known)]
        if unknown:
            context = replace(query, **{attribute: ()}).describe()
            in_what = (
                "the results store"
                if context == "the whole results store"
                else f"the results with {context}"
            )
            named = what if len(unknown) == 1 else attribute
            raise NotFoundError(
                f"no results for {named} {', '.join(map(str, unknown))} in {in_what} "
                f"({where}); known {attribute} there: {', '.join(map(str, known))}; "
                f"pass some of them with {flag}"
            )


def runs_from_results(table: pa.Table) -> dict[str, RunInfo]:
    """One RunInfo per run id (the first row of each run gives its shares)."""
    runs: dict[str, RunInfo] = {}
    columns = [
        "run_id",
        "ablation",
        "mixture",
        "mixture_version",
        "config",
        "config_hash",
        "backbone",
        "loss",
        "seed",
        "pair_shares",
        "source_shares",
    ]
    for row in table.select(columns).to_pylist():
        if row["run_id"] in runs:
            continue
        runs[row["run_id"]] = RunInfo(
            run_id=row["run_id"],
            ablation=row["ablation"],
            mixture=row["mixture"],
            mixture_version=row["mixture_version"],
            config=row["config"],
            config_hash=row["config_hash"],
            backbone=row["backbone"],
            loss=row["loss"],
            seed=int(row["seed"]),
            pair_shares=_share_map(row["pair_shares"]),
            source_shares=_share_map(row["source_shares"]),
        )
    return runs


def _share_map(value: Any) -> dict[str, float]:
    if value is None:
        return {}
    items = value.items() if isinstance(value, Mapping) else value
    return {str(k): float(v) for k, v in items if v is not None}


# --------------------------------------------------------------------------------------------
# Mixtures


def load_mixture_info(workspace: Workspace, name: str, version: str) -> tuple[MixtureInfo, str]:
    """What `curate.mixtures.load_mixture` knows of `name@version`, and why not when it fails.

    A missing or unreadable mixture gives `found=False` and a reason, never an exception: the
    report still renders from the shares recorded in the results store.
    """
    try:
        check_name(name, what="mixture name")
        check_name(version, what="mixture version")
        from curate.mixtures import load_mixture

        mixture = load_mixture(workspace, f"{name}@{version}")
        meta = mixture.meta
    except NotFoundError:
        return MixtureInfo(name=name, version=version, found=False), "not built here"
    except CurateError as error:
        return MixtureInfo(name=name, version=version, found=False), str(error)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        # A damaged mixture.json must not stop the report; say what went wrong instead.
        return MixtureInfo(name=name, version=version, found=False), f"unreadable: {error!r}"
    if not isinstance(meta, Mapping):
        return MixtureInfo(name=name, version=version, found=False), "mixture.json is not an object"
    path = str(mixture.path / "mixture.json")
    return mixture_info_from_meta(name, version, meta, path=path), ""


def mixture_info_from_meta(
    name: str, version: str, meta: Mapping[str, Any], *, path: str = ""
) -> MixtureInfo:
    """Pick what a report shows out of a mixture's metadata, tolerating missing keys."""
    inner = meta.get("meta") if isinstance(meta.get("meta"), Mapping) else None
    meta = {**meta, **inner} if inner else meta
    recipe = meta.get("recipe") if isinstance(meta.get("recipe"), Mapping) else {}
    stages = meta.get("stages") or []
    if isinstance(stages, Mapping):
        stages = [{"name": k, **v} for k, v in stages.items() if isinstance(v, Mapping)]
    components: list[ComponentInfo] = []
    stage_shares: dict[str, dict[str, float]] = {}
    total = 0
    counted = False
    for index, stage in enumerate(s for s in stages if isinstance(s, Mapping)):
        stage_name = str(stage.get("name") or f"stage {index + 1}")
        shares = stage.get("shares_by_pair")
        if isinstance(shares, Mapping):
            stage_shares[stage_name] = _share_map(shares)
        rows = _number(stage.get("rows", stage.get("taken")))
        if rows is not None:
            total += int(rows)
            counted = True
        comps = stage.get("components") or []
        if isinstance(comps, Mapping):
            comps = [{"name": k, **v} for k, v in comps.items() if isinstance(v, Mapping)]
        for c_index, comp in enumerate(c for c in comps if isinstance(c, Mapping)):
            components.append(
                ComponentInfo(
                    stage=stage_name,
                    name=str(comp.get("name") or comp.get("id") or f"component {c_index + 1}"),
                    requested=_number(comp.get("requested")),
                    available=_number(comp.get("available")),
                    taken=_number(comp.get("taken")),
                    shortfall=_number(comp.get("shortfall")),
                    reason=str(
                        comp.get("shortfall_reason") or comp.get("reason") or comp.get("note") or ""
                    ),
                )
            )
    return MixtureInfo(
        name=name,
        version=version,
        found=True,
        path=path,
        description=str(meta.get("description") or recipe.get("description") or ""),
        created=str(meta.get("created") or ""),
        seed=str(meta.get("seed", recipe.get("seed", "")) or ""),
        shares_by_pair=_share_map(meta.get("shares_by_pair")),
        shares_by_source=_share_map(meta.get("shares_by_source")),
        stage_shares=stage_shares,
        components=tuple(components),
        lineage=tuple(_lineage(meta.get("lineage"))),
        filters=tuple(_filters(meta.get("filters"))),
        total_rows=int(meta["rows"])
        if _number(meta.get("rows")) is not None
        else (total if counted else None),
    )


def _filters(value: Any) -> Iterable[FilterInfo]:
    """`filters.applied` of curate.mix: [{"step", "rule", "removed", "note"}, ...]."""
    applied = value.get("applied") if isinstance(value, Mapping) else None
    for item in applied if isinstance(applied, list) else []:
        if isinstance(item, Mapping):
            removed = _number(item.get("removed"))
            yield FilterInfo(
                step=str(item.get("step") or "?"),
                rule=str(item.get("rule") or ""),
                removed=None if removed is None else int(removed),
                note=str(item.get("note") or ""),
            )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _lineage(value: Any) -> Iterable[tuple[str, str]]:
    if isinstance(value, Mapping):
        inner = value.get("manifests")
        if inner is not None:
            yield from _lineage(inner)
            return
        for key, item in value.items():
            fingerprint = item.get("fingerprint", "") if isinstance(item, Mapping) else item
            yield str(key), str(fingerprint)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        for item in value:
            if isinstance(item, Mapping):
                yield (
                    str(item.get("manifest") or item.get("name") or "?"),
                    str(item.get("fingerprint") or ""),
                )
            elif isinstance(item, str):
                yield item, ""


# --------------------------------------------------------------------------------------------
# Manifests and signals


def load_manifest_info(workspace: Workspace, name: str) -> ManifestInfo | None:
    """Stats and signal distributions of manifest `name`, or None when it is not in the workspace."""
    try:
        manifest = open_manifest(workspace, name)
        stats = manifest.stats
    except (CurateError, OSError, ValueError):
        return None
    signals, flags = read_signals(manifest.signals_dir)
    return ManifestInfo(
        name=name,
        read=_int_or_none(stats.get("read")),
        accepted=_int_or_none(stats.get("accepted")),
        rejected=_int_or_none(stats.get("rejected")),
        rejected_by_reason={
            str(k): int(v) for k, v in (stats.get("rejected_by_reason") or {}).items() if v
        },
        by_pair={str(k): int(v) for k, v in (stats.get("by_pair") or {}).items()},
        signals=signals,
        flags=flags,
    )


def _int_or_none(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def read_signals(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, tuple[int, int]]]:
    """Numeric columns (sampled, finite values) and boolean columns (true count, total) of
    every `signals/*.parquet` sidecar, by column name (`<file stem>.<column>` when two files
    share a column name). Ids, hashes and cluster ids are not distributions and are skipped."""
    numeric: dict[str, np.ndarray] = {}
    flags: dict[str, tuple[int, int]] = {}
    if not folder.is_dir():
        return numeric, flags
    for path in sorted(folder.glob("*.parquet")):
        if path.name.startswith((".", "_")):
            continue
        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowInvalid):
            continue
        wanted = [
            f.name
            for f in schema
            if f.name != "id"
            and (
                pa.types.is_floating(f.type)
                or pa.types.is_integer(f.type)
                or pa.types.is_boolean(f.type)
            )
            and not f.name.endswith(("_id", "cluster", "hash"))
        ]
        if not wanted:
            continue
        try:
            table = pq.read_table(path, columns=wanted)
        except (OSError, pa.ArrowInvalid):
            continue
        for column in wanted:
            label = (
                column if column not in numeric and column not in flags else f"{path.stem}.{column}"
            )
            values = table.column(column)
            if pa.types.is_boolean(values.type):
                arr = values.drop_null().to_numpy(zero_copy_only=False)
                flags[label] = (int(arr.sum()), int(arr.size))
                continue
            arr = values.to_numpy(zero_copy_only=False).astype(np.float64)
            arr = arr[np.isfinite(arr)]
            if arr.size > SIGNAL_SAMPLE:
                arr = arr[:: math.ceil(arr.size / SIGNAL_SAMPLE)]
            if arr.size:
                numeric[label] = arr
    return numeric, flags


# --------------------------------------------------------------------------------------------
# Run folders


def read_run_folder(workspace: Workspace, run_id: str) -> tuple[str | None, dict[str, Any] | None]:
    """The run's `config.toml` text and parsed `meta.json`, each None when absent."""
    try:
        check_name(run_id, what="run id")
    except CurateError:
        return None, None
    folder = workspace.runs / run_id
    config_text = None
    meta = None
    config_path = folder / "config.toml"
    if config_path.is_file():
        config_text = config_path.read_text(errors="replace")
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        try:
            loaded = json.loads(meta_path.read_text())
            meta = loaded if isinstance(loaded, dict) else None
        except ValueError:
            meta = None
    return config_text, meta


#: Config keys that do not change what a run learns (bookkeeping, or varied per cell on purpose):
#: two arms of one grid that differ only in these trained the same way.
NOT_TRAINING_KEYS = frozenset(
    {
        "seed",
        "log_every",
        "checkpoint_every",
        "keep_checkpoints",
        "threads",
        "media.cache_mb",
        "media.decode_threads",
        "media.timeout_s",
    }
)


#: Config keys the machine resolves ("auto"): the report compares what they resolved to
#: (`RunTraining.device`, `RunTraining.precision`) instead, so "auto" on a GPU and "cuda" agree.
RESOLVED_KEYS = frozenset({"device", "backbone.precision"})


def run_training(
    run: RunInfo, config_text: str | None, meta: Mapping[str, Any] | None
) -> RunTraining:
    """What `run` trained: its config's stages with their losses, which of them ran (the
    trainer's meta.json lists each stage, `"skipped": true` for one the mixture has no data for),
    its resolved settings, and the world size, device and precision it ran with; whatever the
    run folder lacks stays empty or unknown."""
    parsed = read_toml_safely(config_text) if config_text else {}
    recorded = meta.get("stages") if meta else None
    ran: dict[int, bool] = {}
    meta_names: dict[int, str] = {}
    if isinstance(recorded, list):
        for position, entry in enumerate(recorded):
            if isinstance(entry, Mapping):
                index = entry.get("index", position)
                index = index if isinstance(index, int) else position
                ran[index] = not entry.get("skipped", False)
                meta_names[index] = str(entry.get("name") or f"stage {index}")
    config_stages = parsed.get("stages") if isinstance(parsed.get("stages"), list) else []
    stages: list[StageRun] = []
    if config_stages:
        for index, stage in enumerate(config_stages):
            stage = stage if isinstance(stage, Mapping) else {}
            stages.append(
                StageRun(
                    index=index,
                    name=str(stage.get("name") or meta_names.get(index) or f"stage {index}"),
                    loss=str(stage.get("loss") or ""),
                    # A finished run lists every stage; one it does not list never ran.
                    trained=ran.get(index, False) if ran else None,
                )
            )
    else:
        stages = [StageRun(i, name, "", ran[i]) for i, name in sorted(meta_names.items())]
    flat = _flatten(parsed)
    world_size = meta.get("world_size") if meta else None
    device = meta.get("device") if meta else None
    # "cuda:0" (rank 0 under torchrun) and "cuda" are one kind of device.
    device_type = device.split(":")[0] if isinstance(device, str) else ""
    return RunTraining(
        run_id=run.run_id,
        config_hash=run.config_hash,
        stages=tuple(stages),
        settings={
            k: v for k, v in flat.items() if k not in NOT_TRAINING_KEYS and k not in RESOLVED_KEYS
        },
        config_recorded=bool(parsed),
        stages_recorded=bool(ran),
        world_size=world_size
        if isinstance(world_size, int) and not isinstance(world_size, bool) and world_size > 0
        else None,
        device=device_type,
        precision=resolved_precision(flat, device_type) if parsed else "",
    )


def resolved_precision(config: Mapping[str, Any], device_type: str) -> str:
    """The precision a run computed in, from its flattened config and the device type it ran on
    ("" when the device is unknown).

    meta.json does not record it, so this repeats the trainer's rule
    (`train.backbones.base.autocast_dtype`): "bf16" and "fp32" are taken as asked, "auto" is bf16
    on CUDA and fp32 elsewhere. Only the Qwen2-VL backbones (real and tiny) apply it; the
    open_clip backbone always computes in fp32 (`train/backbones/openclip.py` never casts).
    """
    if not device_type:
        return ""
    backbone = BackboneConfig()
    if config.get("backbone.kind", backbone.kind) == "open-clip":
        return "fp32"
    asked = str(config.get("backbone.precision", backbone.precision))
    if asked == "auto":
        return "bf16" if device_type == "cuda" else "fp32"
    return asked


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a parsed config: `backbone.kind`, `stages.0.loss`; lists become tuples."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for index, item in enumerate(value):
                out.update(_flatten(item, f"{name}.{index}."))
        elif isinstance(value, list):
            out[name] = tuple(value)
        else:
            out[name] = value
    return out


def suite_settings(workspace: Workspace, run_id: str, suite: str) -> dict[str, Any]:
    """Settings of evaluation suite `suite` recorded in a run folder (empty when none found).

    Looks for a suite description in the run's JSON files (meta.json and eval outputs): a mapping
    with `"name": suite` or stored under the key `suite`, and keeps its scalar settings and tasks.
    """
    folder = workspace.runs / run_id
    if not folder.is_dir():
        return {}
    candidates = [
        folder / "meta.json",
        *sorted(folder.glob("eval*/**/*.json")),
        *sorted(folder.glob("*.json")),
    ]
    for path in dict.fromkeys(candidates):
        if not path.is_file() or path.stat().st_size > 20_000_000:
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        found = _find_suite(data, suite, depth=0)
        if found:
            return found
    return {}


def _find_suite(data: Any, suite: str, *, depth: int) -> dict[str, Any]:
    if depth > 4:
        return {}
    if isinstance(data, Mapping):
        if data.get("name") == suite and _looks_like_settings(data):
            return _settings_of(data)
        for key, value in data.items():
            if key == suite and isinstance(value, Mapping) and _looks_like_settings(value):
                return _settings_of(value)
            if key in {"suite", "suites", "eval", "evaluation", "settings"} or isinstance(
                value, Mapping | list
            ):
                found = _find_suite(value, suite, depth=depth + 1)
                if found:
                    return found
    elif isinstance(data, list):
        for item in data[:200]:
            found = _find_suite(item, suite, depth=depth + 1)
            if found:
                return found
    return {}


def _looks_like_settings(data: Mapping[str, Any]) -> bool:
    return (
        any(any(h in str(k).lower() for h in SUITE_SETTING_HINTS) for k in data) or "tasks" in data
    )


def _scalars(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalar entries of a mapping, with one level of nested mappings as `outer.inner`."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, str | int | float | bool) or value is None:
            out[f"{prefix}{key}"] = value
        elif isinstance(value, Mapping) and not prefix and key != "tasks":
            out.update(_scalars(value, prefix=f"{key}."))
    return out


def _settings_of(data: Mapping[str, Any]) -> dict[str, Any]:
    """A suite's settings: its scalars (nested `settings`/`media` mappings flattened one level)
    and, under `tasks`, each task's scalars with its name under `task`."""
    out = _scalars(data)
    tasks = data.get("tasks")
    if isinstance(tasks, Mapping):
        out["tasks"] = [
            {**_scalars(t), "task": str(n)} for n, t in tasks.items() if isinstance(t, Mapping)
        ]
    elif isinstance(tasks, list):
        out["tasks"] = [_scalars(t) if isinstance(t, Mapping) else {"task": str(t)} for t in tasks]
    return out


# --------------------------------------------------------------------------------------------
# Everything together


def load_inputs(workspace: Workspace, query: ResultsQuery = ResultsQuery()) -> ReportInputs:
    """Read the results matching `query` and every optional piece that explains them."""
    table = read_results(workspace, query)
    runs = runs_from_results(table)
    notes: list[str] = []

    mixtures: dict[tuple[str, str], MixtureInfo] = {}
    why: dict[str, str] = {}
    for run in runs.values():
        key = (run.mixture, run.mixture_version)
        if key not in mixtures:
            mixtures[key], reason = load_mixture_info(workspace, *key)
            if reason:
                why[f"{key[0]}@{key[1][:12]}"] = reason
    if why:
        notes.append(
            f"mixture metadata not found for {', '.join(why)} in {workspace.mixtures} "
            f"({'; '.join(sorted(set(why.values())))}); composition comes from the results store, "
            "lineage and shortfalls are unknown"
        )
    # A store written without shares still gets a composition from the mixtures' metadata.
    filled = []
    for run_id, run in list(runs.items()):
        info = mixtures[(run.mixture, run.mixture_version)]
        if not run.pair_shares and info.shares_by_pair:
            runs[run_id] = replace(
                run,
                pair_shares=dict(info.shares_by_pair),
                source_shares=dict(run.source_shares or info.shares_by_source),
            )
            filled.append(run.mixture)
    if filled:
        notes.append(
            f"the results store has no pair shares for {', '.join(sorted(set(filled)))}; "
            "they come from mixture.json"
        )
    missing_shares = sorted({r.mixture for r in runs.values() if not r.pair_shares})
    if missing_shares:
        notes.append(
            f"no composition known for {', '.join(missing_shares)}: "
            "composition effects and the regression leave them out"
        )

    wanted = sorted({m for info in mixtures.values() for m, _ in info.lineage})
    if not wanted:
        wanted = [m.name for m in list_manifests(workspace)]
    manifests = []
    for name in wanted:
        info = load_manifest_info(workspace, name)
        if info is None:
            notes.append(
                f"manifest {name!r} named in a mixture's lineage is not in {workspace.manifests}"
            )
        else:
            manifests.append(info)
    if not manifests:
        notes.append(
            f"no manifests found in {workspace.manifests}: no reject reasons or signals to show"
        )
    elif not any(m.signals or m.flags for m in manifests):
        notes.append("no quality signals computed for these manifests (run `curate score NAME`)")

    configs: dict[str, str] = {}
    run_meta: dict[str, dict[str, Any]] = {}
    training: dict[str, RunTraining] = {}
    for run in runs.values():
        text, meta = read_run_folder(workspace, run.run_id)
        if text is not None and run.config_hash not in configs:
            configs[run.config_hash] = text
        if meta is not None:
            run_meta[run.run_id] = meta
        training[run.run_id] = run_training(run, text, meta)
    missing_runs = [r for r in runs if r not in run_meta]
    if missing_runs:
        notes.append(
            f"{len(missing_runs)} of {len(runs)} run folders (runs/<run_id>/meta.json) are missing: "
            "run metadata is incomplete"
        )
    missing_configs = sorted({r.config for r in runs.values() if r.config_hash not in configs})
    if missing_configs:
        notes.append(f"resolved config files not found for {', '.join(missing_configs)}")

    suites: dict[str, dict[str, Any]] = {}
    frame = pl.from_arrow(table.drop_columns(["pair_shares", "source_shares"]))
    assert isinstance(frame, pl.DataFrame)
    for suite, run_ids in (
        frame.group_by("suite", maintain_order=True)
        .agg(pl.col("run_id").unique(maintain_order=True))
        .iter_rows()
    ):
        settings: dict[str, Any] = {}
        for run_id in run_ids[:5]:
            settings = suite_settings(workspace, run_id, suite)
            if settings:
                break
        suites[suite] = settings
    unknown = [s for s, v in suites.items() if not v]
    if unknown:
        notes.append(
            f"settings (frame count, pixel budget, pool size) of suite(s) {', '.join(unknown)} "
            "are not recorded in the run folders: scores cannot be compared with other papers"
        )

    return ReportInputs(
        workspace=workspace,
        query=query,
        results=frame,
        runs=runs,
        mixtures=mixtures,
        manifests=tuple(manifests),
        configs=configs,
        run_meta=run_meta,
        training=training,
        suites=suites,
        result_files=tuple(str(p) for p in result_files(workspace)),
        notes=tuple(notes),
    )


def read_toml_safely(text: str) -> dict[str, Any]:
    """Parse a config's TOML text; an unparsable one gives an empty mapping."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return {}
