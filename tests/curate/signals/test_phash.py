"""pHash / dHash: parity with a scipy reference, bit packing, and behaviour on real photos."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from scipy.fftpack import dct

from curate.signals.media import load_image
from curate.signals.phash import (
    dct2,
    dhash_image,
    hamming,
    hash_frames,
    is_informative,
    pack_bits,
    phash_image,
)


def reference_phash(image: Image.Image) -> int:
    """The classic pHash (as in the imagehash package), written with scipy's DCT."""
    pixels = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), float)
    low = dct(dct(pixels, axis=0), axis=1)[:8, :8]
    bits = (low > np.median(low)).ravel()
    return int("".join("1" if b else "0" for b in bits), 2)


def test_dct2_matches_scipy():
    block = np.random.default_rng(0).normal(size=(32, 32))
    np.testing.assert_allclose(dct2(block), dct(dct(block, axis=0), axis=1), rtol=1e-10, atol=1e-9)


def test_pack_bits_is_row_major_most_significant_first():
    bits = np.zeros(64, dtype=bool)
    bits[0] = True
    bits[63] = True
    assert int(pack_bits(bits)) == (1 << 63) | 1
    with pytest.raises(ValueError, match="64 bits"):
        pack_bits(np.zeros(63, dtype=bool))


def test_phash_matches_reference_on_real_photos(coco_images):
    for path in coco_images[:5]:
        image = load_image(str(path))
        assert int(phash_image(image)) == reference_phash(image)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def test_copies_are_close_and_unrelated_photos_far(coco_images):
    images = [load_image(str(p)) for p in coco_images[:12]]
    hashes = np.array([phash_image(im) for im in images], dtype=np.uint64)
    dhashes = np.array([dhash_image(im) for im in images], dtype=np.uint64)
    for image, ph, dh in zip(images, hashes, dhashes, strict=True):
        half = image.resize((image.width // 2, image.height // 2), Image.Resampling.BICUBIC)
        for copy in (half, _jpeg(image, 30), _jpeg(half, 30)):
            assert hamming(phash_image(copy), ph) <= 4
            assert hamming(dhash_image(copy), dh) <= 6
    distances = hamming(hashes[:, None], hashes[None, :])[np.triu_indices(len(hashes), 1)]
    assert distances.min() >= 12
    assert 24 <= distances.mean() <= 40  # about half the bits differ between unrelated photos


def test_flat_images_are_not_informative(coco_images):
    flat = [Image.new("RGB", (64, 48), colour) for colour in ("black", "white", (30, 120, 200))]
    flat_hashes = np.array([phash_image(im) for im in flat], dtype=np.uint64)
    assert not is_informative(flat_hashes).any()
    photo = np.array([phash_image(load_image(str(coco_images[0])))], dtype=np.uint64)
    assert is_informative(photo).all()


def test_hash_frames_image_vs_video(coco_images):
    frames = [load_image(str(p)) for p in coco_images[:3]]
    image = hash_frames(frames[:1], video=False)
    assert image["phash"] == int(phash_image(frames[0]))
    assert image["phash_frames"] is None
    video = hash_frames(frames, video=True)
    assert video["phash"] == int(phash_image(frames[1]))  # the middle frame
    assert video["phash_frames"] == [int(phash_image(f)) for f in frames]
    assert video["dhash_frames"] == [int(dhash_image(f)) for f in frames]
