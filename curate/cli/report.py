"""Command `report`: the self-contained HTML report of an ablation (or of the filtered store)."""

from __future__ import annotations

from pathlib import Path

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
from curate.errors import ConfigError

REPORT_EPILOG = """
Examples:

  curate report --ablation demo

  curate report --mixtures v1,v2,v3 --losses mamcl --baseline v1 --name v-series

  curate report --ablation demo --metric nDCG@10 --compare mamcl,symmetric_infonce --json
"""


def _split(value: str | None, *, what: str) -> tuple[str, ...]:
    if not value:
        return ()
    items = tuple(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise ConfigError(f"{what} expects a comma-separated list, got {value!r}")
    return items


def _seeds(value: str | None) -> tuple[int, ...]:
    items = _split(value, what="--seeds")
    try:
        return tuple(int(v) for v in items)
    except ValueError as error:
        raise ConfigError(f"--seeds expects integers like 1,2,3, got {value!r}") from error


def report_command(
    ablation: str | None = typer.Option(
        None, "--ablation", "-a", help="Report on this ablation (the `ablation` column of results)."
    ),
    mixtures: str | None = typer.Option(
        None, "--mixtures", help="Only these mixtures, comma-separated; also their order."
    ),
    losses: str | None = typer.Option(None, "--losses", help="Only these losses, comma-separated."),
    seeds: str | None = typer.Option(None, "--seeds", help="Only these seeds, e.g. 1,2,3."),
    suite: str | None = typer.Option(None, "--suite", help="Only these evaluation suites."),
    config: str | None = typer.Option(None, "--config", help="Only these training configs."),
    baseline: str | None = typer.Option(
        None, "--baseline", help="Mixture the heatmap compares against (default: the first)."
    ),
    loss: str | None = typer.Option(
        None, "--loss", help="Loss whose runs enter composition analyses (default: mamcl)."
    ),
    compare: str | None = typer.Option(
        None, "--compare", help="Two losses to pair, A,B (default: mamcl,infonce when both ran)."
    ),
    metric: str | None = typer.Option(
        None, "--metric", help="Primary metric (default: R@1, else P@1, nDCG@10, MRR)."
    ),
    confidence: float = typer.Option(0.95, "--confidence", help="Level of every interval."),
    name: str | None = typer.Option(
        None, "--name", help="Folder under reports/ (default: the ablation, else 'all')."
    ),
    title: str | None = typer.Option(None, "--title", help="Title at the top of the report."),
    workspace: Path | None = WorkspaceOption,
    json_output: bool = JsonOption,
) -> None:
    """Write reports/NAME/index.html: how the composition of the data moved retrieval.

    What was run, results with intervals over seeds, composition effects,
    a regression on composition shares, and data quality.
    """
    from analysis.load import ResultsQuery
    from analysis.report import ReportOptions, build_report

    pair = _split(compare, what="--compare")
    if pair and len(pair) != 2:
        raise ConfigError(f"--compare expects two losses A,B, got {compare!r}")
    query = ResultsQuery(
        ablation=ablation,
        mixtures=_split(mixtures, what="--mixtures"),
        losses=_split(losses, what="--losses"),
        seeds=_seeds(seeds),
        suites=_split(suite, what="--suite"),
        configs=_split(config, what="--config"),
    )
    options = ReportOptions(
        name=name,
        title=title,
        baseline=baseline,
        loss=loss,
        compare=(pair[0], pair[1]) if pair else None,
        metric=metric,
        confidence=confidence,
    )
    console = Console(stderr=True, quiet=json_output)
    with console.status("analysing results and drawing figures"):
        result = build_report(workspace_from(workspace), query, options)
    if json_output:
        print_json({"path": str(result.path), "summary": result.summary})
        return
    summary = result.summary
    table = Table(title=f"report {result.name}", show_header=False, title_justify="left")
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row(
        "runs",
        f"{summary['runs']} ({len(summary['mixtures'])} mixtures × "
        f"{len(summary['losses'])} losses × {len(summary['seeds'])} seeds)",
    )
    table.add_row("tasks", ", ".join(summary["tasks"]))
    if "best_observed" in summary:
        best = summary["best_observed"]
        table.add_row("best mixture run", f"{best['mixture']} (overall {best['overall']:.3f})")
    if "predicted_best" in summary:
        shares = ", ".join(f"{k} {v:.0%}" for k, v in summary["predicted_best"]["shares"].items())
        table.add_row("predicted best", f"{shares} (a prediction, not measured)")
    if "paired_overall" in summary:
        p = summary["paired_overall"]
        low, high = p["interval"]
        interval = f" [{low:+.3f}, {high:+.3f}]" if low is not None else ""
        table.add_row(
            f"{p['losses'][0]} − {p['losses'][1]}", f"{p['difference']:+.3f}{interval} overall"
        )
    for warning in summary["warnings"]:
        table.add_row(Text("warning", style="bold red"), Text(warning))
    for note in summary["notes"]:
        table.add_row("note", note)
    Console().print(table)
    typer.echo(f"open {result.path}")


def register(app: typer.Typer) -> None:
    app.command("report", epilog=REPORT_EPILOG)(report_command)
