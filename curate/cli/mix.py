"""Commands `mix`, `mixtures list|show|diff` and `export`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from curate.cli.common import (
    Console,
    JsonOption,
    Table,
    WorkspaceOption,
    print_json,
    workspace_from,
)

MIX_EPILOG = """
One name, one recipe file: the recipe's `name` decides where its versions go and what NAME
resolves to, so it must equal the file's stem and may not be the name of another recipe file
(mixtures/NAME.toml in the workspace, else the shipped one). Give a copied recipe a new name.
Each build, or rebuild of a version already built, makes that version NAME's current one.

Examples:

  curate mix --recipe v3

  curate mix --recipe demo-mixed --dry-run

  curate mix --recipe mixtures/my-recipe.toml --seed 7 --json
"""

mixtures_app = typer.Typer(
    name="mixtures",
    help="List, show and compare built mixtures.",
    no_args_is_help=True,
    add_completion=False,
)


def mix_command(
    recipe: str = typer.Option(
        ...,
        "--recipe",
        "-r",
        help="Recipe name (mixtures/NAME.toml in the workspace, then the shipped recipes v1, v2, "
        "v3, demo-*) or a path to a .toml file whose stem is its `name` and is not another "
        "recipe's name.",
    ),
    seed: int | None = typer.Option(None, "--seed", help="Override the recipe's seed."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the plan (counts per stage and component) without writing."
    ),
    memory_limit: str | None = typer.Option(
        None, "--memory-limit", help="DuckDB memory limit, e.g. 4GB (default: DuckDB's)."
    ),
    threads: int | None = typer.Option(None, "--threads", min=1, help="DuckDB threads."),
    workspace: Path | None = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Build a versioned, content-addressed mixture from a TOML recipe and make it current."""
    from curate.mix import build_mixture, plan_to_dict

    ws = workspace_from(workspace)
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=json_output or not console.is_terminal,
    ) as bar:
        task = bar.add_task("mixing", total=None)

        def progress(step: str, done: int, total: int | None) -> None:
            bar.update(task, description=step, completed=done, total=total)

        result = build_mixture(
            ws,
            recipe,
            seed=seed,
            dry_run=dry_run,
            memory_limit=memory_limit,
            threads=threads,
            progress=progress,
        )
    if json_output:
        out = {"name": result.plan.recipe.name, "version": result.version, "path": str(result.path)}
        out["built"] = result.built
        out["dry_run"] = dry_run
        if dry_run:
            out["plan"] = plan_to_dict(result.plan)
        else:
            out["rows"] = result.mixture.rows if result.mixture else 0
        print_json(out)
        return
    _print_plan(result.plan)
    name = f"{result.plan.recipe.name}@{result.version}"
    if dry_run and (result.path / "mixture.json").is_file():
        typer.echo(f"dry run: {name} is already built at {result.path}")
    elif dry_run:
        typer.echo(f"dry run: would write {name} to {result.path}")
    elif result.built:
        typer.echo(f"wrote {name} ({result.mixture.rows:,} rows) to {result.path}")  # type: ignore[union-attr]
    else:
        typer.echo(f"{name} is already built (versions are immutable): {result.path}")


def _print_plan(plan) -> None:
    console = Console()
    filters = Table(title=f"{plan.recipe.name}@{plan.version}: filters")
    for column in ("step", "rule", "removed"):
        filters.add_column(column, justify="right" if column == "removed" else "left")
    filters.add_row("inputs", f"{len(plan.manifests)} manifest(s), {plan.rows_read:,} rows", "")
    if plan.skipped:
        filters.add_row(
            "not read", "no component selects their rows: " + ", ".join(plan.skipped), ""
        )
    filters.add_row(
        "unselected", "rows no component selects", f"{plan.rows_read - plan.candidates:,}"
    )
    for step in plan.filters:
        filters.add_row(
            step.step, step.rule + (f" ({step.note})" if step.note else ""), f"{step.removed:,}"
        )
    filters.add_row("kept", "", f"{plan.kept:,}")
    console.print(filters)
    for stage in plan.stages:
        target = stage.target if stage.target != "all" else f"all -> {stage.resolved_target:,}"
        table = Table(
            title=f"stage {stage.name}: target {target}, {stage.taken:,} rows, "
            f"on_shortfall={stage.on_shortfall}"
        )
        for column in (
            "component",
            "share",
            "matched",
            "available",
            "capacity",
            "requested",
            "taken",
            "shortfall",
        ):
            table.add_column(column, justify="left" if column == "component" else "right")
        for c in stage.components:
            table.add_row(
                c.name,
                f"{100 * c.share:.1f}%",
                f"{c.matched:,}",
                f"{c.available:,}",
                f"{c.capacity:,}",
                f"{c.requested:,}",
                f"{c.taken:,}" + (f" (+{c.redistributed:,})" if c.redistributed else ""),
                f"{c.shortfall:,}" if c.shortfall else "",
            )
        console.print(table)
        for c in stage.components:
            if c.shortfall:
                console.print(f"shortfall {stage.name}/{c.name}: {c.shortfall_reason}")
    for note in plan.notes:
        console.print(f"note: {note}")


def list_command(workspace: Path | None = WorkspaceOption, json_output: bool = JsonOption) -> None:
    """List built mixture versions, oldest first within each name; * marks the current one."""
    from curate.mixtures import list_mixtures, load_mixture

    ws = workspace_from(workspace)
    found = list_mixtures(ws)
    current = {name: load_mixture(ws, name).version for name in {m.name for m in found}}
    if json_output:
        print_json(
            [
                {
                    "name": m.name,
                    "version": m.version,
                    "path": str(m.path),
                    "created": m.created,
                    "rows": m.rows,
                    "stages": {s: m.meta["stages"][s]["rows"] for s in m.stages},
                    "current": current[m.name] == m.version,
                }
                for m in found
            ]
        )
        return
    table = Table(title="mixtures")
    for column in ("name", "version", "created", "rows", "stages"):
        table.add_column(column)
    for m in found:
        stages = ", ".join(f"{s} {m.meta['stages'][s]['rows']:,}" for s in m.stages)
        mark = " *" if current[m.name] == m.version else ""
        table.add_row(m.name, m.version + mark, m.created, f"{m.rows:,}", stages)
    Console().print(table)
    if not found:
        typer.echo("no mixtures built yet; build one with `curate mix --recipe demo-mixed`")


def show_command(
    ref: str = typer.Argument(
        ...,
        help="NAME (its current version: the last built or rebuilt) or NAME@VERSION (a prefix is fine).",
    ),
    by: str = typer.Option("pair", "--by", help="Compose by 'pair' or 'source'."),
    workspace: Path | None = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Show a mixture's composition: rows and shares by stage and modality pair (or source)."""
    from curate.mixtures import composition, load_mixture

    mixture = load_mixture(workspace_from(workspace), ref)
    rows = composition(mixture, by=by)
    if json_output:
        print_json(mixture.meta)
        return
    stages = [*mixture.stages, "all"]
    table = Table(title=f"{mixture.ref}: composition by {by} ({mixture.rows:,} rows)")
    table.add_column(by)
    for stage in stages:
        table.add_column(stage, justify="right")
    keys = list(dict.fromkeys(r.key for r in rows if r.stage == "all"))
    cells = {(r.stage, r.key): r for r in rows}
    for key in keys:
        values = []
        for stage in stages:
            cell = cells.get((stage, key))
            values.append(f"{cell.rows:,} ({100 * cell.share:.1f}%)" if cell else "-")
        table.add_row(key, *values)
    Console().print(table)
    for stage, info in mixture.meta["stages"].items():
        for name, short in info.get("shortfalls", {}).items():
            typer.echo(
                f"shortfall in {stage}/{name}: {short['shortfall']:,} rows ({short['reason']})"
            )


def diff_command(
    a: str = typer.Argument(..., help="First mixture: NAME or NAME@VERSION."),
    b: str = typer.Argument(..., help="Second mixture: NAME or NAME@VERSION."),
    workspace: Path | None = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Compare two mixtures: shares side by side, and rows added, removed and kept (by id)."""
    from curate.mixtures import diff_mixtures

    diff = diff_mixtures(workspace_from(workspace), a, b)
    if json_output:
        print_json(diff.to_dict())
        return
    console = Console()
    for by in ("pair", "source"):
        table = Table(title=f"shares by {by}: {diff.a} vs {diff.b}")
        for column in ("stage", by, "A", "B", "B - A (pp)"):
            table.add_column(column, justify="left" if column in ("stage", by) else "right")
        for s in diff.shares:
            if s.by == by:
                table.add_row(
                    s.stage, s.key, f"{100 * s.share_a:.1f}%", f"{100 * s.share_b:.1f}%",
                    f"{s.delta_pp:+.1f}",
                )  # fmt: skip
        console.print(table)
    rows = Table(title="rows by (manifest, id)")
    for column in ("stage", "A", "B", "added", "removed", "kept"):
        rows.add_column(column, justify="left" if column == "stage" else "right")
    for r in diff.rows:
        rows.add_row(
            r.stage,
            f"{r.rows_a:,}",
            f"{r.rows_b:,}",
            f"{r.added:,}",
            f"{r.removed:,}",
            f"{r.kept:,}",
        )
    console.print(rows)


def export_command(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION of a built mixture."),
    format: str = typer.Option(
        ..., "--format", "-f", help="unite-json, mmeb-parquet, webdataset or jsonl."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="New folder to write (must not exist)."),
    relative_to: Path | None = typer.Option(
        None, "--relative-to", help="Write media paths relative to this folder (default: absolute)."
    ),
    shard_rows: int = typer.Option(1000, "--shard-rows", min=1, help="Rows per webdataset shard."),
    workspace: Path | None = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Write a mixture in a format existing trainers read (one file or shard set per stage)."""
    from curate.export import export_mixture

    result = export_mixture(
        workspace_from(workspace), ref, format=format, out=out,
        relative_to=relative_to, shard_rows=shard_rows,
    )  # fmt: skip
    if json_output:
        print_json(result.to_dict())
        return
    rows = ", ".join(f"{stage} {n:,}" for stage, n in result.rows.items())
    typer.echo(f"exported {result.mixture} as {result.format} to {result.out}: {rows}")
    for reason, n in result.skipped.items():
        typer.echo(f"  skipped {n:,}: {reason}")
    for what, n in result.lossy.items():
        typer.echo(f"  not carried by {result.format} for {n:,} rows: {what}")


def register(app: typer.Typer) -> None:
    app.command("mix", epilog=MIX_EPILOG)(mix_command)
    mixtures_app.command(
        "list", epilog="Examples:\n\n  curate mixtures list\n\n  curate mixtures list --json"
    )(list_command)
    mixtures_app.command(
        "show",
        epilog="Examples:\n\n  curate mixtures show v3\n\n  curate mixtures show v3@1a2b --by source",
    )(show_command)
    mixtures_app.command(
        "diff",
        epilog="Examples:\n\n  curate mixtures diff demo-image demo-mixed\n\n"
        "  curate mixtures diff v3@1a2b v3@9f8e --json",
    )(diff_command)
    app.add_typer(mixtures_app, name="mixtures")
    app.command(
        "export",
        epilog="Examples:\n\n  curate export v3 --format unite-json --out exports/v3-unite\n\n"
        "  curate export demo-mixed@1a2b --format webdataset --out /data/shards --shard-rows 500",
    )(export_command)
