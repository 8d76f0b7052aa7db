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


@pytest.mark.slow
def test_failed_demo_cells_exit_1_with_their_reasons_printed_as_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`curate demo` used to exit 0 after failed cells, and read their reasons as rich markup."""
    import json
    import sys

    import train.ablate
    import train.embedder
    from curate.cli import main
    from tests.train.test_ablate import RecordingTrain, fake_load

    reason = "no frame left in demo-videos/[night]/clip-3.mp4 [/dev/shm is full]"

    class FailingVideoTrain(RecordingTrain):
        def __call__(self, *, mixture, workspace, config, out_dir, progress):
            if json.loads((Path(mixture) / "mixture.json").read_text())["name"] == "demo-video":
                raise ValueError(reason)
            return super().__call__(mixture=mixture, workspace=workspace, config=config,
                                    out_dir=out_dir, progress=progress)  # fmt: skip

    monkeypatch.setattr(train.ablate, "_default_train", FailingVideoTrain)
    monkeypatch.setattr(train.embedder, "load_embedder", fake_load)
    workspace = tmp_path / "ws"
    log = workspace / "results" / "ablations" / "demo" / "log.jsonl"

    def curate_demo(*extra: str) -> tuple[int, str, str]:
        argv = ["curate", "demo", "--until", "ablate", "--seeds", "1", "--losses", "mamcl",
                "--epochs", "1", "--workspace", str(workspace), *extra]  # fmt: skip
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as done:
            main()
        captured = capsys.readouterr()
        return done.value.code, captured.out, captured.err

    code, out, err = curate_demo()
    assert code == 1
    assert err.splitlines()[-1] == (
        f"error: 1 of 3 demo cells failed (reasons above and in {log}); rerun the same command "
        "to retry them"
    )
    [line] = [x for x in out.splitlines() if x.startswith("failed")]
    assert line.startswith("failed: demo-video · mamcl · seed 1 (run demo-video-mamcl-s1-"), line
    assert line.endswith(f"): ValueError: {reason}"), line  # brackets and all, as text
    assert "ablation demo: 2 trained, 0 already done, 1 failed" in out

    code, out, err = curate_demo("--json")
    assert code == 1 and err.splitlines()[-1].startswith(
        "error: 1 of 3 demo cells failed (reasons in the JSON's `ablation.failed` and in "
    )
    [failed] = json.loads(out)["ablation"]["failed"]
    assert failed["mixture"] == "demo-video" and failed["error"] == f"ValueError: {reason}"
