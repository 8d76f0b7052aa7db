"""Benchmark: `curate report` on results stores of growing size.

Writes a synthetic results store (mixtures × losses × seeds × tasks × 3 metrics, one Parquet per
cell as `curate ablate` may keep it) into a temporary workspace, then times:
  - baseline: reading the store with pyarrow and a polars group-by for the mean over seeds per
    mixture, loss and task (the least work that prints a results table);
  - analysis: `load_inputs` + `analyse` (every statistic and figure, no HTML);
  - report: `build_report` (the same plus rendering and the atomic write).
Prints seconds, the report's size, and each ratio against the baseline measured in the same run.

    .venv/bin/python benchmarks/report.py                  # 5, 10 and 20 mixtures
    .venv/bin/python benchmarks/report.py --mixtures 40 --tasks 40 --seeds 5
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.load import ResultsQuery, load_inputs, result_files
from analysis.report import ReportOptions, analyse, build_report
from curate.schema import RESULTS_SCHEMA
from curate.workspace import Workspace

PAIRS = ("t2t", "t2i", "i2t", "t2v", "v2t", "it2t")
GROUPS = ("t2t", "t2i", "i2t", "t2v", "v2t")


def write_store(root: Path, *, mixtures: int, losses: int, seeds: int, tasks: int) -> int:
    """One Parquet file per cell; returns the number of rows."""
    rng = np.random.default_rng(0)
    effect = rng.uniform(0, 0.5, (len(GROUPS), len(PAIRS)))
    cells = root / "results" / "cells"
    cells.mkdir(parents=True)
    total = 0
    for m in range(mixtures):
        shares = rng.dirichlet(np.ones(len(PAIRS)))
        version = hashlib.sha256(f"mix-{m}".encode()).hexdigest()[:16]
        for loss in ("mamcl", "infonce", "symmetric_infonce")[:losses]:
            for seed in range(seeds):
                run_id = hashlib.sha256(f"{m}|{loss}|{seed}".encode()).hexdigest()[:16]
                rows = []
                for t in range(tasks):
                    g = t % len(GROUPS)
                    value = float(0.1 + effect[g] @ shares + rng.normal(0, 0.01))
                    for metric, v in (
                        ("R@1", value),
                        ("R@5", value + 0.2),
                        ("MedR", 30 * (1 - value)),
                    ):
                        rows.append(
                            {
                                "ablation": "bench",
                                "run_id": run_id,
                                "mixture": f"mix-{m:02d}",
                                "mixture_version": version,
                                "pair_shares": list(zip(PAIRS, shares.tolist(), strict=True)),
                                "source_shares": [],
                                "config": "tiny-cpu",
                                "config_hash": "0" * 16,
                                "backbone": "tiny-qwen2-vl",
                                "loss": loss,
                                "seed": seed,
                                "suite": "bench",
                                "task": f"task_{t:02d}",
                                "task_group": GROUPS[g],
                                "metric": metric,
                                "value": v,
                                "created": f"2025-01-01T00:00:{seed:02d}Z",
                            }
                        )
                pq.write_table(
                    pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA), cells / f"{run_id}.parquet"
                )
                total += len(rows)
    return total


def baseline(workspace: Workspace) -> int:
    table = pa.concat_tables([pq.read_table(p) for p in result_files(workspace)])
    frame = pl.from_arrow(table.drop_columns(["pair_shares", "source_shares"]))
    summary = frame.group_by(["mixture", "loss", "task", "metric"]).agg(pl.col("value").mean())
    return summary.height


def timed(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mixtures", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--losses", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    print(
        f"{'mixtures':>8} {'runs':>6} {'rows':>8} {'baseline s':>10} {'analysis s':>10} "
        f"{'report s':>9} {'html MB':>8} {'analysis/base':>13} {'report/base':>11}"
    )
    for mixtures in args.mixtures:
        with tempfile.TemporaryDirectory(prefix="curate-bench-report-") as tmp:
            workspace = Workspace.resolve(Path(tmp) / "ws")
            rows = write_store(
                workspace.root,
                mixtures=mixtures,
                losses=args.losses,
                seeds=args.seeds,
                tasks=args.tasks,
            )
            t_base = timed(lambda ws=workspace: baseline(ws), args.repeat)
            t_analysis = timed(
                lambda ws=workspace: analyse(load_inputs(ws, ResultsQuery())), args.repeat
            )
            t_report = timed(
                lambda ws=workspace: build_report(ws, ResultsQuery(), ReportOptions(name="bench")),
                args.repeat,
            )
            size = (workspace.reports / "bench" / "index.html").stat().st_size / 1e6
            runs = mixtures * args.losses * args.seeds
            print(
                f"{mixtures:>8} {runs:>6} {rows:>8} {t_base:>10.3f} {t_analysis:>10.2f} "
                f"{t_report:>9.2f} {size:>8.2f} {t_analysis / t_base:>13.0f} {t_report / t_base:>11.0f}"
            )


if __name__ == "__main__":
    main()
