"""Test-wide fixtures: isolated home and caches, offline hubs, the shared real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CURATE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _isolated_environment(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
):
    """No test reads or writes the real home, caches or workspace, or reaches a hub."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("HF_HOME", str(home / ".cache" / "huggingface"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.delenv("CURATE_HOME", raising=False)
    yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real sample corpora in `../shared/data` (never copied into the repository)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(
            f"the shared real data is missing at {SHARED_DATA}; set CURATE_SHARED_DATA to its folder"
        )
    return SHARED_DATA


@pytest.fixture()
def workspace(tmp_path: Path):
    from curate.workspace import Workspace

    return Workspace.resolve(tmp_path / "ws")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`gpu` tests run only where CUDA is available (a lent GPU machine); elsewhere they skip."""
    if not any("gpu" in item.keywords for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
