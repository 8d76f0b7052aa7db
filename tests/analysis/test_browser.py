"""The report in a real browser: headless Chromium loads it without console errors (a blocked
network request would be one, through the report's Content-Security-Policy), every section and
figure is in the DOM, escaped markup stays text, and a screenshot shows a drawn page."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.analysis.test_report import FIGURES, SECTIONS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed"),
]


def _chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def _console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_chromium_renders_the_report_cleanly(planted_report, tmp_path: Path) -> None:
    _, result = planted_report
    done = _chromium(result.path, tmp_path / "profile", "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    assert _console_lines(done.stderr) == []
    dom = done.stdout
    for section in SECTIONS:
        assert re.search(rf'<section id="{section}">\s*<h2>', dom), section
    for figure in FIGURES:
        assert re.search(
            rf'<figure id="{figure}" class="figure">\s*<img src="data:image/png;base64,', dom
        ), figure
    assert "not a paper result" in dom


def test_console_check_catches_a_blocked_request(planted_report, tmp_path: Path) -> None:
    """The check above can fail: a report that tried to fetch anything would log a CSP error."""
    _, result = planted_report
    html = result.path.read_text().replace(
        "</main>", '<img src="https://example.com/x.png"></main>'
    )
    page = tmp_path / "tampered.html"
    page.write_text(html)
    done = _chromium(page, tmp_path / "profile", "--dump-dom")
    assert any("Content Security Policy" in line for line in _console_lines(done.stderr))


def test_escaped_markup_stays_text_in_the_dom(tmp_path: Path) -> None:
    from analysis.report import ReportOptions, build_report
    from curate.workspace import Workspace
    from tests.analysis import synthetic as syn

    workspace = Workspace.resolve(tmp_path / "ws")
    hostile = "<script>alert(1)</script>"
    mixtures = {hostile: {"t2i": 0.5, "t2v": 0.5}, "plain": {"t2i": 0.8, "t2v": 0.2}}
    syn.write_results(
        workspace.root, syn.result_rows(mixtures=mixtures, losses=("mamcl",), seeds=(1, 2))
    )
    result = build_report(workspace, options=ReportOptions(title=hostile))
    done = _chromium(result.path, tmp_path / "profile", "--dump-dom")
    assert _console_lines(done.stderr) == []
    assert "<script" not in done.stdout.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in done.stdout


def test_screenshot_is_not_blank(planted_report, tmp_path: Path) -> None:
    _, result = planted_report
    shot = tmp_path / "report.png"
    done = _chromium(
        result.path, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2400"
    )
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2400)
    pixels = np.asarray(image, dtype=np.float64)
    assert pixels.std() > 20  # text, tables and figures, not a blank page
    # The composition figure's coloured bars are on screen (a saturated colour somewhere).
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    assert (saturation > 120).mean() > 0.005
