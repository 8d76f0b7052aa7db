"""Figures for the report, drawn with matplotlib (Agg) and returned as embedded PNG data.

Each function takes plain values (from `analysis.effects` and `analysis.load`) and returns a
`Figure`, or None when there is nothing to draw. Text is never parsed as mathtext, so a name with
`$` or markup is drawn as written; the report escapes every caption and alt text.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import TwoSlopeNorm
from matplotlib.ticker import PercentFormatter

from analysis.effects import OVERALL, PairedRow, ShareSlope
from analysis.load import ManifestInfo
from analysis.stats import Difference, Interval

DPI = 110
STYLE = {
    "text.parse_math": False,
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
}
PALETTE = plt.get_cmap("tab10").colors + plt.get_cmap("Dark2").colors


@dataclass(frozen=True)
class Figure:
    """One embedded figure: `png` is base64 PNG data for a data: URI."""

    id: str
    title: str
    caption: str
    png: str
    alt: str
    width: int  # pixels, for layout
    height: int


def _render(
    fig: plt.Figure, *, id: str, title: str, caption: str, alt: str, tight: bool = True
) -> Figure:
    buffer = io.BytesIO()
    # No Software/date metadata, so the same inputs give the same bytes. `tight=False` skips
    # the extra layout pass for large grids whose margins are set by hand.
    fig.savefig(
        buffer,
        format="png",
        dpi=DPI,
        bbox_inches="tight" if tight else None,
        pad_inches=0.08,
        metadata={"Software": None},
    )
    plt.close(fig)
    data = buffer.getvalue()
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    return Figure(id, title, caption, base64.b64encode(data).decode("ascii"), alt, width, height)


def _short(label: str, limit: int = 28) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _colour(i: int) -> tuple[float, float, float]:
    return PALETTE[i % len(PALETTE)]


def composition_figure(
    arms: Sequence[str], shares: Mapping[str, Mapping[str, float]], pairs: Sequence[str]
) -> Figure | None:
    """Stacked bars: each mixture's share of rows by modality pair."""
    if not arms or not pairs:
        return None
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(8.5, 0.45 * len(arms) + 1.2))
        left = np.zeros(len(arms))
        for i, pair in enumerate(pairs):
            vals = np.array([shares.get(a, {}).get(pair, 0.0) for a in arms])
            ax.barh(range(len(arms)), vals, left=left, color=_colour(i), label=pair, height=0.65)
            for y, (v, x0) in enumerate(zip(vals, left, strict=True)):
                if v >= 0.07:
                    ax.text(
                        x0 + v / 2,
                        y,
                        f"{v:.0%}",
                        ha="center",
                        va="center",
                        color="white",
                        fontsize=7.5,
                    )
            left += vals
        ax.set_yticks(range(len(arms)), [_short(a) for a in arms])
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of rows")
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.grid(axis="y", visible=False)
        ax.legend(ncol=min(len(pairs), 8), loc="lower left", bbox_to_anchor=(0, 1.0))
        return _render(
            fig,
            id="fig-composition",
            title="Composition of each mixture",
            caption="Share of rows by modality pair (query→target), as recorded with the results.",
            alt="Stacked horizontal bars of each mixture's share of rows by modality pair.",
        )


def group_results_figure(
    arms: Sequence[str],
    losses: Sequence[str],
    groups: Sequence[str],
    summary: Mapping[tuple[str, str, str], Interval],
    *,
    metric_label: str,
) -> Figure | None:
    """Mean ± interval over seeds per task group, one panel per group, one row per mixture."""
    if not groups or not arms:
        return None
    ncols = min(len(groups), 3)
    nrows = math.ceil(len(groups) / ncols)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            nrows,
            ncols,
            figsize=(3.3 * ncols, 0.32 * len(arms) * nrows + 1.1 * nrows),
            squeeze=False,
        )
        offsets = np.linspace(-0.18, 0.18, len(losses)) if len(losses) > 1 else [0.0]
        for gi, group in enumerate(groups):
            ax = axes[gi // ncols][gi % ncols]
            for li, loss in enumerate(losses):
                ys, xs, lo, hi = [], [], [], []
                for ai, arm in enumerate(arms):
                    iv = summary.get((arm, loss, group))
                    if iv is None or not math.isfinite(iv.mean):
                        continue
                    ys.append(ai + offsets[li])
                    xs.append(iv.mean)
                    lo.append(iv.mean - iv.low if math.isfinite(iv.low) else 0.0)
                    hi.append(iv.high - iv.mean if math.isfinite(iv.high) else 0.0)
                if xs:
                    ax.errorbar(
                        xs,
                        ys,
                        xerr=[lo, hi],
                        fmt="o",
                        ms=4,
                        capsize=2,
                        color=_colour(li),
                        label=loss if gi == 0 else None,
                    )
            ax.set_yticks(
                range(len(arms)), [_short(a, 20) for a in arms] if gi % ncols == 0 else []
            )
            ax.set_ylim(len(arms) - 0.5, -0.5)
            ax.set_title("overall (mean of groups)" if group == OVERALL else group)
            ax.set_xlabel(metric_label)
        for k in range(len(groups), nrows * ncols):
            axes[k // ncols][k % ncols].set_visible(False)
        fig.tight_layout()
        if len(losses) > 1:
            fig.legend(loc="lower center", ncol=len(losses), bbox_to_anchor=(0.5, 1.0))
        return _render(
            fig,
            id="fig-groups",
            title="Results per task group",
            caption=(
                f"Mean {metric_label} over seeds with its t-interval, per task group and mixture; "
                "colours are losses."
            ),
            alt="Dot plot of each mixture's mean score per task group with interval bars.",
        )


def share_effect_figure(
    groups: Sequence[str],
    pairs: Sequence[str],
    points: Mapping[tuple[str, str], tuple[np.ndarray, np.ndarray]],
    slopes: Mapping[tuple[str, str], ShareSlope],
    *,
    metric_label: str,
    loss: str,
    colour_order: Sequence[str] = (),
) -> Figure | None:
    """Grid of task group × pair: each run's value against the mixture's share of that pair,
    with the least-squares line and its slope."""
    if not groups or not pairs or not points:
        return None
    with plt.rc_context(STYLE):
        width, height = 2.3 * len(pairs) + 0.9, 1.9 * len(groups) + 0.8
        fig, axes = plt.subplots(
            len(groups),
            len(pairs),
            figsize=(width, height),
            squeeze=False,
            sharex="col",
            sharey="row",
        )
        # Fixed margins in inches: a layout engine costs more than drawing this grid.
        fig.subplots_adjust(
            left=0.95 / width,
            right=1 - 0.15 / width,
            bottom=0.45 / height,
            top=1 - 0.35 / height,
            wspace=0.3,
            hspace=0.25,
        )
        for gi, group in enumerate(groups):
            for pi, pair in enumerate(pairs):
                ax = axes[gi][pi]
                x, y = points.get((group, pair), (np.array([]), np.array([])))
                first = pair.split("+")[0]
                colour = _colour(list(colour_order).index(first) if first in colour_order else pi)
                ax.scatter(x, y, s=10, alpha=0.7, color=colour, edgecolors="none")
                slope = slopes.get((group, pair))
                if slope is not None and len(x):
                    grid = np.linspace(float(np.min(x)), float(np.max(x)), 20)
                    ax.plot(grid, slope.intercept + slope.slope * grid, color="black", lw=1)
                    ax.text(
                        0.03,
                        0.95,
                        f"slope {slope.slope:+.2f}\n[{slope.slope_low:+.2f}, {slope.slope_high:+.2f}]",
                        transform=ax.transAxes,
                        va="top",
                        fontsize=7,
                        color="#b2182b"
                        if slope.slope_low > 0
                        else "#2166ac"
                        if slope.slope_high < 0
                        else "#444",
                    )
                if gi == 0:
                    ax.set_title(f"share of {pair}")
                if pi == 0:
                    ax.set_ylabel("overall" if group == OVERALL else _short(group, 16))
                ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
                ax.locator_params(nbins=4)
                ax.tick_params(labelsize=7)
        fig.supylabel(metric_label, fontsize=9, x=0.08 / width)
        return _render(
            fig,
            id="fig-shares",
            title="Metric against each modality pair's share",
            caption=(
                f"Each dot is one run ({loss}); the line is a least-squares fit of the task group's "
                "value on that one share, with the slope's interval (red: clearly positive, blue: "
                "clearly negative). Shares move together, so read slopes with the regression below."
            ),
            alt="Grid of scatter plots of score against share of each modality pair, with fitted lines.",
            tight=False,
        )


def delta_heatmap(
    arms: Sequence[str],
    columns: Sequence[str],
    deltas: Mapping[tuple[str, str], Difference],
    *,
    baseline: str,
    loss: str,
    metric_label: str,
    group_columns: int = 0,
) -> Figure | None:
    """Mixtures × tasks: mean difference against the baseline mixture; * where the interval
    excludes zero."""
    rows = [a for a in arms if a != baseline]
    if not rows or not columns:
        return None
    values = np.full((len(rows), len(columns)), np.nan)
    for i, arm in enumerate(rows):
        for j, col in enumerate(columns):
            d = deltas.get((arm, col))
            if d is not None:
                values[i, j] = d.mean
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    bound = float(np.max(np.abs(finite))) or 1.0
    with plt.rc_context({**STYLE, "axes.grid": False}):
        fig, ax = plt.subplots(
            figsize=(max(5.0, 0.62 * len(columns) + 2.6), 0.42 * len(rows) + 1.9)
        )
        image = ax.imshow(
            values,
            cmap="RdBu_r",
            norm=TwoSlopeNorm(vcenter=0.0, vmin=-bound, vmax=bound),
            aspect="auto",
        )
        for i, arm in enumerate(rows):
            for j, col in enumerate(columns):
                d = deltas.get((arm, col))
                if d is None or not math.isfinite(d.mean):
                    continue
                sure = math.isfinite(d.low) and (d.low > 0 or d.high < 0)
                text = f"{d.mean:+.3f}" + ("*" if sure else "")
                dark = abs(d.mean) > 0.6 * bound
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if dark else "black",
                    fontweight="bold" if sure else "normal",
                )
        ax.set_xticks(
            range(len(columns)), [_short(c, 18) for c in columns], rotation=40, ha="right"
        )
        ax.set_yticks(range(len(rows)), [_short(a, 24) for a in rows])
        if 0 < group_columns < len(columns):
            ax.axvline(len(columns) - group_columns - 0.5, color="black", lw=1.5)
        fig.colorbar(image, ax=ax, shrink=0.8, label=f"Δ {metric_label} vs {_short(baseline, 20)}")
        fig.tight_layout()
        return _render(
            fig,
            id="fig-heatmap",
            title="Mixtures × tasks, against the baseline",
            caption=(
                f"Mean {metric_label} minus the baseline mixture {baseline!s}'s, over seeds ({loss}). "
                "Red is better than the baseline, blue worse; * and bold: Welch's interval excludes 0."
                + (
                    " Right of the black line: task groups and overall."
                    if group_columns < len(columns)
                    else " Columns are task groups (too many tasks to show each)."
                )
            ),
            alt="Heatmap of score differences against the baseline mixture for each mixture and task.",
        )


def paired_figure(rows: Sequence[PairedRow], *, a: str, b: str, metric_label: str) -> Figure | None:
    """Paired differences a − b with intervals, per task group and task; grey dots are the pairs."""
    if not rows:
        return None
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(8.0, 0.34 * len(rows) + 1.3))
        for i, row in enumerate(rows):
            d = row.difference
            pair_values = [v for _, _, v in row.pairs]
            ax.scatter(
                pair_values,
                np.full(len(pair_values), i) + np.linspace(-0.12, 0.12, len(pair_values)),
                s=8,
                color="#999",
                alpha=0.7,
                edgecolors="none",
                zorder=1,
            )
            if math.isfinite(d.low):
                ax.errorbar(
                    [d.mean],
                    [i],
                    xerr=[[d.mean - d.low], [d.high - d.mean]],
                    fmt="none",
                    color="black",
                    capsize=3,
                    zorder=2,
                )
            sure = math.isfinite(d.low) and (d.low > 0 or d.high < 0)
            ax.scatter(
                [d.mean],
                [i],
                s=34 if row.is_group else 22,
                marker="D" if row.is_group else "o",
                color=("#b2182b" if d.mean > 0 else "#2166ac") if sure else "#555",
                zorder=3,
            )
        labels = [
            ("overall" if r.column == OVERALL else r.column)
            + (" (group)" if r.is_group and r.column != OVERALL else "")
            for r in rows
        ]
        ax.set_yticks(range(len(rows)), [_short(label, 30) for label in labels])
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(f"{metric_label}: {a} − {b}")
        fig.tight_layout()
        return _render(
            fig,
            id="fig-paired",
            title=f"{a} against {b}, paired",
            caption=(
                f"Difference {a} − {b} for the same mixture and seed (grey: each pair), with the mean "
                "and its paired t-interval; diamonds are task groups. Coloured where the interval "
                "excludes 0."
            ),
            alt=f"Paired differences between {a} and {b} per task group and task.",
        )


def reject_figure(manifests: Sequence[ManifestInfo]) -> Figure | None:
    """Rejected records by reason, per manifest."""
    shown = [m for m in manifests if m.rejected_by_reason]
    if not shown:
        return None
    reasons = sorted({r for m in shown for r in m.rejected_by_reason})
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(8.0, 0.42 * len(shown) + 1.4))
        left = np.zeros(len(shown))
        for i, reason in enumerate(reasons):
            vals = np.array([m.rejected_by_reason.get(reason, 0) for m in shown], dtype=float)
            ax.barh(range(len(shown)), vals, left=left, color=_colour(i), label=reason, height=0.6)
            left += vals
        for y, m in enumerate(shown):
            total = sum(m.rejected_by_reason.values())
            share = f" ({total / m.read:.1%} of {m.read:,})" if m.read else ""
            ax.text(left[y], y, f"  {total:,}{share}", va="center", fontsize=7.5)
        ax.set_yticks(range(len(shown)), [_short(m.name, 24) for m in shown])
        ax.invert_yaxis()
        ax.set_xlabel("rejected records")
        ax.set_xlim(0, float(left.max()) * 1.35 or 1)
        ax.grid(axis="y", visible=False)
        ax.legend(ncol=min(4, len(reasons)), loc="lower left", bbox_to_anchor=(0, 1.0))
        return _render(
            fig,
            id="fig-rejects",
            title="Rejected records by reason",
            caption="Records ingest rejected, by reason code, for the manifests these mixtures drew from.",
            alt="Stacked bars of rejected records by reason per manifest.",
        )


def signal_figure(manifests: Sequence[ManifestInfo]) -> Figure | None:
    """Histogram of each numeric quality signal, one line per manifest."""
    names = sorted({s for m in manifests for s in m.signals})
    if not names:
        return None
    names = names[:12]
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(3.2 * ncols, 2.2 * nrows + 0.3), squeeze=False
        )
        for k, name in enumerate(names):
            ax = axes[k // ncols][k % ncols]
            series = [(m.name, m.signals[name]) for m in manifests if name in m.signals]
            lo = min(float(v.min()) for _, v in series)
            hi = max(float(v.max()) for _, v in series)
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 31)
            for i, (label, vals) in enumerate(series):
                ax.hist(
                    vals,
                    bins=bins,
                    histtype="step",
                    lw=1.3,
                    color=_colour(i),
                    label=f"{_short(label, 18)} (n={vals.size:,})",
                )
            ax.set_title(_short(name, 34))
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=6.5)
        for k in range(len(names), nrows * ncols):
            axes[k // ncols][k % ncols].set_visible(False)
        fig.tight_layout()
        return _render(
            fig,
            id="fig-signals",
            title="Quality signal distributions",
            caption="Distribution of each numeric signal (from `curate score`) per manifest.",
            alt="Histograms of quality signals per manifest.",
        )
