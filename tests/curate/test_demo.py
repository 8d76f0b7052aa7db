"""The README's main command: the whole loop on the demo data, end to end, and its report in a
real browser."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import numpy as np
import pytest
from PIL import Image

from curate.demo import _IMAGES, _VIDEOS, DEMO_RECIPES, DemoOptions, run_demo
from tests.analysis.test_browser import CHROMIUM, _chromium, _console_lines
from tests.analysis.test_report import FIGURES, SECTIONS


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    from curate.workspace import Workspace

    workspace = Workspace.resolve(tmp_path_factory.mktemp("demo") / "ws")
    options = DemoOptions(seeds=(1, 2), losses=("mamcl", "infonce"), epochs=1)
    return workspace, options, run_demo(workspace, options)


@pytest.mark.slow
def test_demo_runs_the_whole_loop(demo) -> None:
    workspace, options, result = demo
    train_images = [i for i in _IMAGES if i[2] == "train"]
    captions = sum(len(i[3]) for i in train_images)
    assert result.manifests["demo-images"]["accepted"] == 2 * captions  # t2i and i2t
    clips = sum(1 for _, _, cs in _VIDEOS for c in cs if c[3] == "train")
    assert result.manifests["demo-videos"]["by_pair"] == {"t2v": clips}
    assert all(s["read"] == s["accepted"] + s["rejected"] for s in result.manifests.values())
    assert set(result.mixtures) == set(DEMO_RECIPES)

    cells = len(DEMO_RECIPES) * len(options.seeds) * len(options.losses)
    assert result.ablation["counts"] == {"done": cells, "skipped": 0, "failed": 0, "pending": 0}
    store = result.ablation["store"]
    per_cell = duckdb.sql(
        f"SELECT run_id, task, metric, count(*) AS n FROM read_parquet('{store}') "
        "GROUP BY ALL HAVING n > 1"
    ).fetchall()
    assert per_cell == []  # one row per (cell, task, metric)
    runs = duckdb.sql(f"SELECT count(DISTINCT run_id) FROM read_parquet('{store}')").fetchall()
    assert runs == [(cells,)]

    again = run_demo(workspace, options)  # idempotent: nothing is trained twice
    assert again.mixtures == result.mixtures
    assert again.ablation["counts"]["skipped"] == cells


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_demo_report_in_a_browser(demo, tmp_path: Path) -> None:
    _, _, result = demo
    page = result.report
    dom = _chromium(page, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console_lines(dom.stderr) == []
    for section in SECTIONS:
        assert re.search(rf'<section id="{section}">\s*<h2>', dom.stdout), section
    for figure in FIGURES:
        assert f'<figure id="{figure}"' in dom.stdout, figure
    assert "tiny-qwen2-vl" in dom.stdout and "not a paper result" in dom.stdout
    shot = tmp_path / "demo.png"
    done = _chromium(page, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1280,2000")
    assert done.returncode == 0 and shot.is_file()
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    assert pixels.std() > 20
