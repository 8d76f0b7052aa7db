"""`curate train`: help with examples, a short real run with --json, resume, clean errors."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from curate.cli import app, main
from tests.train.mixtures import real_rows, write_mixture


def test_help_has_examples():
    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and "curate train --mixture" in result.output
    assert "--set" in result.output and "resumes a killed run" in result.output


@pytest.mark.slow
def test_train_command_runs_and_reports_json(shared_data, tmp_path):
    rows = real_rows(shared_data, videos=False)[:10]
    mixture = write_mixture(
        tmp_path / "mix", {"retrieval_adaptation": rows, "instruction_tuning": rows[:6]}
    )
    args = [
        "train",
        "--mixture",
        str(mixture),
        "--config",
        "tiny-cpu",
        "--workspace",
        str(tmp_path / "ws"),
        "--set",
        "stages.0.max_steps=2",
        "--set",
        "stages.1.max_steps=1",
        "--set",
        "seed=3",
        "--no-progress",
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["complete"] and summary["seed"] == 3 and summary["mixture"] == "handmade@v0"
    assert [(s["name"], s["steps"]) for s in summary["stages"]] == [
        ("retrieval_adaptation", 2),
        ("instruction_tuning", 1),
    ]
    run = tmp_path / "ws" / "runs"
    (folder,) = list(run.iterdir())  # the default run folder: <mixture>-<version>-<config>-<hash>
    assert folder.name.startswith("handmade-v0-tiny-cpu-")
    again = CliRunner().invoke(app, args[:-1])  # finished: returns at once, prints a table
    assert again.exit_code == 0 and "retrieval_adaptation" in again.output


def test_bad_options_are_one_line_errors(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(
        sys, "argv", ["curate", "train", "--mixture", str(tmp_path / "none"), "--config", "nope"]
    )
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no training config named 'nope'") and "\n" not in err
    monkeypatch.setattr(
        sys,
        "argv",
        ["curate", "train", "--mixture", str(tmp_path / "none"), "--set", "stages.0.lr"],
    )
    with pytest.raises(SystemExit):
        main()
    assert "--set expects key=value" in capsys.readouterr().err


def test_a_folder_that_is_not_a_mixture_leaves_no_run_behind(monkeypatch, capsys, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "not-a-mixture"
    folder.mkdir()
    pq.write_table(pa.table({"foo": [1, 2]}), folder / "stuff.parquet")
    out = tmp_path / "runs" / "r"
    monkeypatch.setattr(
        sys, "argv", ["curate", "train", "--mixture", str(folder), "--out", str(out)]
    )
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: mixture stage") and "lacks columns" in err
    assert err.count("\n") == 1
    assert not out.exists()  # the run folder is made only once the mixture is usable
