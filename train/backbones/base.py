"""The backbone interface: items in, L2-normalised embeddings out.

Work is split so that the CPU part can run ahead in threads while the model computes:

    loaded = [backbone.load(item) for item in items]      # decode media (MediaError: skip it)
    inputs = backbone.collate(loaded, use_instruction=...)  # CPU tensors (tokenise, patchify)
    emb = backbone.forward(inputs)                          # (n, dim) float32, normalised

LoRA is shared by all backbones: `add_lora` wraps the linear layers named by
`lora_target_regex()` with peft; `merge_lora` folds the adapter into the weights (stage 1 -> 2).
The trainable state (LoRA weights, plus anything unfrozen) is what checkpoints save.
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from train.config import BackboneConfig, MediaConfig, TemplateConfig
from train.media import MediaLoader
from train.template import EmbedItem


@dataclass
class Loaded:
    """An item with its media decoded."""

    item: EmbedItem
    images: list[Image.Image]
    frames: np.ndarray | None  # (T, H, W, 3) uint8


class Backbone(abc.ABC):
    """One embedding model. Subclasses set `model` (the nn.Module that trains) and `dim`."""

    kind: str = ""
    dim: int
    model: nn.Module

    def __init__(
        self,
        config: BackboneConfig,
        media: MediaConfig,
        template: TemplateConfig,
        *,
        device: torch.device,
        max_length: int = 2048,
        video_frames: int | None = None,
    ) -> None:
        self.config = config
        self.media_config = media
        self.template = template
        self.device = device
        self.max_length = max_length
        self.media = MediaLoader(media, video_frames=video_frames)
        self.lora_active = False

    # --- data ---------------------------------------------------------------------------------

    def load(self, item: EmbedItem) -> Loaded:
        """Decode the item's media; raises MediaError when something cannot be decoded."""
        images = [self.media.image(p) for p in item.images]
        frames = (
            self.media.video(item.video, item.clip_start, item.clip_end) if item.video else None
        )
        return Loaded(item=item, images=images, frames=frames)

    @abc.abstractmethod
    def collate(self, loaded: Sequence[Loaded], *, use_instruction: bool) -> dict[str, Any]:
        """CPU tensors for `forward` (thread-safe: no model state)."""

    @abc.abstractmethod
    def forward(self, inputs: dict[str, Any]) -> torch.Tensor:
        """(n, dim) L2-normalised float32 embeddings; differentiable when grad is enabled."""

    def encode(self, items: Sequence[EmbedItem], *, use_instruction: bool = True) -> torch.Tensor:
        """Convenience: load, collate and forward in one call (MediaError propagates)."""
        return self.forward(
            self.collate([self.load(i) for i in items], use_instruction=use_instruction)
        )

    # --- parameters ---------------------------------------------------------------------------

    @abc.abstractmethod
    def lora_target_regex(self) -> str:
        """Full-name regex of the modules LoRA wraps."""

    def _lora_host(self) -> nn.Module:
        """The module peft wraps (and that `merge_lora` gives back)."""
        return self.model

    def _set_lora_host(self, module: nn.Module) -> None:
        self.model = module

    def add_lora(self, *, r: int, alpha: int, dropout: float) -> None:
        from peft import LoraConfig, get_peft_model

        if self.lora_active:
            raise RuntimeError("a LoRA adapter is already active: merge it first")
        config = LoraConfig(
            r=r,
            lora_alpha=alpha,
            lora_dropout=dropout,
            target_modules=self.lora_target_regex(),
            bias="none",
        )
        with warnings.catch_warnings():
            # peft asks the model about checkpointing through a name transformers deprecates.
            warnings.simplefilter("ignore", FutureWarning)
            self._set_lora_host(get_peft_model(self._lora_host(), config))
        self.lora_active = True
        self._after_lora()

    def _after_lora(self) -> None:  # noqa: B027 - an optional hook
        """Hook: unfreeze what should train besides LoRA, re-enable checkpointing, ..."""

    def merge_lora(self) -> None:
        """Fold the active adapter into the base weights (embeddings stay the same)."""
        if not self.lora_active:
            return
        self._set_lora_host(self._lora_host().merge_and_unload())
        self.lora_active = False
        for p in self.model.parameters():
            p.requires_grad_(False)

    def trainable_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().to("cpu", copy=True) for n, p in self.trainable_parameters()}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        params = dict(self.trainable_parameters())
        if set(params) != set(state):
            missing = sorted(set(params) - set(state))[:3]
            extra = sorted(set(state) - set(params))[:3]
            raise ValueError(
                f"adapter does not fit this model: missing {missing}..., unexpected {extra}..."
            )
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value.to(params[name].device, params[name].dtype))

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)

    def save_base(self, folder: Path) -> None:  # noqa: B027 - optional
        """Save what is needed to rebuild the untrained backbone (tiny models only)."""


def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


def autocast_dtype(config: BackboneConfig, device: torch.device) -> torch.dtype:
    if config.precision == "bf16":
        return torch.bfloat16
    if config.precision == "fp32":
        return torch.float32
    return torch.bfloat16 if device.type == "cuda" else torch.float32
