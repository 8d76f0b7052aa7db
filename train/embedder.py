"""Embedding with a trained run (or the untrained backbone, as a baseline).

>>> # emb = load_embedder(Path("runs/tiny")).embed([EmbedItem(text="a dog")])   # (1, dim)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from curate.errors import NotFoundError
from train.backbones import Backbone, build_backbone, resolve_device
from train.checkpoint import load_tensors
from train.config import TrainConfig, load_train_config
from train.data import Prefetcher
from train.media import MediaError
from train.template import EmbedItem

__all__ = ["EmbedItem", "Embedder", "base_embedder", "load_embedder"]


class Embedder:
    """Embeds items with a backbone in eval mode. An item whose media cannot be decoded gets a
    zero vector and is counted in `skipped` (its messages in `skip_messages`)."""

    def __init__(self, backbone: Backbone, *, name: str = "") -> None:
        self.backbone = backbone
        self.dim = backbone.dim
        self.name = name
        self.skipped = 0
        self.skip_messages: list[str] = []
        self.backbone.train(False)

    def _load(self, item: EmbedItem):
        try:
            return self.backbone.load(item)
        except MediaError as error:
            return error

    def embed(
        self, items: Sequence[EmbedItem], *, batch_size: int = 16, progress: bool = False
    ) -> torch.Tensor:
        """(n, dim) float32 CPU tensor of L2-normalised embeddings (zero rows for skipped)."""
        items = list(items)
        out = torch.zeros(len(items), self.dim, dtype=torch.float32)
        if not items:
            return out
        starts = list(range(0, len(items), max(1, batch_size)))
        pool = ThreadPoolExecutor(max(1, self.backbone.media_config.decode_threads))

        def prepare(start: int) -> tuple[int, list[int], Any, list[str]]:
            chunk = items[start : start + batch_size]
            loaded = list(pool.map(self._load, chunk))
            ok = [i for i, x in enumerate(loaded) if not isinstance(x, MediaError)]
            errors = [str(x) for x in loaded if isinstance(x, MediaError)]
            inputs = (
                self.backbone.collate([loaded[i] for i in ok], use_instruction=True) if ok else None
            )
            return start, ok, inputs, errors

        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(items), desc="embed", file=sys.stderr, dynamic_ncols=True)
        prefetch = Prefetcher(prepare, starts, depth=2)
        try:
            with torch.inference_mode():
                for start, ok, inputs, errors in prefetch:
                    self.skipped += len(errors)
                    self.skip_messages.extend(errors[: max(0, 100 - len(self.skip_messages))])
                    if inputs is not None:
                        emb = self.backbone.forward(inputs).float().cpu()
                        out[torch.tensor(ok) + start] = emb
                    if bar is not None:
                        bar.update(min(batch_size, len(items) - start))
        finally:
            prefetch.close()
            pool.shutdown(wait=False, cancel_futures=True)
            if bar is not None:
                bar.close()
        return out


def load_embedder(
    run_dir: Path,
    *,
    video_frames: int | None = None,
    max_pixels: int | None = None,
    device: str | None = None,
    frame_cache: Path | None = None,
) -> Embedder:
    """The final weights of a finished run: the base backbone with each stage's adapter merged
    in order. `video_frames` / `max_pixels` set the evaluation protocol's media budget;
    `frame_cache` is a folder for decoded video frames shared between runs."""
    run_dir = Path(run_dir)
    final = run_dir / "final" / "final.json"
    if not final.is_file():
        raise NotFoundError(
            f"{run_dir} has no final weights (final/final.json); finish or resume the run "
            "with `curate train`"
        )
    config = load_train_config(run_dir / "config.toml")
    info = json.loads(final.read_text())
    base_dir = run_dir / "base"
    backbone = build_backbone(
        config,
        device=resolve_device(device or config.device),
        video_frames=video_frames,
        max_pixels=max_pixels,
        base_dir=base_dir if base_dir.is_dir() else None,
        frame_cache=frame_cache,
    )
    for entry in info["adapters"]:
        backbone.add_lora(r=int(entry["lora_r"]), alpha=int(entry["lora_alpha"]), dropout=0.0)
        backbone.load_trainable_state(load_tensors(run_dir / "final" / entry["file"]))
        backbone.merge_lora()
    return Embedder(backbone, name=str(run_dir))


def base_embedder(
    config: TrainConfig,
    *,
    video_frames: int | None = None,
    max_pixels: int | None = None,
    device: str | None = None,
    frame_cache: Path | None = None,
) -> Embedder:
    """The untrained backbone of `config` (a baseline)."""
    backbone = build_backbone(
        config,
        device=resolve_device(device or config.device),
        video_frames=video_frames,
        max_pixels=max_pixels,
        frame_cache=frame_cache,
    )
    return Embedder(backbone, name=f"base:{config.name}")
