"""Reading the results store and the optional pieces around it."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.load import ResultsQuery, load_inputs, read_results, read_signals, suite_settings
from curate.errors import NotFoundError, SchemaError
from curate.schema import RESULTS_SCHEMA
from curate.workspace import Workspace
from tests.analysis import synthetic as syn


def test_cells_and_consolidated_store_are_read_once(workspace: Workspace) -> None:
    rows = syn.make_workspace(workspace.root, optional=False)
    # Half the cells are in both results.parquet and cells/: each row must come back once.
    assert len(list((workspace.results / "cells").glob("*.parquet"))) == 30
    assert pq.read_metadata(workspace.results / "results.parquet").num_rows == len(rows) // 2
    table = read_results(workspace)
    assert table.num_rows == len(rows)
    keys = {
        (r["run_id"], r["task"], r["metric"])
        for r in table.select(["run_id", "task", "metric"]).to_pylist()
    }
    assert len(keys) == len(rows)


def test_a_rerun_cell_replaces_the_older_row(workspace: Workspace) -> None:
    rows = syn.make_workspace(workspace.root, optional=False)
    first = dict(rows[0])
    rerun = {**first, "value": 0.999, "created": "2030-01-01T00:00:00Z"}
    pq.write_table(
        pa.Table.from_pylist([rerun], schema=RESULTS_SCHEMA),
        workspace.results / "cells" / "zz-rerun.parquet",
    )
    table = read_results(workspace).to_pylist()
    matching = [
        r
        for r in table
        if (r["run_id"], r["task"], r["metric"])
        == (first["run_id"], first["task"], first["metric"])
    ]
    assert [r["value"] for r in matching] == [0.999]


def test_filters_select_rows_and_explain_an_empty_selection(workspace: Workspace) -> None:
    syn.make_workspace(workspace.root, optional=False)
    table = read_results(
        workspace, ResultsQuery(mixtures=("images", "vid-heavy"), losses=("mamcl",), seeds=(1, 2))
    )
    assert {r["mixture"] for r in table.select(["mixture"]).to_pylist()} == {"images", "vid-heavy"}
    assert set(table.column("loss").to_pylist()) == {"mamcl"}
    assert set(table.column("seed").to_pylist()) == {1, 2}
    with pytest.raises(
        NotFoundError, match=r"no results match ablation=other.*ablations \['planted'\]"
    ):
        read_results(workspace, ResultsQuery(ablation="other"))


def test_a_listed_name_without_results_is_an_error_naming_the_known_ones(
    workspace: Workspace,
) -> None:
    rows = syn.make_workspace(workspace.root, optional=False)
    with pytest.raises(NotFoundError) as raised:
        read_results(workspace, ResultsQuery(mixtures=("images", "nosuch")))
    message = str(raised.value)
    assert "\n" not in message
    assert "mixture nosuch" in message and "--mixtures" in message
    assert "known mixtures there: balanced, images, img-vid, text-heavy, vid-heavy" in message
    with pytest.raises(NotFoundError, match=r"losses hinge, triplet .*known losses there: "):
        read_results(workspace, ResultsQuery(losses=("mamcl", "hinge", "triplet")))
    with pytest.raises(NotFoundError, match=r"seed 9 .*known seeds there: 1, 2, 3; .*--seeds"):
        read_results(workspace, ResultsQuery(seeds=(1, 9)))
    # Checked against what the other filters keep: `images` never ran with `infonce` here.
    kept = [r for r in rows if not (r["mixture"] == "images" and r["loss"] == "infonce")]
    for path in workspace.results.rglob("*.parquet"):
        path.unlink()
    syn.write_results(workspace.root, kept)
    with pytest.raises(
        NotFoundError,
        match=r"mixture images in the results with losses=infonce .*mixtures there: balanced",
    ):
        read_results(workspace, ResultsQuery(mixtures=("images", "balanced"), losses=("infonce",)))


def test_missing_store_and_foreign_files_are_clear_errors(workspace: Workspace) -> None:
    with pytest.raises(NotFoundError, match="run `curate ablate"):
        read_results(workspace)
    workspace.results.mkdir(parents=True)
    pq.write_table(
        pa.table({"run_id": ["x"], "value": [1.0]}), workspace.results / "results.parquet"
    )
    with pytest.raises(SchemaError, match="lacks columns"):
        read_results(workspace)
    (workspace.results / "results.parquet").write_text("not parquet")
    with pytest.raises(SchemaError, match="cannot read results file"):
        read_results(workspace)


def test_temporary_files_of_a_writer_are_ignored(workspace: Workspace) -> None:
    rows = syn.make_workspace(workspace.root, optional=False)
    (workspace.results / "cells" / ".tmp-half-written.parquet").write_bytes(b"PAR1 partial")
    assert read_results(workspace).num_rows == len(rows)


def test_everything_optional_found(workspace: Workspace) -> None:
    syn.make_workspace(workspace.root)
    inputs = load_inputs(workspace, ResultsQuery(ablation=syn.ABLATION))
    assert inputs.notes == ()
    assert len(inputs.runs) == 30
    info = inputs.mixtures[("vid-heavy", syn.version_of("vid-heavy"))]
    assert info.found and info.total_rows == 1000
    assert info.lineage == (("coco-train", "f" * 64), ("msrvtt-train", "e" * 64))
    assert [c.shortfall for c in info.components if c.name == "t2v-component"] == [300]
    assert [(f.step, f.removed) for f in info.filters] == [("text_chars", 40), ("dedup.exact", 60)]
    assert {m.name for m in inputs.manifests} == {"coco-train", "msrvtt-train"}
    coco = next(m for m in inputs.manifests if m.name == "coco-train")
    assert coco.rejected_by_reason == {"missing_media": 66, "duplicate_id": 4}
    assert set(coco.signals) == {"clip_score", "near_dup_size"}  # hashes and clusters skipped
    assert coco.signals["clip_score"].size == 500
    assert coco.flags["near_dup_keep"][1] == 500
    assert inputs.suites[syn.SUITE]["frames"] == 8
    assert inputs.suites[syn.SUITE]["tasks"][0] == {
        "task": "msrvtt_t2v",
        "pool_size": 40,
        "frames": 8,
    }
    assert set(inputs.configs) == {"c0ffee" * 4}


def test_only_the_results_store_gives_notes_not_errors(workspace: Workspace) -> None:
    syn.make_workspace(workspace.root, optional=False)
    inputs = load_inputs(workspace)
    text = " ".join(inputs.notes)
    assert "mixture metadata not found" in text
    assert "no manifests found" in text
    assert "run folders" in text
    assert "settings (frame count, pixel budget, pool size)" in text
    assert all(not m.found for m in inputs.mixtures.values())


def test_damaged_mixture_json_becomes_a_note(workspace: Workspace) -> None:
    syn.make_workspace(workspace.root)
    path = workspace.mixtures / "images" / syn.version_of("images") / "mixture.json"
    path.write_text("{not json")
    inputs = load_inputs(workspace)
    assert not inputs.mixtures[("images", syn.version_of("images"))].found
    assert any("images@" in n and "unreadable" in n for n in inputs.notes)


def test_hostile_names_in_the_store_never_become_paths(workspace: Workspace) -> None:
    rows = syn.result_rows(seeds=(1,), losses=("mamcl",))
    for r in rows:
        r["mixture"] = "../../etc"
        r["run_id"] = "../" + r["run_id"]
    syn.write_results(workspace.root, rows, split_cells=False)
    inputs = load_inputs(workspace)
    assert not any(m.found for m in inputs.mixtures.values())
    assert inputs.run_meta == {}


def test_signals_skip_ids_and_hashes(tmp_path: Path) -> None:
    pq.write_table(
        pa.table(
            {"id": ["a", "b"], "phash": [1, 2], "cluster": [0, 0], "score": [0.1, float("nan")]}
        ),
        tmp_path / "sig.parquet",
    )
    pq.write_table(
        pa.table({"id": ["a"], "score": [0.5], "flag": [True]}), tmp_path / "two.parquet"
    )
    (tmp_path / "notes.json").write_text(json.dumps({"x": 1}))
    numeric, flags = read_signals(tmp_path)
    assert sorted(numeric) == ["score", "two.score"]
    assert numeric["score"].tolist() == [0.1]
    assert flags == {"flag": (1, 1)}


def test_shares_missing_from_the_store_come_from_mixture_json(workspace: Workspace) -> None:
    rows = syn.make_workspace(workspace.root)
    for r in rows:
        r["pair_shares"] = None if r["mixture"] != "images" else []
    syn.write_results(workspace.root, rows)
    inputs = load_inputs(workspace)
    run = next(r for r in inputs.runs.values() if r.mixture == "vid-heavy")
    assert dict(run.pair_shares) == syn.MIXTURES["vid-heavy"]
    assert any("they come from mixture.json" in n for n in inputs.notes)


def test_suite_settings_are_found_in_eval_outputs(workspace: Workspace) -> None:
    run = workspace.runs / "r1"
    (run / "eval").mkdir(parents=True)
    (run / "eval" / "default.json").write_text(
        json.dumps(
            {
                "suite": {
                    "name": "default",
                    "settings": {"frames": 16, "max_pixels": 200704},
                    "tasks": {"msrvtt_t2v": {"direction": "t2v", "pool_size": 1000}},
                },
                "metrics": [{"task": "msrvtt_t2v", "R@1": 0.1}],
            }
        )
    )
    settings = suite_settings(workspace, "r1", "default")
    assert settings["settings.frames"] == 16 and settings["settings.max_pixels"] == 200704
    assert settings["tasks"] == [{"direction": "t2v", "pool_size": 1000, "task": "msrvtt_t2v"}]
    assert suite_settings(workspace, "r1", "other") == {}


def test_run_training_reads_where_the_run_ran_and_resolves_its_precision() -> None:
    from analysis.load import RunInfo, run_training
    from train.config import load_train_config

    def training(overrides: dict, meta: dict | None, *, config: bool = True):
        cfg = load_train_config("tiny-cpu", overrides)
        run = RunInfo("r", "a", "m", "v", cfg.name, cfg.config_hash(), "", "", 0, {}, {})
        return run_training(run, cfg.to_toml() if config else None, meta)

    # As the trainer decides (train.backbones.base.autocast_dtype): auto is bf16 on CUDA only.
    gpu = {"world_size": 2, "device": "cuda:1", "stages": []}
    auto = training({"backbone.precision": "auto"}, gpu)
    assert (auto.world_size, auto.device, auto.precision) == (2, "cuda", "bf16")
    assert training({"backbone.precision": "auto"}, {"device": "cpu"}).precision == "fp32"
    assert training({"backbone.precision": "bf16"}, {"device": "cpu"}).precision == "bf16"
    # The open_clip backbone never casts, whatever the config asks.
    clip = training({"backbone.kind": "open-clip", "backbone.precision": "auto"}, gpu)
    assert clip.precision == "fp32"
    # What is resolved on the machine is compared resolved, not as the config spells it.
    assert "device" not in auto.settings and "backbone.precision" not in auto.settings
    # Unknown stays unknown: no device (an unfinished run), or no config to read the precision.
    unfinished = training({}, {"stages": []})
    assert (unfinished.world_size, unfinished.device, unfinished.precision) == (None, "", "")
    assert training({}, gpu, config=False).precision == ""
