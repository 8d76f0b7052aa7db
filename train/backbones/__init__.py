"""Backbones behind one interface (`train.backbones.base.Backbone`).

>>> # build_backbone(load_train_config("tiny-cpu"), device=torch.device("cpu")).dim
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from curate.errors import ConfigError
from train.backbones.base import Backbone, Loaded
from train.config import TrainConfig

BACKBONE_KINDS = ("qwen2-vl", "tiny-qwen2-vl", "open-clip")


def resolve_device(name: str | None) -> torch.device:
    """`name` as a torch device ("auto": cuda when present); a `ConfigError` when unusable here."""
    if not name or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"device {name!r} is not a device name; use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for but CUDA is not available; use cpu")
    return device


def build_backbone(
    config: TrainConfig,
    *,
    device: torch.device | None = None,
    video_frames: int | None = None,
    max_pixels: int | None = None,
    base_dir: Path | None = None,
    frame_cache: Path | None = None,
) -> Backbone:
    """The untrained backbone of `config` (a tiny model is rebuilt from `base_dir` when given).

    `video_frames` fixes the frame count per video and `max_pixels` the image budget
    (evaluation protocols fix both). `frame_cache` keeps decoded video frames on disk.
    """
    backbone = _build(config, device, video_frames, max_pixels, base_dir)
    backbone.media.cache_dir = frame_cache
    return backbone


def _build(
    config: TrainConfig,
    device: torch.device | None,
    video_frames: int | None,
    max_pixels: int | None,
    base_dir: Path | None,
) -> Backbone:
    device = device or resolve_device(config.device)
    media = config.media
    if max_pixels is not None:
        media = dataclasses.replace(
            media, max_pixels=max_pixels, min_pixels=min(media.min_pixels, max_pixels)
        )
    common = {
        "device": device,
        "max_length": config.max_length,
        "video_frames": video_frames,
    }
    kind = config.backbone.kind
    if kind == "qwen2-vl":
        from train.backbones.qwen2vl import Qwen2VLBackbone

        return Qwen2VLBackbone(config.backbone, media, config.template, **common)
    if kind == "tiny-qwen2-vl":
        from train.backbones.tiny import TinyQwen2VLBackbone

        return TinyQwen2VLBackbone(
            config.backbone, media, config.template, seed=config.seed, base_dir=base_dir, **common
        )
    if kind == "open-clip":
        from train.backbones.openclip import OpenClipBackbone

        common["max_length"] = 77
        return OpenClipBackbone(config.backbone, media, config.template, seed=config.seed, **common)
    raise ValueError(f"unknown backbone kind {kind!r}; known: {BACKBONE_KINDS}")


__all__ = ["BACKBONE_KINDS", "Backbone", "Loaded", "build_backbone", "resolve_device"]
