"""Every command documents itself: help text and at least one example."""

from __future__ import annotations

import json
import sys

import pytest
import typer.main
from typer.testing import CliRunner

from curate.cli import app


def _commands() -> list[tuple[str, ...]]:
    root = typer.main.get_command(app)
    found: list[tuple[str, ...]] = []

    def walk(command, path: tuple[str, ...]) -> None:
        # Typer vendors its own click: recognise groups by their sub-commands.
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
        else:
            found.append(path)

    walk(root, ())
    return found


def test_every_planned_command_is_registered() -> None:
    names = {path[0] for path in _commands()}
    assert {"ingest", "formats", "stats", "mix", "score", "train", "eval", "ablate", "report",
            "demo"} <= names  # fmt: skip


@pytest.mark.parametrize("path", _commands(), ids=" ".join)
def test_command_help_has_a_description_and_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert "Example" in result.output, f"`curate {' '.join(path)} --help` shows no example"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["no-such-command"], "No such command 'no-such-command'"),
        (["stats", "x", "--no-such-option"], "No such option: --no-such-option"),
        (["ingest", "corpus.json", "--name", "x", "--workers", "0"], "'--workers'"),
        (["ingest", "corpus.json", "--name", "x", "--probe-timeout", "-1"], "'--probe-timeout'"),
        (["mix", "--recipe", "v1", "--seed", "abc"], "'--seed'"),
        (["mix"], "Missing option '--recipe'"),
        (["report", "--confidence", "high"], "'--confidence'"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_1(monkeypatch, capsys, argv, message) -> None:
    """Typer vendors click: its usage errors must not escape `main` as a traceback."""
    from curate.cli import main

    monkeypatch.setattr(sys, "argv", ["curate", *argv])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert "--help`" in err  # says where to look


def test_no_arguments_prints_help_and_succeeds(monkeypatch, capsys) -> None:
    from curate.cli import main

    monkeypatch.setattr(sys, "argv", ["curate"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 0
    captured = capsys.readouterr()
    assert "Usage:" in captured.out and captured.err == ""


def test_ingest_refuses_an_empty_split(monkeypatch, capsys, tmp_path) -> None:
    from curate.cli import main

    corpus = tmp_path / "pairs.tsv"
    corpus.write_text("a query\ta passage\n")
    argv = ["curate", "ingest", str(corpus), "--name", "x", "--split", " ", "-w", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 1
    assert capsys.readouterr().err == (
        "error: --split is empty; give a split name such as train, val or test\n"
    )
    assert not (tmp_path / "manifests" / "x").exists()


def test_ingest_and_stats_show_records_the_reader_altered(tmp_path) -> None:
    from curate.cli import app

    videos = tmp_path / "videos"
    videos.mkdir()
    corpus = tmp_path / "anet.json"
    # The second segment ends past the video's 10 s: ActivityNet's reader clamps it to 10 s.
    entry = {"duration": 10.0, "timestamps": [[0, 4], [5, 10.5]], "sentences": ["a", "b"]}
    corpus.write_text(json.dumps({"v_x": entry}))
    runner = CliRunner()
    common = ["-w", str(tmp_path)]
    ingested = runner.invoke(
        app, ["ingest", str(corpus), "-n", "anet", "--format", "activitynet", "--no-probe", *common]
    )
    assert ingested.exit_code == 0, ingested.output
    assert "records the activitynet reader altered: segment_end_clamped_to_duration 1" in (
        ingested.output
    )
    shown = runner.invoke(app, ["stats", "anet", "--json", *common])
    assert json.loads(shown.output)["adapter_changes"] == {"segment_end_clamped_to_duration": 1}
    table = runner.invoke(app, ["stats", "anet", *common], terminal_width=200)
    assert "records the reader altered" in table.output
    assert "segment_end_clamped_to_duration" in table.output and "50.0%" in table.output
