"""The self-contained HTML report: what was run, results, composition effects, regression, data
quality, and which backbone and scale produced it.

`build_report` reads the workspace (`analysis.load`), computes the statistics
(`analysis.effects`), draws the figures (`analysis.plots`) and writes
`<workspace>/reports/<name>/index.html` (and `summary.json`) atomically. The HTML has no script,
no external style, font or image: figures are data: URIs and a Content-Security-Policy forbids
anything else. Jinja2 autoescaping turns any name or caption that contains markup into text.

    build_report(Workspace.resolve("ws"), ResultsQuery(ablation="demo"))  # -> ReportResult
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import polars as pl

from analysis import effects, plots
from analysis.confounds import TrainingCheck, compare_training
from analysis.effects import OVERALL, Scores
from analysis.load import ReportInputs, ResultsQuery, RunTraining, load_inputs, read_toml_safely
from analysis.stats import Difference, Interval
from curate import __version__
from curate.errors import ConfigError
from curate.workspace import Workspace, check_name

TEMPLATE = "report.html.j2"
#: The share-effect grid shows at most this many pairs (those that vary most across runs).
MAX_SHARE_PANELS = 6
#: The heatmap shows tasks as columns up to this many tasks, else task groups only.
MAX_HEATMAP_TASKS = 14
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


@dataclass(frozen=True)
class ReportOptions:
    """How to analyse: the defaults pick sensible choices and the report states them."""

    name: str | None = None  # report folder; default: the ablation's name, else "all"
    title: str | None = None
    baseline: str | None = None  # arm the heatmap compares against; default: the first mixture
    loss: str | None = (
        None  # loss whose runs enter composition analyses; default: mamcl, else first
    )
    compare: tuple[str, str] | None = None  # paired losses; default: mamcl vs infonce when both ran
    metric: str | None = None  # primary metric; default: R@1, else P@1, ...
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if not 0.5 <= self.confidence < 1.0:
            raise ConfigError(f"confidence must be in [0.5, 1), found {self.confidence}; e.g. 0.95")


@dataclass(frozen=True)
class ReportResult:
    name: str
    path: Path
    summary: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Formatting helpers (used by the template through the context)


@dataclass(frozen=True)
class Formatter:
    decimals: int

    def num(self, value: float | None, *, signed: bool = False) -> str:
        if value is None or not math.isfinite(value):
            return "—"
        return f"{value:+.{self.decimals}f}" if signed else f"{value:.{self.decimals}f}"

    def interval(self, iv: Interval | None) -> str:
        if iv is None or not math.isfinite(iv.mean):
            return "—"
        if not math.isfinite(iv.low):
            return f"{self.num(iv.mean)} (n={iv.n})"
        return f"{self.num(iv.mean)} ± {self.num(iv.half_width)}"

    def diff(self, d: Difference | None) -> str:
        if d is None or not math.isfinite(d.mean):
            return "—"
        if not math.isfinite(d.low):
            return self.num(d.mean, signed=True)
        return f"{self.num(d.mean, signed=True)} [{self.num(d.low, signed=True)}, {self.num(d.high, signed=True)}]"


def _p(value: float) -> str:
    if not math.isfinite(value):
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _pct(value: float) -> str:
    return f"{value:.0%}" if value >= 0.01 or value == 0 else f"{value:.1%}"


def _sure(d: Difference | None) -> str:
    """CSS class for a difference whose interval excludes zero."""
    if d is None or not math.isfinite(d.low):
        return ""
    return "pos" if d.low > 0 else "neg" if d.high < 0 else ""


# --------------------------------------------------------------------------------------------
# Analysis


def _ordered_frame(inputs: ReportInputs) -> pl.DataFrame:
    """Rows ordered so arms appear as the user listed them, else by when they were first run."""
    frame = inputs.results.with_row_index("_i")
    wanted = {m: i for i, m in enumerate(inputs.query.mixtures)}
    first = frame.group_by("mixture").agg(pl.col("created").min().alias("_first"))
    frame = frame.join(first, on="mixture", how="left").with_columns(
        pl.col("mixture")
        .replace_strict(wanted, default=len(wanted), return_dtype=pl.Int64)
        .alias("_w")
    )
    return frame.sort(["_w", "_first", "mixture", "_i"]).drop("_i", "_first", "_w")


def _scale_statement(inputs: ReportInputs) -> tuple[str, bool]:
    """A plain sentence naming the backbone and scale, and whether this is a toy-scale result."""
    backbones = sorted({r.backbone for r in inputs.runs.values()})
    configs = sorted({r.config for r in inputs.runs.values()})
    devices = sorted(
        {str(d) for meta in inputs.run_meta.values() if (d := _find_key(meta, "device"))}
    )
    kinds = set()
    for text in inputs.configs.values():
        parsed = read_toml_safely(text)
        backbone = parsed.get("backbone") if isinstance(parsed.get("backbone"), Mapping) else {}
        if backbone.get("kind"):
            kinds.add(str(backbone["kind"]))
        if backbone.get("model"):
            kinds.add(str(backbone["model"]))
    names = " ".join([*backbones, *configs, *kinds]).lower()
    toy = "tiny" in names or "random" in names
    device_text = ", ".join(devices) if devices else "an unrecorded device"
    scale = ""
    rows = sorted({m.total_rows for m in inputs.mixtures.values() if m.total_rows is not None})
    if rows:
        scale += f" Mixtures hold {_span(rows)} rows."
    # The trainer's meta.json: {"backbone": {"dim": ...}, "stages": [{"steps": ...}, ...]}.
    steps = sorted(
        {
            sum(
                int(s.get("steps") or 0) for s in meta.get("stages") or [] if isinstance(s, Mapping)
            )
            for meta in inputs.run_meta.values()
            if isinstance(meta.get("stages"), list)
        }
    )
    if steps:
        scale += f" Each run trained {_span(steps)} steps."
    dims = sorted(
        {int(d) for m in inputs.run_meta.values() if isinstance(d := _find_key(m, "dim"), int)}
    )
    if dims:
        scale += f" Embeddings have {_span(dims)} dimensions."
    if toy:
        device = "CPU" if not devices or devices == ["cpu"] else device_text
        return (
            f"Produced by a tiny randomly initialised model ({', '.join(backbones)}; config "
            f"{', '.join(configs)}) on {device} — not a paper result. The numbers show that the "
            f"pipeline runs end to end; they do not predict how a real model would respond.{scale}",
            True,
        )
    return (
        f"Produced by backbone {', '.join(backbones)} with config {', '.join(configs)} on "
        f"{device_text}, {len(inputs.runs)} runs.{scale}",
        False,
    )


def _span(values: Sequence[int]) -> str:
    return f"{values[0]:,}" if values[0] == values[-1] else f"{values[0]:,}–{values[-1]:,}"


def _find_key(data: Any, key: str, depth: int = 0) -> Any:
    if depth > 3 or not isinstance(data, Mapping):
        return None
    if key in data and isinstance(data[key], str | int | float):
        return data[key]
    for value in data.values():
        found = _find_key(value, key, depth + 1)
        if found is not None:
            return found
    return None


def _choose(value: str | None, present: Sequence[str], *, what: str, flag: str) -> None:
    if value is not None and value not in present:
        raise ConfigError(
            f"{what} {value!r} is not in the results analysed ({list(present)}); pass one of them with {flag}"
        )


def analyse(inputs: ReportInputs, options: ReportOptions = ReportOptions()) -> dict[str, Any]:
    """Compute every table and figure of the report; returns the template's context."""
    conf = options.confidence
    frame = _ordered_frame(inputs)
    scores: Scores = effects.build_scores(frame, metric=options.metric)
    if not scores.tasks:
        raise ConfigError("no task has a higher-is-better metric to analyse; pass --metric NAME")
    all_values = scores.per_task.get_column("value").to_numpy()
    fmt = Formatter(decimals=3 if np.nanmax(np.abs(all_values)) <= 1.0 else 1)
    metrics = sorted({t.metric for t in scores.tasks})
    metric_label = metrics[0] if len(metrics) == 1 else "primary metric"

    _choose(options.loss, scores.losses, what="loss", flag="--loss")
    comp_loss = options.loss or ("mamcl" if "mamcl" in scores.losses else scores.losses[0])
    baseline = options.baseline or scores.arms[0]
    _choose(baseline, scores.arms, what="baseline", flag="--baseline")
    if options.compare is not None:
        for loss in options.compare:
            _choose(loss, scores.losses, what="loss", flag="--compare")
    compare = options.compare or effects.default_loss_pair(scores.losses)
    config_counts = (
        scores.runs.group_by("config").len().sort(["len", "config"], descending=[True, False])
    )
    comp_config = str(config_counts.row(0)[0])
    training = _training_check(inputs, scores, loss=comp_loss, config=comp_config)

    # Composition per arm, from the results store (each run records its mixture's shares).
    arm_of = dict(scores.runs.select("run_id", "arm").iter_rows())
    run_shares = {r: dict(info.pair_shares) for r, info in inputs.runs.items()}
    arm_shares: dict[str, dict[str, float]] = {}
    for run_id, arm in arm_of.items():
        arm_shares.setdefault(arm, run_shares.get(run_id, {}))
    pairs = sorted({p for s in arm_shares.values() for p, v in s.items() if v > 0})

    # Results.
    group_summary = effects.summarise(scores.per_group, column="group", confidence=conf)
    task_summary = effects.summarise(scores.per_task, column="label", confidence=conf)
    arm_loss = [
        (arm, loss)
        for arm in scores.arms
        for loss in scores.losses
        if any(k[0] == arm and k[1] == loss for k in group_summary)
    ]
    best = {}
    for col in [*scores.groups, *[t.label for t in scores.tasks]]:
        summary = group_summary if col in scores.groups else task_summary
        means = [
            (summary[(a, lo, col)].mean, a, lo) for a, lo in arm_loss if (a, lo, col) in summary
        ]
        means = [m for m in means if math.isfinite(m[0])]
        if means:
            top = max(m[0] for m in means)
            best[col] = {(a, lo) for v, a, lo in means if v == top}

    # Composition effects.
    design, regressions = effects.composition_regressions(
        scores, run_shares, loss=comp_loss, config=comp_config, confidence=conf
    )
    varying = _varying_pairs(design)
    points = effects.share_points(scores, design, varying)
    slopes = effects.share_slopes(points, confidence=conf)
    deltas = effects.deltas_vs_baseline(scores, baseline=baseline, loss=comp_loss, confidence=conf)
    paired = effects.paired_loss_differences(scores, *compare, confidence=conf) if compare else []

    # Past this many tasks the heatmap's cells get too small to read: show task groups only.
    heatmap_tasks = (
        [t.label for t in scores.tasks] if len(scores.tasks) <= MAX_HEATMAP_TASKS else []
    )
    figures = {
        "composition": plots.composition_figure(scores.arms, arm_shares, pairs),
        "groups": plots.group_results_figure(
            scores.arms, scores.losses, scores.groups, group_summary, metric_label=metric_label
        ),
        "shares": plots.share_effect_figure(
            scores.groups,
            varying,
            points,
            slopes,
            metric_label=metric_label,
            loss=comp_loss,
            colour_order=pairs,
        ),
        "heatmap": plots.delta_heatmap(
            scores.arms,
            [*heatmap_tasks, *scores.groups],
            deltas,
            baseline=baseline,
            loss=comp_loss,
            metric_label=metric_label,
            group_columns=len(scores.groups),
        ),
        "paired": plots.paired_figure(paired, a=compare[0], b=compare[1], metric_label=metric_label)
        if compare
        else None,
        "rejects": plots.reject_figure(inputs.manifests),
        "signals": plots.signal_figure(inputs.manifests),
    }

    statement, toy = _scale_statement(inputs)
    notes = list(inputs.notes)
    if not compare:
        notes.append(f"only one loss ran ({', '.join(scores.losses)}): no paired loss comparison")
    if len(scores.seeds) < 2:
        notes.append(
            "one seed per cell: no intervals over seeds (run `curate ablate --seeds 1,2,3`)"
        )
    if design.merged_note:
        notes.append(f"regression: {design.merged_note}")
    if scores.runs.get_column("config").n_unique() > 1:
        notes.append(f"several configs ran; composition analyses use config {comp_config!r} only")

    # Mixture metadata in the order the arms appear.
    order = {name: i for i, name in enumerate(dict.fromkeys(scores.runs.get_column("mixture")))}
    mixtures = sorted(
        inputs.mixtures.values(), key=lambda m: (order.get(m.name, len(order)), m.version)
    )
    created = frame.get_column("created").max()
    context = {
        "title": options.title
        or (f"Ablation {inputs.query.ablation}" if inputs.query.ablation else "Results store"),
        "version": __version__,
        "created": created,
        "statement": statement,
        "toy": toy,
        "query": inputs.query.describe(),
        "result_files": [os.path.relpath(p, inputs.workspace.root) for p in inputs.result_files],
        "fmt": fmt,
        "pct": _pct,
        "p": _p,
        "sure": _sure,
        "confidence": f"{conf:.0%}",
        "metric_label": metric_label,
        "counts": {
            "runs": scores.runs.height,
            "arms": len(scores.arms),
            "losses": len(scores.losses),
            "seeds": len(scores.seeds),
            "tasks": len(scores.tasks),
        },
        "seeds": scores.seeds,
        "losses": scores.losses,
        "arms": scores.arms,
        "arm_loss": arm_loss,
        "best": best,
        "mixtures": _mixture_rows(inputs, scores, arm_shares),
        "pairs": pairs,
        "arm_shares": arm_shares,
        "configs": _config_rows(inputs),
        "suites": _suite_rows(inputs, scores),
        "groups": scores.groups,
        "tasks": scores.tasks,
        "tasks_by_group": [
            (g, [t for t in scores.tasks if t.group == g]) for g in scores.groups if g != OVERALL
        ],
        "group_summary": group_summary,
        "task_summary": task_summary,
        "comp_loss": comp_loss,
        "comp_config": comp_config,
        "training": training,
        "baseline": baseline,
        "deltas": deltas,
        "compare": compare,
        "paired": paired,
        "design": design,
        "regressions": regressions,
        "manifests": inputs.manifests,
        "components": [(f"{m.name}@{m.version[:8]}", c) for m in mixtures for c in m.components],
        "shortfalls": [c for m in mixtures for c in m.components if c.shortfall],
        "filters": [(f"{m.name}@{m.version[:8]}", f) for m in mixtures for f in m.filters],
        "flags": sorted(
            {(name, m.name, f) for m in inputs.manifests for name, f in m.flags.items()}
        ),
        "figures": figures,
        "notes": notes,
    }
    context["summary"] = _summary(context, regressions, paired)
    return context


def _training_check(
    inputs: ReportInputs, scores: Scores, *, loss: str, config: str
) -> TrainingCheck:
    """Compare what the arms of the composition analyses actually trained (see analysis.confounds):
    the store's `loss` is only the loss of each run's last trained stage."""
    runs = scores.runs.filter((pl.col("loss") == loss) & (pl.col("config") == config))
    return compare_training(
        [
            (
                arm,
                int(seed),
                inputs.training.get(run_id)
                or RunTraining(run_id=run_id, config_hash=inputs.runs[run_id].config_hash),
            )
            for run_id, arm, seed in runs.select("run_id", "arm", "seed").iter_rows()
        ]
    )


def training_warnings(check: TrainingCheck) -> list[str]:
    """The report's warnings when arms trained differently: one plain sentence per difference."""
    return [
        f"training confounds the data in the composition comparison: {difference}"
        for difference in check.differences
    ]


def _varying_pairs(design: effects.ShareDesign) -> list[str]:
    if not design.columns:
        return []
    spread = design.matrix.max(axis=0) - design.matrix.min(axis=0)
    order = sorted(range(len(design.columns)), key=lambda j: (-spread[j], design.columns[j]))
    keep = sorted(j for j in order[:MAX_SHARE_PANELS] if spread[j] > 1e-9)
    return [design.columns[j] for j in keep]


def _mixture_rows(
    inputs: ReportInputs, scores: Scores, arm_shares: Mapping[str, Mapping[str, float]]
) -> list[dict[str, Any]]:
    rows = []
    arms = dict(scores.runs.select("run_id", "arm").iter_rows())
    seen = set()
    for run_id, arm in arms.items():
        if arm in seen:
            continue
        seen.add(arm)
        run = inputs.runs[run_id]
        info = inputs.mixtures.get((run.mixture, run.mixture_version))
        shares = arm_shares.get(arm, {})
        rows.append(
            {
                "arm": arm,
                "name": run.mixture,
                "version": run.mixture_version,
                "found": bool(info and info.found),
                "description": info.description if info else "",
                "rows": info.total_rows if info else None,
                "shares": sorted(((p, v) for p, v in shares.items() if v > 0), key=lambda x: -x[1]),
                "sources": sorted(
                    ((s, v) for s, v in run.source_shares.items() if v > 0), key=lambda x: -x[1]
                ),
                "lineage": list(info.lineage) if info else [],
                "stages": dict(info.stage_shares) if info else {},
                "created": info.created if info else "",
                "seed": info.seed if info else "",
            }
        )
    return rows


def _config_rows(inputs: ReportInputs) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for run in inputs.runs.values():
        row = rows.setdefault(
            run.config_hash,
            {
                "name": run.config,
                "hash": run.config_hash,
                "backbones": set(),
                "losses": set(),
                "seeds": set(),
                "runs": 0,
            },
        )
        row["backbones"].add(run.backbone)
        row["losses"].add(run.loss)
        row["seeds"].add(run.seed)
        row["runs"] += 1
    out = []
    for h, row in rows.items():
        out.append(
            {
                **row,
                "backbones": ", ".join(sorted(row["backbones"])),
                "losses": ", ".join(sorted(row["losses"])),
                "seeds": ", ".join(map(str, sorted(row["seeds"]))),
                "text": inputs.configs.get(h),
            }
        )
    return out


def _suite_rows(inputs: ReportInputs, scores: Scores) -> list[dict[str, Any]]:
    rows = []
    for suite, settings in inputs.suites.items():
        scalars = [(k, v) for k, v in settings.items() if k != "tasks" and k != "name"]
        task_settings = {
            str(t.get("task") or t.get("name")): t
            for t in settings.get("tasks", [])
            if isinstance(t, Mapping)
        }
        tasks = []
        for t in scores.tasks:
            if t.suite != suite:
                continue
            extra = task_settings.get(t.task, {})
            tasks.append(
                {
                    "label": t.label,
                    "group": t.group,
                    "metric": t.metric,
                    "settings": [(k, v) for k, v in extra.items() if k not in {"task", "name"}],
                }
            )
        rows.append(
            {"name": suite, "settings": scalars, "tasks": tasks, "recorded": bool(settings)}
        )
    return rows


def _summary(
    context: Mapping[str, Any],
    regressions: Sequence[effects.Regression],
    paired: Sequence[effects.PairedRow],
) -> dict[str, Any]:
    """The figures a script wants from a report (also printed by `curate report --json`)."""
    overall = next((r for r in regressions if r.group == OVERALL), None)
    paired_overall = next((r for r in paired if r.column == OVERALL and r.is_group), None)
    summary: dict[str, Any] = {
        "runs": context["counts"]["runs"],
        "tasks": [t.label for t in context["tasks"]],
        "mixtures": list(context["arms"]),
        "losses": list(context["losses"]),
        "seeds": list(context["seeds"]),
        "baseline": context["baseline"],
        "metric": context["metric_label"],
        "composition_loss": context["comp_loss"],
        "toy_scale": context["toy"],
        "notes": list(context["notes"]),
        "warnings": training_warnings(context["training"]),
        "training": _training_summary(context["training"]),
    }
    if overall is not None:
        summary["best_observed"] = {
            "mixture": overall.best_observed,
            "overall": overall.best_observed_mean,
        }
        if overall.fit is not None and overall.best_prediction is not None:
            summary["predicted_best"] = {
                "shares": dict(zip(overall.fit.names, overall.best_shares, strict=True)),
                "predicted_overall": overall.best_prediction.mean,
                "interval": [overall.best_prediction.low, overall.best_prediction.high],
                "note": "a prediction of the linear model within the share ranges tried, not a measurement",
            }
    if paired_overall is not None and context["compare"]:
        a, b = context["compare"]
        d = paired_overall.difference
        summary["paired_overall"] = {
            "losses": [a, b],
            "difference": d.mean,
            "interval": [d.low, d.high],
            "p": d.p,
            "pairs": d.n,
        }
    return summary


def _training_summary(check: TrainingCheck) -> dict[str, Any]:
    return {
        "verdict": check.verdict,
        "differences": list(check.differences),
        "unchecked": list(check.unchecked),
        "common_stages": list(check.common_plans),
        "arms": {
            arm.arm: {
                "stages": list(arm.plans),
                "stage_counts": list(arm.stage_counts),
                "config_hashes": list(arm.config_hashes),
                "ran_on": list(arm.ran_on),
            }
            for arm in check.arms
        },
    }


# --------------------------------------------------------------------------------------------
# Rendering and writing


def environment() -> jinja2.Environment:
    """Jinja2 with autoescaping on for everything: every value is text unless marked safe."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(context: Mapping[str, Any]) -> str:
    """The report's HTML for a context from `analyse`."""
    return environment().get_template(TEMPLATE).render(**context, csp=CSP, overall=OVERALL)


def _write_atomic(path: Path, data: str) -> None:
    """Write `path` through a temporary file and a rename, so a reader never sees half a file.

    The temporary file is created with mode 0o666 and the process umask applies, as for any file
    `open(path, "w")` creates: a report is meant to be shared (mkstemp would make it 0600).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def build_report(
    workspace: Workspace,
    query: ResultsQuery = ResultsQuery(),
    options: ReportOptions = ReportOptions(),
) -> ReportResult:
    """Analyse the results matching `query` and write `reports/<name>/index.html`.

    Also writes `summary.json` beside it. Both are written to temporary files and renamed, so a
    reader never sees half a report.
    """
    name = check_name(options.name or query.ablation or "all", what="report name")
    inputs = load_inputs(workspace, query)
    context = analyse(inputs, options)
    html = render(context)
    folder = workspace.reports / name
    path = folder / "index.html"
    summary = {"report": str(path), "name": name, **context["summary"]}
    _write_atomic(path, html)
    summary = _plain(summary)
    _write_atomic(folder / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return ReportResult(name=name, path=path, summary=summary)


def _plain(value: Any) -> Any:
    """JSON-ready copy: NaN and infinities become None, numpy scalars Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
