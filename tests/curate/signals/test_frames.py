"""Frame sampling with ffmpeg on the shared real videos."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from curate.errors import InputError
from curate.signals.frames import (
    FrameSampling,
    frame_count,
    frame_times,
    parse_ppm_stream,
    sample_frames,
)


def ffmpeg_frame_at(path, seconds: float, short_side: int) -> np.ndarray:
    """One frame at `seconds`, decoded by a plain ffmpeg command (independent of our pipeline)."""
    scale = (
        f"scale='if(lte(iw,ih),min(iw,{short_side}),-2)':'if(lte(iw,ih),-2,min(ih,{short_side}))'"
    )
    out = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-ss",
            str(seconds),
            "-i",
            str(path),
            "-frames:v",
            "1",
            "-vf",
            scale,
            "-f",
            "image2pipe",
            "-vcodec",
            "ppm",
            "pipe:",
        ],
        capture_output=True,
        check=True,
    ).stdout
    return parse_ppm_stream(out)[0]


def test_counts_and_midpoints():
    sampling = FrameSampling(rate=1.0, max_frames=8)
    assert frame_count(10.0, sampling) == 8
    assert frame_count(4.0, sampling) == 4
    assert frame_count(0.2, sampling) == 1
    assert frame_count(10.0, FrameSampling(rate=0.5, max_frames=8)) == 5
    assert frame_times(2.0, 4.0, 4) == [2.5, 3.5, 4.5, 5.5]
    with pytest.raises(InputError, match="positive"):
        FrameSampling(rate=0)


def test_clip_frames_are_the_frames_at_the_slice_midpoints(shared_data):
    video = shared_data / "videos/mmaction2/demo.mp4"  # 10 s, 340x256
    sampling = FrameSampling(rate=1.0, max_frames=8, short_side=128)
    frames = sample_frames(video, sampling, start=2.0, end=4.0)
    assert len(frames) == 2
    assert frames[0].shape == (128, 170, 3) and frames[0].flags.writeable
    for frame, seconds in zip(frames, (2.5, 3.5), strict=True):
        reference = ffmpeg_frame_at(video, seconds, 128)
        assert np.abs(frame.astype(int) - reference.astype(int)).mean() < 2.0
    # Frames from elsewhere in the video differ much more.
    elsewhere = ffmpeg_frame_at(video, 8.5, 128)
    assert np.abs(frames[0].astype(int) - elsewhere.astype(int)).mean() > 5.0


def test_whole_videos_short_clips_and_portrait(shared_data):
    sampling = FrameSampling()
    part = sample_frames(shared_data / "videos/mmaction2/rawvideo_dataset/part_0.mp4", sampling)
    assert len(part) == 1  # 1.07 s at 1 frame/s
    portrait = sample_frames(shared_data / "videos/data-juicer/video2.mp4", sampling)
    assert len(portrait) == 8  # 23 s, capped at max_frames
    assert portrait[0].shape[1] == 256 and portrait[0].shape[0] > 256  # short side is the width
    avi = sample_frames(shared_data / "videos/mmaction2/test.avi", sampling, duration=6.56)
    assert len(avi) == 7
    # A clip that runs past the end of the video still gives a frame.
    late = sample_frames(shared_data / "videos/mmaction2/test.mp4", sampling, start=9.99, end=12)
    assert len(late) == 1


def test_unreadable_videos_raise_input_error(tmp_path, shared_data):
    with pytest.raises(InputError, match="ffprobe failed"):
        sample_frames(tmp_path / "missing.mp4", FrameSampling())
    fake = tmp_path / "fake.mp4"
    fake.write_text("version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(InputError):
        sample_frames(fake, FrameSampling(), start=0.0, end=1.0)
    with pytest.raises(InputError, match="empty clip"):
        sample_frames(shared_data / "videos/mmaction2/demo.mp4", FrameSampling(), start=3, end=3)


def test_parse_ppm_stream_with_comments():
    a = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    b = np.full((1, 2, 3), 200, dtype=np.uint8)
    data = b"P6\n3 2\n255\n" + a.tobytes() + b"P6 # a comment\n2 1 255\n" + b.tobytes()
    frames = parse_ppm_stream(data)
    np.testing.assert_array_equal(frames[0], a)
    np.testing.assert_array_equal(frames[1], b)
