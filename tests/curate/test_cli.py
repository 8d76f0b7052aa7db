"""Every command documents itself: help text and at least one example."""

from __future__ import annotations

import json
import shutil
import sys

import pyarrow.parquet as pq
import pytest
import typer.main
from typer.testing import CliRunner

from curate.cli import app
from curate.errors import InputError
from curate.workspace import Workspace


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


def test_ingest_and_stats_show_records_the_reader_altered(tmp_path, shared_data) -> None:
    shutil.copy(shared_data / "videos/mmaction2/test.mp4", tmp_path / "v_x.mp4")  # 10.0 s
    corpus = tmp_path / "anet.json"
    # The JSON says 60 s. Segment 2 ends past that: the reader clamps it to 60 s. Segments 2
    # and 3 end past the real file's 10 s: ingest moves their ends to 10 s. Segment 4 starts
    # after the real end: rejected.
    entry = {
        "duration": 60.0,
        "timestamps": [[0, 4], [5, 60.5], [6, 30], [20, 25]],
        "sentences": ["a", "b", "c", "d"],
    }
    corpus.write_text(json.dumps({"v_x": entry}))
    runner = CliRunner()
    common = ["-w", str(tmp_path)]
    ingested = runner.invoke(app, ["ingest", str(corpus), "-n", "anet", *common])
    assert ingested.exit_code == 0, ingested.output
    out = ingested.output
    assert "4 read, 3 accepted, 1 rejected" in out
    assert "records the activitynet reader altered: segment_end_clamped_to_duration 1" in out
    assert "2 clip end(s) past the end of their video as probed were moved to it" in out
    assert (
        "malformed_record, e.g.: the target clip starts at 20 s, at or after (or within 1 ms of) the end"
        in out
    )
    shown = json.loads(runner.invoke(app, ["stats", "anet", "--json", *common]).output)
    assert shown["adapter_changes"] == {"segment_end_clamped_to_duration": 1}
    assert shown["clip_ends_clamped"] == 2
    from curate.manifest import open_manifest

    rows = open_manifest(Workspace.resolve(tmp_path), "anet").read_rows().to_pylist()
    clips = [(r["target_clip_start"], r["target_clip_end"], r["duration"]) for r in rows]
    assert clips == [(0.0, 4.0, 4.0), (5.0, 10.0, 5.0), (6.0, 10.0, 4.0)]
    table = runner.invoke(app, ["stats", "anet", *common], terminal_width=200)
    assert "records the reader altered" in table.output
    assert "segment_end_clamped_to_duration" in table.output and "25.0%" in table.output


def test_an_ingest_that_accepts_nothing_fails_and_keeps_the_manifest_in_place(
    tmp_path, shared_data
) -> None:
    corpus = tmp_path / "anet.json"
    entry = {"duration": 10.0, "timestamps": [[0, 4]], "sentences": ["a"]}
    corpus.write_text(json.dumps({"v_x": entry}))
    argv = ["ingest", str(corpus), "-n", "a", "-w", str(tmp_path), "--media-root"]
    (tmp_path / "videos").mkdir()
    shutil.copy(shared_data / "videos/mmaction2/test.mp4", tmp_path / "videos" / "v_x.mp4")
    good = CliRunner().invoke(app, [*argv, str(tmp_path / "videos")])
    assert good.exit_code == 0, good.output
    manifest = tmp_path / "manifests" / "a"
    before = sorted(p.read_bytes() for p in (manifest / "rows").iterdir())

    # A rebuild with the wrong media root accepts nothing: it fails, the good manifest stays.
    (tmp_path / "elsewhere").mkdir()
    result = CliRunner().invoke(app, [*argv, str(tmp_path / "elsewhere"), "--replace"])
    assert result.exit_code == 1
    assert isinstance(result.exception, InputError)
    message = str(result.exception)
    assert "nothing accepted, all 1 records were rejected (1 as missing_media" in message
    assert "v_x.mp4" in message and "no manifest was written" in message
    assert sorted(p.read_bytes() for p in (manifest / "rows").iterdir()) == before
    # The failed attempt's ledger is kept aside for inspection.
    rejected = tmp_path / "manifests" / ".a.rejected"
    assert [r["reason"] for r in pq.read_table(rejected / "ledger").to_pylist()] == [
        "missing_media"
    ]
    # It is not a manifest: nothing lists (or mixes) it.
    listed = CliRunner().invoke(app, ["manifests", "--json", "-w", str(tmp_path)])
    assert [m["name"] for m in json.loads(listed.output)] == ["a"]

    # A first ingest that accepts nothing leaves no manifest, so a fixed rerun is not "up to
    # date": it simply builds.
    (tmp_path / "videos" / "v_x.mp4").rename(tmp_path / "v_x.mp4.away")
    argv_b = ["ingest", str(corpus), "-n", "b", "-w", str(tmp_path), "--media-root"]
    failed = CliRunner().invoke(app, [*argv_b, str(tmp_path / "videos")])
    assert failed.exit_code == 1 and not (tmp_path / "manifests" / "b").exists()
    (tmp_path / "v_x.mp4.away").rename(tmp_path / "videos" / "v_x.mp4")
    fixed = CliRunner().invoke(app, [*argv_b, str(tmp_path / "videos")])
    assert fixed.exit_code == 0 and "1 accepted" in fixed.output and "written" in fixed.output
    assert not (tmp_path / "manifests" / ".b.rejected").exists()  # stale once built


def test_formats_and_ingest_help_are_readable_in_80_columns(monkeypatch) -> None:
    from curate.adapters import all_adapters

    monkeypatch.setenv("COLUMNS", "80")  # rich's tables read it (a pipe is laid out wider)
    listing = CliRunner().invoke(app, ["formats"], terminal_width=80).output
    assert "…" not in listing
    # Folded cells: the "files" column holds every pattern in full once its lines are joined.
    files_column = "".join(
        cells[3].replace(" ", "")
        for line in listing.splitlines()
        if len(cells := line.split("│")) == 6
    )
    for cls in all_adapters().values():
        for pattern in cls.patterns:
            assert pattern in files_column, pattern
    help_text = CliRunner().invoke(app, ["ingest", "--help"], terminal_width=80).output
    assert "…" not in help_text and "--allow-outside" in help_text


def test_clips_that_become_the_same_clip_are_duplicates(tmp_path, shared_data) -> None:
    shutil.copy(shared_data / "videos/mmaction2/test.mp4", tmp_path / "v_x.mp4")  # 10.0 s
    corpus = tmp_path / "anet.json"
    # The same sentence on [3, 15] and [3, 16] of a 10 s video: both are [3, 10] in truth.
    entry = {"duration": 20.0, "timestamps": [[3, 15], [3, 16]], "sentences": ["a", "a"]}
    corpus.write_text(json.dumps({"v_x": entry}))
    result = CliRunner().invoke(app, ["ingest", str(corpus), "-n", "d", "-w", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "2 read, 1 accepted, 1 rejected" in result.output
    assert "duplicate_id 1" in result.output


def test_main_passes_on_an_exit_code_a_command_returns(monkeypatch) -> None:
    import curate.cli as cli

    # Without standalone mode, typer returns a command's `typer.Exit(code)` instead of exiting.
    monkeypatch.setattr(cli, "app", lambda standalone_mode: 3)
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 3


def test_output_to_a_pipe_is_laid_out_wide_not_cropped(monkeypatch) -> None:
    import io

    from curate.cli.common import PIPE_WIDTH, Console, Table

    monkeypatch.delenv("COLUMNS", raising=False)
    buffer = io.StringIO()  # not a terminal
    console = Console(file=buffer)
    assert console.width == PIPE_WIDTH
    table = Table()
    for index in range(12):
        table.add_column(f"column{index}")
    table.add_row(*(f"value-{index}" for index in range(12)))
    console.print(table)
    assert "value-11" in buffer.getvalue()  # the last column is there, whole
    monkeypatch.setenv("COLUMNS", "100")
    assert Console(file=io.StringIO()).width == 100  # COLUMNS still decides when set


def test_an_os_error_is_one_line_naming_the_file(monkeypatch, capsys) -> None:
    import curate.cli as cli

    def read_only(standalone_mode: bool) -> None:
        raise PermissionError(13, "Permission denied", "/data/ws/mixtures/v3")

    monkeypatch.setattr(cli, "app", read_only)
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(
        "error: Permission denied: /data/ws/mixtures/v3; check that the workspace"
    )
