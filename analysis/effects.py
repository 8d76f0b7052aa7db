"""How composition moves retrieval: summaries, paired loss differences, deltas and regressions.

Works on the results frame of `analysis.load` (one row per run, task and metric) and calls the pure
functions of `analysis.stats`. The unit of replication is a run (one seed): every interval is over
seeds, never over tasks.

Vocabulary: an *arm* is what a results table row compares (a mixture, plus its version or config
when the store holds several); a task's *primary metric* is the higher-is-better metric the report
uses for it (R@1 for retrieval, P@1 for local-candidate tasks unless `--metric` says otherwise); a
task group's value for a run is the mean of its tasks' primary metrics, and *overall* is the mean
of the groups.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from analysis.stats import (
    Difference,
    Interval,
    OLSFit,
    best_on_simplex,
    linear_contrast,
    mean_interval,
    ols,
    paired_difference,
    welch_difference,
)
from curate.errors import ConfigError

OVERALL = "overall"
#: Metrics where a smaller value is better; never chosen as a primary metric.
LOWER_IS_BETTER = frozenset({"medr", "meanr", "median_rank", "mean_rank", "mnr", "mdr"})
#: Preferred primary metrics, in order, when `--metric` does not name one a task has.
PRIMARY_PREFERENCE = ("R@1", "P@1", "hit@1", "nDCG@10", "nDCG@5", "MRR", "R@5", "R@10")
#: Shares whose vectors across runs have cosine above this are merged in the regression.
COLLINEAR_COSINE = 1.0 - 1e-9


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that puts task_2 before task_10."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part.lower())
        for part in re.split(r"(\d+)", text)
        if part
    )


def is_lower_better(metric: str) -> bool:
    return metric.strip().lower() in LOWER_IS_BETTER


@dataclass(frozen=True)
class TaskKey:
    suite: str
    task: str
    group: str
    metric: str
    label: str  # the task, prefixed with its suite when two suites share a task name


@dataclass(frozen=True)
class Scores:
    """Per-run values of each task's primary metric and of each task group."""

    tasks: tuple[TaskKey, ...]
    groups: tuple[str, ...]  # task groups, then OVERALL
    arms: tuple[str, ...]  # in order of first appearance in the store
    losses: tuple[str, ...]
    seeds: tuple[int, ...]
    per_task: pl.DataFrame  # run_id, arm, mixture, config, loss, seed, label, group, value
    per_group: pl.DataFrame  # run_id, arm, mixture, config, loss, seed, group, value
    runs: pl.DataFrame  # run_id, arm, mixture, mixture_version, config, loss, seed


def choose_primary_metrics(
    frame: pl.DataFrame, *, metric: str | None = None
) -> dict[tuple[str, str], str]:
    """The metric used for each (suite, task): `metric` where the task has it, else the first of
    PRIMARY_PREFERENCE it has, else its first higher-is-better metric (alphabetically)."""
    available: dict[tuple[str, str], list[str]] = {}
    for suite, task, metrics in (
        frame.group_by(["suite", "task"], maintain_order=True)
        .agg(pl.col("metric").unique().sort())
        .iter_rows()
    ):
        available[(suite, task)] = list(metrics)
    if metric is not None and not any(
        metric.lower() == m.lower() for ms in available.values() for m in ms
    ):
        known = sorted({m for ms in available.values() for m in ms})
        raise ConfigError(f"no task reports metric {metric!r}; the results have {known}")
    chosen: dict[tuple[str, str], str] = {}
    for key, metrics in available.items():
        lower = {m.lower(): m for m in metrics}
        pick = None
        for wanted in ((metric,) if metric else ()) + PRIMARY_PREFERENCE:
            if wanted.lower() in lower:
                pick = lower[wanted.lower()]
                break
        if pick is None:
            usable = [m for m in metrics if not is_lower_better(m)]
            pick = usable[0] if usable else None
        if pick is not None:
            chosen[key] = pick
    return chosen


def _arm_labels(runs: pl.DataFrame) -> dict[str, str]:
    """Arm label per run id: the mixture, plus the version and config when they vary."""
    multi_version = {
        name
        for name, versions in runs.group_by("mixture")
        .agg(pl.col("mixture_version").n_unique())
        .iter_rows()
        if versions > 1
    }
    multi_config = runs.get_column("config").n_unique() > 1
    labels = {}
    for run_id, mixture, version, config in runs.select(
        "run_id", "mixture", "mixture_version", "config"
    ).iter_rows():
        label = mixture
        if mixture in multi_version:
            label += f"@{version[:8]}"
        if multi_config:
            label += f" · {config}"
        labels[run_id] = label
    return labels


def build_scores(frame: pl.DataFrame, *, metric: str | None = None) -> Scores:
    """Pick each task's primary metric and compute per-run task and task-group values."""
    primary = choose_primary_metrics(frame, metric=metric)
    runs = frame.select("run_id", "mixture", "mixture_version", "config", "loss", "seed").unique(
        subset=["run_id"], keep="first", maintain_order=True
    )
    arms = _arm_labels(runs)
    runs = runs.with_columns(pl.col("run_id").replace_strict(arms).alias("arm"))

    task_names: dict[str, set[str]] = {}
    for suite, task in primary:
        task_names.setdefault(task, set()).add(suite)
    keys: list[TaskKey] = []
    group_of: dict[tuple[str, str], str] = {}
    for suite, task, group in (
        frame.select("suite", "task", "task_group").unique(maintain_order=True).iter_rows()
    ):
        group_of.setdefault((suite, task), group)
    for (suite, task), chosen in primary.items():
        label = task if len(task_names[task]) == 1 else f"{suite}/{task}"
        keys.append(TaskKey(suite, task, group_of[(suite, task)], chosen, label))
    keys.sort(key=lambda k: (natural_key(k.group), natural_key(k.label)))

    selector = pl.DataFrame(
        {
            "suite": [k.suite for k in keys],
            "task": [k.task for k in keys],
            "metric": [k.metric for k in keys],
            "label": [k.label for k in keys],
            "group": [k.group for k in keys],
        },
        schema={
            "suite": pl.String,
            "task": pl.String,
            "metric": pl.String,
            "label": pl.String,
            "group": pl.String,
        },
    )
    per_task = (
        frame.filter(pl.col("value").is_finite())
        .join(selector, on=["suite", "task", "metric"], how="inner")
        .join(runs.select("run_id", "arm"), on="run_id", how="left")
        .select("run_id", "arm", "mixture", "config", "loss", "seed", "label", "group", "value")
    )
    per_group_tasks = per_task.group_by(
        ["run_id", "arm", "mixture", "config", "loss", "seed", "group"], maintain_order=True
    ).agg(pl.col("value").mean())
    overall = (
        per_group_tasks.group_by(
            ["run_id", "arm", "mixture", "config", "loss", "seed"], maintain_order=True
        )
        .agg(pl.col("value").mean())
        .with_columns(pl.lit(OVERALL).alias("group"))
    )
    per_group = pl.concat([per_group_tasks, overall.select(per_group_tasks.columns)])
    groups = sorted({k.group for k in keys}, key=natural_key)
    return Scores(
        tasks=tuple(keys),
        groups=(*groups, OVERALL),
        arms=tuple(dict.fromkeys(runs.get_column("arm").to_list())),
        losses=tuple(dict.fromkeys(runs.get_column("loss").to_list())),
        seeds=tuple(sorted(set(runs.get_column("seed").to_list()))),
        per_task=per_task,
        per_group=per_group,
        runs=runs,
    )


# --------------------------------------------------------------------------------------------
# Mean ± interval over seeds


@dataclass(frozen=True)
class Cell:
    arm: str
    loss: str
    column: str  # task label or group
    interval: Interval


def summarise(
    values: pl.DataFrame, *, column: str, confidence: float = 0.95
) -> dict[tuple[str, str, str], Interval]:
    """Mean ± t-interval over seeds for every (arm, loss, `column` value)."""
    out: dict[tuple[str, str, str], Interval] = {}
    for arm, loss, key, vals in (
        values.group_by(["arm", "loss", column], maintain_order=True)
        .agg(pl.col("value"))
        .iter_rows()
    ):
        out[(arm, loss, key)] = mean_interval(vals, confidence=confidence)
    return out


# --------------------------------------------------------------------------------------------
# MAMCL vs InfoNCE


@dataclass(frozen=True)
class PairedRow:
    column: str  # task label, group or OVERALL
    is_group: bool
    difference: Difference
    pairs: tuple[tuple[str, int, float], ...]  # (arm, seed, a − b) for each pair


def default_loss_pair(losses: Sequence[str]) -> tuple[str, str] | None:
    """MAMCL against plain InfoNCE when both ran; else the first two losses; None for one loss."""
    present = list(dict.fromkeys(losses))
    if "mamcl" in present:
        for other in ("infonce", "symmetric_infonce"):
            if other in present:
                return "mamcl", other
    return (present[0], present[1]) if len(present) >= 2 else None


def paired_loss_differences(
    scores: Scores, a: str, b: str, *, confidence: float = 0.95
) -> list[PairedRow]:
    """a − b per task and per group, paired by arm + seed (+ task): the same data and seed,
    only the loss changed."""
    rows: list[PairedRow] = []
    for table, column, is_group in (
        (scores.per_group, "group", True),
        (scores.per_task, "label", False),
    ):
        left = table.filter(pl.col("loss") == a).select(
            "arm", "seed", column, pl.col("value").alias("a")
        )
        right = table.filter(pl.col("loss") == b).select(
            "arm", "seed", column, pl.col("value").alias("b")
        )
        joined = left.join(right, on=["arm", "seed", column], how="inner").sort(["arm", "seed"])
        order = list(scores.groups) if is_group else [t.label for t in scores.tasks]
        for key in order:
            part = joined.filter(pl.col(column) == key)
            if part.height == 0:
                continue
            av, bv = part.get_column("a").to_numpy(), part.get_column("b").to_numpy()
            rows.append(
                PairedRow(
                    column=key,
                    is_group=is_group,
                    difference=paired_difference(av, bv, confidence=confidence),
                    pairs=tuple(
                        (arm, int(seed), float(x - y))
                        for arm, seed, x, y in part.select("arm", "seed", "a", "b").iter_rows()
                    ),
                )
            )
    return rows


# --------------------------------------------------------------------------------------------
# Deltas against a baseline arm


def deltas_vs_baseline(
    scores: Scores, *, baseline: str, loss: str, confidence: float = 0.95
) -> dict[tuple[str, str], Difference]:
    """(arm, task label or group) → mean(arm) − mean(baseline) over seeds, with Welch's interval."""
    if baseline not in scores.arms:
        raise ConfigError(
            f"baseline {baseline!r} is not among the mixtures analysed {list(scores.arms)}; "
            "pass one of them with --baseline"
        )
    out: dict[tuple[str, str], Difference] = {}
    for table, column in ((scores.per_task, "label"), (scores.per_group, "group")):
        part = table.filter(pl.col("loss") == loss)
        values: dict[tuple[str, str], list[float]] = {}
        for arm, key, vals in part.group_by(["arm", column]).agg(pl.col("value")).iter_rows():
            values[(arm, key)] = vals
        for (arm, key), vals in values.items():
            if arm == baseline or (baseline, key) not in values:
                continue
            out[(arm, key)] = welch_difference(vals, values[(baseline, key)], confidence=confidence)
    return out


# --------------------------------------------------------------------------------------------
# Regression on composition shares


@dataclass(frozen=True)
class ShareDesign:
    """Columns of the regression: modality pairs (merged where they always move together)."""

    columns: tuple[str, ...]  # e.g. ("t2i", "t2v+v2t")
    members: tuple[tuple[str, ...], ...]
    matrix: np.ndarray  # runs × columns, rows sum to 1
    run_ids: tuple[str, ...]
    merged_note: str


def pair_medium(pair: str) -> str:
    """The richest medium a pair code involves: "video pairs", "image pairs" or "text pairs".

    >>> pair_medium("vt2v"), pair_medium("i2t"), pair_medium("t2t")
    ('video pairs', 'image pairs', 'text pairs')
    """
    code = pair.replace("2", "")
    return "video pairs" if "v" in code else "image pairs" if "i" in code else "text pairs"


def share_design(
    runs: Sequence[tuple[str, Mapping[str, float]]], *, level: Literal["pair", "medium"] = "pair"
) -> ShareDesign:
    """Runs' pair shares as a design matrix: absent pairs dropped, shares renormalised to sum to 1,
    and pairs whose shares are proportional in every run merged (they cannot be told apart).
    `level="medium"` first sums pairs by the medium they involve (see `pair_medium`)."""
    pairs = sorted({p for _, shares in runs for p, v in shares.items() if v > 0})
    run_ids = tuple(r for r, _ in runs)
    if not pairs:
        return ShareDesign((), (), np.zeros((len(runs), 0)), run_ids, "")
    raw = np.array([[shares.get(p, 0.0) for p in pairs] for _, shares in runs], dtype=np.float64)
    totals = raw.sum(axis=1, keepdims=True)
    matrix = np.divide(raw, totals, out=np.zeros_like(raw), where=totals > 0)
    if level == "medium":
        media = sorted({pair_medium(p) for p in pairs})
        base_members = [tuple(p for p in pairs if pair_medium(p) == m) for m in media]
        matrix = np.column_stack(
            [matrix[:, [pairs.index(p) for p in m]].sum(axis=1) for m in base_members]
        )
        base_names = media
    else:
        base_members = [(p,) for p in pairs]
        base_names = pairs
    groups: list[list[int]] = []
    norms = np.linalg.norm(matrix, axis=0)
    for j in range(matrix.shape[1]):
        for group in groups:
            i = group[0]
            if float(matrix[:, i] @ matrix[:, j] / (norms[i] * norms[j])) >= COLLINEAR_COSINE:
                group.append(j)
                break
        else:
            groups.append([j])
    merged = np.column_stack([matrix[:, g].sum(axis=1) for g in groups])
    members = tuple(tuple(p for j in g for p in base_members[j]) for g in groups)
    names = tuple("+".join(base_names[j] for j in g) for g in groups)
    notes = []
    if level == "medium":
        notes.append(
            "too few mixtures to separate every modality pair, so shares are summed by medium ("
            + "; ".join(f"{n}: {', '.join(m)}" for n, m in zip(names, members, strict=True))
            + ")"
        )
    if any(len(g) > 1 for g in groups):
        joined = ", ".join(n for n, g in zip(names, groups, strict=True) if len(g) > 1)
        notes.append(f"columns whose shares move together in every mixture are merged: {joined}")
    return ShareDesign(names, members, merged, run_ids, "; ".join(notes))


def distinct_compositions(design: ShareDesign) -> int:
    return len({tuple(np.round(row, 9)) for row in design.matrix})


def choose_design(runs: Sequence[tuple[str, Mapping[str, float]]]) -> ShareDesign:
    """Pairs as columns when enough distinct mixtures ran to separate them, else media."""
    design = share_design(runs)
    if distinct_compositions(design) >= len(design.columns):
        return design
    coarse = share_design(runs, level="medium")
    if distinct_compositions(coarse) >= len(coarse.columns) and len(coarse.columns) > 0:
        return coarse
    return design


#: Share effects are quoted for moving this much of the mixture (10 percentage points).
SHARE_STEP = 0.10


def share_effect_weights(mean_shares: Sequence[float] | np.ndarray, k: int) -> np.ndarray:
    """Contrast c with c·β = the change in prediction when column k's share grows by 1 and the
    other columns shrink in proportion to their mean shares (the composition stays on the simplex).

    >>> share_effect_weights([0.5, 0.25, 0.25], 0).tolist()
    [1.0, -0.5, -0.5]
    """
    x = np.asarray(mean_shares, dtype=np.float64).ravel()
    rest = 1.0 - x[k]
    c = -x / rest if rest > 0 else np.zeros_like(x)
    c[k] = 1.0
    return c


@dataclass(frozen=True)
class Regression:
    """Scheffé mixture model y = Σ β_k · share_k for one task group (no intercept: shares sum to 1,
    so β_k is the predicted score of a mixture made only of column k)."""

    group: str
    fit: OLSFit | None
    reason: str  # why there is no fit, when fit is None
    share_low: tuple[float, ...]
    share_high: tuple[float, ...]
    best_shares: tuple[float, ...]  # predicted best within the tried share ranges
    best_prediction: Interval | None
    best_observed: str  # the arm with the highest observed mean
    best_observed_mean: float
    n_compositions: int
    # Per column: effect of +SHARE_STEP of its share, taken from the others in proportion.
    effects: tuple[Difference, ...] = ()


def composition_regressions(
    scores: Scores,
    shares: Mapping[str, Mapping[str, float]],
    *,
    loss: str,
    config: str | None = None,
    confidence: float = 0.95,
) -> tuple[ShareDesign, list[Regression]]:
    """Fit each task group's (and the overall) value on the mixtures' pair shares.

    `shares` maps run id → pair shares. Only runs with `loss` (and `config`) enter, so the loss
    does not confound composition. The predicted best mixture is searched only inside the range
    of shares the runs tried (per column, min to max), where the linear model is interpolating.
    """
    runs = scores.runs.filter(pl.col("loss") == loss)
    if config is not None:
        runs = runs.filter(pl.col("config") == config)
    # Runs whose composition is unknown cannot place a point on the simplex.
    run_ids = [
        r
        for r in runs.get_column("run_id").to_list()
        if sum(v for v in shares.get(r, {}).values() if v > 0) > 0
    ]
    design = choose_design([(r, shares.get(r, {})) for r in run_ids])
    index = {r: i for i, r in enumerate(design.run_ids)}
    results = []
    for group in scores.groups:
        part = scores.per_group.filter((pl.col("group") == group) & pl.col("run_id").is_in(run_ids))
        rows = [index[r] for r in part.get_column("run_id").to_list()]
        y = part.get_column("value").to_numpy().astype(np.float64)
        X = design.matrix[rows] if rows else np.zeros((0, len(design.columns)))
        means = (
            part.group_by("arm")
            .agg(pl.col("value").mean())
            .sort(["value", "arm"], descending=[True, False])
        )
        best_arm, best_mean = means.row(0) if means.height else ("", math.nan)
        n_comp = len({tuple(np.round(row, 9)) for row in X}) if len(X) else 0
        p = X.shape[1]
        reason = ""
        if p == 0:
            reason = "the results store has no composition shares for these runs"
        elif n_comp < p:
            reason = (
                f"{p} share columns need at least {p} mixtures with different compositions, "
                f"found {n_comp}: add mixtures that vary these shares"
            )
        elif len(y) <= p:
            reason = f"{len(y)} runs for {p} coefficients leave no degrees of freedom: add seeds"
        if reason:
            results.append(
                Regression(
                    group, None, reason, (), (), (), None, str(best_arm), float(best_mean), n_comp
                )
            )
            continue
        fit = ols(X, y, names=design.columns, confidence=confidence, has_intercept=True)
        low, high = X.min(axis=0), X.max(axis=0)
        best = best_on_simplex(fit.coef, low=low, high=high)
        mean_shares = X.mean(axis=0)
        share_effects = tuple(
            linear_contrast(fit, SHARE_STEP * share_effect_weights(mean_shares, k))
            for k in range(p)
        )
        results.append(
            Regression(
                group=group,
                fit=fit,
                reason="",
                share_low=tuple(float(v) for v in low),
                share_high=tuple(float(v) for v in high),
                best_shares=tuple(float(v) for v in best),
                best_prediction=fit.predict(best),
                best_observed=str(best_arm),
                best_observed_mean=float(best_mean),
                n_compositions=n_comp,
                effects=share_effects,
            )
        )
    return design, results


@dataclass(frozen=True)
class ShareSlope:
    """Simple fit value ≈ a + b·share of one pair, for the metric-vs-share plots."""

    group: str
    pair: str
    intercept: float
    slope: float
    slope_low: float
    slope_high: float
    n: int


def share_points(
    scores: Scores, design: ShareDesign, columns: Sequence[str]
) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """(group, column) → (each design run's share of that column, its value for the group)."""
    index = {r: i for i, r in enumerate(design.run_ids)}
    out = {}
    for group in scores.groups:
        sub = scores.per_group.filter(
            (pl.col("group") == group) & pl.col("run_id").is_in(list(index))
        )
        rows = [index[r] for r in sub.get_column("run_id").to_list()]
        y = sub.get_column("value").to_numpy().astype(np.float64)
        for column in columns:
            out[(group, column)] = (design.matrix[rows, design.columns.index(column)], y)
    return out


def share_slopes(
    points: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]], *, confidence: float = 0.95
) -> dict[tuple[str, str], ShareSlope]:
    """(group, column) → slope of the group's value on that one share (with an intercept)."""
    out = {}
    for (group, column), (x, y) in points.items():
        if len(np.unique(np.round(x, 9))) < 2 or len(y) < 3:
            continue
        fit = ols(np.column_stack([np.ones_like(x), x]), y, confidence=confidence)
        out[(group, column)] = ShareSlope(
            group,
            column,
            float(fit.coef[0]),
            float(fit.coef[1]),
            float(fit.low[1]),
            float(fit.high[1]),
            fit.n,
        )
    return out
