"""Media decoding: frame counts, clip bounds, pixel budgets, failures, caching."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from train.config import MediaConfig
from train.media import (
    MediaError,
    MediaLoader,
    load_image,
    load_video,
    probe_video,
    video_frame_count,
)


@pytest.mark.parametrize(
    ("duration", "expected"),
    [(0.5, 4), (4.0, 4), (6.6, 8), (7.0, 8), (9.0, 10), (11.0, 12), (30.0, 12), (49.6, 12)],
)
def test_frame_count_is_fps_clamped_and_even(duration, expected):
    n = video_frame_count(duration, fps=1.0, min_frames=4, max_frames=12)
    assert n == expected and n % 2 == 0


def test_frame_count_respects_an_odd_maximum():
    assert video_frame_count(30.0, fps=1.0, min_frames=2, max_frames=5) == 4


@pytest.fixture(scope="module")
def counter_video(tmp_path_factory) -> Path:
    """10 s at 10 fps whose frames in second k have luma 16 + 20k: a second-counter."""
    path = tmp_path_factory.mktemp("video") / "counter.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "nullsrc=s=160x120:r=10:d=10,geq=lum='16+20*floor(N/10)':cb=128:cr=128",
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-qp",
            "0",
            str(path),
        ],
        check=True,
    )
    return path


def seconds(frames: np.ndarray) -> list[int]:
    # limited-range luma 16 + 20k decodes to RGB 20k * 255/219
    return [round(float(f.mean()) / (20 * 255 / 219)) for f in frames]


def test_frames_are_uniform_over_the_whole_video(counter_video):
    media = MediaConfig(fps=1.0, min_frames=4, max_frames=12)
    frames = load_video(str(counter_video), media=media)
    assert frames.shape[0] == 10
    assert seconds(frames) == list(range(10))


def test_clip_start_and_end_are_honoured(counter_video):
    media = MediaConfig(fps=1.0, min_frames=2, max_frames=12)
    frames = load_video(str(counter_video), media=media, clip_start=6.0, clip_end=8.0)
    assert seconds(frames) == [6, 7]
    four = load_video(str(counter_video), media=media, clip_start=2.0, clip_end=6.0, frames=4)
    assert seconds(four) == [2, 3, 4, 5]


def test_frames_fit_the_pixel_budget_and_are_writable(shared_data):
    media = MediaConfig(max_frame_pixels=240 * 320)
    frames = load_video(str(shared_data / "videos" / "data-juicer" / "video2.mp4"), media=media)
    t, h, w, c = frames.shape
    assert c == 3 and t % 2 == 0 and 4 <= t <= 12
    assert h * w <= 240 * 320 and h > w  # portrait stays portrait
    frames[0, 0, 0, 0] = 7  # np.frombuffer views are read-only; ours is a copy
    assert probe_video(
        str(shared_data / "videos" / "mmaction2" / "test.avi")
    ).duration == pytest.approx(6.56, abs=0.05)


def test_images_are_bounded_and_rgb(shared_data):
    image = load_image(
        str(shared_data / "images" / "sentence_transformers_image_search" / "eiffel-tower-day.jpg"),
        max_pixels=56 * 56,
    )
    assert image.mode == "RGB" and image.width * image.height <= 56 * 56
    assert image.height > image.width  # 640x960 portrait


def test_undecodable_media_raise_media_error(tmp_path, broken_video):
    text_as_image = tmp_path / "x.jpg"
    text_as_image.write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(MediaError, match="cannot decode image"):
        load_image(str(text_as_image), max_pixels=1000)
    with pytest.raises(MediaError, match="ffprobe failed"):
        load_video(str(broken_video), media=MediaConfig())
    with pytest.raises(MediaError, match="not found"):
        load_image(str(tmp_path / "missing.png"), max_pixels=1000)
    with pytest.raises(MediaError, match="remote media"):
        load_image("https://example.com/a.jpg", max_pixels=1000)


def test_loader_caches_in_memory_and_on_disk(counter_video, tmp_path, broken_video):
    media = MediaConfig(fps=1.0, min_frames=2, max_frames=4)
    loader = MediaLoader(media, cache_dir=tmp_path / "frames")
    first = loader.video(str(counter_video), 0.0, 4.0)
    again = loader.video(str(counter_video), 0.0, 4.0)
    assert again is first and loader.hits == 1
    assert not first.flags.writeable  # shared: callers copy before changing
    assert len(list((tmp_path / "frames").rglob("*.npy"))) == 1
    fresh = MediaLoader(media, cache_dir=tmp_path / "frames")
    assert np.array_equal(fresh.video(str(counter_video), 0.0, 4.0), first)
    misses = loader.misses
    for _ in range(2):  # a broken file fails the same way twice but is tried once
        with pytest.raises(MediaError):
            loader.video(str(broken_video))
    assert loader.misses - misses == 2  # its probe and its decode, once each
