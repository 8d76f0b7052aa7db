"""A synthetic but realistic workspace for the analysis tests: a results store with a composition
effect planted in advance, mixture metadata, manifests with stats and signals, and run folders.

The planted truth (`true_value`) is linear in the modality-pair shares: video-text rows teach the
t2v tasks, image-text rows the image tasks and also (less) the t2v tasks, text-text rows the t2t
task; MAMCL adds a fixed bonus over InfoNCE. Seeds add small Gaussian noise.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.schema import RESULTS_SCHEMA

ABLATION = "planted"
SUITE = "default"
CONFIG = "tiny-cpu"
BACKBONE = "tiny-qwen2-vl"

MIXTURES: dict[str, dict[str, float]] = {
    "images": {"t2i": 0.5, "i2t": 0.5},
    "img-vid": {"t2i": 0.35, "i2t": 0.25, "t2v": 0.4},
    "vid-heavy": {"t2t": 0.1, "t2i": 0.15, "i2t": 0.15, "t2v": 0.6},
    "text-heavy": {"t2t": 0.5, "t2i": 0.2, "i2t": 0.1, "t2v": 0.2},
    "balanced": {"t2t": 0.25, "t2i": 0.25, "i2t": 0.25, "t2v": 0.25},
}
#: task -> (group, base value)
TASKS: dict[str, tuple[str, float]] = {
    "msrvtt_t2v": ("t2v", 0.05),
    "didemo_t2v": ("t2v", 0.03),
    "coco_t2i": ("t2i", 0.10),
    "flickr_t2i": ("t2i", 0.12),
    "coco_i2t": ("i2t", 0.11),
    "nq_t2t": ("t2t", 0.20),
}
#: group -> pair -> effect of a share of 1.0 of that pair
EFFECTS: dict[str, dict[str, float]] = {
    "t2v": {"t2v": 0.50, "t2i": 0.05, "i2t": 0.05},
    "t2i": {"t2i": 0.40, "i2t": 0.20, "t2v": 0.15},
    "i2t": {"i2t": 0.40, "t2i": 0.20, "t2v": 0.10},
    "t2t": {"t2t": 0.60},
}
LOSS_BONUS = {"mamcl": 0.03, "infonce": 0.0}
NOISE_SD = 0.006


def version_of(name: str) -> str:
    return hashlib.sha256(f"mixture:{name}".encode()).hexdigest()[:16]


def run_id_of(mixture: str, loss: str, seed: int) -> str:
    return hashlib.sha256(f"{mixture}|{CONFIG}|{loss}|{seed}".encode()).hexdigest()[:16]


def true_value(
    mixture: str, loss: str, task: str, *, mixtures: Mapping[str, Mapping[str, float]] = MIXTURES
) -> float:
    """The planted (noise-free) R@1 of `task` for a run on `mixture` with `loss`."""
    group, base = TASKS[task]
    shares = mixtures[mixture]
    return base + sum(EFFECTS[group].get(p, 0.0) * s for p, s in shares.items()) + LOSS_BONUS[loss]


def true_group_value(mixture: str, loss: str, group: str, **kw) -> float:
    tasks = [t for t, (g, _) in TASKS.items() if g == group]
    return float(np.mean([true_value(mixture, loss, t, **kw) for t in tasks]))


def result_rows(
    *,
    mixtures: Mapping[str, Mapping[str, float]] = MIXTURES,
    losses: Sequence[str] = ("mamcl", "infonce"),
    seeds: Sequence[int] = (1, 2, 3),
    rng_seed: int = 0,
    versions: Mapping[str, str] | None = None,
) -> list[dict]:
    """RESULTS_SCHEMA rows for every mixture × loss × seed × task × metric; `versions` gives
    real mixture versions (default: made up from the name)."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    minute = 0
    for mixture, shares in mixtures.items():
        for loss in losses:
            for seed in seeds:
                minute += 1
                run_id = run_id_of(mixture, loss, seed)
                for task, (group, _) in TASKS.items():
                    value = true_value(mixture, loss, task, mixtures=mixtures) + rng.normal(
                        0, NOISE_SD
                    )
                    value = float(np.clip(value, 0.0, 1.0))
                    for metric, v in (
                        ("R@1", value),
                        ("R@5", min(1.0, value + 0.25)),
                        ("MedR", float(max(1, round(40 * (1 - value))))),
                    ):
                        rows.append(
                            {
                                "ablation": ABLATION,
                                "run_id": run_id,
                                "mixture": mixture,
                                "mixture_version": (versions or {}).get(
                                    mixture, version_of(mixture)
                                ),
                                "pair_shares": list(shares.items()),
                                "source_shares": [(f"src-{p}", s) for p, s in shares.items()],
                                "config": CONFIG,
                                "config_hash": "c0ffee" * 4,
                                "backbone": BACKBONE,
                                "loss": loss,
                                "seed": seed,
                                "suite": SUITE,
                                "task": task,
                                "task_group": group,
                                "metric": metric,
                                "value": v,
                                "created": f"2025-01-01T00:{minute // 60:02d}:{minute % 60:02d}Z",
                            }
                        )
    return rows


def write_results(root: Path, rows: list[dict], *, split_cells: bool = True) -> None:
    """Per-cell files under results/cells/ plus a consolidated results.parquet holding the first
    half of the cells again (as a store being consolidated would), to exercise deduplication."""
    results = root / "results"
    (results / "cells").mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA)
    if not split_cells:
        pq.write_table(table, results / "results.parquet")
        return
    run_ids = list(dict.fromkeys(r["run_id"] for r in rows))
    for run_id in run_ids:
        mask = pc.equal(table.column("run_id"), run_id)
        pq.write_table(table.filter(mask), results / "cells" / f"{run_id}.parquet")
    first_half = set(run_ids[: len(run_ids) // 2])
    mask = pc.is_in(table.column("run_id"), pa.array(sorted(first_half)))
    pq.write_table(table.filter(mask), results / "results.parquet")


def write_mixtures(root: Path, mixtures: Mapping[str, Mapping[str, float]] = MIXTURES) -> None:
    for name, shares in mixtures.items():
        folder = root / "mixtures" / name / version_of(name)
        folder.mkdir(parents=True, exist_ok=True)
        components = []
        for pair, share in shares.items():
            requested = round(share * 1000)
            available = requested if pair != "t2v" else min(requested, 300)
            components.append(
                {
                    "name": f"{pair}-component",  # becomes the key below
                    "requested": requested,
                    "available": available,
                    "taken": available,
                    "shortfall": requested - available,
                    "shortfall_reason": "not enough rows" if requested > available else "",
                }
            )
        rows_by_pair = {p: round(v * 1000) for p, v in shares.items()}
        stage = {
            "file": "retrieval_adaptation.parquet",
            "rows": 1000,
            "rows_by_pair": rows_by_pair,
            "shares_by_pair": dict(shares),
            "components": {c.pop("name"): c for c in components},
        }
        # The shape curate.mixtures reads: stages keyed by name, each naming its Parquet file.
        meta = {
            "name": name,
            "version": version_of(name),
            "description": f"synthetic mixture {name}",
            "created": "2025-01-01T00:00:00Z",
            "seed": 0,
            "rows": 1000,
            "rows_by_pair": rows_by_pair,
            "shares_by_pair": dict(shares),
            "shares_by_source": {f"src-{p}": s for p, s in shares.items()},
            "stages": {"retrieval_adaptation": stage},
            "filters": {
                "rows_read": 1200,
                "candidates": 1100,
                "applied": [
                    {
                        "step": "text_chars",
                        "rule": "5 <= chars <= 400",
                        "removed": 40,
                        "note": None,
                    },
                    {
                        "step": "dedup.exact",
                        "rule": "identical texts and media",
                        "removed": 60,
                        "note": None,
                    },
                ],
                "kept": 1000,
            },
            "lineage": {
                "manifests": [
                    {"name": "coco-train", "fingerprint": "f" * 64, "rows": 500},
                    {"name": "msrvtt-train", "fingerprint": "e" * 64, "rows": 500},
                ],
                "signals": [],
            },
        }
        (folder / "mixture.json").write_text(json.dumps(meta))


def write_manifests(root: Path) -> None:
    rng = np.random.default_rng(1)
    for name, reasons in (
        ("coco-train", {"missing_media": 66, "duplicate_id": 4}),
        ("msrvtt-train", {"corrupt_media": 3, "lfs_pointer": 1, "empty_text": 2}),
    ):
        folder = root / "manifests" / name
        (folder / "signals").mkdir(parents=True, exist_ok=True)
        rejected = sum(reasons.values())
        stats = {
            "read": 500 + rejected,
            "accepted": 500,
            "rejected": rejected,
            "rejected_by_reason": reasons,
            "by_pair": {"t2i": 300, "i2t": 200} if name.startswith("coco") else {"t2v": 500},
            "fingerprint": "f" * 64,
        }
        (folder / "stats.json").write_text(json.dumps(stats))
        (folder / "_COMPLETE").write_text("")
        ids = [f"{name}-{i}" for i in range(500)]
        # Column names and types as `curate score` writes them (one sidecar per signal).
        pq.write_table(
            pa.table(
                {
                    "id": ids,
                    "clip_score": rng.normal(
                        0.28 if name.startswith("coco") else 0.22, 0.04, 500
                    ).astype(np.float32),
                    "clip_model": ["tiny"] * 500,
                }
            ),
            folder / "signals" / "clip.parquet",
        )
        pq.write_table(
            pa.table(
                {
                    "id": ids,
                    "phash": pa.array(rng.integers(0, 2**62, 500), pa.uint64()),
                    "phash_frames": [[1, 2]] * 500,
                }
            ),
            folder / "signals" / "phash.parquet",
        )
        pq.write_table(
            pa.table(
                {
                    "id": ids,
                    "near_dup_cluster": np.arange(500),
                    "near_dup_keep": rng.random(500) > 0.05,
                    "near_dup_size": rng.integers(1, 4, 500).astype(np.int32),
                }
            ),
            folder / "signals" / "near_dup.parquet",
        )


def write_runs(root: Path, rows: list[dict]) -> None:
    runs = {r["run_id"]: r for r in rows}
    for run_id, row in runs.items():
        folder = root / "runs" / run_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.toml").write_text(
            f'name = "{CONFIG}"\nseed = {row["seed"]}\ndevice = "cpu"\n\n'
            f'[backbone]\nkind = "{BACKBONE}"\n\n[[stages]]\nname = "retrieval_adaptation"\n'
            f'data = "retrieval_adaptation"\nloss = "{row["loss"]}"\nmax_steps = 20\n'
        )
        # The trainer's meta.json keys, plus the evaluation suite's settings.
        meta = {
            "backbone": {"kind": BACKBONE, "model": "", "dim": 64},
            "config": CONFIG,
            "config_hash": "c0ffee" * 4,
            "device": "cpu",
            "world_size": 1,
            "stages": [{"name": "retrieval_adaptation", "index": 0, "steps": 20, "rows": 1000}],
            "skipped_media": 0,
            "suite": {
                "name": SUITE,
                "frames": 8,
                "max_pixels": 50176,
                "pool": "global",
                "tasks": [
                    {"task": "msrvtt_t2v", "pool_size": 40, "frames": 8},
                    {"task": "coco_t2i", "pool_size": 60},
                ],
            },
        }
        (folder / "meta.json").write_text(json.dumps(meta))


def make_workspace(
    root: Path,
    *,
    mixtures: Mapping[str, Mapping[str, float]] = MIXTURES,
    losses: Sequence[str] = ("mamcl", "infonce"),
    seeds: Sequence[int] = (1, 2, 3),
    optional: bool = True,
    split_cells: bool = True,
) -> list[dict]:
    """Write a complete workspace under `root`; `optional=False` writes only the results store."""
    rows = result_rows(mixtures=mixtures, losses=losses, seeds=seeds)
    write_results(root, rows, split_cells=split_cells)
    if optional:
        write_mixtures(root, mixtures)
        write_manifests(root)
        write_runs(root, rows)
    return rows
