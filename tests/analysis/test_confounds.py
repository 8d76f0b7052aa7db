"""Whether every arm trained the same way: the report checks what the runs actually ran.

The grids here are expanded by the real `train.ablate.expand_grid` from mixture folders and the
real `tiny-cpu` config, and their results rows come from `train.ablate.result_rows`; only the
training itself is replaced by writing the run folder the trainer would write (config.toml, and
meta.json listing each stage as trained or skipped, as `train.trainer.train_run` does).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.confounds import compare_training
from analysis.load import ResultsQuery, RunTraining
from analysis.report import build_report
from curate.workspace import Workspace

ABLATION = "stages"
SHARES = {
    "images": {"t2i": 0.6, "i2t": 0.4},
    "two-stage": {"t2i": 0.3, "i2t": 0.3, "t2v": 0.4},
    "videos": {"t2i": 0.2, "t2v": 0.8},
}
TASKS = {"coco_t2i": "t2i", "coco_i2t": "i2t", "msrvtt_t2v": "t2v"}


def _mixture(workspace: Workspace, name: str, stages: tuple[str, ...]) -> Path:
    """A mixture folder as `curate mix` lays it out, with one small Parquet file per stage."""
    version = hashlib.sha256(name.encode()).hexdigest()[:16]
    folder = workspace.mixtures / name / version
    folder.mkdir(parents=True)
    shares = SHARES[name]
    meta = {
        "name": name,
        "version": version,
        "shares_by_pair": shares,
        "shares_by_source": {f"src-{p}": v for p, v in shares.items()},
        "stages": {stage: {"file": f"{stage}.parquet", "rows": 8} for stage in stages},
    }
    (folder / "mixture.json").write_text(json.dumps(meta))
    for stage in stages:
        pq.write_table(
            pa.table({"id": [f"{name}-{i}" for i in range(8)]}), folder / f"{stage}.parquet"
        )
    return folder


def _grid(workspace: Workspace, mixtures: dict[str, tuple[str, ...]], losses: tuple[str, ...]):
    """Expand the grid, write each cell's run folder and results as a finished cell would."""
    from train.ablate import AblationSpec, cell_file, expand_grid, result_rows
    from train.data import stage_tables

    folders = [str(_mixture(workspace, name, stages)) for name, stages in mixtures.items()]
    spec = AblationSpec(mixtures=tuple(folders), losses=losses, seeds=(1, 2), name=ABLATION)
    cells = expand_grid(spec, workspace)
    for number, cell in enumerate(cells):
        cell.run_dir.mkdir(parents=True)
        (cell.run_dir / "config.toml").write_text(cell.config.to_toml())
        stages = []
        for index, (stage, table) in enumerate(
            zip(cell.config.stages, stage_tables(cell.config, cell.mixture), strict=True)
        ):
            if table is None:
                stages.append({"name": stage.name, "index": index, "skipped": True,
                               "reason": f"mixture {cell.mixture.ref} has no stage {stage.data!r}"})  # fmt: skip
            else:
                stages.append({"name": stage.name, "index": index, "steps": 1, "rows": 8})
        meta = {"config": cell.config.name, "config_hash": cell.config.config_hash(),
                "seed": cell.seed, "world_size": 1, "device": "cpu", "stages": stages}  # fmt: skip
        (cell.run_dir / "meta.json").write_text(json.dumps(meta))
        evaluated = SimpleNamespace(
            suite=SimpleNamespace(name="default"),
            tasks=[
                SimpleNamespace(
                    task=task, group=group, metrics={"R@1": 0.1 + 0.01 * number + i / 50}
                )
                for i, (task, group) in enumerate(TASKS.items())
            ],
            created=f"2025-01-01T00:00:{number:02d}Z",
        )
        path = cell_file(workspace, ABLATION, cell.run_id, "default")
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(result_rows(cell, evaluated, ABLATION), path)
    return cells


def _composition_section(html: str) -> str:
    start = html.index('<section id="composition">')
    return html[start : html.index("</section>", start)]


@pytest.mark.slow
def test_single_and_two_stage_mixtures_with_one_loss_are_flagged(workspace: Workspace) -> None:
    # `--losses mamcl` sets the last trained stage: the single-stage mixture trains its one stage
    # with mamcl, the two-stage one trains stage 0 with symmetric InfoNCE and stage 1 with mamcl.
    cells = _grid(
        workspace,
        {
            "images": ("retrieval_adaptation",),
            "two-stage": ("retrieval_adaptation", "instruction_tuning"),
        },
        losses=("mamcl",),
    )
    assert {c.loss for c in cells} == {"mamcl"}  # the store cannot tell them apart by loss
    result = build_report(workspace, ResultsQuery(ablation=ABLATION, losses=("mamcl",)))

    training = result.summary["training"]
    assert training["verdict"] == "differ"
    assert training["arms"]["images"]["stages"] == ["retrieval_adaptation with mamcl"]
    assert training["arms"]["two-stage"]["stages"] == [
        "retrieval_adaptation with symmetric_infonce → instruction_tuning with mamcl"
    ]
    assert training["arms"]["images"]["stage_counts"] == [1]
    assert training["arms"]["two-stage"]["stage_counts"] == [2]
    warnings = result.summary["warnings"]
    assert len(warnings) == 2
    assert "did not train the same stages" in warnings[0]
    assert "images: 1 stage" in warnings[0] and "two-stage: 2 stages" in warnings[0]
    # The config diff names the key that differs and each arm's value.
    assert "stages.0.loss = mamcl (images) vs symmetric_infonce (two-stage)" in warnings[1]
    saved = json.loads((result.path.parent / "summary.json").read_text())
    assert saved["warnings"] == warnings

    section = _composition_section(result.path.read_text())
    assert "Warning: the arms did not train the same way" in section
    assert "does not confound" not in section and "only the data differs" not in section
    assert "symmetric_infonce → instruction_tuning with mamcl" in section


@pytest.mark.slow
def test_arms_that_trained_alike_are_said_to_differ_only_in_data(workspace: Workspace) -> None:
    _grid(
        workspace,
        {"images": ("retrieval_adaptation",), "videos": ("retrieval_adaptation",)},
        losses=("mamcl",),
    )
    result = build_report(workspace, ResultsQuery(ablation=ABLATION))
    assert result.summary["training"]["verdict"] == "same"
    assert result.summary["warnings"] == []
    section = _composition_section(result.path.read_text())
    assert "Warning" not in section
    assert (
        "Every arm trained the same stages with the same losses (retrieval_adaptation with mamcl)"
        in section
    )


@pytest.mark.slow
def test_an_arm_trained_under_torchrun_on_gpus_is_flagged(workspace: Workspace) -> None:
    cells = _grid(
        workspace,
        {"images": ("retrieval_adaptation",), "videos": ("retrieval_adaptation",)},
        losses=("mamcl",),
    )
    for cell in cells:
        if cell.mixture.name == "images":  # as `torchrun --nproc-per-node 4` records it
            meta = json.loads((cell.run_dir / "meta.json").read_text())
            meta.update(world_size=4, device="cuda:0")
            (cell.run_dir / "meta.json").write_text(json.dumps(meta))
    result = build_report(workspace, ResultsQuery(ablation=ABLATION))
    assert result.summary["training"]["verdict"] == "differ"
    (warning,) = result.summary["warnings"]
    assert "world size = 4 (images) vs 1 (videos)" in warning
    assert "= 32 (images) vs 8 (videos)" in warning and "device = cuda (images) vs cpu" in warning
    # tiny-cpu asks for fp32 outright, so the precision is the same on both devices.
    assert "precision" not in warning
    assert result.summary["training"]["arms"]["images"]["ran_on"] == ["4 × cuda, fp32"]
    section = _composition_section(result.path.read_text())
    assert "Warning: the arms did not train the same way" in section
    assert "4 × cuda, fp32" in section and "1 × cpu, fp32" in section


@pytest.mark.slow
def test_several_plans_every_arm_ran_are_named_in_the_report(workspace: Workspace) -> None:
    from train.config import load_train_config

    cells = _grid(
        workspace,
        {"images": ("retrieval_adaptation",), "videos": ("retrieval_adaptation",)},
        losses=("mamcl",),
    )
    for cell in cells:  # the config was edited between seeds, alike for every arm
        if cell.seed == 2:
            config = load_train_config("tiny-cpu", {"seed": 2, "stages.0.loss": "infonce"})
            (cell.run_dir / "config.toml").write_text(config.to_toml())
    result = build_report(workspace, ResultsQuery(ablation=ABLATION))
    assert result.summary["training"]["verdict"] == "same"
    section = _composition_section(result.path.read_text())
    assert "()" not in section
    assert "retrieval_adaptation with mamcl; retrieval_adaptation with infonce" in section, section


def _training(run_id: str, config_hash: str) -> RunTraining:
    """A run whose folder is gone: only the results store's config hash is known."""
    return RunTraining(run_id=run_id, config_hash=config_hash)


def test_without_run_folders_differing_hashes_are_unchecked_not_a_difference() -> None:
    # The store's config hash also covers threads, checkpointing and media caches: a differing
    # hash alone cannot show that the arms trained differently.
    check = compare_training(
        [("a", 1, _training("a1", "1" * 16)), ("b", 1, _training("b1", "2" * 16))]
    )
    assert check.verdict == "unchecked" and check.differences == ()
    configs = [u for u in check.unchecked if "config hash" in u]
    assert len(configs) == 1
    assert "a (seed 1), b (seed 1)" in configs[0] and "threads" in configs[0]
    assert "which stages 2 of 2 runs trained" in check.unchecked[0]


def test_without_run_folders_equal_hashes_are_not_called_the_same() -> None:
    check = compare_training(
        [("a", 1, _training("a1", "1" * 16)), ("b", 1, _training("b1", "1" * 16))]
    )
    # Equal configs, but a mixture without an instruction stage would skip it: unknown.
    assert check.verdict == "unchecked" and not check.differences
    assert not any("config hash" in u for u in check.unchecked)
    single = compare_training([("a", 1, _training("a1", "1" * 16))])
    assert single.verdict == "one arm"


def _finished_meta(config, *, world_size: int | None = 1, device: str = "cpu") -> dict:
    """meta.json as `train.trainer.train_run` writes it when a run finishes."""
    meta = {
        "config": config.name,
        "config_hash": config.config_hash(),
        "seed": config.seed,
        "device": device,
        "stages": [
            {"name": stage.name, "index": index, "steps": 1, "rows": 8}
            for index, stage in enumerate(config.stages)
        ],
    }
    if world_size is not None:
        meta["world_size"] = world_size
    return meta


def _run(
    arm: str,
    seed: int,
    overrides: dict | None = None,
    *,
    folder: bool = True,
    **meta_fields,
) -> tuple[str, int, RunTraining]:
    """(arm, seed, training) of a run of the real tiny-cpu config with `overrides`, read by
    `analysis.load.run_training` from the config.toml and meta.json the trainer writes; with
    `folder=False` the run folder is gone and only the store's config hash is known."""
    from analysis.load import RunInfo, run_training
    from train.config import load_train_config

    config = load_train_config("tiny-cpu", {"seed": seed, **(overrides or {})})
    run = RunInfo(
        run_id=f"{arm}-{seed}",
        ablation=ABLATION,
        mixture=arm,
        mixture_version="0" * 16,
        config=config.name,
        config_hash=config.config_hash(),
        backbone=config.backbone.kind,
        loss=config.stages[-1].loss,
        seed=seed,
        pair_shares={},
        source_shares={},
    )
    if not folder:
        return arm, seed, run_training(run, None, None)
    return arm, seed, run_training(run, config.to_toml(), _finished_meta(config, **meta_fields))


def test_a_missing_run_folder_with_only_bookkeeping_differences_is_unchecked() -> None:
    # Arm b ran with more CPU threads, which changes its config hash but not what it learns.
    runs = [
        _run("a", 1),
        _run("a", 2),
        _run("b", 1, {"threads": 4}, folder=False),
        _run("b", 2, {"threads": 4, "checkpoint_every": 5, "media.cache_mb": 64}),
    ]
    assert runs[0][2].config_hash != runs[2][2].config_hash
    check = compare_training(runs)
    assert check.differences == ()
    assert check.verdict == "unchecked"
    configs = [u for u in check.unchecked if "config hash" in u]
    assert len(configs) == 1
    assert "b (seed 1)" in configs[0] and "a (" not in configs[0]
    assert "runs/<run_id>/config.toml" in configs[0] and "threads" in configs[0]


def test_a_missing_run_folder_whose_hash_matches_a_read_config_is_compared() -> None:
    # b's seed-1 folder is gone, but its config hash is that of a read config: identical config.
    runs = [_run("a", 1), _run("b", 1, folder=False), _run("b", 2), _run("a", 2)]
    check = compare_training(runs)
    assert check.differences == ()
    assert not any("config hash" in u for u in check.unchecked)


def test_a_real_difference_is_named_although_a_run_folder_is_missing() -> None:
    runs = [
        _run("a", 1),
        _run("a", 2, folder=False),
        _run("b", 1, {"stages.0.lr": 0.01, "threads": 4}),
    ]
    check = compare_training(runs)
    assert check.verdict == "differ"
    assert len(check.differences) == 1
    assert "stages.0.lr = 0.003 (a) vs 0.01 (b)" in check.differences[0]
    assert "threads" not in check.differences[0]


def test_world_size_device_and_resolved_precision_are_compared() -> None:
    # The same config, once under torchrun on 4 GPUs and once on a CPU: precision "auto" means
    # bf16 on CUDA and fp32 on CPU, and the global batch (the in-batch negatives) is 4x larger.
    auto = {"backbone.precision": "auto"}
    check = compare_training(
        [
            _run("gpus", 1, auto, world_size=4, device="cuda:0"),
            _run("laptop", 1, auto, world_size=1, device="cpu"),
        ]
    )
    assert check.verdict == "differ"
    assert len(check.differences) == 1
    said = check.differences[0]
    assert "world size = 4 (gpus) vs 1 (laptop)" in said
    assert (
        "global batch of stage retrieval_adaptation" in said and "= 32 (gpus) vs 8 (laptop)" in said
    )
    assert "device = cuda (gpus) vs cpu (laptop)" in said
    assert "precision = bf16 (gpus) vs fp32 (laptop)" in said
    assert [a.ran_on for a in check.arms] == [("4 × cuda, bf16",), ("1 × cpu, fp32",)]


def test_what_resolves_to_the_same_device_and_precision_is_the_same() -> None:
    # cuda:0 (rank 0 under torchrun) and cuda are one device type; "auto" on a CPU is fp32.
    on_gpu = compare_training(
        [
            _run("a", 1, {"backbone.precision": "bf16"}, device="cuda:0"),
            _run("b", 1, {"backbone.precision": "auto", "device": "cuda"}, device="cuda"),
        ]
    )
    assert on_gpu.verdict == "same", on_gpu.differences
    on_cpu = compare_training(
        [
            _run("c", 1, {"backbone.precision": "fp32"}, device="cpu"),
            _run("d", 1, {"backbone.precision": "auto"}, device="cpu"),
        ]
    )
    assert on_cpu.verdict == "same", on_cpu.differences


def test_a_meta_json_without_world_size_is_unchecked() -> None:
    check = compare_training([_run("a", 1), _run("b", 1, world_size=None)])
    assert check.differences == ()
    assert check.verdict == "unchecked"
    assert any("world size" in u and "b" in u for u in check.unchecked)


def _stages(*plan: tuple[str, str]) -> RunTraining:
    from analysis.load import StageRun

    return RunTraining(
        run_id="-".join(name for name, _ in plan),
        config_hash="1" * 16,
        stages=tuple(StageRun(i, name, loss, True) for i, (name, loss) in enumerate(plan)),
        stages_recorded=True,
        config_recorded=True,
        world_size=1,
        device="cpu",
        precision="fp32",
    )


def test_several_plans_run_by_every_arm_are_shown_as_the_common_plans() -> None:
    one = _stages(("retrieval_adaptation", "mamcl"))
    two = _stages(("retrieval_adaptation", "symmetric_infonce"), ("instruction_tuning", "mamcl"))
    check = compare_training([("a", 1, one), ("a", 2, two), ("b", 1, one), ("b", 2, two)])
    assert check.verdict == "same"
    assert check.common_plans == (
        "retrieval_adaptation with mamcl",
        "retrieval_adaptation with symmetric_infonce → instruction_tuning with mamcl",
    )
