"""Options and output helpers shared by the command modules."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer
from rich.console import Console as _RichConsole
from rich.table import Table as _RichTable

from curate.workspace import Workspace

WorkspaceOption = typer.Option(
    None,
    "--workspace",
    "-w",
    envvar="CURATE_HOME",
    help="Workspace folder (manifests/, mixtures/, runs/, reports/). Default: current folder.",
    show_default=False,
)

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")


def workspace_from(path: Path | None) -> Workspace:
    return Workspace.resolve(path)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


class Table(_RichTable):
    """A rich Table whose cells fold onto more lines instead of being cut with "…": ids, paths,
    manifest names and patterns must stay readable in a narrow terminal or a pipe."""

    def add_column(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("overflow", "fold")
        header = args[0] if args else kwargs.get("header", "")
        if isinstance(header, str) and header:
            # Headers are single words or short phrases: never fold them mid-word.
            kwargs.setdefault("min_width", max(len(word) for word in header.split()))
        super().add_column(*args, **kwargs)


#: Width of output that goes to a file or a pipe: wide tables are kept whole rather than cropped
#: to rich's default of 80 columns (set COLUMNS to choose another).
PIPE_WIDTH = 160


class Console(_RichConsole):
    """A rich Console that, writing to a pipe or file, lays out for PIPE_WIDTH columns."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "width" not in kwargs and not self.is_terminal and not os.environ.get("COLUMNS"):
            self.width = PIPE_WIDTH
