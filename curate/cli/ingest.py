"""Commands `ingest`, `formats`, `stats` and `manifests`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from curate.cli.common import (
    Console,
    JsonOption,
    Table,
    WorkspaceOption,
    print_json,
    workspace_from,
)
from curate.errors import ConfigError, InputError

if TYPE_CHECKING:
    from curate.ingest import IngestResult

INGEST_EPILOG = """
Examples:

  curate ingest annotations/cc3m/val.tsv --name cc3m-val

  curate ingest captions.json --format coco --name coco --media-root images/val2017

  curate ingest MSRVTT_JSFUSION_test.csv --name msrvtt-1ka --split test --media-root videos/ --verify-decode
"""


def _parse_options(values: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise InputError(f"--option expects KEY=VALUE, got {value!r}")
        options[key.strip()] = rest
    return options


def ingest_command(
    path: Path = typer.Argument(..., help="The corpus file or folder (shards) to read."),
    name: str = typer.Option(..., "--name", "-n", help="Manifest name (folder under manifests/)."),
    format: str | None = typer.Option(
        None, "--format", "-f", help="Input format; detected from the content when unambiguous."
    ),
    media_root: Path | None = typer.Option(
        None,
        "--media-root",
        help="Where relative media paths resolve (default: the file's folder).",
    ),
    split: str = typer.Option("train", "--split", help="Split of records that do not name one."),
    source: str | None = typer.Option(
        None, "--source", help="Corpus name stored in each row (default: the manifest name)."
    ),
    option: list[str] = typer.Option(
        [], "--option", "-o", help="Format option KEY=VALUE (see `curate formats`); repeatable."
    ),
    verify_decode: bool = typer.Option(
        False, "--verify-decode", help="Fully decode every media file and reject what fails."
    ),
    probe: bool = typer.Option(
        True, "--probe/--no-probe", help="Probe local media (dimensions, duration, codec, hash)."
    ),
    workers: int = typer.Option(4, "--workers", min=1, help="Parallel media probes."),
    probe_timeout: float = typer.Option(
        60.0, "--probe-timeout", min=0.1, help="Seconds per media file (at least 0.1)."
    ),
    allow_outside_media_root: bool = typer.Option(
        False,
        "--allow-outside",
        help="Accept media paths that resolve outside the media root (.., absolute, symlinks).",
    ),
    replace: bool = typer.Option(
        False, "--replace", help="Rebuild a manifest that exists (even from the same input)."
    ),
    workspace: Path | None = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Read a corpus in its native format into a typed manifest and a ledger of rejects."""
    from curate.ingest import IngestOptions, ingest

    if not split.strip():
        # An empty split would silently keep the rows out of every recipe (default ["train"]).
        raise ConfigError("--split is empty; give a split name such as train, val or test")
    options = IngestOptions(
        name=name,
        format=format,
        source=source,
        split=split,
        media_root=media_root,
        allow_outside_media_root=allow_outside_media_root,
        verify_decode=verify_decode,
        probe=probe,
        probe_workers=workers,
        probe_timeout=probe_timeout,
        adapter_options=_parse_options(option),
        replace=replace,
        # A manifest with nothing in it is almost always a mistake (wrong format, media root or
        # file): fail, and keep any existing manifest in place.
        require_rows=True,
    )
    if format is not None and path.exists():
        from curate.adapters import format_mismatch

        if warning := format_mismatch(path, format):
            typer.echo(f"warning: {warning}", err=True)
    ws = workspace_from(workspace)
    console = Console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn("ingesting {task.fields[name]}: {task.completed:,} records"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=json_output or not console.is_terminal,
    ) as bar:
        task = bar.add_task("ingest", name=name, total=None)
        result = ingest(
            path, options, ws, progress=lambda _event, count: bar.update(task, completed=count)
        )
    stats = result.stats
    if json_output:
        print_json(
            {"manifest": str(result.manifest.path), "up_to_date": result.up_to_date, **stats}
        )
    else:
        _print_ingest_summary(name, result)


def _print_ingest_summary(name: str, result: IngestResult) -> None:
    stats = result.stats
    state = "already up to date" if result.up_to_date else "written"
    typer.echo(
        f"{name}: {stats['read']:,} read, {stats['accepted']:,} accepted, "
        f"{stats['rejected']:,} rejected ({state}: {result.manifest.path})"
    )
    if stats["rejected_by_reason"]:
        reasons = ", ".join(f"{k} {v:,}" for k, v in stats["rejected_by_reason"].items())
        typer.echo(f"  rejected: {reasons}  (see `curate stats {name}`)")
        examples = stats.get("reject_examples", {})
        by_count = sorted(stats["rejected_by_reason"].items(), key=lambda kv: -kv[1])
        for reason, _count in by_count[:3]:
            if examples.get(reason):
                typer.echo(f"    {reason}, e.g.: {examples[reason]}")
    if stats.get("adapter_changes"):
        changes = ", ".join(f"{k} {v:,}" for k, v in stats["adapter_changes"].items())
        typer.echo(
            f"  records the {result.manifest.ingest_info['format']} reader altered: {changes}"
        )
    if stats.get("clip_ends_clamped"):
        typer.echo(
            f"  {stats['clip_ends_clamped']:,} clip end(s) past the end of their video as probed "
            "were moved to it"
        )
    skipped = stats.get("files_without_records") or {}
    if skipped.get("count"):
        shown = ", ".join(skipped["files"])
        more = (
            f" and {skipped['count'] - len(skipped['files'])} more"
            if skipped["count"] > len(skipped["files"])
            else ""
        )
        typer.echo(
            f"  {skipped['count']:,} file(s) in the folder gave no records (empty, or not this "
            f"format): {shown}{more}"
        )


def formats_command(json_output: bool = JsonOption) -> None:
    """List the input formats `curate ingest` reads, with their options."""
    from curate.adapters import all_adapters

    adapters = all_adapters()
    if json_output:
        print_json(
            {
                name: {
                    "description": cls.description,
                    "version": cls.version,
                    "patterns": list(cls.patterns),
                    "options": dict(cls.option_help),
                }
                for name, cls in adapters.items()
            }
        )
        return
    table = Table(title="curate ingest formats", show_lines=False)
    table.add_column("format", style="bold")
    table.add_column("reads")
    table.add_column("files")
    table.add_column("options")
    for name, cls in adapters.items():
        options = "\n".join(f"{k}: {v}" for k, v in cls.option_help.items())
        # Descriptions quote formats like `[[start, end]]`, which rich would read as markup.
        table.add_row(name, escape(cls.description), " ".join(cls.patterns), escape(options))
    Console().print(table)


def stats_command(
    name: str = typer.Argument(..., help="Manifest name."),
    workspace: Path | None = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Counts of a manifest: read, accepted, rejected by reason, by pair, source and split."""
    from curate.manifest import open_manifest

    manifest = open_manifest(workspace_from(workspace), name)
    stats = manifest.stats
    if json_output:
        print_json({"name": name, "path": str(manifest.path), **stats})
        return
    console = Console()
    console.print(
        f"[bold]{name}[/bold]: {stats['read']:,} read = {stats['accepted']:,} accepted + "
        f"{stats['rejected']:,} rejected; {stats['text_repaired']:,} texts repaired, "
        f"{stats['remote_media']:,} rows with remote media"
    )
    for key, title in (
        ("by_pair", "modality pair"),
        ("by_task", "task"),
        ("by_source", "source"),
        ("by_split", "split"),
        ("rejected_by_reason", "reject reason"),
        ("adapter_changes", "records the reader altered"),
    ):
        counts = stats.get(key) or {}
        if not counts:
            continue
        table = Table(title=title, title_justify="left")
        table.add_column(title)
        table.add_column("rows", justify="right")
        table.add_column("share", justify="right")
        # Altered records are a share of all records read; the other tables split a whole.
        total = stats["read"] if key == "adapter_changes" else sum(counts.values())
        for label, count in sorted(counts.items(), key=lambda kv: -kv[1]):
            table.add_row(label, f"{count:,}", f"{count / total:.1%}")
        console.print(table)


def manifests_command(
    workspace: Path | None = WorkspaceOption, json_output: bool = JsonOption
) -> None:
    """List the manifests of the workspace."""
    from curate.manifest import list_manifests

    manifests = list_manifests(workspace_from(workspace))
    if json_output:
        print_json([{"name": m.name, "path": str(m.path), **m.stats} for m in manifests])
        return
    table = Table(title="manifests")
    for column in ("name", "format", "accepted", "rejected", "pairs"):
        table.add_column(column)
    for m in manifests:
        pairs = ", ".join(f"{k} {v:,}" for k, v in m.stats["by_pair"].items())
        table.add_row(
            m.name,
            m.ingest_info.get("format", "?"),
            f"{m.stats['accepted']:,}",
            f"{m.stats['rejected']:,}",
            pairs,
        )
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("ingest", epilog=INGEST_EPILOG)(ingest_command)
    app.command("formats", epilog="Example:\n\n  curate formats --json | jq 'keys'")(
        formats_command
    )
    app.command("stats", epilog="Example:\n\n  curate stats cc3m-val --json")(stats_command)
    app.command("manifests", epilog="Example:\n\n  curate manifests --json")(manifests_command)
