"""Command `demo`: the whole loop on built-in demo data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.text import Text

from curate.cli.common import (
    Console,
    JsonOption,
    Table,
    WorkspaceOption,
    print_json,
    workspace_from,
)
from curate.errors import ConfigError, CurateError

if TYPE_CHECKING:
    from curate.demo import DemoResult
    from curate.workspace import Workspace

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
    else:
        _print_summary(ws, result)
    failed = result.ablation.get("failed", [])
    if failed:
        # As `curate ablate`: the whole loop ran, but a failed cell makes the command fail.
        where = "in the JSON's `ablation.failed`" if json_output else "above"
        raise CurateError(
            f"{len(failed)} of {len(result.ablation['cells'])} demo cells failed (reasons "
            f"{where} and in {result.ablation['log']}); rerun the same command to retry them"
        )


def _print_summary(ws: Workspace, result: DemoResult) -> None:
    """The manifests, mixtures, ablation counts with each failed cell's reason, and the report.
    Names, paths and reasons are printed as text, not as rich markup."""
    out = Console()
    table = Table(title=Text(f"demo manifests in {ws.manifests}"))
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
            "mixtures: " + ", ".join(f"{name}@{v[:8]}" for name, v in result.mixtures.items()),
            markup=False,
        )
    if result.ablation:
        counts = result.ablation["counts"]
        out.print(
            f"ablation {result.ablation['ablation']}: {counts['done']} trained, "
            f"{counts['skipped']} already done, {counts['failed']} failed "
            f"({result.ablation['seconds']:.0f} s); results in {result.ablation['store']}",
            markup=False,
        )
        for failure in result.ablation["failed"]:
            out.print(
                Text.assemble(
                    ("failed", "red"),
                    f": {failure['cell']} (run {failure['run_id']}): {failure['error']}",
                ),
                soft_wrap=True,
            )
    if result.report:
        out.print(Text.assemble(("report:", "bold"), f" {result.report}"))


def register(app: typer.Typer) -> None:
    app.command(
        "demo",
        epilog=(
            "Examples:\n\n  curate demo\n\n  curate demo --until ingest\n\n"
            "  curate demo --workspace /tmp/curate-demo --seeds 1 --json"
        ),
    )(demo_command)
