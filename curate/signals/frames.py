"""Frame sampling for video signals, with ffmpeg (ffmpeg-python).

Frames are taken at the midpoints of `n` equal slices of the clip, `n = round(span × rate)` clamped
to `[1, max_frames]`, so a clip's frames are spread over all of it whatever its length. ffmpeg
decodes, applies the rotation of the display matrix, seeks accurately to the first midpoint and
keeps the first frame at or after each later midpoint (a `select` expression); frames come back
through a pipe as a PPM stream (each frame carries its own size, so nothing has to be probed
first). Frames are downscaled on the way so that their short side is at most `short_side` pixels:
CLIP and pHash both shrink them further.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np

from curate.errors import InputError


@dataclass(frozen=True)
class FrameSampling:
    """How frames are taken from a video or clip."""

    rate: float = 1.0  # frames per second of clip
    max_frames: int = 8
    short_side: int = 256  # downscale so the short side is at most this (0: keep the size)
    timeout_s: float = 120.0  # per video; a stuck decode becomes an error for that row

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise InputError(f"frame rate must be positive, found {self.rate}; try 1.0")
        if self.max_frames < 1:
            raise InputError(f"max_frames must be at least 1, found {self.max_frames}")
        if self.short_side < 0:
            raise InputError(f"short_side must be 0 (keep) or positive, found {self.short_side}")


def frame_count(span: float, sampling: FrameSampling) -> int:
    """How many frames a clip of `span` seconds gets.

    >>> frame_count(10.0, FrameSampling(rate=1.0, max_frames=8))
    8
    >>> frame_count(1.07, FrameSampling(rate=1.0, max_frames=8))
    1
    """
    return max(1, min(sampling.max_frames, round(span * sampling.rate)))


def frame_times(start: float, span: float, count: int) -> list[float]:
    """Midpoints of `count` equal slices of [start, start + span].

    >>> frame_times(2.0, 2.0, 2)
    [2.5, 3.5]
    """
    return [start + (i + 0.5) * span / count for i in range(count)]


def video_duration(path: str | Path) -> float:
    """Container duration in seconds (ffprobe)."""
    try:
        info = ffmpeg.probe(str(path))
    except ffmpeg.Error as error:
        raise InputError(f"{path}: ffprobe failed: {_stderr_tail(error)}") from None
    duration = info.get("format", {}).get("duration")
    if duration is None:
        streams = [s for s in info.get("streams", []) if s.get("codec_type") == "video"]
        duration = streams[0].get("duration") if streams else None
    if duration is None:
        raise InputError(f"{path}: ffprobe reports no duration; re-mux the file (ffmpeg -c copy)")
    return float(duration)


def sample_frames(
    path: str | Path,
    sampling: FrameSampling,
    *,
    start: float | None = None,
    end: float | None = None,
    duration: float | None = None,
) -> list[np.ndarray]:
    """RGB frames (H×W×3 uint8, writable) sampled from `path` between `start` and `end` seconds.

    `duration` is the video's length when known (it saves an ffprobe when `end` is missing).
    Raises InputError when ffmpeg cannot decode the file or returns no frame.
    """
    begin = max(0.0, start or 0.0)
    if end is None:
        end = duration if duration is not None else video_duration(path)
    span = end - begin
    if not span > 0:
        raise InputError(f"{path}: empty clip [{begin}, {end}]; check the clip start and end")
    count = frame_count(span, sampling)
    step = span / count
    frames = _decode(
        path, sampling, seek=begin + 0.5 * step, length=span - 0.5 * step, count=count, step=step
    )
    if not frames:
        # A clip whose end runs past the last decodable frame (container durations overstate it,
        # annotations overshoot) seeks into nothing: take the last frame before its start.
        frames = _decode(
            path, sampling, seek=max(0.0, begin - 1.0), length=None, count=1, step=None
        )
    if not frames:
        raise InputError(f"{path}: ffmpeg returned no frame in [{begin:.3f}, {end:.3f}] s")
    return frames


def _decode(
    path: str | Path,
    sampling: FrameSampling,
    *,
    seek: float,
    length: float | None,
    count: int,
    step: float | None,
) -> list[np.ndarray]:
    input_options = {"ss": f"{seek:.6f}"}
    if length is not None:
        input_options["t"] = f"{length:.6f}"
    stream = ffmpeg.input(str(path), **input_options)
    if step is not None and count > 1:
        # Keep the first frame at or after each slice boundary (the seek point is the first
        # midpoint, so the boundaries are the midpoints). ffmpeg's fps filter would keep the
        # last frame of each slot instead, up to a slice late. 0.5 ms absorbs timestamp rounding.
        stream = stream.filter(
            "select",
            f"isnan(prev_selected_t)+gte(floor((t+0.0005)/{step:.9f}),"
            f"floor((prev_selected_t+0.0005)/{step:.9f})+1)",
        )
    if sampling.short_side:
        side = sampling.short_side
        # Downscale only; -2 keeps the aspect ratio with an even size (ffmpeg-python escapes ',').
        stream = stream.filter(
            "scale",
            w=f"if(lte(iw,ih),min(iw,{side}),-2)",
            h=f"if(lte(iw,ih),-2,min(ih,{side}))",
        )
    stream = stream.output(
        "pipe:", format="image2pipe", vcodec="ppm", an=None, vsync="0", **{"frames:v": count}
    )
    args = stream.compile(cmd=["ffmpeg", "-nostdin", "-loglevel", "error"])
    try:
        done = subprocess.run(args, capture_output=True, timeout=sampling.timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise InputError(
            f"{path}: ffmpeg took more than {sampling.timeout_s:.0f} s to sample frames"
        ) from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"]
        raise InputError(f"{path}: ffmpeg could not decode frames: {message[-1]}")
    out = done.stdout
    return parse_ppm_stream(out)


def parse_ppm_stream(data: bytes) -> list[np.ndarray]:
    """Split a stream of binary PPM (P6, maxval 255) images into H×W×3 uint8 arrays."""
    frames: list[np.ndarray] = []
    view = memoryview(data)
    pos = 0
    while pos < len(data):
        fields: list[bytes] = []
        while len(fields) < 4:
            while pos < len(data) and data[pos : pos + 1].isspace():
                pos += 1
            if pos >= len(data):
                break
            if data[pos : pos + 1] == b"#":  # comment until end of line
                pos = data.index(b"\n", pos) + 1
                continue
            token_end = pos
            while token_end < len(data) and not data[token_end : token_end + 1].isspace():
                token_end += 1
            fields.append(data[pos:token_end])
            pos = token_end
        if len(fields) < 4:
            break
        magic, width, height, maxval = fields[0], int(fields[1]), int(fields[2]), int(fields[3])
        if magic != b"P6" or maxval != 255:
            raise ValueError(f"unsupported PPM frame (magic {magic!r}, maxval {maxval})")
        pos += 1  # the single whitespace byte after maxval
        size = width * height * 3
        # np.frombuffer over a pipe's bytes is read-only; copy so callers may modify frames.
        frame = np.frombuffer(view[pos : pos + size], dtype=np.uint8).reshape(height, width, 3)
        frames.append(frame.copy())
        pos += size
    return frames


def _stderr_tail(error: ffmpeg.Error) -> str:
    text = (error.stderr or b"").decode("utf-8", "replace").strip()
    return text.splitlines()[-1] if text else "no message"


__all__ = [
    "FrameSampling",
    "frame_count",
    "frame_times",
    "parse_ppm_stream",
    "sample_frames",
    "video_duration",
]
