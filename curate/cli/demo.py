"""Command `demo`: the whole loop on built-in demo data."""

from __future__ import annotations

from pathlib import Path

import typer

from curate.cli.common import (
    Console,
    JsonOption,
    Table,
    WorkspaceOption,
    print_json,
    workspace_from,
)
from curate.errors import ConfigError

STEPS = ("ingest", "score", "mix", "ablate", "report")


def demo_command(
    until: str = typer.Option(
        "report", "--until", help="Stop after this step: ingest, score, mix, ablate or report."
    ),
    seeds: str = typer.Option("1,2,3", "--seeds", help="Seeds of the demo ablation."),
    losses: str = typer.Option("mamcl,infonce", "--losses", help="Losses of the demo ablation."),
    epochs: int = typer.Option(3, "--epochs", min=1, help="Training epochs per cell."),
    workspace: Path | None = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Run the whole loop on small built-in corpora, from ingest to the HTML report.

    Builds the corpora in real native formats from packaged media, ingests them,
    mixes three recipes, trains and evaluates a tiny embedder per mixture, loss
    and seed on the CPU, and writes the HTML report.
    """
    from curate.demo import DemoOptions, run_demo

    if until not in STEPS:
        raise ConfigError(f"--until must be one of {', '.join(STEPS)}, found {until!r}")
    try:
        options = DemoOptions(
            seeds=tuple(int(s) for s in seeds.split(",") if s.strip()),
            losses=tuple(s.strip() for s in losses.split(",") if s.strip()),
            epochs=epochs,
            steps=STEPS[: STEPS.index(until) + 1],
        )
    except ValueError:
        raise ConfigError(f"--seeds takes integers separated by commas, found {seeds!r}") from None
    ws = workspace_from(workspace)
    console = Console(stderr=True)
    result = run_demo(ws, options, progress=None if json_output else console.log)
    if json_output:
        print_json(
            {
                "workspace": str(ws.root),
                "manifests": result.manifests,
                "mixtures": result.mixtures,
                "ablation": result.ablation,
                "report": str(result.report) if result.report else None,
            }
        )
        return
    out = Console()
    table = Table(title=f"demo manifests in {ws.manifests}")
    for column in ("manifest", "read", "accepted", "rejected", "pairs", "reject reasons"):
        table.add_column(column)
    for name, s in result.manifests.items():
        table.add_row(
            name,
            f"{s['read']:,}",
            f"{s['accepted']:,}",
            f"{s['rejected']:,}",
            ", ".join(f"{k} {v}" for k, v in s["by_pair"].items()),
            ", ".join(f"{k} {v}" for k, v in s["rejected_by_reason"].items()) or "-",
        )
    out.print(table)
    if result.mixtures:
        out.print(
            "mixtures: " + ", ".join(f"{name}@{v[:8]}" for name, v in result.mixtures.items())
        )
    if result.ablation:
        counts = result.ablation["counts"]
        out.print(
            f"ablation {result.ablation['ablation']}: {counts['done']} trained, "
            f"{counts['skipped']} already done, {counts['failed']} failed "
            f"({result.ablation['seconds']:.0f} s); results in {result.ablation['store']}"
        )
        for cell in result.ablation["cells"]:
            if cell["state"] == "failed":
                out.print(f"  [red]failed[/red] {cell['run_id']}: {cell['error']}")
    if result.report:
        out.print(f"[bold]report:[/bold] {result.report}")


def register(app: typer.Typer) -> None:
    app.command(
        "demo",
        epilog=(
            "Examples:\n\n  curate demo\n\n  curate demo --until ingest\n\n"
            "  curate demo --workspace /tmp/curate-demo --seeds 1 --json"
        ),
    )(demo_command)
