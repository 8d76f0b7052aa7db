"""Commands `eval` (one run on a suite) and `ablate` (a grid of mixtures x losses x seeds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from curate.cli.common import (
    Console,
    JsonOption,
    Table,
    WorkspaceOption,
    print_json,
    workspace_from,
)
from curate.errors import ConfigError, CurateError

EVAL_EPILOG = """
Examples:

  curate eval --run runs/demo-image-infonce-s0-1a2b3c4d5e6f --suite demo

  curate eval --run demo-image-infonce-s0-1a2b3c4d5e6f --suite msrvtt-1ka --json

  curate eval --run runs/my-run --suite ./suites/mine.toml --force

Writes RUN/eval/SUITE/results.json and results.parquet. Shipped suites:
default, demo, msrvtt-1ka, webvid-covr (train/suites/); a .toml path names
your own.
"""

ABLATE_EPILOG = """
Examples:

  curate ablate --mixtures demo-image,demo-video,demo-mixed

  curate ablate --mixtures v1,v2,v3 --config tiny-cpu --losses mamcl,infonce --seeds 1,2,3

  curate ablate --mixtures v1,v2 --config unite-2b --launcher torchrun --nproc 8 --suite msrvtt-1ka

  curate ablate --mixtures v1,v2 --config unite-2b --launcher slurm --nproc 8 --slurm partition=gpu --slurm time_min=720

  curate ablate --mixtures v1,v2 --set stages.0.max_steps=5 --name smoke

--losses sets the loss of the last config stage that trains on each mixture
(stage 2 of the two-stage configs, or the stage a single-stage mixture
trains). Rerunning the same command skips finished cells, resumes
interrupted ones and retries failed ones. Results go to results/cells/ and
results/results.parquet (one row per cell, task and metric). A failed cell
does not stop the grid, but the command then exits with code 1; --json lists
the failed cells and their one-line reasons under "failed", and
results/ablations/NAME/log.jsonl keeps each failure's full traceback.
"""


def _split(text: str | None, what: str) -> list[str]:
    if text is None:
        return []
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"{what} is empty; give a comma-separated list")
    return items


def _table(title: str, header: list[str], rows: list[list[str]]):

    table = Table(title=title)
    for column in header:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def eval_command(
    run: str = typer.Option(..., "--run", "-r", help="Run folder, or a run id under runs/."),
    suite: str = typer.Option("default", "--suite", "-s", help="Suite name or .toml path."),
    device: str | None = typer.Option(
        None, "--device", help="cpu or cuda (default: cuda when present).", show_default=False
    ),
    force: bool = typer.Option(False, "--force", help="Recompute even when results are current."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress."),
    workspace: Path | None = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Evaluate a trained run on a retrieval suite and write the results into the run folder."""
    from train.evaluate import eval_dir, evaluate_run

    ws = workspace_from(workspace)
    results = evaluate_run(
        run, suite, ws, device=device, force=force, progress=progress and not json_output
    )
    if json_output:
        print_json({**results.to_dict(), "reused": results.reused})
        return
    from train.metrics import summarise

    header = ["task", "group", "pool", "queries x candidates", "frames", "pixels", "metrics"]
    rows = [
        [task.task, task.group, task.pool, f"{task.queries} x {task.candidates}",
         str(task.video_frames), str(task.max_pixels), summarise(task.metrics, digits=3)]
        for task in results.tasks
    ]  # fmt: skip
    console = Console()
    console.print(
        _table(f"suite {results.suite.name} · run {Path(results.run).name}", header, rows)
    )
    skipped = sum(t.skipped_media for t in results.tasks)
    notes = [f"{t.task}: {n}" for t in results.tasks for n in t.notes]
    console.print(
        f"ties {results.suite.ties} · {'reused stored results' if results.reused else f'{results.seconds:.1f} s'}"
        f" · skipped media {skipped} · written to {eval_dir(Path(results.run), results.suite.name)}"
    )
    for note in notes:
        console.print(f"note: {note}")


def ablate_command(
    mixtures: str = typer.Option(
        ..., "--mixtures", "-m", help="Comma-separated mixtures: NAME[@VERSION] or folders."
    ),
    config: str = typer.Option("tiny-cpu", "--config", "-c", help="Training config or .toml."),
    losses: str | None = typer.Option(
        None,
        "--losses",
        help="Comma-separated losses: mamcl, infonce, symmetric_infonce.",
        show_default=False,
    ),
    seeds: str | None = typer.Option(
        None, "--seeds", help="Comma-separated seeds (default: the config's).", show_default=False
    ),
    suite: str = typer.Option("default", "--suite", "-s", help="Evaluation suite or .toml."),
    launcher: str = typer.Option("local", "--launcher", help="local, torchrun or slurm."),
    nproc: int = typer.Option(1, "--nproc", help="Processes (GPUs) per cell for torchrun/slurm."),
    name: str | None = typer.Option(
        None, "--name", help="Ablation name (default: a hash of the grid).", show_default=False
    ),
    overrides: list[str] = typer.Option(
        [], "--set", help="Config override KEY=VALUE (dotted keys); repeatable."
    ),
    slurm: list[str] = typer.Option(
        [],
        "--slurm",
        help="Slurm option KEY=VALUE: partition, account, qos, constraint, "
        "time_min, cpus_per_task, mem_gb; repeatable.",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show grid progress."),
    workspace: Path | None = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Train and evaluate every (mixture, loss, seed) cell and append to the results store."""
    from train.ablate import AblationSpec, failure_lines, run_ablation, summary_rows
    from train.config import parse_override

    ws = workspace_from(workspace)
    try:
        seed_values = tuple(int(s) for s in _split(seeds, "--seeds"))
    except ValueError:
        raise ConfigError(
            f"--seeds must be integers separated by commas, found {seeds!r}"
        ) from None
    slurm_options: dict[str, Any] = {}
    for item in slurm:
        key, value = parse_override(item, option="--slurm")
        slurm_options[key] = value
    spec = AblationSpec(
        mixtures=tuple(_split(mixtures, "--mixtures")),
        config=config,
        losses=tuple(_split(losses, "--losses")),
        seeds=seed_values,
        suite=suite,
        overrides=tuple(parse_override(o) for o in overrides),
        name=name or "",
        launcher=launcher,  # type: ignore[arg-type]
        nproc=nproc,
        slurm=slurm_options,
    )
    err = Console(stderr=True)
    # A bar only on a terminal: in a log it would leave a stale line before any error.
    show = progress and not json_output and err.is_terminal
    bar = None
    if show:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        bar = Progress(TextColumn("[bold]cells[/]"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                       transient=True)  # fmt: skip
        bar.start()
        task_id = bar.add_task("expanding the grid", total=None)

    def on_progress(p) -> None:
        if bar is None:
            return
        finished = p.done + p.skipped + p.failed
        bar.update(task_id, total=p.total, completed=finished,
                   description=f"done {p.done} · skipped {p.skipped} · running {p.running} · "
                   f"failed {p.failed} · {p.event}: {p.cell.label}")  # fmt: skip

    try:
        # Trainer bars would fight the grid bar; the runs' metrics.jsonl has the steps.
        result = run_ablation(spec, ws, progress=on_progress, train_progress=False)
    finally:
        if bar is not None:
            bar.stop()
    if json_output:
        print_json(result.to_dict())
    else:
        header, rows = summary_rows(result)
        console = Console()
        console.print(
            _table(f"ablation {result.ablation} · suite {result.suite.name}", header, rows)
        )
        counts = result.counts()
        console.print(
            f"{counts['done']} trained, {counts['skipped']} already done, {counts['failed']} failed "
            f"in {result.seconds:.1f} s · store {result.store} · log {result.log}",
            markup=False,
        )
        for line in failure_lines(result):  # one line each: the table has no room for them
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    if result.failed:
        # An error, not typer.Exit: `curate.cli.main` runs Typer outside standalone mode, where
        # an Exit's code is returned, not used, so the command would exit 0.
        where = "in the JSON's `failed`" if json_output else "above"
        raise CurateError(
            f"{len(result.failed)} of {len(result.cells)} cells failed (reasons {where} and in "
            f"{result.log}); rerun the same command to retry them"
        )


def register(app: typer.Typer) -> None:
    app.command("eval", epilog=EVAL_EPILOG)(eval_command)
    app.command("ablate", epilog=ABLATE_EPILOG)(ablate_command)
