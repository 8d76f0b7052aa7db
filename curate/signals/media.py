"""The primary media of a manifest row, loaded as frames, on a bounded pool of threads.

The primary media follows the manifest's rule: the target's first media item when the target has
media, else the query's. An image is one frame (EXIF orientation applied); a video or clip is the
frames `curate.signals.frames` samples. Threads are enough to load in parallel: JPEG decoding and
resizing release the GIL and video decoding happens in ffmpeg processes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from PIL import Image, ImageOps

from curate.errors import InputError
from curate.signals.frames import FrameSampling, sample_frames

#: Manifest columns needed to find and load a row's primary media.
MEDIA_INPUT_COLUMNS = (
    "id",
    "query_text",
    "target_text",
    "query_images",
    "target_images",
    "query_video",
    "query_clip_start",
    "query_clip_end",
    "target_video",
    "target_clip_start",
    "target_clip_end",
    "duration",
)

#: Images are decoded at a reduced JPEG scale, but never below this size on either side (CLIP
#: crops 224-448 pixels; pHash reads 32×32).
DECODE_MIN_SIDE = 512

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class MediaRef:
    kind: Literal["image", "video"]
    path: str
    role: Literal["query", "target"]
    start: float | None = None  # clip bounds in seconds, videos only
    end: float | None = None
    duration: float | None = None  # the whole video's duration when known (saves a probe)

    @property
    def remote(self) -> bool:
        return "://" in self.path


@dataclass
class LoadedMedia:
    """Frames of one media item (one for an image), or the reason they could not be read."""

    ref: MediaRef
    frames: list[Image.Image]
    error: str | None = None
    extra: Any = None  # per-signal preparation done on the loading thread


def primary_media(row: dict[str, Any]) -> MediaRef | None:
    """The row's primary media item, or None for a text-only pair."""
    for role in ("target", "query"):
        images = row.get(f"{role}_images") or []
        if images:
            return MediaRef("image", images[0], role)  # type: ignore[arg-type]
        video = row.get(f"{role}_video")
        if video:
            start, end = row.get(f"{role}_clip_start"), row.get(f"{role}_clip_end")
            whole = start is None and end is None
            return MediaRef(
                "video",
                video,
                role,  # type: ignore[arg-type]
                start=start,
                end=end,
                duration=row.get("duration") if whole else None,
            )
    return None


def caption_for(row: dict[str, Any], ref: MediaRef) -> str | None:
    """The text a media item is scored against: the other side's text, else its own side's."""
    other = "query" if ref.role == "target" else "target"
    return row.get(f"{other}_text") or row.get(f"{ref.role}_text") or None


def load_image(path: str) -> Image.Image:
    """An RGB image as displayed, decoded at reduced JPEG scale when it is much larger than needed."""
    with Image.open(path) as opened:
        opened.draft("RGB", (DECODE_MIN_SIDE, DECODE_MIN_SIDE))
        image = ImageOps.exif_transpose(opened)
        return image.convert("RGB")


def load_media(ref: MediaRef, sampling: FrameSampling) -> LoadedMedia:
    """Load one item; failures become `error` (the row's signals are then null)."""
    if ref.remote:
        return LoadedMedia(ref, [], error="remote media is not downloaded")
    try:
        if ref.kind == "image":
            return LoadedMedia(ref, [load_image(ref.path)])
        frames = sample_frames(
            ref.path, sampling, start=ref.start, end=ref.end, duration=ref.duration
        )
        return LoadedMedia(ref, [Image.fromarray(frame) for frame in frames])
    except (OSError, ValueError, InputError, Image.DecompressionBombError) as error:
        return LoadedMedia(ref, [], error=f"{type(error).__name__}: {error}")


def bounded_map(
    fn: Callable[[T], R], items: Iterable[T], *, workers: int, window: int
) -> Iterator[R]:
    """`map(fn, items)` on a thread pool, in order, with at most `window` results in flight."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="curate-media") as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
