"""The ablation grid: cells, losses, the results store, resume after kill -9, launchers, and one
real end-to-end grid with the tiny trainer over three demo mixtures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from curate.errors import ConfigError, NotFoundError
from curate.schema import RESULTS_SCHEMA
from curate.workspace import Workspace
from train.ablate import (
    AblationSpec,
    cell_file,
    compact_store,
    config_file_for,
    expand_grid,
    failure_lines,
    failure_reason,
    open_results,
    run_ablation,
    slurm_parameters,
    store_path,
    summary_rows,
    torchrun_command,
)
from train.config import load_train_config
from train.suites import load_suite

MIXTURES = ("demo-image", "demo-video", "demo-mixed")
#: Rows per cell with the default suite: 4 global tasks x 7 metrics + 1 local task x P@1.
ROWS_PER_CELL = 4 * 7 + 1


@pytest.fixture(scope="module")
def demo_ws(tmp_path_factory) -> Workspace:
    """The demo corpora ingested and the three demo mixtures built (real manifests, real mix)."""
    from curate.demo import ingest_demo
    from curate.mix import build_mixture

    ws = Workspace.resolve(tmp_path_factory.mktemp("ablate") / "ws")
    ingest_demo(ws)
    for recipe in MIXTURES:
        build_mixture(ws, recipe)
    return ws


@pytest.fixture()
def ws(demo_ws, tmp_path) -> Workspace:
    """A fresh workspace sharing the module's manifests and mixtures (runs and results empty)."""
    fresh = Workspace.resolve(tmp_path / "ws")
    fresh.root.mkdir(parents=True)
    for folder in ("manifests", "mixtures", "demo"):
        (fresh.root / folder).symlink_to(demo_ws.root / folder)
    return fresh


class ConstantEmbedder:
    """Stand-in embedder: text, images and videos each get one fixed direction."""

    dim = 3

    def __init__(self) -> None:
        self.skipped = 0

    def embed(self, items, *, batch_size=16, progress=False):
        out = torch.zeros(len(items), 3)
        for i, item in enumerate(items):
            out[i, 2 if item.video else 1 if item.images else 0] = 1.0
        return out


def fake_load(run_dir, **kwargs):
    return ConstantEmbedder()


class RecordingTrain:
    """Stand-in trainer: records its calls, writes a run folder, fails for chosen mixtures."""

    def __init__(self, fail_for: tuple[str, ...] = ()) -> None:
        self.calls: list[tuple[str, str, int]] = []
        self.fail_for = fail_for

    def __call__(self, *, mixture, workspace, config, out_dir, progress):
        name = json.loads((Path(mixture) / "mixture.json").read_text())["name"]
        self.calls.append((name, config.stages[0].loss, config.seed))
        if name in self.fail_for:
            raise RuntimeError(f"simulated crash while training {name}")
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.toml").write_text(config.to_toml())
        (out_dir / "_COMPLETE").write_text("{}")
        return out_dir


def test_grid_cells_losses_and_stable_run_ids(ws, tmp_path):
    from tests.train.mixtures import row, write_mixture

    spec = AblationSpec(mixtures=MIXTURES, losses=("mamcl", "infonce"), seeds=(1, 2))
    cells = expand_grid(spec, ws)
    assert len(cells) == 3 * 2 * 2
    assert [(c.mixture.name, c.loss, c.seed) for c in cells[:4]] == [
        ("demo-image", "mamcl", 1), ("demo-image", "mamcl", 2),
        ("demo-image", "infonce", 1), ("demo-image", "infonce", 2),
    ]  # fmt: skip
    assert len({c.run_id for c in cells}) == 12
    assert [c.run_id for c in expand_grid(spec, ws)] == [c.run_id for c in cells]  # stable
    for cell in cells:  # single-stage mixtures: the loss goes to the stage that trains on them
        assert cell.loss_stage == 0 and cell.config.stages[0].loss == cell.loss
        assert cell.config.stages[1].loss == "mamcl" and cell.config.seed == cell.seed
        assert cell.run_dir == ws.runs / cell.run_id
        assert abs(sum(cell.pair_shares.values()) - 1) < 1e-9
    image = cells[0]
    assert set(image.pair_shares) == {"t2i", "i2t"} and image.source_shares == {"demo-images": 1.0}

    # Without --losses a cell keeps the config's own loss.
    plain = expand_grid(AblationSpec(mixtures=("demo-image",)), ws)
    assert [(c.loss, c.seed) for c in plain] == [("symmetric_infonce", 0)]

    # A two-stage mixture: --losses sets stage 2 (instruction tuning); stage 1 stays symmetric.
    rows = [row(f"r{i}", query_text=f"q{i}", target_text=f"t{i}") for i in range(4)]
    two = write_mixture(tmp_path / "two", {"retrieval_adaptation": rows,
                                           "instruction_tuning": rows}, name="two")  # fmt: skip
    [cell] = expand_grid(AblationSpec(mixtures=(str(two),), losses=("infonce",)), ws)
    assert cell.loss_stage == 1 and cell.loss == "infonce"
    assert [s.loss for s in cell.config.stages] == ["symmetric_infonce", "infonce"]
    # Overrides change the config, hence the run id.
    other = expand_grid(
        AblationSpec(mixtures=("demo-image",), overrides=(("stages.0.lr", 1e-4),)), ws
    )
    assert other[0].run_id != plain[0].run_id

    with pytest.raises(ConfigError, match="unknown losses"):
        AblationSpec(mixtures=MIXTURES, losses=("triplet",))
    with pytest.raises(ConfigError, match="launcher must be one of"):
        AblationSpec(mixtures=MIXTURES, launcher="mpi")  # type: ignore[arg-type]


def test_store_rows_skips_and_failures(ws):
    spec = AblationSpec(mixtures=MIXTURES, losses=("mamcl", "infonce"), name="grid")
    train = RecordingTrain(fail_for=("demo-video",))
    events = []
    result = run_ablation(spec, ws, train_fn=train, load_fn=fake_load, progress=events.append)
    counts = result.counts()
    assert counts == {"done": 4, "skipped": 0, "failed": 2, "pending": 0}
    assert len(train.calls) == 6  # the failure did not stop the grid
    failed = result.failed
    assert {s.cell.mixture.name for s in failed} == {"demo-video"}
    assert "simulated crash" in failed[0].error
    log = [
        json.loads(x)
        for x in (ws.results / "ablations" / "grid" / "log.jsonl").read_text().splitlines()
    ]
    crash = [e for e in log if e["event"] == "failed"]
    assert len(crash) == 2 and "RuntimeError" in crash[0]["traceback"]
    assert events[-1].done == 4 and events[-1].failed == 2 and events[-1].total == 6

    store = pq.read_table(store_path(ws))
    assert store.schema.equals(RESULTS_SCHEMA, check_metadata=False)
    assert store.num_rows == 4 * ROWS_PER_CELL  # one row per (cell, task, metric)
    keys = {(r["run_id"], r["task"], r["metric"]) for r in store.to_pylist()}
    assert len(keys) == store.num_rows
    row = store.slice(0, 1).to_pylist()[0]
    assert (
        row["ablation"] == "grid"
        and row["suite"] == "default"
        and row["backbone"] == "tiny-qwen2-vl"
    )
    assert dict(row["pair_shares"]) and dict(row["source_shares"])

    # DuckDB over the store, through curate.db.
    con = open_results(ws)
    per_cell = con.execute("SELECT run_id, count(*) FROM results GROUP BY run_id").fetchall()
    assert sorted(n for _, n in per_cell) == [ROWS_PER_CELL] * 4

    # Rerun: finished cells are skipped, the failed ones retried (and now succeed).
    retry = RecordingTrain()
    again = run_ablation(spec, ws, train_fn=retry, load_fn=fake_load)
    assert sorted(retry.calls) == [("demo-video", "infonce", 0), ("demo-video", "mamcl", 0)]
    assert again.counts() == {"done": 2, "skipped": 4, "failed": 0, "pending": 0}
    assert pq.read_table(store_path(ws)).num_rows == 6 * ROWS_PER_CELL
    header, rows = summary_rows(again)
    assert header[:4] == ["mixture", "loss", "seed", "state"] and "demo_t2i R@1" in header
    assert len(rows) == 6 and {r[3] for r in rows} == {"done", "skipped"}


_RUNNER = """
import json, sys, time
from pathlib import Path
import torch
from curate.workspace import Workspace
from train.ablate import AblationSpec, run_ablation

class Embedder:
    dim = 3
    skipped = 0
    def embed(self, items, *, batch_size=16, progress=False):
        return torch.nn.functional.normalize(torch.ones(len(items), 3), dim=-1)

def train(*, mixture, workspace, config, out_dir, progress):
    out_dir.mkdir(parents=True, exist_ok=True)
    done = len(list(out_dir.glob("step-*")))  # resume from the last step written
    with open(sys.argv[2], "a") as log:
        log.write(json.dumps([out_dir.name, done]) + "\\n")
    for step in range(done, 3):
        time.sleep(float(sys.argv[3]))
        (out_dir / f"step-{step}").write_text("")
    return out_dir

spec = AblationSpec(mixtures=("demo-image", "demo-video", "demo-mixed"), name="killed")
run_ablation(spec, Workspace.resolve(sys.argv[1]), train_fn=train, load_fn=lambda *a, **k: Embedder())
"""


def test_kill_minus_nine_mid_grid_then_rerun_finishes_only_the_missing_cells(ws, tmp_path):
    script = tmp_path / "runner.py"
    script.write_text(textwrap.dedent(_RUNNER))
    calls = tmp_path / "calls.jsonl"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    spec = AblationSpec(mixtures=MIXTURES, name="killed")
    first, second, third = expand_grid(spec, ws)
    proc = subprocess.Popen([sys.executable, str(script), str(ws.root), str(calls), "0.4"], env=env)
    try:
        deadline = time.monotonic() + 120
        # Wait until cell 1 is in the store and cell 2 has written a step, then kill -9.
        while not (cell_file(ws, "killed", first.run_id, "default").is_file()
                   and (second.run_dir / "step-0").is_file()):  # fmt: skip
            assert proc.poll() is None, "the grid ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not cell_file(ws, "killed", second.run_id, "default").exists()
    assert not third.run_dir.exists()

    proc = subprocess.run([sys.executable, str(script), str(ws.root), str(calls), "0"], env=env,
                          timeout=120, check=True)  # fmt: skip
    entries = [json.loads(x) for x in calls.read_text().splitlines()]
    # First run: cell 1 from step 0, cell 2 from step 0 (killed). Rerun: cell 1 is not trained
    # again, cell 2 resumes after its last step, cell 3 starts.
    assert entries[:2] == [[first.run_id, 0], [second.run_id, 0]]
    rerun = entries[2:]
    assert [name for name, _ in rerun] == [second.run_id, third.run_id]
    assert rerun[0][1] >= 1 and rerun[1][1] == 0
    store = pq.read_table(store_path(ws))
    assert store.num_rows == 3 * ROWS_PER_CELL
    assert len({r for r in store.column("run_id").to_pylist()}) == 3
    log = (ws.results / "ablations" / "killed" / "log.jsonl").read_text()
    assert '"event": "skipped"' in log


def test_launch_commands(ws, tmp_path, monkeypatch):
    spec = AblationSpec(mixtures=("demo-image",), launcher="torchrun", nproc=4,
                        slurm={"partition": "gpu", "time_min": 90, "account": "lab"})  # fmt: skip
    [cell] = expand_grid(spec, ws)
    config_file = config_file_for(ws, spec, cell)
    # The config handed to another process is the cell's config, exactly.
    assert load_train_config(config_file).config_hash() == cell.config.config_hash()
    command = torchrun_command(cell, ws, config_file, nproc=4)
    assert command[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=4"]  # fmt: skip
    assert command[5:8] == ["-m", "curate.cli", "train"]
    args = dict(zip(command[8::2], command[9::2], strict=False))
    assert args["--mixture"] == str(cell.mixture.path) and args["--config"] == str(config_file)
    assert args["--out"] == str(cell.run_dir) and args["--workspace"] == str(ws.root)

    params = slurm_parameters(spec, cell)
    assert params["gpus_per_node"] == 4 and params["timeout_min"] == 90
    assert params["slurm_partition"] == "gpu" and params["slurm_account"] == "lab"
    with pytest.raises(ConfigError, match="unknown slurm options"):
        slurm_parameters(AblationSpec(mixtures=("x",), slurm={"gpu_type": "a100"}), cell)

    # The sbatch script submitit would submit (a fake `srun` stands in for a cluster).
    import submitit

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    executor = submitit.AutoExecutor(folder=tmp_path / "slurm", cluster="slurm")
    executor.update_parameters(**params)
    text = executor._executor._make_submission_file_text("python -m submitit.core._submit x", "1")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=4", "#SBATCH --time=90",
                 "#SBATCH --account=lab", f"#SBATCH --job-name=curate-{cell.run_id}"):  # fmt: skip
        assert line in text


def test_slurm_launcher_through_submitit(ws):
    """submitit's debug cluster runs each cell's job here: the same path as on a cluster."""
    spec = AblationSpec(mixtures=("demo-image", "demo-video"), launcher="slurm", name="slurmy",
                        slurm={"partition": "gpu"})  # fmt: skip
    train = RecordingTrain(fail_for=("demo-video",))
    result = run_ablation(spec, ws, train_fn=train, load_fn=fake_load, slurm_cluster="debug",
                          poll_s=0.01)  # fmt: skip
    assert result.counts() == {"done": 1, "skipped": 0, "failed": 1, "pending": 0}
    assert "simulated crash" in result.failed[0].error
    assert pq.read_table(store_path(ws)).num_rows == ROWS_PER_CELL


def _failed_events(ws: Workspace, ablation: str) -> list[dict]:
    log = ws.results / "ablations" / ablation / "log.jsonl"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    return [e for e in events if e["event"] == "failed"]


def test_a_slurm_jobs_failure_is_its_exception_line_and_the_log_keeps_the_trace(ws):
    """submitit's FailedJobError (its local executor runs the job in a subprocess, as a node
    would) quotes the job's whole traceback; summaries used to carry all 16 lines of it."""
    spec = AblationSpec(mixtures=("demo-video",), launcher="slurm", name="remote")
    train = RecordingTrain(fail_for=("demo-video",))
    result = run_ablation(spec, ws, train_fn=train, load_fn=fake_load, slurm_cluster="local",
                          poll_s=0.1)  # fmt: skip
    reason = "RuntimeError: simulated crash while training demo-video"
    [failed] = result.failed
    assert failed.error == reason
    assert [f["error"] for f in result.to_dict()["failed"]] == [reason]
    status = json.loads((ws.results / "ablations" / "remote" / "status.json").read_text())
    assert [f["error"] for f in status["failed"]] == [reason]
    assert [c["error"] for c in status["cells"]] == [reason]
    assert failure_lines(result) == [f"failed: {failed.cell.label} (run {failed.cell.run_id}): "
                                     f"{reason}"]  # fmt: skip
    [event] = _failed_events(ws, "remote")
    assert event["error"] == reason
    trace = event["traceback"]  # the remote traceback, in full
    assert "FailedJobError: Job (task=0) failed during processing with trace:" in trace
    assert "in slurm_cell_job" in trace and "in __call__" in trace and trace.count("\n") > 10


def test_failure_reasons_are_one_line():
    from submitit.core.utils import FailedJobError, UncompletedJobError

    rule = "-" * 40
    # A job slurm killed: submitit quotes the job's error stream under its heading.
    timeout = UncompletedJobError("\n".join([
        "Job 4242 (task: 0) with path /w/slurm/4242_0_result.pkl",
        "has not produced any output (state: TIMEOUT)", "Error stream produced:", rule,
        "submitit INFO (2026-11-27 10:00:00,000) - Starting with JobEnvironment(job_id=4242)",
        "slurmstepd: error: *** JOB 4242 ON gpu-7 CANCELLED AT 2026-11-27T11:00:00 DUE TO TIME "
        "LIMIT ***", "",
    ]))  # fmt: skip
    assert failure_reason(timeout) == (
        "UncompletedJobError: Job 4242 (task: 0) with path /w/slurm/4242_0_result.pkl has not "
        "produced any output (state: TIMEOUT) Error stream produced: slurmstepd: error: *** JOB "
        "4242 ON gpu-7 CANCELLED AT 2026-11-27T11:00:00 DUE TO TIME LIMIT ***"
    )
    assert failure_reason(FailedJobError("Job got killed for an unknown reason.")) == (
        "FailedJobError: Job got killed for an unknown reason."
    )
    sbatch = FailedJobError("sbatch: error: Batch job submission failed:\nInvalid account\n")
    assert failure_reason(sbatch) == (
        "FailedJobError: sbatch: error: Batch job submission failed: Invalid account"
    )
    # Not submitit's: dashes are kept, lines joined.
    assert failure_reason(ValueError("table\n----------\n  a | b\n")) == (
        "ValueError: table ---------- a | b"
    )


def test_a_multi_line_reason_is_one_line_in_summaries_and_whole_in_the_log(ws):
    class MultiLineTrain(RecordingTrain):
        def __call__(self, **kwargs):
            raise RuntimeError("CUDA out of memory.\nTried to allocate 2.00 GiB\n")

    spec = AblationSpec(mixtures=("demo-image",), name="oom")
    result = run_ablation(spec, ws, train_fn=MultiLineTrain(), load_fn=fake_load)
    reason = "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert [f["error"] for f in result.to_dict()["failed"]] == [reason]
    status = json.loads((ws.results / "ablations" / "oom" / "status.json").read_text())
    assert [f["error"] for f in status["failed"]] == [reason]
    assert failure_lines(result)[0].endswith(reason)
    [event] = _failed_events(ws, "oom")
    assert "CUDA out of memory.\nTried to allocate 2.00 GiB" in event["traceback"]


def test_compaction_keeps_every_cell(ws):
    spec = AblationSpec(mixtures=("demo-image",), seeds=(1, 2), name="a")
    run_ablation(spec, ws, train_fn=RecordingTrain(), load_fn=fake_load)
    run_ablation(AblationSpec(mixtures=("demo-image",), seeds=(1,), name="b"), ws,
                 train_fn=RecordingTrain(), load_fn=fake_load)  # fmt: skip
    store_path(ws).unlink()
    table = pq.read_table(compact_store(ws))
    assert table.num_rows == 3 * ROWS_PER_CELL
    assert sorted(set(table.column("ablation").to_pylist())) == ["a", "b"]


@pytest.mark.slow
def test_real_tiny_trainer_over_three_demo_mixtures_from_the_cli(ws):
    """`curate ablate` with the real tiny Qwen2-VL trainer and the default suite, then a rerun."""
    from typer.testing import CliRunner

    from curate.cli import app

    torch.set_num_threads(1)
    args = ["ablate", "--mixtures", ",".join(MIXTURES), "--config", "tiny-cpu",
            "--set", "stages.0.max_steps=4", "--name", "e2e", "--workspace", str(ws.root),
            "--no-progress", "--json"]  # fmt: skip
    start = time.perf_counter()
    done = CliRunner().invoke(app, args)
    elapsed = time.perf_counter() - start
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["counts"] == {"done": 3, "skipped": 0, "failed": 0, "pending": 0}
    assert elapsed < 300
    store = pq.read_table(store_path(ws))
    assert store.num_rows == 3 * ROWS_PER_CELL
    tasks = {t.name for t in load_suite("default").tasks}
    for cell in summary["cells"]:
        run = Path(cell["run_dir"])
        assert (run / "_COMPLETE").is_file() and (run / "final" / "final.json").is_file()
        assert (run / "eval" / "default" / "results.json").is_file()
        assert set(cell["metrics"]) == tasks
        meta = json.loads((run / "meta.json").read_text())
        assert meta["stages"][0]["steps"] == 4
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["counts"]["skipped"] == 3
    assert pq.read_table(store_path(ws)).num_rows == 3 * ROWS_PER_CELL
    # `curate eval` on one of the cells reads the stored results back.
    run_id = summary["cells"][0]["run_id"]
    evaluated = CliRunner().invoke(app, ["eval", "--run", run_id, "--suite", "default",
                                         "--workspace", str(ws.root), "--json"])  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    data = json.loads(evaluated.stdout)
    assert data["reused"] and data["suite"]["video_frames"] == 4
    assert {t["task"] for t in data["tasks"]} == tasks
    table = CliRunner().invoke(app, ["eval", "--run", run_id, "--workspace", str(ws.root)])
    assert table.exit_code == 0 and "demo_t2i" in table.stdout and "R@1" in table.stdout


def test_commands_have_help_with_examples():
    from typer.testing import CliRunner

    from curate.cli import app
    from curate.errors import NotFoundError

    for command in ("eval", "ablate"):
        shown = CliRunner().invoke(app, [command, "--help"])
        assert shown.exit_code == 0 and "Examples" in shown.stdout
        assert f"curate {command} --" in shown.stdout
    missing = CliRunner().invoke(
        app, ["eval", "--run", "no-such-run", "--workspace", "/nonexistent"]
    )
    assert isinstance(missing.exception, NotFoundError)


def test_a_bad_suite_is_one_line_on_stderr(ws, tmp_path, monkeypatch, capsys):
    from curate.cli import main

    suite = tmp_path / "broken.toml"
    suite.write_text('name = "x"\n[[tasks]\n')
    argv = ["curate", "ablate", "--mixtures", MIXTURES[0], "--suite", str(suite)]
    monkeypatch.setattr(sys, "argv", [*argv, "--workspace", str(ws.root)])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: suite {suite} is not valid TOML") and err.count("\n") == 1, err
    assert not ws.results.exists() or not any(ws.results.rglob("*.parquet"))


@pytest.fixture()
def ws_without_test_manifests(demo_ws, tmp_path) -> Workspace:
    """The demo mixtures and training manifests, but not the test manifests the suites read."""
    fresh = Workspace.resolve(tmp_path / "bare")
    fresh.manifests.mkdir(parents=True)
    for folder in ("mixtures", "demo"):
        (fresh.root / folder).symlink_to(demo_ws.root / folder)
    for manifest in demo_ws.manifests.iterdir():
        if not manifest.name.endswith("-test"):
            (fresh.manifests / manifest.name).symlink_to(manifest)
    return fresh


def _run_main(monkeypatch, capsys, args: list[str]) -> tuple[int, str, str]:
    """`curate ARGS` through the console entry point, as a shell runs it: (code, out, err)."""
    from curate.cli import main

    monkeypatch.setattr(sys, "argv", ["curate", *args])
    code = 0  # main() returns normally on success
    try:
        main()
    except SystemExit as done:
        code = done.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_missing_suite_manifests_fail_before_any_training(
    ws_without_test_manifests, monkeypatch, capsys
):
    """The suite's manifests used to be looked up only after each cell had trained."""
    ws = ws_without_test_manifests
    train = RecordingTrain()
    spec = AblationSpec(mixtures=("demo-image", "demo-video"), suite="demo", name="x")
    with pytest.raises(NotFoundError) as info:
        run_ablation(spec, ws, train_fn=train, load_fn=fake_load)
    assert train.calls == []
    message = str(info.value)
    assert "demo-images-test (tasks demo_t2i, demo_i2t, demo_i2t_local)" in message
    assert "demo-videos-test" in message and "curate demo --until ingest" in message
    # Both missing: one line names both.
    with pytest.raises(NotFoundError) as info:
        run_ablation(AblationSpec(mixtures=("img-text",), suite="demo"), ws, train_fn=train)
    assert str(info.value).startswith("no built mixture named 'img-text'")
    assert "; also, suite 'demo' evaluates on manifests that are not in" in str(info.value)

    code, _, err = _run_main(monkeypatch, capsys, [
        "ablate", "--mixtures", "demo-image,demo-video", "--suite", "demo", "--seeds", "1",
        "--losses", "mamcl", "--set", "stages.0.max_steps=1", "--name", "x",
        "--workspace", str(ws.root), "--no-progress",
    ])  # fmt: skip
    assert code == 1
    assert err.startswith("error: suite 'demo' evaluates on manifests that are not in ")
    assert err.count("\n") == 1, err
    assert not ws.runs.exists() and not ws.results.exists()  # nothing trained, nothing logged


def test_a_grid_already_in_the_store_needs_no_suite_manifests(ws_without_test_manifests, demo_ws):
    """Only cells still to run are evaluated, so only they need the suite's manifests."""
    ws = ws_without_test_manifests
    test_manifests = [m for m in demo_ws.manifests.iterdir() if m.name.endswith("-test")]
    for manifest in test_manifests:
        (ws.manifests / manifest.name).symlink_to(manifest)
    spec = AblationSpec(mixtures=("demo-image", "demo-video"), suite="demo", name="stored")
    first = run_ablation(spec, ws, train_fn=RecordingTrain(), load_fn=fake_load)
    assert first.counts()["done"] == 2
    for manifest in test_manifests:
        (ws.manifests / manifest.name).unlink()

    train = RecordingTrain()
    again = run_ablation(spec, ws, train_fn=train, load_fn=fake_load)
    assert again.counts() == {"done": 0, "skipped": 2, "failed": 0, "pending": 0}
    assert train.calls == [] and [s.metrics for s in again.cells] == [
        s.metrics for s in first.cells
    ]
    # One cell more to run: now the missing manifests stop the grid before it trains.
    more = AblationSpec(mixtures=("demo-image", "demo-video", "demo-mixed"), suite="demo",
                        name="stored")  # fmt: skip
    with pytest.raises(NotFoundError, match="suite 'demo' evaluates on manifests that are not"):
        run_ablation(more, ws, train_fn=train, load_fn=fake_load)
    assert train.calls == []


def test_missing_mixtures_are_named_together_before_any_training(ws):
    train = RecordingTrain()
    spec = AblationSpec(mixtures=("img-text", "demo-image", "img-vid-text"), name="x")
    with pytest.raises(NotFoundError) as info:
        run_ablation(spec, ws, train_fn=train, load_fn=fake_load)
    message = str(info.value)
    assert message.startswith(
        "2 of the mixtures cannot be found: no built mixture named 'img-text'"
    )
    assert "no built mixture named 'img-vid-text'" in message and "curate mix --recipe" in message
    assert train.calls == [] and not ws.results.exists()


class LongFailureTrain(RecordingTrain):
    """Fails for chosen mixtures with a reason longer than any table column."""

    REASON = ("the pixel budget of stage retrieval_adaptation leaves no room for a single frame "
              "of video demo-videos/clip-3.mp4 (keep reading: the end of this reason matters)")  # fmt: skip

    def __call__(self, *, mixture, workspace, config, out_dir, progress):
        name = json.loads((Path(mixture) / "mixture.json").read_text())["name"]
        if name in self.fail_for:
            self.calls.append((name, config.stages[0].loss, config.seed))
            raise ValueError(self.REASON)
        return super().__call__(mixture=mixture, workspace=workspace, config=config,
                                out_dir=out_dir, progress=progress)  # fmt: skip


def test_failed_cells_exit_nonzero_with_full_reasons_after_the_others_finish(
    ws, monkeypatch, capsys
):
    """`curate ablate` used to print "2 cell(s) failed", cut the reasons, and exit 0."""
    import train.ablate
    import train.embedder

    train_fn = LongFailureTrain(fail_for=("demo-video",))
    monkeypatch.setattr(train.ablate, "_default_train", lambda: train_fn)
    monkeypatch.setattr(train.embedder, "load_embedder", fake_load)
    args = ["ablate", "--mixtures", "demo-image,demo-video,demo-mixed", "--name", "fails",
            "--workspace", str(ws.root), "--no-progress"]  # fmt: skip
    code, out, err = _run_main(monkeypatch, capsys, args)
    assert code == 1
    assert len(train_fn.calls) == 3  # the failure did not stop the grid
    assert err == (
        f"error: 1 of 3 cells failed (reasons above and in "
        f"{ws.results / 'ablations' / 'fails' / 'log.jsonl'}); rerun the same command to "
        "retry them\n"
    )
    # The table says which cell failed; the reason follows it in full, on one line.
    lines = out.splitlines()
    reason = f"ValueError: {LongFailureTrain.REASON}"
    [line] = [x for x in lines if x.startswith("failed: demo-video")]
    assert line.endswith(reason) and "(run demo-video-symmetric_infonce-s0-" in line
    assert "…" not in out
    assert pq.read_table(store_path(ws)).num_rows == 2 * ROWS_PER_CELL  # the others finished

    # --json: the failures as data, the same exit code and line on stderr.
    code, out, err = _run_main(monkeypatch, capsys, [*args, "--json"])
    assert code == 1 and err.startswith("error: 1 of 3 cells failed (reasons in the JSON's")
    summary = json.loads(out)
    assert summary["counts"] == {"done": 0, "skipped": 2, "failed": 1, "pending": 0}
    [failed] = summary["failed"]
    assert failed["mixture"] == "demo-video" and failed["error"] == reason
    assert failed["run_id"].startswith("demo-video-") and failed["seed"] == 0
    assert summary["log"] == str(ws.results / "ablations" / "fails" / "log.jsonl")
    status = json.loads((ws.results / "ablations" / "fails" / "status.json").read_text())
    assert status["failed"] == summary["failed"]

    # Once the cause is gone the rerun retries only the failed cell and exits 0.
    monkeypatch.setattr(train.ablate, "_default_train", lambda: RecordingTrain())
    code, out, err = _run_main(monkeypatch, capsys, args)
    assert code == 0 and err == "" and "failed:" not in out


def test_a_set_typo_is_blamed_on_the_override(ws, monkeypatch, capsys):
    """It used to read `error: .../train/configs/tiny-cpu.toml: stages[0]: unknown keys [...]`."""
    for command in (
        ["ablate", "--mixtures", "demo-image", "--name", "typo"],
        ["train", "--mixture", "demo-image"],
    ):
        code, _, err = _run_main(monkeypatch, capsys, [
            *command, "--set", "stages.0.max_stepz=1", "--workspace", str(ws.root),
            "--no-progress",
        ])  # fmt: skip
        assert code == 1
        assert err.startswith(
            "error: --set stages.0.max_stepz=1: stages[0] has no key 'max_stepz' "
            "(did you mean 'max_steps'?); valid keys: "
        ), err
        assert "tiny-cpu.toml" not in err and err.count("\n") == 1
    assert not ws.runs.exists()
    code, _, err = _run_main(monkeypatch, capsys, [
        "ablate", "--mixtures", "demo-image", "--slurm", "partition", "--workspace", str(ws.root),
    ])  # fmt: skip
    assert code == 1 and err.startswith("error: --slurm expects key=value, found 'partition'")


def test_without_slurm_the_slurm_launcher_says_it_runs_here(ws, monkeypatch, capsys):
    import submitit

    real = submitit.AutoExecutor
    # As on a machine without sbatch, where submitit picks a non-Slurm executor by itself (the
    # debug one here, so that the jobs run in this process).
    monkeypatch.setattr(submitit, "AutoExecutor", lambda folder, cluster: real(folder, "debug"))
    spec = AblationSpec(mixtures=("demo-image", "demo-video"), launcher="slurm", name="noslurm")
    result = run_ablation(spec, ws, train_fn=RecordingTrain(), load_fn=fake_load, poll_s=0.01)
    assert result.counts()["done"] == 2
    err = capsys.readouterr().err
    assert err.count("warning: no Slurm found") == 1  # once, not per cell
    assert "runs the cells as debug processes on this machine" in err
