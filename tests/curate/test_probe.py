"""Media probing on the real sample files and on broken files built from them."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from curate import probe
from curate.errors import ConfigError, CurateError
from curate.probe import MediaInfo, ProbeFailure, probe_file, probe_many

LLAMA_JPG = "images/llama_factory/mllm_demo_data/1.jpg"
TEST_MP4 = "videos/mmaction2/test.mp4"
TEST_AVI = "videos/mmaction2/test.avi"
PART_0 = "videos/mmaction2/rawvideo_dataset/part_0.mp4"
PART_1 = "videos/mmaction2/rawvideo_dataset/part_1.mp4"

_IMAGE_ROW = re.compile(r"^\| `(images/[^`]+\.jpg)` \|.*?\| (\d+) \| JPEG (\d+)x(\d+) mode=")
_VIDEO_ROW = re.compile(
    r"^\| `(videos/[^`]+\.(?:mp4|avi))` \|.*?\| (\d+) \| (\w+) (\d+)x(\d+) @(\d+)/(\d+) fps, "
    r"([\d.]+)s,"
)


def _provenance(shared_data: Path, pattern: re.Pattern[str]) -> list[tuple[str, ...]]:
    text = (shared_data / "PROVENANCE.md").read_text(encoding="utf-8")
    return [m.groups() for line in text.splitlines() if (m := pattern.match(line))]


def _ok(result: MediaInfo | ProbeFailure) -> MediaInfo:
    assert isinstance(result, MediaInfo), result
    return result


def _failed(result: MediaInfo | ProbeFailure, reason: str) -> ProbeFailure:
    assert isinstance(result, ProbeFailure), result
    assert result.reason == reason, result
    assert "\n" not in result.message and result.message
    return result


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


# ---------------------------------------------------------------------------------------------
# Real files


def test_images_match_provenance_and_coco_annotations(shared_data: Path) -> None:
    rows = _provenance(shared_data, _IMAGE_ROW)
    assert len(rows) >= 40  # 34 COCO + 3 LLaMA-Factory + 4 sentence-transformers
    results = probe_many([(shared_data / rel, "image") for rel, *_ in rows], workers=2)
    for rel, size, width, height in rows:
        info = _ok(results[(shared_data / rel, "image")])
        assert (info.width, info.height) == (int(width), int(height)), rel
        assert info.bytes == int(size)
        assert info.codec == "jpeg"
        assert info.rotation == 0
        assert info.duration is None and info.fps is None and info.frame_count is None
    # The COCO annotation file is an independent record of the same sizes.
    coco = json.loads(
        (shared_data / "images/coco_val2017_subset/annotations/instances_val2017.json").read_text()
    )
    checked = 0
    for image in coco["images"]:
        key = (shared_data / "images/coco_val2017_subset/val2017" / image["file_name"], "image")
        if key in results:
            info = _ok(results[key])
            assert (info.width, info.height) == (image["width"], image["height"])
            checked += 1
    assert checked == 34


def test_videos_match_provenance(shared_data: Path) -> None:
    rows = _provenance(shared_data, _VIDEO_ROW)
    assert len(rows) == 8  # data-juicer 1-3, mmaction2 demo, test, test.avi, part_0, part_1
    results = probe_many([(shared_data / row[0], "video") for row in rows], workers=2)
    for rel, size, codec, width, height, fps_num, fps_den, duration in rows:
        info = _ok(results[(shared_data / rel, "video")])
        assert info.kind == "video"
        assert info.codec == codec, rel
        assert (info.width, info.height) == (int(width), int(height)), rel
        assert info.fps == pytest.approx(int(fps_num) / int(fps_den)), rel
        # PROVENANCE lists the container's duration; the probe gives the video stream's, which
        # can end a few ms earlier than the audio (video1: 11.750 vs 11.764 s).
        assert info.duration == pytest.approx(float(duration), abs=0.02), rel
        assert info.frame_count == pytest.approx(info.duration * info.fps, abs=1.5), rel
        assert info.bytes == int(size)
        assert info.rotation == 0


def test_named_videos(shared_data: Path) -> None:
    v2 = _ok(probe_file(shared_data / "videos/data-juicer/video2.mp4", "video"))
    assert (v2.width, v2.height, v2.fps, v2.codec) == (480, 640, 24.0, "h264")
    assert v2.duration == pytest.approx(23.17, abs=0.005)
    avi = _ok(probe_file(shared_data / TEST_AVI, "video"))
    assert (avi.width, avi.height, avi.fps, avi.codec) == (320, 240, 25.0, "mpeg4")
    assert avi.duration == pytest.approx(6.56)
    assert avi.frame_count == 164


def test_identical_files_share_a_content_hash(shared_data: Path) -> None:
    a = _ok(probe_file(shared_data / PART_0, "video"))
    b = _ok(probe_file(shared_data / PART_1, "video"))
    c = _ok(probe_file(shared_data / TEST_MP4, "video"))
    assert a.content_hash == b.content_hash != c.content_hash
    assert a.content_hash == hashlib.sha256((shared_data / PART_0).read_bytes()).hexdigest()


def test_hash_is_streamed(tmp_path: Path) -> None:
    data = np.random.default_rng(0).bytes(3 * 1024 + 17)
    (tmp_path / "blob").write_bytes(data)
    assert (
        probe.sha256_file(tmp_path / "blob", chunk_bytes=1024) == hashlib.sha256(data).hexdigest()
    )


# ---------------------------------------------------------------------------------------------
# Broken and disguised files


def test_zero_byte_files(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").touch()
    (tmp_path / "empty.mp4").touch()
    assert (
        "0 bytes" in _failed(probe_file(tmp_path / "empty.jpg", "image"), "corrupt_media").message
    )
    _failed(probe_file(tmp_path / "empty.mp4", "video"), "corrupt_media")


def test_truncated_jpeg(shared_data: Path, tmp_path: Path) -> None:
    data = (shared_data / LLAMA_JPG).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:2048])
    # The header is intact: a header probe cannot see the damage...
    info = _ok(probe_file(tmp_path / "cut.jpg", "image"))
    assert (info.width, info.height, info.bytes) == (300, 168, 2048)
    # ...a full decode can.
    failure = _failed(
        probe_file(tmp_path / "cut.jpg", "image", verify_decode=True), "corrupt_media"
    )
    assert "truncated" in failure.message
    _ok(probe_file(shared_data / LLAMA_JPG, "image", verify_decode=True))
    # Cut inside the header, or right after the JPEG signature: damaged, not "not an image".
    for n in (200, 20):
        (tmp_path / f"head{n}.jpg").write_bytes(data[:n])
        _failed(probe_file(tmp_path / f"head{n}.jpg", "image"), "corrupt_media")


def test_text_and_html_under_media_names(tmp_path: Path) -> None:
    (tmp_path / "notes.mp4").write_text("this is a caption, not a video\n")
    assert "text" in _failed(probe_file(tmp_path / "notes.mp4", "video"), "not_media").message
    (tmp_path / "page.jpg").write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>")
    assert "HTML" in _failed(probe_file(tmp_path / "page.jpg", "image"), "not_media").message
    (tmp_path / "noise.jpg").write_bytes(bytes(range(1, 200)) * 10)
    _failed(probe_file(tmp_path / "noise.jpg", "image"), "not_media")


@pytest.mark.parametrize("name,kind", [("photo.jpg", "image"), ("clip.mp4", "video")])
def test_lfs_pointer(tmp_path: Path, name: str, kind: str) -> None:
    (tmp_path / name).write_text(
        "version https://git-lfs.github.com/spec/v1\n"
        "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
        "size 12345\n"
    )
    failure = _failed(probe_file(tmp_path / name, kind), "lfs_pointer")  # type: ignore[arg-type]
    assert "git lfs pull" in failure.message


def test_truncated_mp4_moov_at_end(shared_data: Path, tmp_path: Path) -> None:
    data = (shared_data / TEST_MP4).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 40 // 100])
    # test.mp4 keeps its index (moov) at the end: ffprobe itself fails on the cut file.
    failure = _failed(probe_file(tmp_path / "cut.mp4", "video"), "corrupt_media")
    assert "mp4" in failure.message


def test_truncated_mp4_that_probes_fine_fails_to_decode(shared_data: Path, tmp_path: Path) -> None:
    _ffmpeg("-i", str(shared_data / TEST_MP4), "-c", "copy", "-movflags", "+faststart",
            str(tmp_path / "fast.mp4"))  # fmt: skip
    data = (tmp_path / "fast.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 40 // 100])
    # With the index first, the header describes the whole (missing) file.
    info = _ok(probe_file(tmp_path / "cut.mp4", "video"))
    assert (info.width, info.height, info.frame_count) == (340, 256, 300)
    failure = _failed(
        probe_file(tmp_path / "cut.mp4", "video", verify_decode=True), "corrupt_media"
    )
    assert "decod" in failure.message
    _ok(probe_file(tmp_path / "fast.mp4", "video", verify_decode=True))


def test_unknown_video_codec(shared_data: Path, tmp_path: Path) -> None:
    data = bytearray((shared_data / TEST_AVI).read_bytes())
    header_end = data.index(b"movi")
    for tag in (b"XVID", b"xvid"):
        at = data.index(tag, 0, header_end)
        data[at : at + 4] = b"ZZZZ"
    (tmp_path / "odd.avi").write_bytes(bytes(data))
    failure = _failed(probe_file(tmp_path / "odd.avi", "video"), "unsupported_codec")
    assert "ZZZZ" in failure.message


def test_decodable_codecs_come_from_ffmpeg() -> None:
    codecs = probe.decodable_video_codecs()
    assert {"h264", "mpeg4", "mjpeg"} <= codecs
    assert "a64_multi" not in codecs  # ffmpeg has an encoder but no decoder for it
    assert "aac" not in codecs  # audio


def test_wrong_kind_and_no_video_stream(shared_data: Path, tmp_path: Path) -> None:
    assert "image" in _failed(probe_file(shared_data / LLAMA_JPG, "video"), "not_media").message
    assert "video" in _failed(probe_file(shared_data / TEST_MP4, "image"), "not_media").message
    _ffmpeg("-i", str(shared_data / TEST_AVI), "-vn", "-c:a", "copy", "-t", "1",
            str(tmp_path / "sound.mp4"))  # fmt: skip
    failure = _failed(probe_file(tmp_path / "sound.mp4", "video"), "not_media")
    assert "no video stream" in failure.message and "audio" in failure.message


def test_missing_directory_and_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _failed(probe_file(tmp_path / "absent.jpg", "image"), "missing_media")
    (tmp_path / "dangling.mp4").symlink_to(tmp_path / "gone.mp4")
    assert (
        "symbolic link"
        in _failed(probe_file(tmp_path / "dangling.mp4", "video"), "missing_media").message
    )
    (tmp_path / "folder.jpg").mkdir()
    assert "directory" in _failed(probe_file(tmp_path / "folder.jpg", "image"), "not_media").message
    (tmp_path / "locked.jpg").write_bytes(b"\xff\xd8\xff")

    def denied(*args: object, **kwargs: object) -> io.BufferedReader:
        raise PermissionError(13, "Permission denied")

    # Tests may run as root, where chmod 000 does not stop reads: fake the refusal.
    monkeypatch.setattr(probe, "open", denied, raising=False)
    failure = _failed(probe_file(tmp_path / "locked.jpg", "image"), "corrupt_media")
    assert "permission" in failure.message


# ---------------------------------------------------------------------------------------------
# Orientation and rotation


def _pattern(width: int, height: int) -> Image.Image:
    pixels = np.arange(width * height * 3, dtype=np.uint32).reshape(height, width, 3) % 251
    return Image.fromarray(pixels.astype(np.uint8))


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation(tmp_path: Path, orientation: int, fmt: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.{fmt.lower()}"
    _pattern(40, 20).save(path, fmt, exif=exif)
    info = _ok(probe_file(path, "image"))
    with Image.open(path) as im:
        shown = ImageOps.exif_transpose(im)
    assert (info.width, info.height) == shown.size
    assert (info.width, info.height) == ((20, 40) if orientation >= 5 else (40, 20))
    assert info.codec == fmt.lower()
    if orientation in (1, 3, 6, 8):  # not mirrored: turning the stored pixels shows the image
        with Image.open(path) as im:
            turned = im.rotate(-info.rotation, expand=True)  # PIL turns counter-clockwise
            assert np.array_equal(np.asarray(turned), np.asarray(shown))
    assert info.rotation == {6: 90, 8: 270, 3: 180}.get(orientation, info.rotation)


def _first_frame_gray(path: Path, *, autorotate: bool, size: tuple[int, int]) -> np.ndarray:
    args = ["ffmpeg", "-nostdin", "-v", "error"] + ([] if autorotate else ["-noautorotate"])
    out = subprocess.run(
        [*args, "-i", str(path), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        check=True,
        capture_output=True,
    ).stdout
    width, height = size
    return np.frombuffer(out, dtype=np.uint8).reshape(height, width)


def test_video_rotation_matches_ffmpeg_autorotate(shared_data: Path, tmp_path: Path) -> None:
    rotated = tmp_path / "rotated.mp4"
    # ffmpeg 5.1 turns a rotate tag into a display matrix when remuxing.
    _ffmpeg("-i", str(shared_data / PART_0), "-t", "1", "-c", "copy",
            "-metadata:s:v:0", "rotate=90", str(rotated))  # fmt: skip
    info = _ok(probe_file(rotated, "video"))
    assert info.rotation in (90, 270)
    assert (info.width, info.height) == (256, 340)
    stored = _first_frame_gray(rotated, autorotate=False, size=(340, 256))
    shown = _first_frame_gray(rotated, autorotate=True, size=(info.width, info.height))
    # np.rot90 turns counter-clockwise for positive k; `rotation` is clockwise.
    assert np.array_equal(np.rot90(stored, k=-info.rotation // 90), shown)


# ---------------------------------------------------------------------------------------------
# Timeouts


def test_timeout_fires(shared_data: Path) -> None:
    failure = _failed(probe_file(shared_data / TEST_MP4, "video", timeout=1e-4), "probe_timeout")
    assert "timeout" in failure.message


def test_hung_ffprobe_is_killed(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = tmp_path / "ffprobe"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    monkeypatch.setattr(probe, "_tool", lambda name: str(slow))
    started = time.monotonic()
    _failed(probe_file(shared_data / TEST_MP4, "video", timeout=0.5), "probe_timeout")
    assert time.monotonic() - started < 10


def test_missing_ffprobe_is_a_user_error(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe._tool.cache_clear()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    try:
        with pytest.raises(CurateError, match="apt-get install ffmpeg"):
            probe_file(shared_data / TEST_MP4, "video")
    finally:
        probe._tool.cache_clear()


# ---------------------------------------------------------------------------------------------
# probe_many


def test_probe_many_dedupes_and_survives_bad_files(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "notes.mp4").write_text("not a video")
    (tmp_path / "empty.jpg").touch()
    good_image = shared_data / LLAMA_JPG
    items: list[tuple[Path, str]] = [
        (shared_data / PART_0, "video"),
        (good_image, "image"),
        (tmp_path / "notes.mp4", "video"),
        (shared_data / PART_0, "video"),
        (tmp_path / "missing.jpg", "image"),
        (tmp_path / "empty.jpg", "image"),
        (good_image, "image"),
        (shared_data / PART_1, "video"),
        (good_image, "video"),  # the same file as another kind is another probe
    ]
    calls: list[tuple[Path, str]] = []
    real_probe_file = probe.probe_file

    def counting(path: Path, kind: str, **kwargs: object) -> MediaInfo | ProbeFailure:
        calls.append((path, kind))
        return real_probe_file(path, kind, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(probe, "probe_file", counting)
    ticks: list[int] = []
    results = probe_many(items, workers=3, progress=ticks.append)  # type: ignore[arg-type]
    assert sorted(calls, key=str) == sorted(set(calls), key=str)
    assert len(calls) == len(results) == 7
    assert list(results) == list(dict.fromkeys(items))  # first-seen order
    assert sum(ticks) == len(items)
    reasons = {
        key: (r.reason if isinstance(r, ProbeFailure) else "ok") for key, r in results.items()
    }
    assert reasons == {
        (shared_data / PART_0, "video"): "ok",
        (good_image, "image"): "ok",
        (tmp_path / "notes.mp4", "video"): "not_media",
        (tmp_path / "missing.jpg", "image"): "missing_media",
        (tmp_path / "empty.jpg", "image"): "corrupt_media",
        (shared_data / PART_1, "video"): "ok",
        (good_image, "video"): "not_media",
    }
    serial = probe_many(items, workers=1)  # type: ignore[arg-type]
    assert serial == results


def test_probe_many_options_are_checked(shared_data: Path) -> None:
    with pytest.raises(ConfigError, match="workers"):
        probe_many([(shared_data / LLAMA_JPG, "image")], workers=0)
    with pytest.raises(ConfigError, match="timeout"):
        probe_many([(shared_data / LLAMA_JPG, "image")], timeout=0)
    assert probe_many([], workers=2) == {}
