"""Command `train`: train an embedder on a mixture (resumes a killed run)."""

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

TRAIN_EPILOG = """
Examples:

  curate train --mixture demo-mixed --config tiny-cpu

  curate train --mixture v3@1a2b3c4d --config unite-2b --out runs/v3-2b

  curate train --mixture v3 --config tiny-cpu --set stages.1.loss=infonce --set seed=2

  torchrun --nproc_per_node 8 -m curate.cli train --mixture v3 --config unite-7b --out runs/v3-7b

Rerunning the same command resumes a killed run from its last checkpoint; a finished run returns at once.

Stages train on the mixture stages their `data` names; a mixture with a single stage of another name is trained by every stage of the config.
"""


def train_command(
    mixture: str = typer.Option(
        ...,
        "--mixture",
        "-m",
        help="Mixture NAME\\[@VERSION] in the workspace, or a mixture folder.",
    ),
    config: str = typer.Option(
        "tiny-cpu",
        "--config",
        "-c",
        help="Training config: tiny-cpu, unite-2b, unite-7b, or a .toml path.",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Run folder (default: runs/<mixture>-<version>-<config>-<hash>).",
        show_default=False,
    ),
    overrides: list[str] = typer.Option(
        [],
        "--set",
        help="Override a config value: KEY=VALUE with dotted keys, e.g. stages.0.lr=1e-4; "
        "repeatable.",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    workspace: Path | None = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Train the embedder of a config on a mixture: both stages, checkpoints, resume."""
    from train.config import load_train_config, parse_override
    from train.distributed import is_main_process
    from train.trainer import default_run_dir, run_summary, train_run

    ws = workspace_from(workspace)
    cfg = load_train_config(config, dict(parse_override(o) for o in overrides))
    out_dir = out if out is not None else default_run_dir(ws, mixture, cfg)
    run = train_run(mixture=mixture, workspace=ws, config=cfg, out_dir=out_dir, progress=progress)
    if not is_main_process():  # under torchrun, rank 0 reports
        return
    summary = run_summary(run)
    if json_output:
        print_json(summary)
        return
    _print_summary(summary)


def _print_summary(summary: dict) -> None:

    console = Console()
    table = Table(title=f"run {summary['run']}")
    for column in ("stage", "rows", "steps", "first loss", "last loss", "pairs/s"):
        table.add_column(column, justify="left" if column == "stage" else "right")

    def fmt(value, digits=4):
        return "-" if value is None else f"{value:.{digits}f}"

    for stage in summary["stages"]:
        if stage["skipped"]:
            table.add_row(stage["name"], "-", "skipped", "-", "-", "-")
            continue
        table.add_row(
            stage["name"],
            str(stage["rows"]),
            str(stage["steps"]),
            fmt(stage["first_loss"]),
            fmt(stage["last_loss"]),
            fmt(stage["samples_per_s"], 1),
        )
    console.print(table)
    console.print(
        f"mixture {summary['mixture']} · config {summary['config']} ({summary['config_hash']}) · "
        f"backbone {summary['backbone']} · seed {summary['seed']} · "
        f"skipped media {summary['skipped_media']}"
    )


def register(app: typer.Typer) -> None:
    app.command("train", epilog=TRAIN_EPILOG)(train_command)
