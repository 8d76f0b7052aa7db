"""`tiny-qwen2-vl`: a randomly initialised small Qwen2-VL on the real Qwen2-VL code path.

Nothing is downloaded: a byte-level BPE tokenizer is trained offline on a built-in text, Qwen2-VL's
special tokens are added, and it is wrapped as `Qwen2Tokenizer` (which rebuilds Qwen2's own
pre-tokenizer). The model is `Qwen2VLForConditionalGeneration(Qwen2VLConfig(...))` with sizes from
the backbone config, so the processor, M-RoPE and LoRA paths are the real ones. The same builder
makes a Qwen2-VL-2B-sized random model for GPU throughput checks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from train.backbones.qwen2vl import Qwen2VLBackbone
from train.config import BackboneConfig, MediaConfig, TemplateConfig

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Text the tiny BPE learns its merges from: the template plus common caption words.
_CORPUS = """You are a helpful assistant. Summary above sentence in one word: Summary above image
in one word: Summary above video in one word: Summary above sentence and image in one word:
Summary above sentence and video in one word: system user assistant
a photo of a cat sitting on a mat. a dog running in the snow with another dog. two people are
walking on the street near a building. a man is riding a horse on the beach at sunset. a woman
holding an umbrella in the rain. the eiffel tower at night with lights. a group of people playing
football on a green field. a video of a person cooking food in the kitchen. children are playing
in the park. a red car parked next to a white truck. a bowl of fruit on a wooden table. an
airplane flying in the blue sky above the clouds. a train arriving at the station. the man is
talking to the camera while he explains how to fix a bike. find an image that matches the
caption. retrieve a video that shows the described action. what is shown in this picture? the
answer is yes. the answer is no. people, person, animal, water, tree, house, road, city, light,
black, white, red, blue, green, yellow, small, large, old, young, one, two, three, four, five.
"""


def mrope_section(head_dim: int) -> list[int]:
    """Qwen2-VL's (temporal, height, width) split of the rotary half-dimension: [16, 24, 24]
    for head_dim 128; the parts must sum to head_dim / 2."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def build_tokenizer(vocab_size: int = 1024) -> Any:
    """A byte-level BPE Qwen2Tokenizer trained offline (deterministic)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=max(len(SPECIAL_TOKENS) + 256 + 8, min(vocab_size, 2048)),
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS.split("\n") * 4, trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=model["vocab"], merges=merges, extra_special_tokens=list(SPECIAL_TOKENS[1:])
    )
    tokenizer.padding_side = "left"
    return tokenizer


def build_config(backbone: BackboneConfig, tokenizer: Any) -> Any:
    """A Qwen2VLConfig with the tiny sizes of `backbone` (patch sizes as the real model's)."""
    from transformers import Qwen2VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    hidden, heads = backbone.tiny_hidden, backbone.tiny_heads
    vocab = max(backbone.tiny_vocab, len(tokenizer))
    return Qwen2VLConfig(
        text_config={
            "vocab_size": vocab,
            "hidden_size": hidden,
            "intermediate_size": backbone.tiny_intermediate or 2 * hidden,
            "num_hidden_layers": backbone.tiny_layers,
            "num_attention_heads": heads,
            "num_key_value_heads": backbone.tiny_kv_heads,
            "max_position_embeddings": 32768,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1000000.0,
                "mrope_section": mrope_section(hidden // heads),
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|endoftext|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": True,
        },
        vision_config={
            "depth": backbone.tiny_vision_depth,
            "embed_dim": backbone.tiny_vision_dim,
            "hidden_size": hidden,  # the merger projects vision features to the LM width
            "num_heads": backbone.tiny_vision_heads,
            "mlp_ratio": backbone.tiny_vision_mlp_ratio,
            "patch_size": 14,
            "temporal_patch_size": 2,
            "spatial_merge_size": 2,
            "in_channels": 3,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def build_model(backbone: BackboneConfig, tokenizer: Any, *, seed: int) -> Any:
    """The random Qwen2VLForConditionalGeneration, identical for the same config and seed."""
    from transformers import Qwen2VLForConditionalGeneration

    config = build_config(backbone, tokenizer)
    config._attn_implementation = backbone.attn_implementation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2VLForConditionalGeneration(config)
    return model


class TinyQwen2VLBackbone(Qwen2VLBackbone):
    """The Qwen2-VL backbone on a random tiny model (or one saved by `save_base`)."""

    kind = "tiny-qwen2-vl"

    def __init__(
        self,
        config: BackboneConfig,
        media: MediaConfig,
        template: TemplateConfig,
        *,
        device: torch.device,
        max_length: int = 2048,
        video_frames: int | None = None,
        seed: int = 0,
        base_dir: Path | None = None,
    ) -> None:
        if base_dir is not None and (base_dir / "config.json").is_file():
            tokenizer, model = load_base(base_dir, config)
        else:
            tokenizer = build_tokenizer(config.tiny_vocab)
            model = build_model(config, tokenizer, seed=seed)
        super().__init__(
            config,
            media,
            template,
            device=device,
            max_length=max_length,
            video_frames=video_frames,
            model=model,
            tokenizer=tokenizer,
        )

    def save_base(self, folder: Path) -> None:
        """Save the untrained model and tokenizer so a resumed run starts from the same weights."""
        if self.lora_active:
            raise RuntimeError("save_base is for the untrained model")
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        # The raw state dict (not save_pretrained, whose key conversion costs a second here).
        state = self.hf.state_dict()
        state.pop("lm_head.weight", None)  # tied to the input embeddings
        save_file(
            {k: v.detach().contiguous() for k, v in state.items()},
            str(folder / "model.safetensors"),
        )
        self.hf.config.to_json_file(folder / "config.json")
        self.tokenizer.save_pretrained(folder)


def load_base(folder: Path, backbone: BackboneConfig) -> tuple[Any, Any]:
    """Tokenizer and model saved by `TinyQwen2VLBackbone.save_base`, bit for bit."""
    from safetensors.torch import load_file
    from transformers import Qwen2Tokenizer, Qwen2VLConfig, Qwen2VLForConditionalGeneration

    tokenizer = Qwen2Tokenizer.from_pretrained(folder)
    config = Qwen2VLConfig.from_json_file(folder / "config.json")
    config._attn_implementation = backbone.attn_implementation
    model = Qwen2VLForConditionalGeneration(config)
    result = model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=False)
    if result.unexpected_keys or set(result.missing_keys) - {"lm_head.weight"}:
        raise ValueError(f"{folder} does not hold this tiny model: {result}")
    return tokenizer, model
