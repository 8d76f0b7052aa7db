"""Fixtures of the analysis tests: one full synthetic workspace and its report, built once."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def planted_report(tmp_path_factory: pytest.TempPathFactory):
    """(workspace, ReportResult) for the planted-effect workspace with every optional input."""
    root = tmp_path_factory.mktemp("planted") / "ws"
    with pytest.MonkeyPatch.context() as mp:
        # The conftest's isolation is per test; keep this session fixture off the real home too.
        mp.setenv("HOME", str(root.parent / "home"))
        mp.setenv("XDG_CACHE_HOME", str(root.parent / "home" / ".cache"))
        from analysis.load import ResultsQuery
        from analysis.report import build_report
        from curate.workspace import Workspace
        from tests.analysis import synthetic as syn

        syn.make_workspace(Path(root))
        workspace = Workspace.resolve(root)
        result = build_report(workspace, ResultsQuery(ablation=syn.ABLATION))
    return workspace, result
