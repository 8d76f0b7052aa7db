"""The report over a workspace built by the real pipeline: the demo corpora ingested by
`curate.demo`, the demo recipes mixed by `curate.mix`, and a results store for those mixture
versions (synthetic scores until `curate ablate` writes real ones). This checks that the loader
reads what the other steps really write: mixture.json, manifest stats and lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.analysis import synthetic as syn

REPO = Path(__file__).resolve().parents[2]
RECIPES = ("demo-image", "demo-video", "demo-mixed")


@pytest.mark.slow
def test_report_over_real_manifests_and_mixtures(workspace) -> None:
    from analysis.load import load_inputs
    from analysis.report import ReportOptions, build_report
    from curate.demo import ingest_demo
    from curate.mix import build_mixture

    ingest_demo(workspace)
    built = {
        name: build_mixture(workspace, REPO / "mixtures" / f"{name}.toml").mixture
        for name in RECIPES
    }
    shares = {name: dict(m.meta["shares_by_pair"]) for name, m in built.items()}
    versions = {name: m.version for name, m in built.items()}
    rows = syn.result_rows(mixtures=shares, versions=versions, seeds=(1, 2))
    syn.write_results(workspace.root, rows)

    inputs = load_inputs(workspace)
    assert not any("mixture metadata" in n for n in inputs.notes), inputs.notes
    mixed = inputs.mixtures[("demo-mixed", versions["demo-mixed"])]
    assert mixed.found and mixed.total_rows == built["demo-mixed"].rows
    assert {c.name for c in mixed.components} == {"text_text", "image_text", "video_text"}
    lineage = {m["name"] for m in built["demo-mixed"].meta["lineage"]["manifests"]}
    assert {name for name, _ in mixed.lineage} == lineage
    manifests = {m.name: m for m in inputs.manifests}
    assert set(manifests) == lineage
    images = json.loads((workspace.manifests / "demo-images" / "stats.json").read_text())
    assert manifests["demo-images"].read == images["read"]
    assert manifests["demo-images"].rejected_by_reason == {
        k: v for k, v in images["rejected_by_reason"].items() if v
    }

    result = build_report(workspace, options=ReportOptions(name="demo"))
    html = result.path.read_text()
    assert "text_text" in html and "demo-images" in html
    applied = built["demo-mixed"].meta["filters"]["applied"]
    assert [f.step for f in mixed.filters] == [f["step"] for f in applied]
    assert all(f"<code>{f['step']}</code>" in html for f in applied)
    # t2i and i2t move together in every demo arm, so the regression merges them and the
    # three arms then separate the three remaining columns at the pair level.
    assert "move together in every mixture are merged" in html
    best = result.summary.get("predicted_best", {}).get("shares", {})
    assert set(best) == {"t2t", "i2t+t2i", "t2v"} or set(best) == {"t2t", "t2i+i2t", "t2v"}
