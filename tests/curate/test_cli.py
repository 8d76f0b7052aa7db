"""Every command documents itself: help text and at least one example."""

from __future__ import annotations

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
