"""`open-clip`: a cheap proxy backbone for many ablations (any open_clip config).

`backbone.model` names an open_clip architecture ("ViT-B-32", ...) or "tiny" (a built-in 2-layer
config, embed_dim 32, 32x32 images) and `backbone.pretrained` an optional local weights file
(random weights otherwise; nothing is downloaded). How items become one vector:

* text: the text tower (instruction in front of the text);
* image: the image tower; several images: the normalised mean;
* video: the normalised mean of the frame embeddings;
* text + image / text + video: the normalised sum of the two normalised embeddings.

LoRA wraps the MLP linear layers (`c_fc`, `c_proj`) of both towers: open_clip's attention uses
`nn.MultiheadAttention`, whose fused weights a LoRA layer cannot intercept.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from curate.errors import ConfigError
from train.backbones.base import Backbone, Loaded, l2_normalise
from train.config import BackboneConfig, MediaConfig, TemplateConfig
from train.template import texts_for

TINY_NAME = "curate-tiny-clip"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
_register_lock = threading.Lock()
_registered = False


def _register_tiny() -> None:
    """Register the tiny config with open_clip once per process (it reads configs from files)."""
    global _registered
    import open_clip

    with _register_lock:
        if _registered:
            return
        folder = Path(tempfile.mkdtemp(prefix="curate-openclip-"))
        (folder / f"{TINY_NAME}.json").write_text(json.dumps(TINY_CONFIG))
        open_clip.add_model_config(folder)
        _registered = True


class OpenClipBackbone(Backbone):
    kind = "open-clip"

    def __init__(
        self,
        config: BackboneConfig,
        media: MediaConfig,
        template: TemplateConfig,
        *,
        device: torch.device,
        max_length: int = 77,
        video_frames: int | None = None,
        seed: int = 0,
    ) -> None:
        import open_clip

        super().__init__(
            config, media, template, device=device, max_length=max_length, video_frames=video_frames
        )
        name = config.model or "tiny"
        if name == "tiny":
            _register_tiny()
            name = TINY_NAME
        if name not in open_clip.list_models():
            raise ConfigError(
                f"unknown open_clip model {config.model!r}; use 'tiny' or one of "
                f"{', '.join(open_clip.list_models()[:8])}, ..."
            )
        pretrained = config.pretrained or None
        if pretrained and not Path(pretrained).is_file():
            raise ConfigError(
                f"backbone.pretrained {pretrained!r} is not a file: give a local weights file"
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained
            )
        self.clip = model.to(device)
        self.model = self.clip
        for p in self.clip.parameters():
            p.requires_grad_(False)
        self.clip.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(name)
        self.dim = (
            int(model.text_projection.shape[1])
            if _has_text_proj(model)
            else _probe_dim(model, device)
        )

    def lora_target_regex(self) -> str:
        return r".*\.(c_fc|c_proj)$"

    def collate(self, loaded: Sequence[Loaded], *, use_instruction: bool) -> dict[str, Any]:
        texts = texts_for(
            [e.item for e in loaded],
            use_instruction=use_instruction,
            separator=self.template.instruction_separator,
        )
        text_rows: list[int] = []
        text_list: list[str] = []
        pixels: list[torch.Tensor] = []
        image_rows: list[list[int]] = []
        frame_rows: list[list[int]] = []
        for entry, text in zip(loaded, texts, strict=True):
            if text:
                text_rows.append(len(text_list))
                text_list.append(text)
            else:
                text_rows.append(-1)
            rows = []
            for image in entry.images:
                rows.append(len(pixels))
                pixels.append(self.preprocess(image))
            image_rows.append(rows)
            rows = []
            if entry.frames is not None:
                for frame in entry.frames:
                    rows.append(len(pixels))
                    pixels.append(self.preprocess(Image.fromarray(frame)))
            frame_rows.append(rows)
        return {
            "tokens": self.tokenizer(text_list) if text_list else None,
            "pixels": torch.stack(pixels) if pixels else None,
            "text_rows": text_rows,
            "image_rows": image_rows,
            "frame_rows": frame_rows,
        }

    def forward(self, inputs: dict[str, Any]) -> torch.Tensor:
        text_emb = image_emb = None
        if inputs["tokens"] is not None:
            text_emb = l2_normalise(self.clip.encode_text(inputs["tokens"].to(self.device)))
        if inputs["pixels"] is not None:
            image_emb = l2_normalise(self.clip.encode_image(inputs["pixels"].to(self.device)))
        out = []
        for t, images, frames in zip(
            inputs["text_rows"], inputs["image_rows"], inputs["frame_rows"], strict=True
        ):
            parts = []
            if t >= 0:
                parts.append(text_emb[t])
            for rows in (images, frames):
                if rows:
                    parts.append(l2_normalise(image_emb[rows].mean(0)))
            if not parts:  # an empty item: the empty text
                parts.append(
                    l2_normalise(self.clip.encode_text(self.tokenizer([""]).to(self.device))[0])
                )
            out.append(torch.stack(parts).sum(0))
        return l2_normalise(torch.stack(out))


def _has_text_proj(model: Any) -> bool:
    proj = getattr(model, "text_projection", None)
    return isinstance(proj, torch.Tensor) and proj.ndim == 2


def _probe_dim(model: Any, device: torch.device) -> int:
    import open_clip

    with torch.no_grad():
        tokens = open_clip.tokenize(["x"]).to(device)
        return int(model.encode_text(tokens).shape[-1])
