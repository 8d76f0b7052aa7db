"""Decoding media for training and embedding: images within pixel bounds, videos as sampled frames.

Videos are decoded with ffmpeg (ffmpeg-python builds the command; the work happens in the child
process, so a few threads decode in parallel). Frames are sampled uniformly over the clip at
`fps` frames per second, clamped to [min_frames, max_frames] and rounded to an even count
(Qwen2-VL's temporal patch is 2 frames), each scaled to at most `max_frame_pixels` pixels.
Anything that cannot be decoded raises `MediaError`; callers skip the sample and count it.

>>> video_frame_count(10.0, fps=1.0, min_frames=4, max_frames=12)
10
>>> video_frame_count(1.1, fps=1.0, min_frames=4, max_frames=12)
4
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from curate.errors import InputError
from train.config import MediaConfig

#: Bump when the sampling rule changes, so disk-cached frames of the old rule are not reused.
FRAMES_FORMAT = 1


class MediaError(InputError):
    """A media file is missing, remote, or cannot be decoded."""


@dataclass(frozen=True)
class VideoInfo:
    duration: float  # seconds
    width: int  # as displayed (rotation applied)
    height: int
    fps: float


def video_frame_count(duration: float, *, fps: float, min_frames: int, max_frames: int) -> int:
    """Frames to sample from a clip: round(duration * fps) clamped, then made even.

    An odd clamp bound is respected by rounding down when rounding up would pass it.
    """
    n = max(min_frames, min(max_frames, round(duration * fps)))
    if n % 2:
        n = n + 1 if n + 1 <= max_frames else n - 1
    return max(n, 1)


def fit_pixels(width: int, height: int, max_pixels: int, *, multiple: int = 2) -> tuple[int, int]:
    """(width, height) scaled down (never up) to at most `max_pixels`, each a multiple of
    `multiple`, aspect ratio kept as well as the rounding allows.

    >>> fit_pixels(640, 360, 320 * 240)
    (368, 206)
    """
    scale = min(1.0, math.sqrt(max_pixels / max(1, width * height)))
    w = max(multiple, int(width * scale) // multiple * multiple)
    h = max(multiple, int(height * scale) // multiple * multiple)
    return w, h


def _check_local(path: str) -> Path:
    if "://" in path:
        raise MediaError(f"{path}: remote media is not fetched during training; download it first")
    p = Path(path)
    if not p.is_file():
        raise MediaError(f"{path}: file not found")
    return p


def load_image(path: str, *, max_pixels: int) -> Image.Image:
    """An RGB image with EXIF orientation applied, scaled down to at most `max_pixels`."""
    p = _check_local(path)
    try:
        with Image.open(p) as img:
            # JPEG draft mode decodes at a reduced scale directly: much faster for big photos.
            w0, h0 = img.size
            if img.format == "JPEG" and w0 * h0 > 4 * max_pixels:
                img.draft("RGB", fit_pixels(w0, h0, 4 * max_pixels))
            img = ImageOps.exif_transpose(img)
            img = img.convert("RGB")
            w, h = img.size
            if w * h > max_pixels:
                img = img.resize(fit_pixels(w, h, max_pixels, multiple=1), Image.Resampling.BICUBIC)
            img.load()
            return img
    except MediaError:
        raise
    except Exception as error:  # PIL raises many types for broken files
        raise MediaError(
            f"{path}: cannot decode image ({type(error).__name__}: {error})"
        ) from error


def probe_video(path: str, *, timeout_s: float = 60.0) -> VideoInfo:
    """Duration, displayed size and frame rate of the first video stream."""
    import ffmpeg

    p = _check_local(path)
    try:
        info = ffmpeg.probe(str(p), timeout=timeout_s)
    except ffmpeg.Error as error:
        message = (error.stderr or b"").decode(errors="replace").strip().splitlines()
        raise MediaError(f"{path}: ffprobe failed ({message[-1] if message else error})") from error
    except Exception as error:
        raise MediaError(f"{path}: ffprobe failed ({type(error).__name__}: {error})") from error
    streams = [s for s in info.get("streams", []) if s.get("codec_type") == "video"]
    if not streams:
        raise MediaError(f"{path}: no video stream")
    s = streams[0]
    width, height = int(s.get("width") or 0), int(s.get("height") or 0)
    if width <= 0 or height <= 0:
        raise MediaError(f"{path}: video stream has no size")
    if _rotation(s) % 180 == 90:
        width, height = height, width
    duration = _float(s.get("duration")) or _float(info.get("format", {}).get("duration"))
    rate = _rate(s.get("avg_frame_rate")) or _rate(s.get("r_frame_rate")) or 25.0
    if not duration:
        frames = _float(s.get("nb_frames"))
        duration = frames / rate if frames else 0.0
    if duration <= 0:
        raise MediaError(f"{path}: video duration is unknown or zero")
    return VideoInfo(duration=duration, width=width, height=height, fps=rate)


def load_video(
    path: str,
    *,
    media: MediaConfig,
    clip_start: float | None = None,
    clip_end: float | None = None,
    frames: int | None = None,
    info: VideoInfo | None = None,
) -> np.ndarray:
    """Frames (T, H, W, 3) uint8, T even (or exactly `frames` when given), writable.

    Frames sit at the centres of T equal slices of [clip_start, clip_end] (the whole video
    when no clip is given).
    """
    import ffmpeg

    info = info or probe_video(path, timeout_s=media.timeout_s)
    start = max(0.0, clip_start or 0.0)
    end = info.duration if clip_end is None else min(float(clip_end), info.duration)
    if end <= start:
        # A clip past the end of the file: fall back to its last second rather than failing.
        start, end = max(0.0, min(start, info.duration) - 1.0), min(end, info.duration)
        if end <= start:
            raise MediaError(f"{path}: clip [{clip_start}, {clip_end}] is empty")
    span = end - start
    n = frames or video_frame_count(
        span, fps=media.fps, min_frames=media.min_frames, max_frames=media.max_frames
    )
    w, h = fit_pixels(info.width, info.height, media.max_frame_pixels)
    # Frame k is the decoded frame nearest the centre of the k-th of n equal slices of the clip,
    # picked by index after seeking to the clip start (the fps filter drifts by a frame).
    rate = info.fps
    picks = sorted({int((k + 0.5) * span / n * rate) for k in range(n)})
    expression = "+".join(f"eq(n,{i})" for i in picks)
    stream = ffmpeg.input(str(path), ss=f"{start:.6f}", t=f"{span:.6f}", threads=1)
    args = (
        stream.video.filter("select", expression)
        .filter("scale", w, h)
        .output("pipe:", format="rawvideo", pix_fmt="rgb24", vsync="passthrough")
        .global_args("-nostdin", "-v", "error")
        .compile()
    )
    try:
        done = subprocess.run(args, capture_output=True, timeout=media.timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise MediaError(f"{path}: ffmpeg failed ({type(error).__name__}: {error})") from error
    out = done.stdout
    if done.returncode != 0 and not out:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise MediaError(f"{path}: ffmpeg failed ({message[-1] if message else done.returncode})")
    frame_bytes = w * h * 3
    got = len(out) // frame_bytes
    if got == 0:
        raise MediaError(f"{path}: no frame decoded in [{start:.2f}, {end:.2f}] s")
    # np.frombuffer gives a read-only view of the pipe's bytes: copy so the frames are writable.
    array = np.frombuffer(out, np.uint8, count=got * frame_bytes).reshape(got, h, w, 3).copy()
    if got < n:
        # Fewer distinct frames than asked (a short clip at a low frame rate, or a file shorter
        # than its header says): repeat frames in order, as uniform sampling of few frames would.
        array = array[np.minimum(np.arange(n) * got // n, got - 1)]
    return array


class MediaLoader:
    """Decodes media with a per-run in-memory cache (LRU by bytes); thread-safe.

    `video_frames` fixes the frame count (evaluation protocols use fixed counts); otherwise the
    fps rule of `media` applies.
    """

    def __init__(
        self,
        media: MediaConfig,
        *,
        video_frames: int | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.media = media
        self.video_frames = video_frames
        # Decoded frames on disk, shared by runs (ablation cells decode the same clips).
        self.cache_dir = cache_dir
        self._cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._sizes: dict[tuple[Any, ...], int] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __getstate__(self) -> dict[str, Any]:  # copies (deepcopy of a backbone) get a new lock
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def image(self, path: str) -> Image.Image:
        key = ("image", path, self.media.max_pixels)
        return self._cached(key, lambda: load_image(path, max_pixels=self.media.max_pixels))

    def video(self, path: str, clip_start: float | None = None, clip_end: float | None = None):
        key = (
            "video",
            path,
            clip_start,
            clip_end,
            self.video_frames,
            self.media.fps,
            self.media.min_frames,
            self.media.max_frames,
            self.media.max_frame_pixels,
        )

        def decode() -> np.ndarray:
            disk = self._disk_path(key)
            if disk is not None and disk.is_file():
                try:
                    frames = np.load(disk, allow_pickle=False)
                except (OSError, ValueError):
                    frames = None
                if frames is not None and frames.ndim == 4 and frames.dtype == np.uint8:
                    frames.flags.writeable = False
                    return frames
            frames = load_video(
                path,
                media=self.media,
                clip_start=clip_start,
                clip_end=clip_end,
                frames=self.video_frames,
                info=self._probe(path),
            )
            if disk is not None:
                disk.parent.mkdir(parents=True, exist_ok=True)
                tmp = disk.with_name(f".{disk.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                with open(tmp, "wb") as handle:
                    np.save(handle, frames, allow_pickle=False)
                os.replace(tmp, disk)
            frames.flags.writeable = False  # shared through the cache: callers copy to change
            return frames

        return self._cached(key, decode)

    def _disk_path(self, key: tuple[Any, ...]) -> Path | None:
        """Cache file for a decoded clip; the key includes the file's size and mtime."""
        if self.cache_dir is None:
            return None
        try:
            stat = Path(key[1]).stat()
        except OSError:
            return None
        text = json.dumps([*key, stat.st_size, stat.st_mtime_ns, FRAMES_FORMAT], default=str)
        digest = hashlib.sha256(text.encode()).hexdigest()[:32]
        return self.cache_dir / digest[:2] / f"{digest}.npy"

    def _probe(self, path: str) -> VideoInfo:
        return self._cached(
            ("probe", path), lambda: probe_video(path, timeout_s=self.media.timeout_s)
        )

    def _cached(self, key: tuple[Any, ...], make):
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                self.hits += 1
                value = self._cache[key]
                if isinstance(value, MediaError):
                    raise value
                return value
        self.misses += 1
        try:
            value = make()
        except MediaError as error:
            value = error  # failures are cached too: a broken file is tried once per run
        size = _nbytes(value)
        limit = self.media.cache_mb * 1024 * 1024
        with self._lock:
            if key not in self._cache and size <= limit:
                self._cache[key] = value
                self._sizes[key] = size
                self._bytes += size
                while self._bytes > limit and self._cache:
                    old, _ = self._cache.popitem(last=False)
                    self._bytes -= self._sizes.pop(old)
        if isinstance(value, MediaError):
            raise value
        return value


def _nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, Image.Image):
        return value.width * value.height * 3
    return 256


def _float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return 0.0
    return out if math.isfinite(out) and out > 0 else 0.0


def _rate(value: Any) -> float:
    if not value or value in {"0/0", "0/1"}:
        return 0.0
    try:
        num, _, den = str(value).partition("/")
        return float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        return 0.0


def _rotation(stream: dict[str, Any]) -> int:
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            try:
                return round(float(side["rotation"]))
            except (TypeError, ValueError):
                pass
    try:
        return int((stream.get("tags") or {}).get("rotate", 0))
    except (TypeError, ValueError):
        return 0
