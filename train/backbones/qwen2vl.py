"""Qwen2-VL as an embedder (UNITE recipe), with LoRA on the language model.

Inputs go through Qwen2-VL's own processor (image/video patching, placeholder expansion,
`mm_token_type_ids`) with LEFT padding; the embedding is the final hidden state of the last
token (`<|endoftext|>`), L2-normalised. Position ids are not passed for batches with media, so
the model computes its 3-D M-RoPE indices from input_ids, the grids and mm_token_type_ids with
the attention mask (left padding is handled there); text-only batches get 1-D positions that
start at each row's first real token. Logits are never computed (`model.model(...)`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from curate.errors import ConfigError
from train.backbones.base import Backbone, Loaded, autocast_dtype, l2_normalise
from train.config import BackboneConfig, MediaConfig, TemplateConfig
from train.media import MediaError
from train.template import EmbedItem, build_prompt

IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
VIDEO_PLACEHOLDER = "<|vision_start|><|video_pad|><|vision_end|>"
#: Tokens the template adds around the text (system turn, roles, summary): kept out of the
#: text budget so truncation never cuts the summary or the final token.
TEMPLATE_TOKENS = 64
#: Qwen2-VL's resize refuses more extreme aspect ratios.
MAX_ASPECT = 200


def build_processor(tokenizer: Any, vision_config: Any, media: MediaConfig, *, base: Any = None):
    """A Qwen2VLProcessor whose pixel budgets come from `media` and whose patch sizes match
    the vision tower (a mismatch breaks the forward)."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    common = {
        "patch_size": vision_config.patch_size,
        "temporal_patch_size": vision_config.temporal_patch_size,
        "merge_size": vision_config.spatial_merge_size,
    }
    if base is not None and getattr(base, "image_processor", None) is not None:
        common["image_mean"] = list(base.image_processor.image_mean)
        common["image_std"] = list(base.image_processor.image_std)
    factor = vision_config.patch_size * vision_config.spatial_merge_size
    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": media.min_pixels, "longest_edge": media.max_pixels}, **common
    )
    frame_max = max(factor * factor, media.max_frame_pixels)
    video_processor = Qwen2VLVideoProcessor(
        # Explicit size: the default would upsize small frames; we sample frames ourselves.
        size={"shortest_edge": min(frame_max, 4 * factor * factor), "longest_edge": frame_max},
        do_sample_frames=False,
        cap_pixels_per_frame=True,
        **common,
    )
    tokenizer.padding_side = "left"
    return Qwen2VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor
    )


class Qwen2VLBackbone(Backbone):
    """`qwen2-vl`: Qwen2VLForConditionalGeneration from a local folder or hub id."""

    kind = "qwen2-vl"

    def __init__(
        self,
        config: BackboneConfig,
        media: MediaConfig,
        template: TemplateConfig,
        *,
        device: torch.device,
        max_length: int = 2048,
        video_frames: int | None = None,
        model: Any = None,
        tokenizer: Any = None,
    ) -> None:
        super().__init__(
            config, media, template, device=device, max_length=max_length, video_frames=video_frames
        )
        self.dtype = autocast_dtype(config, device)
        base_processor = None
        if model is None:
            model, base_processor = self._load_pretrained(config, self.dtype)
            tokenizer = base_processor.tokenizer
        self.hf = model.to(device=device, dtype=self.dtype)
        self.hf.config.use_cache = False
        self.model = self.hf
        for p in self.hf.parameters():
            p.requires_grad_(False)
        self.tokenizer = tokenizer
        self.processor = build_processor(
            tokenizer, self.hf.config.vision_config, media, base=base_processor
        )
        self.dim = int(self.hf.config.text_config.hidden_size)
        if config.gradient_checkpointing:
            # Non-reentrant checkpointing needs no input gradients (frozen embeddings + LoRA).
            kwargs = {"use_reentrant": False}
            if hasattr(self.hf, "activation_checkpointing_enable"):  # transformers >= 5.2x
                self.hf.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            else:
                self.hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        self.hf.eval()

    @staticmethod
    def _load_pretrained(config: BackboneConfig, dtype: torch.dtype):
        from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

        if not config.model:
            raise ConfigError(
                "backbone.model is empty: set it to a local Qwen2-VL folder or a hub id, "
                "e.g. --set backbone.model=Qwen/Qwen2-VL-2B-Instruct"
            )
        try:
            model = Qwen2VLForConditionalGeneration.from_pretrained(
                config.model, attn_implementation=config.attn_implementation, dtype=dtype
            )
            processor = AutoProcessor.from_pretrained(config.model)
        except OSError as error:
            raise ConfigError(
                f"cannot load Qwen2-VL from {config.model!r}: {error}. Give a local folder "
                "with the weights, or a hub id with network access (HF_HUB_OFFLINE unset)"
            ) from error
        return model, processor

    def lora_target_regex(self) -> str:
        names = "|".join(self.config.lora_targets)
        # Only the language model: the vision tower's layers are named qkv/proj/fc1/fc2 anyway,
        # and lm_head is never used for embeddings.
        return rf".*language_model.*\.({names})$"

    def _after_lora(self) -> None:
        if not self.config.freeze_vision:
            for p in self.hf.model.visual.parameters():
                p.requires_grad_(True)

    # --- data ---------------------------------------------------------------------------------

    def load(self, item: EmbedItem) -> Loaded:
        """Decode media, refusing what the Qwen2-VL processor cannot take (so the pair is skipped
        instead of failing the whole batch)."""
        loaded = super().load(item)
        sizes = [image.size for image in loaded.images]
        if loaded.frames is not None:
            sizes.append((loaded.frames.shape[2], loaded.frames.shape[1]))
        for w, h in sizes:
            if max(w, h) / max(1, min(w, h)) > MAX_ASPECT:
                raise MediaError(
                    f"{item.video or item.images[0]}: aspect ratio {w}x{h} is beyond Qwen2-VL's "
                    f"limit of {MAX_ASPECT}:1"
                )
        return loaded

    def _truncate(self, text: str | None) -> str | None:
        budget = max(8, self.max_length - TEMPLATE_TOKENS)
        if not text or len(text) <= budget:  # a token is at least one character
            return text
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= budget:
            return text
        return self.tokenizer.decode(ids[:budget])

    def collate(self, loaded: Sequence[Loaded], *, use_instruction: bool) -> dict[str, Any]:
        prompts, images, videos = [], [], []
        for entry in loaded:
            prompts.append(
                build_prompt(
                    entry.item,
                    self.template,
                    image_placeholder=IMAGE_PLACEHOLDER,
                    video_placeholder=VIDEO_PLACEHOLDER,
                    use_instruction=use_instruction,
                    text=self._truncate(entry.item.text),
                )
            )
            images.extend(entry.images)
            if entry.frames is not None:
                videos.append(np.array(entry.frames))  # writable copy: the cache shares frames
        kwargs: dict[str, Any] = {"text": prompts, "padding": True, "return_tensors": "pt"}
        if images:
            kwargs["images"] = images
        if videos:
            kwargs["videos"] = videos
        batch = self.processor(**kwargs)
        return dict(batch)

    # --- model --------------------------------------------------------------------------------

    def forward(self, inputs: dict[str, Any]) -> torch.Tensor:
        inputs = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in inputs.items()}
        for key in ("pixel_values", "pixel_values_videos"):
            if key in inputs:
                inputs[key] = inputs[key].to(self.dtype)
        mask = inputs["attention_mask"]
        has_media = "pixel_values" in inputs or "pixel_values_videos" in inputs
        if not has_media:
            # Text only: positions count real tokens, so left padding does not shift them.
            positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
            inputs["position_ids"] = positions.unsqueeze(0).expand(3, -1, -1)
        out = self.hf.model(**inputs, use_cache=False)
        # Left padding: the last position is every row's final real token.
        return l2_normalise(out.last_hidden_state[:, -1])
