"""Command `demo`: the whole loop on built-in demo data."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from curate.cli.common import JsonOption, WorkspaceOption, print_json, workspace_from


def demo_command(
    workspace: Path | None = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Build small corpora in real native formats from packaged media, ingest them and show their
    statistics."""
    from curate.demo import ingest_demo

    ws = workspace_from(workspace)
    console = Console(stderr=True)
    stats = ingest_demo(ws, progress=None if json_output else console.log)
    if json_output:
        print_json({"workspace": str(ws.root), "manifests": stats})
        return
    table = Table(title=f"demo manifests in {ws.manifests}")
    for column in ("manifest", "read", "accepted", "rejected", "pairs", "reject reasons"):
        table.add_column(column)
    for name, s in stats.items():
        table.add_row(
            name,
            f"{s['read']:,}",
            f"{s['accepted']:,}",
            f"{s['rejected']:,}",
            ", ".join(f"{k} {v}" for k, v in s["by_pair"].items()),
            ", ".join(f"{k} {v}" for k, v in s["rejected_by_reason"].items()) or "-",
        )
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command(
        "demo",
        epilog="Examples:\n\n  curate demo\n\n  curate demo --workspace /tmp/curate-demo --json",
    )(demo_command)
