"""The HTML report: sections, figures, self-containment, escaping, notes, determinism, CLI."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
from html import unescape

import pytest
from PIL import Image
from typer.testing import CliRunner

from analysis.load import ResultsQuery
from analysis.report import ReportOptions, build_report
from curate.cli import app
from curate.errors import ConfigError, NotFoundError
from curate.workspace import Workspace
from tests.analysis import synthetic as syn

SECTIONS = ("what-was-run", "results", "composition", "regression", "data-quality", "notes")
FIGURES = (
    "fig-composition",
    "fig-groups",
    "fig-shares",
    "fig-heatmap",
    "fig-paired",
    "fig-rejects",
    "fig-signals",
)
HOSTILE = "<script>alert(1)</script>"


def _figures(html: str) -> dict[str, Image.Image]:
    found = {}
    for fig_id, data in re.findall(
        r'<figure id="([^"]+)" class="figure">\s*<img src="data:image/png;base64,([^"]+)"', html
    ):
        found[fig_id] = Image.open(io.BytesIO(base64.b64decode(data)))
    return found


def test_report_has_every_section_and_figure(planted_report) -> None:
    workspace, result = planted_report
    assert result.path == workspace.reports / syn.ABLATION / "index.html"
    html = result.path.read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in html
    figures = _figures(html)
    assert set(figures) == set(FIGURES)
    for image in figures.values():
        image.load()
        assert image.width > 300 and image.height > 150
        assert len(image.convert("RGB").getcolors(1 << 20) or []) > 20  # drawn, not blank
    assert "tiny randomly initialised model" in html and "not a paper result" in html
    assert "Each run trained 20 steps. Embeddings have 64 dimensions." in html
    assert "frames = 8" in html and "pool_size = 40" in html  # the suite settings are quoted
    assert "Prediction — not measured" in html
    assert not list(result.path.parent.glob("*.tmp"))


def test_report_is_self_contained(planted_report) -> None:
    _, result = planted_report
    html = result.path.read_text()
    assert "<script" not in html.lower()
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html)
    assert csp and "default-src 'none'" in unescape(csp.group(1))
    assert "img-src data:" in unescape(csp.group(1))
    for attr in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert attr.startswith(("data:image/png;base64,", "#")), attr
    assert "@import" not in html and "url(" not in html


def test_summary_json_states_the_findings(planted_report) -> None:
    _, result = planted_report
    summary = json.loads((result.path.parent / "summary.json").read_text())
    assert summary == result.summary
    assert summary["mixtures"] == list(syn.MIXTURES)  # in the order they were run
    assert summary["best_observed"]["mixture"] == "vid-heavy"
    assert summary["paired_overall"]["losses"] == ["mamcl", "infonce"]
    assert summary["paired_overall"]["interval"][0] > 0
    assert summary["toy_scale"] is True
    assert summary["predicted_best"]["shares"]["t2v"] > 0


def test_same_inputs_give_the_same_bytes(workspace: Workspace) -> None:
    mixtures = dict(list(syn.MIXTURES.items())[:3])
    syn.make_workspace(workspace.root, mixtures=mixtures, seeds=(1, 2))
    first = build_report(workspace, options=ReportOptions(name="first"))
    again = build_report(workspace, options=ReportOptions(name="again"))
    assert again.path.read_bytes() == first.path.read_bytes()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_report_files_get_the_mode_the_umask_gives(
    workspace: Workspace, umask: int, mode: int
) -> None:
    mixtures = dict(list(syn.MIXTURES.items())[:3])
    syn.make_workspace(workspace.root, mixtures=mixtures, seeds=(1, 2), optional=False)
    previous = os.umask(umask)
    try:
        result = build_report(workspace, options=ReportOptions(name="shared"))
    finally:
        os.umask(previous)
    for path in (result.path, result.path.parent / "summary.json"):
        assert path.stat().st_mode & 0o777 == mode, path
    # No temporary file is left behind.
    assert sorted(p.name for p in result.path.parent.iterdir()) == ["index.html", "summary.json"]


def test_markup_in_names_and_captions_is_escaped(workspace: Workspace) -> None:
    mixtures = {HOSTILE: {"t2i": 0.5, "t2v": 0.5}, "plain": {"t2i": 0.8, "t2v": 0.2}}
    rows = syn.result_rows(mixtures=mixtures, losses=("mamcl",), seeds=(1, 2))
    for r in rows:
        if r["task"] == "coco_t2i":
            r["task"] = '<img src=x onerror="alert(2)">'
    syn.write_results(workspace.root, rows)
    result = build_report(
        workspace,
        options=ReportOptions(title=f"Ablation {HOSTILE}", baseline=HOSTILE, name="hostile"),
    )
    html = result.path.read_text()
    assert "<script" not in html.lower()
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # In the title, a table cell and a figure caption (the heatmap names its baseline).
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3
    assert re.search(r"<figcaption>.*&lt;script&gt;alert\(1\)&lt;/script&gt;", html)
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in html


def test_report_from_results_alone_says_what_is_missing(workspace: Workspace) -> None:
    four = dict(list(syn.MIXTURES.items())[:4])  # 4 runs for 4 share columns: no residual df
    syn.make_workspace(
        workspace.root, mixtures=four, optional=False, seeds=(1,), losses=("infonce",)
    )
    result = build_report(workspace)
    html = result.path.read_text()
    assert result.path == workspace.reports / "all" / "index.html"
    notes = html[html.index('<section id="notes">') :]
    for text in (
        "mixture metadata not found",
        "no manifests found",
        "one seed per cell",
        "only one loss ran",
        "settings (frame count, pixel budget, pool size)",
    ):
        assert text in notes
    assert "Only one loss ran (infonce): nothing to pair." in html
    assert set(_figures(html)) == {"fig-composition", "fig-groups", "fig-shares", "fig-heatmap"}
    # One seed: no intervals, and the regression has no residual degrees of freedom.
    assert "add seeds" in html


def test_bad_options_are_user_errors(planted_report) -> None:
    workspace, _ = planted_report
    query = ResultsQuery(ablation=syn.ABLATION)
    with pytest.raises(ConfigError, match="baseline 'nope'"):
        build_report(workspace, query, ReportOptions(baseline="nope", name="x"))
    with pytest.raises(ConfigError, match="loss 'hinge'"):
        build_report(workspace, query, ReportOptions(compare=("mamcl", "hinge"), name="x"))
    with pytest.raises(ConfigError, match="confidence"):
        ReportOptions(confidence=1.5)
    with pytest.raises(ConfigError, match="invalid report name"):
        build_report(workspace, query, ReportOptions(name="../escape"))


def test_cli_writes_the_report_and_prints_json(planted_report) -> None:
    workspace, _ = planted_report
    result = CliRunner().invoke(
        app,
        [
            "report",
            "--workspace",
            str(workspace.root),
            "--ablation",
            syn.ABLATION,
            "--losses",
            "mamcl",
            "--mixtures",
            "vid-heavy,images,balanced",
            "--name",
            "cli",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["path"] == str(workspace.reports / "cli" / "index.html")
    assert out["summary"]["mixtures"] == ["vid-heavy", "images", "balanced"]
    assert out["summary"]["baseline"] == "vid-heavy"
    assert "paired_overall" not in out["summary"]


def test_cli_names_an_unknown_mixture_instead_of_dropping_it(planted_report) -> None:
    workspace, _ = planted_report
    result = CliRunner().invoke(
        app,
        [
            "report",
            "--workspace",
            str(workspace.root),
            "--mixtures",
            "images,nosuch",
            "--name",
            "typo",
        ],
    )
    assert result.exit_code == 1
    assert isinstance(result.exception, NotFoundError)
    message = str(result.exception)
    assert "mixture nosuch" in message and "known mixtures there: balanced, images" in message
    assert not (workspace.reports / "typo").exists()


def test_cli_user_error_is_one_line(tmp_path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "curate.cli",
            "report",
            "--workspace",
            str(tmp_path),
            "--ablation",
            "x",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: no results in") and done.stderr.count("\n") == 1
    assert "curate report --ablation" in CliRunner().invoke(app, ["report", "--help"]).stdout
