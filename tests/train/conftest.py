"""Shared fixtures for the trainer tests: one tiny Qwen2-VL per session, real mixtures."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tests.train.mixtures import real_rows, write_mixture


@pytest.fixture(scope="session")
def tiny_config():
    from train.config import load_train_config

    return load_train_config("tiny-cpu")


@pytest.fixture(scope="session")
def _tiny_backbone_once(tiny_config):
    import torch

    from train.backbones import build_backbone

    torch.set_num_threads(1)
    return build_backbone(tiny_config, device=torch.device("cpu"))


@pytest.fixture()
def tiny_backbone(_tiny_backbone_once):
    """A fresh copy of the session's tiny backbone (tests may add LoRA, train, ...)."""
    return copy.deepcopy(_tiny_backbone_once)


@pytest.fixture(scope="session")
def broken_video(tmp_path_factory) -> Path:
    """A file with a video name whose bytes are not a video."""
    path = tmp_path_factory.mktemp("broken") / "broken.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not really a video" * 20)
    return path


@pytest.fixture(scope="session")
def real_mixture(shared_data, tmp_path_factory, broken_video) -> Path:
    """One stage (retrieval_adaptation) of real images, videos and texts, with a broken video."""
    rows = real_rows(shared_data, broken=broken_video)
    return write_mixture(
        tmp_path_factory.mktemp("mixtures") / "real", {"retrieval_adaptation": rows}
    )


@pytest.fixture(scope="session")
def two_stage_mixture(shared_data, tmp_path_factory) -> Path:
    """Two stages: images+texts for stage 1, the same with instructions for stage 2."""
    rows = real_rows(shared_data, videos=False)
    stage2 = [dict(r, instruction="Retrieve the matching item:") for r in rows[:10]]
    return write_mixture(
        tmp_path_factory.mktemp("mixtures") / "two",
        {"retrieval_adaptation": rows[:12], "instruction_tuning": stage2},
    )
