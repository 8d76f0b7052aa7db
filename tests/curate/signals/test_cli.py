"""The `score` and `decontaminate` commands: JSON output, user errors, help text."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from curate.cli import app, main
from curate.errors import ConfigError

from .conftest import pair

runner = CliRunner()


@pytest.fixture()
def manifests(make_manifest, coco_images):
    make_manifest(
        "train",
        [
            pair(
                "t0", query_text="A man riding a wave on a surfboard.", target_image=coco_images[0]
            ),
            pair("t1", query_text="A bus.", target_image=coco_images[1]),
        ],
    )
    make_manifest("test", [pair("e0", query_text="x", target_image=coco_images[0])])


def test_score_json(workspace, manifests):
    result = runner.invoke(
        app,
        ["score", "train", "-w", str(workspace.root), "--signals", "text,phash,near_dup", "--json"],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [s["signal"] for s in payload["signals"]] == ["text", "phash", "near_dup"]
    assert all(s["rows"] == 2 for s in payload["signals"])
    assert (workspace.manifest_dir("train") / "signals" / "near_dup.parquet").exists()


def test_score_table_and_decontaminate(workspace, manifests):
    result = runner.invoke(app, ["score", "train", "-w", str(workspace.root)])
    assert result.exit_code == 0, result.output
    assert "signals of train" in result.stdout and "phash" in result.stdout
    result = runner.invoke(
        app, ["decontaminate", "--train", "train", "--eval", "test", "-w", str(workspace.root)]
    )
    assert result.exit_code == 0, result.output
    assert "1 of 2 rows overlap test" in result.stdout
    result = runner.invoke(
        app,
        [
            "decontaminate",
            "--train",
            "train",
            "--eval",
            "test",
            "--phash-bits",
            "off",
            "--json",
            "-w",
            str(workspace.root),
        ],
    )
    payload = json.loads(result.stdout)
    assert payload["contaminated"] == 1 and payload["by_reason"]["media_hash"] == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["score", "train", "--signals", "clip"], "the clip signal needs weights"),
        (["score", "train", "--signals", "colour"], "unknown signal(s) ['colour']"),
        (["score", "nope"], "no manifest named 'nope'"),
        (["score", "train", "--near-dup-bits", "many"], "expects a number or 'off'"),
        (["decontaminate", "--train", "train", "--eval", "train"], "both the training"),
    ],
)
def test_user_errors_are_one_line(workspace, manifests, monkeypatch, capsys, argv, message):
    monkeypatch.setattr(sys, "argv", ["curate", *argv, "-w", str(workspace.root)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


@pytest.mark.parametrize("command", ["score", "decontaminate"])
def test_help_has_an_example(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.stdout and f"curate {command} " in result.stdout


def test_toml_config_with_command_line_overrides(workspace, manifests, tmp_path):
    from curate.signals.score import ScoreConfig

    config = tmp_path / "score.toml"
    config.write_text(
        '[score]\nsignals = ["text", "clip"]\nchunk_rows = 1\n'
        '[score.clip]\nmodel = "curate-tiny-clip"\npretrained = "none"\ndevice = "cpu"\n'
        "[score.frames]\nrate = 0.5\n"
    )
    loaded = ScoreConfig.from_toml(config)
    assert loaded.signals == ("text", "clip") and loaded.clip.pretrained is None
    assert loaded.frames.rate == 0.5 and loaded.chunk_rows == 1
    # The command line overrides the file: text only (the CLIP run is tested elsewhere).
    argv = ["score", "train", "--config", str(config), "--signals", "text", "--json"]
    result = runner.invoke(app, [*argv, "-w", str(workspace.root)])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert [s["signal"] for s in payload["signals"]] == ["text"]
    assert payload["signals"][0]["computed"] == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[score]\nsignal = ['text']\n")
    with pytest.raises(ConfigError, match="unknown score option"):
        ScoreConfig.from_toml(bad)
