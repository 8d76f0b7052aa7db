"""Perceptual hashes of images and video frames: pHash (DCT) and dHash (gradient), 64 bits each.

pHash follows the usual recipe: greyscale, resize to 32×32, 2-D DCT-II, keep the 8×8 lowest
frequencies (DC included) and set a bit where a coefficient exceeds their median. dHash resizes to
9×8 and sets a bit where a pixel is brighter than its right neighbour. Bits are packed row-major,
first bit most significant, into a uint64, so that `popcount(a ^ b)` is the Hamming distance.
A flat (one-colour) image hashes to 0.

Both hashes survive resizing and JPEG re-encoding (a few bits change) and differ in about half of
their bits between unrelated images. A median-thresholded pHash sets about half its bits; one with
far fewer comes from a flat or nearly flat image (a black frame, a fade), and `is_informative`
tells such hashes apart so that matching does not pair every black frame with every other.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pyarrow as pa
from PIL import Image

PHASH_SIGNAL_VERSION = 1

PHASH_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("phash", pa.uint64()),  # primary media; a video's middle sampled frame
        pa.field("dhash", pa.uint64()),
        pa.field("phash_frames", pa.list_(pa.uint64())),  # every sampled frame (videos only)
        pa.field("dhash_frames", pa.list_(pa.uint64())),
        pa.field("phash_error", pa.string()),  # why the media could not be read
    ]
)

HASH_SIZE = 8  # 8×8 bits = 64
_PHASH_SIDE = 32  # pHash reads the DCT of a 32×32 thumbnail
#: A median-thresholded pHash sets about half its bits; fewer than this means a flat image.
MIN_INFORMATIVE_BITS = 16


@cache
def _dct_matrix(n: int) -> np.ndarray:
    """Unnormalised DCT-II basis (scipy's `dct(type=2, norm=None)` convention), shape (n, n)."""
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * x + 1) / (2 * n))


def dct2(block: np.ndarray) -> np.ndarray:
    """2-D DCT-II of a square block: the DCT along columns, then along rows."""
    basis = _dct_matrix(block.shape[0])
    return basis @ block @ basis.T


def pack_bits(bits: np.ndarray) -> np.uint64:
    """Pack a boolean array (row-major, first bit most significant) into one uint64."""
    flat = np.asarray(bits, dtype=bool).ravel()
    if flat.size != 64:
        raise ValueError(f"expected 64 bits, found {flat.size}")
    packed = np.packbits(flat)  # 8 bytes, big-endian bit order
    return np.frombuffer(packed.tobytes(), dtype=">u8")[0].astype(np.uint64)


def _grey(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    grey = image.convert("L") if image.mode != "L" else image
    return np.asarray(grey.resize(size, Image.Resampling.LANCZOS), dtype=np.float64)


def phash_image(image: Image.Image) -> np.uint64:
    """64-bit DCT perceptual hash of a PIL image."""
    pixels = _grey(image, (_PHASH_SIDE, _PHASH_SIDE))
    if np.ptp(pixels) < 1.0:
        # A flat image has no structure: its coefficients are rounding noise around the median,
        # which would give a random hash. Define it as 0 (never informative).
        return np.uint64(0)
    low = dct2(pixels)[:HASH_SIZE, :HASH_SIZE]
    return pack_bits(low > np.median(low))


def dhash_image(image: Image.Image) -> np.uint64:
    """64-bit difference hash of a PIL image (horizontal gradient signs)."""
    pixels = _grey(image, (HASH_SIZE + 1, HASH_SIZE))
    return pack_bits(pixels[:, 1:] > pixels[:, :-1])


def hamming(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Bitwise Hamming distance between uint64 hashes (broadcasting)."""
    x = np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64))
    return np.bitwise_count(x)


def is_informative(hashes: np.ndarray) -> np.ndarray:
    """True for pHashes of images with structure; False for flat (one-colour) images."""
    return np.bitwise_count(np.asarray(hashes, dtype=np.uint64)) >= MIN_INFORMATIVE_BITS


def hash_frames(frames: list[Image.Image], *, video: bool) -> dict[str, object]:
    """PHASH_SCHEMA values (without id) for the frames of one media item.

    An image (one frame) gets its hashes and no frame lists; a video gets its middle sampled
    frame's hashes plus the list of every sampled frame's.
    """
    phashes = [int(phash_image(frame)) for frame in frames]
    dhashes = [int(dhash_image(frame)) for frame in frames]
    middle = len(frames) // 2
    return {
        "phash": phashes[middle],
        "dhash": dhashes[middle],
        "phash_frames": phashes if video else None,
        "dhash_frames": dhashes if video else None,
        "phash_error": None,
    }
