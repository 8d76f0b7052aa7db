"""Backbones: the tiny Qwen2-VL path (padding, M-RoPE, LoRA, adapters) and open_clip."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from train.checkpoint import load_tensors, save_tensors
from train.template import EmbedItem


@pytest.fixture(scope="module")
def items(shared_data):
    images = shared_data / "images" / "sentence_transformers_image_search"
    videos = shared_data / "videos" / "mmaction2"
    return [
        EmbedItem(text="a cat on a mat"),
        EmbedItem(images=(str(images / "cat.jpg"),)),
        EmbedItem(text="two dogs in the snow", images=(str(images / "two_dogs_in_snow.jpg"),)),
        EmbedItem(video=str(videos / "test.mp4")),
        EmbedItem(
            text="arm wrestling", video=str(videos / "demo.mp4"), clip_start=1.0, clip_end=4.0
        ),
        EmbedItem(
            text="the eiffel tower at night, seen from the river " * 3, instruction="Find it:"
        ),
    ]


def perturb_lora(backbone, seed=0):
    """LoRA B starts at zero (the adapter is a no-op); give it random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in backbone.trainable_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def test_left_padded_batch_equals_each_item_alone(tiny_backbone, items):
    with torch.no_grad():
        batch = tiny_backbone.encode(items)
        alone = torch.cat([tiny_backbone.encode([item]) for item in items])
    assert batch.shape == (len(items), tiny_backbone.dim)
    assert torch.allclose(batch.norm(dim=-1), torch.ones(len(items)))
    assert torch.allclose(batch, alone, atol=1e-5)
    # different inputs give different embeddings (no collapse to the padding token)
    assert (batch @ batch.T - torch.eye(len(items))).abs().max() < 0.9999


def test_media_rows_get_qwen2vl_3d_rope_positions(tiny_backbone, items):
    inputs = tiny_backbone.collate(
        [tiny_backbone.load(i) for i in items[1:5]], use_instruction=True
    )
    model = tiny_backbone.hf.model
    positions, _ = model.get_rope_index(
        inputs["input_ids"],
        inputs["mm_token_type_ids"],
        inputs.get("image_grid_thw"),
        inputs.get("video_grid_thw"),
        inputs["attention_mask"],
    )
    assert not torch.equal(positions[0], positions[1])  # height/width differ from time on media
    with torch.no_grad():
        ours = tiny_backbone.forward(inputs)
        explicit = tiny_backbone.forward({**inputs, "position_ids": positions})
        flat = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        naive = tiny_backbone.forward({**inputs, "position_ids": flat.expand(3, -1, -1)})
    assert torch.allclose(ours, explicit, atol=1e-6)
    assert (ours - naive).abs().max() > 1e-4  # what passing position ids None-like would give


def test_long_text_is_truncated_before_the_summary(tiny_backbone):
    backbone = tiny_backbone
    backbone.max_length = 96
    inputs = backbone.collate(
        [backbone.load(EmbedItem(text="word " * 2000))], use_instruction=False
    )
    assert inputs["input_ids"].shape[1] <= 96 + 8
    text = backbone.tokenizer.decode(inputs["input_ids"][0])
    assert text.endswith(
        "Summary above sentence in one word:<|im_end|>\n<|im_start|>assistant\n<|endoftext|>"
    )


def test_lora_wraps_only_language_model_projections(tiny_backbone):
    tiny_backbone.add_lora(r=4, alpha=8, dropout=0.0)
    names = [n for n, _ in tiny_backbone.trainable_parameters()]
    assert names and all("language_model" in n and "lora_" in n for n in names)
    wrapped = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in names}
    assert wrapped == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert not any(p.requires_grad for p in tiny_backbone.hf.model.visual.parameters())
    assert not tiny_backbone.hf.lm_head.weight.requires_grad


def test_merge_keeps_embeddings_and_saved_adapter_reloads_identically(
    tiny_backbone, _tiny_backbone_once, items, tmp_path
):
    import copy

    tiny_backbone.add_lora(r=4, alpha=16, dropout=0.0)
    perturb_lora(tiny_backbone)
    tiny_backbone.train(False)
    with torch.no_grad():
        adapted = tiny_backbone.encode(items)
        base = _tiny_backbone_once.encode(items)
    assert (adapted - base).abs().max() > 1e-3  # the adapter changes something
    save_tensors(tiny_backbone.trainable_state(), tmp_path / "adapter.safetensors")

    fresh = copy.deepcopy(_tiny_backbone_once)
    fresh.add_lora(r=4, alpha=16, dropout=0.0)
    fresh.load_trainable_state(load_tensors(tmp_path / "adapter.safetensors"))
    fresh.train(False)
    with torch.no_grad():
        assert torch.equal(fresh.encode(items), adapted)
        tiny_backbone.merge_lora()
        assert not tiny_backbone.trainable_parameters()
        assert torch.allclose(tiny_backbone.encode(items), adapted, atol=1e-5)


def test_adapter_of_another_shape_is_refused(tiny_backbone):
    tiny_backbone.add_lora(r=4, alpha=8, dropout=0.0)
    with pytest.raises(ValueError, match="does not fit"):
        tiny_backbone.load_trainable_state({"nope": torch.zeros(1)})


def test_open_clip_tiny_backbone(tiny_config, items):
    from train.backbones import build_backbone

    config = dataclasses.replace(
        tiny_config,
        backbone=dataclasses.replace(tiny_config.backbone, kind="open-clip", model="tiny"),
    )
    backbone = build_backbone(config, device=torch.device("cpu"))
    with torch.no_grad():
        emb = backbone.encode(items)
        assert emb.shape == (len(items), 32)
        assert torch.allclose(emb.norm(dim=-1), torch.ones(len(items)), atol=1e-5)
        # video = normalised mean of its frame embeddings
        loaded = backbone.load(items[3])
        frames = torch.stack(
            [backbone.preprocess(__import__("PIL.Image").Image.fromarray(f)) for f in loaded.frames]
        )
        per_frame = torch.nn.functional.normalize(backbone.clip.encode_image(frames), dim=-1)
        assert torch.allclose(
            emb[3], torch.nn.functional.normalize(per_frame.mean(0), dim=0), atol=1e-5
        )
        # text + image = normalised sum of the two
        text = backbone.encode([EmbedItem(text=items[2].text)])[0]
        image = backbone.encode([EmbedItem(images=items[2].images)])[0]
        assert torch.allclose(emb[2], torch.nn.functional.normalize(text + image, dim=0), atol=1e-5)
    backbone.add_lora(r=4, alpha=8, dropout=0.0)
    names = [n for n, _ in backbone.trainable_parameters()]
    assert names and all(("c_fc" in n or "c_proj" in n) and "lora_" in n for n in names)


def test_qwen2vl_backbone_loads_a_local_folder(tiny_backbone, tiny_config, items, tmp_path):
    """The real `qwen2-vl` path (from_pretrained + AutoProcessor), offline, on a saved tiny model."""
    from train.backbones import build_backbone

    folder = tmp_path / "qwen2-vl-local"
    tiny_backbone.hf.save_pretrained(folder)
    tiny_backbone.processor.save_pretrained(folder)
    config = dataclasses.replace(
        tiny_config,
        backbone=dataclasses.replace(tiny_config.backbone, kind="qwen2-vl", model=str(folder)),
    )
    loaded = build_backbone(config, device=torch.device("cpu"))
    assert loaded.kind == "qwen2-vl" and loaded.dim == tiny_backbone.dim
    with torch.no_grad():
        assert torch.allclose(loaded.encode(items), tiny_backbone.encode(items), atol=1e-6)
    missing = dataclasses.replace(
        config, backbone=dataclasses.replace(config.backbone, model=str(tmp_path / "absent"))
    )
    from curate.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot load Qwen2-VL"):
        build_backbone(missing, device=torch.device("cpu"))


def test_images_the_processor_cannot_take_are_media_errors(tiny_backbone, tmp_path):
    from PIL import Image

    from train.media import MediaError

    path = tmp_path / "strip.png"
    Image.new("RGB", (2000, 5)).save(path)
    with pytest.raises(MediaError, match="aspect ratio"):
        tiny_backbone.load(EmbedItem(images=(str(path),)))


@pytest.mark.parametrize(
    ("name", "message"),
    [("nope", "is not a device name"), ("gpu0", "is not a device name")]
    + ([] if torch.cuda.is_available() else [("cuda", "CUDA is not available")]),
)
def test_an_unusable_device_is_a_config_error(name, message):
    from curate.errors import ConfigError
    from train.backbones import resolve_device

    with pytest.raises(ConfigError, match=message):
        resolve_device(name)


def test_device_names_resolve():
    from train.backbones import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == resolve_device(None).type == want
