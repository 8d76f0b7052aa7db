"""Probe media files for ingest: what a file is, how big, how long, and whether it can be used.

`probe_file` reads an image's header with Pillow (pixels are decoded only with `verify_decode`) or
runs `ffprobe` on a video, and returns a `MediaInfo` or a `ProbeFailure` whose `reason` is one of
the ledger's reject reasons. It never raises for a bad file. `probe_many` probes many files on a
bounded pool of threads: the work of a video probe is in the ffprobe child process, so threads
scale until the cores are busy.

Conventions:
- `width`/`height` are as displayed: EXIF orientations 5-8 and video rotations of 90/270 degrees
  swap the stored dimensions. The sample aspect ratio is not applied.
- `rotation` is the clockwise turn, in degrees (0, 90, 180 or 270 for all real files), that the
  stored pixels need to be shown upright: 90 for EXIF orientation 6, and for videos the inverse of
  the display matrix (which is counter-clockwise) or the legacy `rotate` tag (clockwise).

ffmpeg-python 0.2's `ffmpeg.probe` has no timeout, so the ffprobe and ffmpeg child processes are
run here with `subprocess.run(..., timeout=...)` and the same arguments it would pass.

>>> info = probe_file(Path("cat.jpg"), "image")  # doctest: +SKIP
>>> info.width, info.height, info.codec  # doctest: +SKIP
(640, 427, 'jpeg')
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Literal

from curate.errors import ConfigError, CurateError

log = logging.getLogger(__name__)

MediaKind = Literal["image", "video"]

#: How many bytes are read up front to recognise LFS pointers, text and container signatures.
HEAD_BYTES: Final = 4096

#: First line of a Git-LFS pointer file (and the two older spellings the LFS spec still accepts).
LFS_PREFIXES: Final = (
    b"version https://git-lfs.github.com/spec/v1",
    b"version https://hawser.github.com/spec/v1",
    b"version https://git-media.io/v/2",
)

#: EXIF orientation -> clockwise rotation to display. Mirrored orientations (2, 4, 5, 7) are read
#: as "mirror horizontally, then rotate", as exiftool names them.
EXIF_ROTATION: Final[dict[int, int]] = {1: 0, 2: 0, 3: 180, 4: 180, 5: 270, 6: 90, 7: 90, 8: 270}

#: Pillow format -> codec name, spelled as ffprobe spells codecs where one exists.
PIL_CODECS: Final[dict[str, str]] = {"JPEG": "jpeg", "MPO": "jpeg", "JPEG2000": "jpeg2000"}

#: ffprobe formats that are still images, not videos.
_IMAGE_DEMUXERS: Final = frozenset({"image2", "tty"})


@dataclass(frozen=True)
class MediaInfo:
    """What a probe learned about one usable media file."""

    kind: MediaKind
    width: int | None  # as displayed: EXIF orientation 5-8 / video rotation 90/270 swap w and h
    height: int | None
    duration: float | None  # seconds (videos)
    fps: float | None
    frame_count: int | None
    codec: str | None  # "jpeg", "png", "h264", "mpeg4", ...
    rotation: int  # clockwise degrees to display: EXIF orientation / display matrix / rotate tag
    bytes: int
    content_hash: str  # sha256 hex of the file bytes


@dataclass(frozen=True)
class ProbeFailure:
    """Why a media file cannot be used: a reject reason of the ledger and a one-line message."""

    reason: str  # missing_media, corrupt_media, unsupported_codec, not_media, lfs_pointer, probe_timeout
    message: str  # one line: what was found and what to do


class _Reject(Exception):
    """Raised inside the probe to end it with a failure."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.failure = ProbeFailure(reason, message)


# --------------------------------------------------------------------------------------------
# Public entry points


def probe_file(
    path: Path,
    kind: MediaKind,
    *,
    verify_decode: bool = False,
    timeout: float = 30.0,
) -> MediaInfo | ProbeFailure:
    """Probe one file as an image or a video; every problem with the file becomes a ProbeFailure.

    `verify_decode` fully decodes the file (Pillow `load`, or an ffmpeg decode of the first video
    stream) and rejects what fails as `corrupt_media`. `timeout` bounds each ffprobe/ffmpeg child
    process of this file (together, not each); when it fires the result is `probe_timeout`.
    Raises CurateError only when ffprobe/ffmpeg are not installed.
    """
    if kind not in ("image", "video"):
        raise ValueError(f"kind must be 'image' or 'video', found {kind!r}")
    path = Path(path)
    deadline = time.monotonic() + timeout
    try:
        return _probe(path, kind, verify_decode=verify_decode, deadline=deadline, timeout=timeout)
    except _Reject as reject:
        return reject.failure
    except CurateError:
        raise
    except Exception as exc:  # a file we did not foresee must not stop a whole ingest
        log.debug("unexpected error probing %s", path, exc_info=True)
        return ProbeFailure(
            "corrupt_media",
            f"{path}: probing failed unexpectedly ({type(exc).__name__}: {_one_line(str(exc))}); "
            "check the file by hand, and report this if the file is fine",
        )


def probe_many(
    items: Iterable[tuple[Path, MediaKind]],
    *,
    workers: int = 4,
    verify_decode: bool = False,
    timeout: float = 30.0,
    progress: Callable[[int], None] | None = None,
) -> dict[tuple[Path, str], MediaInfo | ProbeFailure]:
    """Probe many files on `workers` threads; each distinct (path, kind) is probed once.

    Returns results keyed by `(Path(path), kind)`, in the order the keys first appear. `progress`
    is called from the calling thread with the number of input items a finished probe answers
    (duplicates included), so its calls add up to the number of items given.
    """
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, found {workers}; use 1 to probe serially")
    if timeout <= 0:
        raise ConfigError(f"the probe timeout must be positive seconds, found {timeout}")
    counts: dict[tuple[Path, str], int] = {}
    for path, kind in items:
        key = (Path(path), kind)
        counts[key] = counts.get(key, 0) + 1
    results: dict[tuple[Path, str], MediaInfo | ProbeFailure] = {}

    def finish(key: tuple[Path, str], result: MediaInfo | ProbeFailure) -> None:
        results[key] = result
        if progress is not None:
            progress(counts[key])

    def one(key: tuple[Path, str]) -> MediaInfo | ProbeFailure:
        return probe_file(key[0], key[1], verify_decode=verify_decode, timeout=timeout)  # type: ignore[arg-type]

    if workers == 1 or len(counts) <= 1:
        for key in counts:
            finish(key, one(key))
    else:
        # A sliding window keeps memory bounded for millions of items: at most a few futures
        # per worker exist at once.
        window = workers * 4
        keys = iter(counts)
        with cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe") as pool:
            pending: dict[cf.Future[MediaInfo | ProbeFailure], tuple[Path, str]] = {}
            for key in keys:
                pending[pool.submit(one, key)] = key
                if len(pending) >= window:
                    break
            while pending:
                done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    finish(pending.pop(future), future.result())
                for key in keys:
                    pending[pool.submit(one, key)] = key
                    if len(pending) >= window:
                        break
    return {key: results[key] for key in counts}


def sha256_file(path: Path, *, chunk_bytes: int = 1 << 20) -> str:
    """The sha256 hex digest of a file, read in chunks (bounded memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


@lru_cache(maxsize=1)
def decodable_video_codecs() -> frozenset[str]:
    """Names of the video codecs the installed ffmpeg can decode (from `ffprobe -codecs`)."""
    out = _run_tool([_tool("ffprobe"), "-hide_banner", "-v", "error", "-codecs"], timeout=60.0)
    return parse_codec_list(out.stdout.decode("utf-8", "replace"))


def parse_codec_list(text: str) -> frozenset[str]:
    """Parse `ffprobe -codecs` output into the names of decodable video codecs.

    >>> sorted(parse_codec_list(" -------\\n D.VI.S 012v  Uncompressed\\n .EVIL. a64_multi  C64"))
    ['012v']
    """
    names: set[str] = set()
    started = False
    for line in text.splitlines():
        if line.strip().startswith("---"):
            started = True
            continue
        parts = line.split()
        if not started or len(parts) < 2 or len(parts[0]) != 6:
            continue
        flags = parts[0]
        if flags[0] == "D" and flags[2] == "V":
            names.add(parts[1])
    return frozenset(names)


# --------------------------------------------------------------------------------------------
# The probe


def _probe(
    path: Path, kind: MediaKind, *, verify_decode: bool, deadline: float, timeout: float
) -> MediaInfo:
    st = _stat(path, kind)
    if stat.S_ISDIR(st.st_mode):
        raise _Reject(
            "not_media", f"{path}: is a directory, not {_a(kind)} file; name a file inside it"
        )
    if not stat.S_ISREG(st.st_mode):
        raise _Reject(
            "not_media",
            f"{path}: is not a regular file (a FIFO, socket or device); name {_a(kind)} file",
        )
    head = _read_head(path)
    if head.startswith(LFS_PREFIXES):
        raise _Reject(
            "lfs_pointer",
            f"{path}: is a Git-LFS pointer ({st.st_size} bytes), not the {kind} itself; run "
            "`git lfs pull` in the repository the data came from, then ingest again",
        )
    if st.st_size == 0:
        raise _Reject(
            "corrupt_media",
            f"{path}: is empty (0 bytes), probably an interrupted download or copy; fetch it again",
        )
    if kind == "image":
        width, height, codec, rotation = _probe_image(path, head, verify_decode=verify_decode)
        duration = fps = frame_count = None
    else:
        width, height, duration, fps, frame_count, codec, rotation = _probe_video(
            path, head, verify_decode=verify_decode, deadline=deadline, timeout=timeout
        )
    try:
        content_hash = sha256_file(path)
    except OSError as exc:
        raise _Reject("corrupt_media", f"{path}: cannot be read to the end ({exc})") from None
    return MediaInfo(
        kind=kind,
        width=width,
        height=height,
        duration=duration,
        fps=fps,
        frame_count=frame_count,
        codec=codec,
        rotation=rotation,
        bytes=st.st_size,
        content_hash=content_hash,
    )


def _stat(path: Path, kind: str) -> os.stat_result:
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        hint = " (a broken symbolic link)" if path.is_symlink() else ""
        raise _Reject(
            "missing_media",
            f"{path}: no such {kind} file{hint}; check the media root (--media-root) and the "
            "paths in the records",
        ) from None
    except PermissionError:
        raise _Reject(
            "corrupt_media",
            f"{path}: cannot be read (permission denied on the file or a folder above it); "
            "fix the permissions",
        ) from None
    except OSError as exc:
        raise _Reject("corrupt_media", f"{path}: cannot be read ({exc})") from None


def _read_head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(HEAD_BYTES)
    except PermissionError:
        raise _Reject(
            "corrupt_media", f"{path}: cannot be read (permission denied); fix the permissions"
        ) from None
    except OSError as exc:
        raise _Reject("corrupt_media", f"{path}: cannot be read ({exc})") from None


# --------------------------------------------------------------------------------------------
# Images


def _probe_image(path: Path, head: bytes, *, verify_decode: bool) -> tuple[int, int, str, int]:
    """Width, height (as displayed), codec and rotation of an image."""
    from PIL import Image

    try:
        im = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise _Reject(
            "corrupt_media",
            f"{path}: too many pixels to decode safely ({_one_line(str(exc))}); resize it first",
        ) from None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError... on bad headers
        raise _Reject(*_unreadable_image(path, head, exc)) from None
    with im:
        width, height = im.size
        codec = PIL_CODECS.get(im.format or "", (im.format or "unknown").lower())
        orientation = _exif_orientation(im)
        if verify_decode:
            try:
                im.load()
            except Exception as exc:
                raise _Reject(
                    "corrupt_media",
                    f"{path}: the {codec} header reads but the image data does not decode "
                    f"({_one_line(str(exc))}): truncated or damaged; fetch it again or drop it",
                ) from None
    rotation = EXIF_ROTATION.get(orientation, 0)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return width, height, codec, rotation


def _exif_orientation(im: Any) -> int:
    """The EXIF orientation tag (1 when absent or unreadable), read without decoding pixels."""
    # Pillow's PNG getexif() decodes the whole image when the eXIf chunk was not seen before the
    # pixel data; such files are rare, and decoding every PNG to find out is not worth it.
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    try:
        value = im.getexif().get(0x0112, 1)
        return int(value) if int(value) in EXIF_ROTATION else 1
    except Exception:  # damaged EXIF must not reject an image whose pixels are fine
        return 1


def _unreadable_image(path: Path, head: bytes, exc: BaseException) -> tuple[str, str]:
    """Reason and message for a file Pillow cannot open as an image."""
    family, name = _sniff(head)
    detail = _one_line(str(exc))
    if family == "image" and name in ("heif", "jxl", "svg"):
        return (
            "unsupported_codec",
            f"{path}: is a {name} image, which Pillow cannot read here; convert it to JPEG or PNG",
        )
    if family == "image":
        return (
            "corrupt_media",
            f"{path}: the header of this {name} image does not read ({detail}): "
            "truncated or damaged; fetch it again or drop it",
        )
    return ("not_media", f"{path}: {_what_it_is(family, name, head)}, not an image; fix the record")


# --------------------------------------------------------------------------------------------
# Videos


def _probe_video(
    path: Path, head: bytes, *, verify_decode: bool, deadline: float, timeout: float
) -> tuple[int, int, float | None, float | None, int | None, str, int]:
    """Width, height (as displayed), duration, fps, frame count, codec and rotation of a video."""
    family, name = _sniff(head)
    if family in ("text", "document", "archive") or (family == "image" and name != "gif"):
        # Skips a ~50 ms ffprobe, and ffprobe would read some text files as "tty" art.
        raise _Reject("not_media", f"{path}: {_what_it_is(family, name, head)}, not a video")
    proc = _run_tool(
        [_tool("ffprobe"), "-v", "error", "-show_format", "-show_streams", "-of", "json",
         _ffmpeg_url(path)],
        timeout=_remaining(deadline),
        path=path,
        timeout_total=timeout,
    )  # fmt: skip
    error = _last_line(proc.stderr, path)
    if proc.returncode != 0:
        if family in ("video", "audio"):
            raise _Reject(
                "corrupt_media",
                f"{path}: ffprobe cannot read this {name} file ({error}): "
                "truncated or damaged; fetch it again or drop it",
            )
        raise _Reject(
            "not_media",
            f"{path}: {_what_it_is(family, name, head)}, not a video ffprobe can read ({error})",
        )
    try:
        data = json.loads(proc.stdout.decode("utf-8", "replace"))
    except ValueError:
        raise _Reject(
            "corrupt_media", f"{path}: ffprobe gave unreadable output ({error})"
        ) from None
    fmt = data.get("format") or {}
    demuxer = str(fmt.get("format_name", ""))
    if demuxer in _IMAGE_DEMUXERS or demuxer.endswith("_pipe"):
        raise _Reject(
            "not_media", f"{path}: is a still image ({demuxer}), not a video; record it as an image"
        )
    streams = data.get("streams") or []
    videos = [
        s
        for s in streams
        if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")
    ]
    if not videos:
        found = (
            ", ".join(f"{s.get('codec_type', '?')} {s.get('codec_name', '?')}" for s in streams)
            or "no streams"
        )
        raise _Reject(
            "not_media",
            f"{path}: has no video stream ({demuxer}: {found}); it is not a video, fix the record",
        )
    s = videos[0]
    codec = s.get("codec_name")
    if not codec or codec == "unknown" or codec not in decodable_video_codecs():
        tag = s.get("codec_tag_string") or "?"
        named = f"codec {codec!r}" if codec and codec != "unknown" else "an unknown codec"
        raise _Reject(
            "unsupported_codec",
            f"{path}: its video stream uses {named} (tag {tag}) that this ffmpeg cannot decode; "
            "transcode it (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4) or drop it",
        )
    width, height = _positive_int(s.get("width")), _positive_int(s.get("height"))
    if width is None or height is None:
        raise _Reject(
            "corrupt_media",
            f"{path}: ffprobe finds a {codec} stream without a frame size: damaged; drop it",
        )
    fps = _rate(s.get("avg_frame_rate")) or _rate(s.get("r_frame_rate"))
    duration = _positive_float(s.get("duration")) or _positive_float(fmt.get("duration"))
    frame_count = _positive_int(s.get("nb_frames"))
    if frame_count is None and duration is not None and fps is not None:
        frame_count = max(1, round(duration * fps))
    rotation = _video_rotation(s)
    if rotation % 180 == 90:
        width, height = height, width
    if verify_decode:
        _verify_video_decode(path, deadline=deadline, timeout=timeout)
    return width, height, duration, fps, frame_count, codec, rotation


def _video_rotation(stream: dict[str, Any]) -> int:
    """Clockwise display rotation from the display matrix (preferred) or the `rotate` tag."""
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            try:
                # libavutil reports the matrix's rotation counter-clockwise.
                return round(-float(side["rotation"])) % 360
            except (TypeError, ValueError):
                break
    try:
        return round(float((stream.get("tags") or {}).get("rotate", 0))) % 360
    except (TypeError, ValueError):
        return 0


def _verify_video_decode(path: Path, *, deadline: float, timeout: float) -> None:
    """Decode the whole first video stream; any decode error rejects the file."""
    proc = _run_tool(
        [_tool("ffmpeg"), "-nostdin", "-hide_banner", "-v", "error", "-xerror",
         "-i", _ffmpeg_url(path), "-map", "0:v:0", "-f", "null", "-"],
        timeout=_remaining(deadline),
        path=path,
        timeout_total=timeout,
    )  # fmt: skip
    error = _last_line(proc.stderr, path)
    if proc.returncode != 0 or error:
        detail = error or f"ffmpeg exit code {proc.returncode}"
        raise _Reject(
            "corrupt_media",
            f"{path}: the header probes fine but decoding fails ({detail}): truncated or "
            "damaged; fetch it again or drop it",
        )


# --------------------------------------------------------------------------------------------
# Child processes


@lru_cache(maxsize=4)
def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise CurateError(
            f"{name} was not found on PATH; install ffmpeg (e.g. `apt-get install ffmpeg`) "
            "or add the folder holding it to PATH"
        )
    return found


def _run_tool(
    args: list[str],
    *,
    timeout: float,
    path: Path | None = None,
    timeout_total: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ffprobe/ffmpeg; a timeout becomes a probe_timeout rejection of `path`."""
    try:
        return subprocess.run(
            args, capture_output=True, stdin=subprocess.DEVNULL, timeout=max(timeout, 1e-3)
        )
    except subprocess.TimeoutExpired:
        if path is None:
            raise CurateError(f"{Path(args[0]).name} did not answer within {timeout:g} s") from None
        raise _Reject(
            "probe_timeout",
            f"{path}: {Path(args[0]).name} did not finish within the {timeout_total:g} s timeout; "
            "raise the probe timeout if the storage is slow, or drop the file",
        ) from None


def _remaining(deadline: float) -> float:
    return deadline - time.monotonic()


def _ffmpeg_url(path: Path) -> str:
    # The file: protocol keeps names like "pipe:0", "http:x" or "-y.mp4" from being read as
    # protocols or options.
    return "file:" + os.fspath(path.absolute())


# --------------------------------------------------------------------------------------------
# Recognising what a file is from its first bytes


def _sniff(head: bytes) -> tuple[str, str]:
    """(family, name) of a file from its first bytes; family is one of image, video, audio,
    document, archive, text or unknown."""
    h = head
    if h.startswith(b"\xff\xd8\xff"):
        return "image", "jpeg"
    if h.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image", "png"
    if h[:6] in (b"GIF87a", b"GIF89a"):
        return "image", "gif"
    if h[:4] == b"RIFF" and len(h) >= 12:
        riff = h[8:12]
        if riff == b"WEBP":
            return "image", "webp"
        if riff.startswith(b"AVI"):
            return "video", "avi"
        if riff == b"WAVE":
            return "audio", "wav"
    if h[:4] in (b"II*\x00", b"MM\x00*"):
        return "image", "tiff"
    if h.startswith(b"BM") and len(h) >= 14 and h[6:10] == b"\x00\x00\x00\x00":
        return "image", "bmp"
    if h.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")):
        return "image", "jxl"
    if h.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or h.startswith(b"\xff\x4f\xff\x51"):
        return "image", "jpeg2000"
    if h[4:8] == b"ftyp":
        brand = h[8:12]
        if brand in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"):
            return "image", "heif"
        if brand in (b"avif", b"avis"):
            return "image", "avif"
        if brand in (b"M4A ", b"M4B ", b"M4P "):
            return "audio", "m4a"
        return "video", "mov" if brand == b"qt  " else "mp4"
    if h[4:8] in (b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"):
        return "video", "mov"
    if h.startswith(b"\x1a\x45\xdf\xa3"):
        return "video", "matroska"
    if h.startswith(b"FLV\x01"):
        return "video", "flv"
    if h.startswith((b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")):
        return "video", "mpeg"
    if len(h) > 188 and h[0] == 0x47 and h[188] == 0x47:
        return "video", "mpegts"
    if h.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "video", "asf"
    if h.startswith(b"OggS"):
        return "video", "ogg"
    if h.startswith(b"YUV4MPEG2"):
        return "video", "y4m"
    if h.startswith(b"ID3") or h[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio", "mp3"
    if h.startswith(b"fLaC"):
        return "audio", "flac"
    if h.startswith(b"%PDF"):
        return "document", "pdf"
    if h.startswith((b"PK\x03\x04", b"\x1f\x8b", b"7z\xbc\xaf", b"\xfd7zXZ")):
        return "archive", "archive"
    text = _as_text(h)
    if text is not None:
        low = text.lstrip("\ufeff \t\r\n").lower()
        if "<svg" in low[:1000]:
            return "image", "svg"
        if low.startswith(("<!doctype html", "<html", "<head", "<body")) or "<html" in low[:500]:
            return "text", "html"
        if low.startswith(("{", "[")):
            return "text", "json"
        if low.startswith("<?xml") or low.startswith("<"):
            return "text", "xml"
        return "text", "text"
    return "unknown", "unknown"


def _as_text(head: bytes) -> str | None:
    """The head decoded as UTF-8 when it looks like text (no NUL, few control characters)."""
    if not head or b"\x00" in head:
        return None
    try:
        # A multi-byte character may be cut at the end of the head.
        text = head.decode("utf-8") if len(head) < HEAD_BYTES else head[:-4].decode("utf-8")
    except UnicodeDecodeError:
        return None
    controls = sum(1 for c in text if ord(c) < 32 and c not in "\t\r\n\f")
    return text if controls <= len(text) // 100 else None


def _what_it_is(family: str, name: str, head: bytes) -> str:
    """A short description of a file that is not the media it was named as."""
    if family == "text":
        preview = _one_line(head[:60].decode("utf-8", "replace")).strip()
        if name == "html":
            return f"is an HTML page, likely an error page saved by a failed download ({preview!r})"
        label = {"text": "plain", "json": "JSON", "xml": "XML"}.get(name, name)
        return f"is {label} text ({preview!r})"
    if family == "unknown":
        return f"is not a recognised media format (starts with bytes {head[:8].hex(' ')})"
    return f"is {_a(family)} file ({name})"


# --------------------------------------------------------------------------------------------
# Small parsers


def _rate(value: Any) -> float | None:
    """'30000/1001' -> 29.97; None for '0/0', missing or malformed rates."""
    if not value or not isinstance(value, str):
        return None
    num, _, den = value.partition("/")
    try:
        rate = float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        return None
    return rate if rate > 0 else None


def _positive_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 and number != float("inf") else None


def _positive_int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _last_line(stderr: bytes, path: Path) -> str:
    """The last line ffmpeg/ffprobe wrote, without the file name it repeats."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    if not lines:
        return ""
    return lines[-1].replace(_ffmpeg_url(path) + ": ", "").replace(_ffmpeg_url(path), "file")


def _a(noun: str) -> str:
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
