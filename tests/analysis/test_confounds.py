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
                "seed": cell.seed, "device": "cpu", "stages": stages}  # fmt: skip
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


def _training(run_id: str, config_hash: str) -> RunTraining:
    """A run whose folder is gone: only the results store's config hash is known."""
    return RunTraining(run_id=run_id, config_hash=config_hash)


def test_without_run_folders_differing_hashes_at_a_seed_still_warn() -> None:
    check = compare_training(
        [("a", 1, _training("a1", "1" * 16)), ("b", 1, _training("b1", "2" * 16))]
    )
    assert check.verdict == "differ"
    assert "config hashes at seed 1: a 111111111111, b 222222222222" in check.differences[0]
    assert "which stages 2 of 2 runs trained" in check.unchecked[0]


def test_without_run_folders_equal_hashes_are_not_called_the_same() -> None:
    check = compare_training(
        [("a", 1, _training("a1", "1" * 16)), ("b", 1, _training("b1", "1" * 16))]
    )
    # Equal configs, but a mixture without an instruction stage would skip it: unknown.
    assert check.verdict == "unchecked" and not check.differences
    single = compare_training([("a", 1, _training("a1", "1" * 16))])
    assert single.verdict == "one arm"
