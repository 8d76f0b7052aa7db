"""CLIP score: cosine similarity of a media item's image embedding and its caption's text embedding.

The model is an open_clip model name plus a local checkpoint file or a pretrained tag (where the hub
is reachable), loaded through `open_clip.create_model_and_transforms`: the tiny random model the
tests use goes through the same path as a real checkpoint. An image has one embedding; a video's
score is the mean of its sampled frames' scores and its media embedding the normalised mean of
its frame embeddings. On a GPU the towers run under bf16 autocast; similarities are taken in
float32 after L2 normalisation.

`curate-tiny-clip` is built in (embed_dim 32, two-layer towers, 64-pixel images), for tests and
demos: `ClipOptions(model="curate-tiny-clip", pretrained=None)` builds it with random weights from
`seed`, identically on every machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from curate.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from PIL import Image

CLIP_SIGNAL_VERSION = 1

TINY_CLIP_NAME = "curate-tiny-clip"
TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}

CLIP_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("clip_score", pa.float32()),  # null: no media, no caption, or unreadable media
        pa.field("clip_model", pa.string()),
        pa.field("clip_frames", pa.int32()),  # frames averaged (1 for an image)
        pa.field("clip_error", pa.string()),  # why the media could not be read
    ]
)


def embedding_schema(dim: int) -> pa.Schema:
    """Sidecar `embeddings/clip`: the primary media's normalised CLIP image embedding (float16)."""
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(pa.float16(), dim)),
        ]
    )


@dataclass(frozen=True)
class ClipOptions:
    """Which CLIP model scores, and how it runs."""

    model: str = "ViT-B-32"
    #: A checkpoint file, a pretrained tag (e.g. "openai", needs the hub or its cache), or None
    #: for random weights (tests and benchmarks only).
    pretrained: str | None = None
    config_file: str | None = None  # an extra open_clip model config JSON to register first
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    batch_size: int = 64  # images or frames per forward pass
    seed: int = 0  # initialises random weights

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"clip batch_size must be at least 1, found {self.batch_size}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(
                f"clip precision must be auto, fp32 or bf16, found {self.precision!r}"
            )


def _register_configs(options: ClipOptions) -> None:
    import open_clip

    if options.config_file:
        path = Path(options.config_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"open_clip model config {path} does not exist; pass a JSON file")
        open_clip.add_model_config(path)
    if options.model == TINY_CLIP_NAME and TINY_CLIP_NAME not in open_clip.list_models():
        folder = Path(tempfile.mkdtemp(prefix="curate-clip-config-"))
        (folder / f"{TINY_CLIP_NAME}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
        open_clip.add_model_config(folder)


@cache
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def weights_label(options: ClipOptions) -> dict[str, Any]:
    """What identifies the weights: the tag, the checkpoint's content digest, or the seed."""
    if options.pretrained is None:
        return {"weights": "random", "seed": options.seed}
    path = Path(options.pretrained).expanduser()
    if path.is_file():
        stat = path.stat()
        return {
            "weights": path.name,
            "sha256": _file_digest(str(path.resolve()), stat.st_size, stat.st_mtime_ns),
        }
    return {"weights": options.pretrained}


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except RuntimeError:
        raise ConfigError(
            f"device {device!r} is not a device name; use auto, cpu, cuda or cuda:N"
        ) from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for but CUDA is not available; use cpu")
    return device


class ClipModel:
    """An open_clip model with its eval transform and tokenizer, in eval mode."""

    def __init__(self, options: ClipOptions) -> None:
        import open_clip
        import torch

        _register_configs(options)
        if options.model not in open_clip.list_models() and not options.model.startswith(
            ("hf-hub:", "local-dir:")
        ):
            raise ConfigError(
                f"unknown open_clip model {options.model!r}; use one of open_clip.list_models() "
                f"(e.g. ViT-B-32), {TINY_CLIP_NAME!r}, or register a config with --clip-config"
            )
        self.options = options
        self.device = resolve_device(options.device)
        precision = options.precision
        if precision == "auto":
            precision = "bf16" if self.device.startswith("cuda") else "fp32"
        self.autocast_dtype = torch.bfloat16 if precision == "bf16" else None
        pretrained = options.pretrained
        if pretrained is not None and Path(pretrained).expanduser().is_file():
            pretrained = str(Path(pretrained).expanduser())
        # Random weights come from the seed, without touching the caller's random state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(options.seed)
            # open_clip logs a failed download at ERROR on the root logger before it raises;
            # the one-line error below says it all.
            logging.disable(logging.ERROR)
            try:
                model, _, preprocess = open_clip.create_model_and_transforms(
                    options.model, pretrained=pretrained, device=self.device
                )
            except (
                RuntimeError,
                ValueError,
                OSError,
                KeyError,
                EOFError,
                pickle.PickleError,
            ) as error:
                if "download" in str(error).lower():
                    why = (
                        f"the weights of tag {options.pretrained!r} are not in the local cache "
                        "and the hub cannot be reached"
                    )
                else:
                    why = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
                raise ConfigError(
                    f"could not load open_clip model {options.model!r} with pretrained "
                    f"{options.pretrained!r}: {why}; pass a checkpoint file saved for this "
                    "model (a state dict), or a tag whose weights are cached"
                ) from None
            finally:
                logging.disable(logging.NOTSET)
        model.eval()
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(options.model)
        self.label = f"{options.model}:{weights_label(options)['weights']}"
        self.dim = int(self.encode_texts(["a"]).shape[1])

    def pixels(self, frames: list[Image.Image]) -> torch.Tensor:
        """The eval transform of each frame, stacked (runs on loader threads)."""
        import torch

        return torch.stack([self.preprocess(frame) for frame in frames])

    def _autocast(self):
        import contextlib

        import torch

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.autocast_dtype)

    def encode_images(self, pixels: torch.Tensor) -> np.ndarray:
        """L2-normalised float32 image embeddings, `batch_size` at a time."""
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(pixels), self.options.batch_size):
                batch = pixels[start : start + self.options.batch_size].to(self.device)
                with self._autocast():
                    features = self.model.encode_image(batch)
                out.append(torch.nn.functional.normalize(features.float(), dim=-1).cpu())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return torch.cat(out).numpy()

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 text embeddings."""
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.options.batch_size):
                tokens = self.tokenizer(texts[start : start + self.options.batch_size])
                with self._autocast():
                    features = self.model.encode_text(tokens.to(self.device))
                out.append(torch.nn.functional.normalize(features.float(), dim=-1).cpu())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return torch.cat(out).numpy()


_MODELS: dict[tuple[Any, ...], ClipModel] = {}


def load_clip(options: ClipOptions) -> ClipModel:
    """A loaded model, cached per process (tests and repeated calls load it once)."""
    key = (
        options.model,
        options.pretrained,
        options.config_file,
        options.device,
        options.precision,
        options.seed,
        options.batch_size,
        json.dumps(weights_label(options), sort_keys=True),
        os.environ.get("HF_HUB_OFFLINE"),
    )
    if key not in _MODELS:
        _MODELS[key] = ClipModel(options)
    return _MODELS[key]


@dataclass(frozen=True)
class ClipItem:
    """One row's media for CLIP: preprocessed frames and the caption (None: embed only)."""

    pixels: torch.Tensor  # (frames, 3, H, W)
    caption: str | None


def score_items(clip: ClipModel, items: list[ClipItem]) -> tuple[np.ndarray, np.ndarray]:
    """CLIP scores (NaN without a caption) and media embeddings (n × dim) of `items`.

    Frames of all items are encoded together in batches; a video's score is the mean of its
    frames' cosines with the caption, its embedding the normalised mean of its frames.
    """
    import torch

    if not items:
        return np.zeros(0, np.float32), np.zeros((0, clip.dim), np.float32)
    counts = [len(item.pixels) for item in items]
    frames = clip.encode_images(torch.cat([item.pixels for item in items]))
    captioned = [i for i, item in enumerate(items) if item.caption is not None]
    texts = clip.encode_texts([items[i].caption for i in captioned])  # type: ignore[misc]
    text_of = dict(zip(captioned, texts, strict=True))
    scores = np.full(len(items), np.nan, dtype=np.float32)
    embeddings = np.zeros((len(items), clip.dim), dtype=np.float32)
    offset = 0
    for i, count in enumerate(counts):
        own = frames[offset : offset + count]
        offset += count
        mean = own.mean(axis=0)
        embeddings[i] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        if i in text_of:
            scores[i] = float((own @ text_of[i]).mean())
    return scores, embeddings
