"""WebDataset tar shards in the img2dataset / video2dataset layout.

A shard holds samples as consecutive members sharing a key: `key.jpg|png|webp` (image) or
`key.mp4|webm|...` (video), `key.txt` (the caption) and `key.json` (metadata, whose `caption`
stands in when there is no .txt, and whose `key`/`url` are kept). The input is one `.tar`
(`.tar.gz`, `.tgz`) or a folder of them, read in sorted order; `record_index` is the sample's
position in its shard.

Media members are extracted to `<scratch>/<shard stem>/<member name>` (atomic: a temporary file
then a rename; a member already extracted with the same size is kept, so a rerun does not rewrite
it) and the draft names that absolute path. Image → t2i `caption_retrieval`; video → t2v
`video_retrieval`. A sample without media is `malformed_record`; one without a caption is
`malformed_record` (no .txt and no JSON caption) or `empty_text` (a blank caption); a member name
that would leave the scratch folder (`..`, absolute) is `path_escape`.
"""

from __future__ import annotations

import gzip
import json
import os
import posixpath
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from curate.adapters import register
from curate.adapters.base import Adapter, AdapterContext, batched_drafts, draft, raw_json, rejected
from curate.adapters.generic import check_options
from curate.errors import InputError

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "gif")
VIDEO_EXTENSIONS = ("mp4", "webm", "mkv", "avi", "mov", "m4v")
SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
#: Members a sniff looks at.
SNIFF_MEMBERS = 8


def split_member(name: str) -> tuple[str, str]:
    """WebDataset's key/extension split: the extension starts at the first dot of the base name.

    >>> split_member("00000/000000012.jpg")
    ('00000/000000012', 'jpg')
    """
    folder, base = posixpath.split(name)
    stem, dot, extension = base.partition(".")
    return posixpath.join(folder, stem) if folder else stem, extension.lower() if dot else ""


def shard_stem(path: Path) -> str:
    """>>> shard_stem(Path("/data/00012.tar.gz"))
    '00012'
    """
    name = path.name
    for suffix in SHARD_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def shard_files(input_path: Path) -> list[Path]:
    """The shard itself, or the shards in a folder (sorted)."""
    if input_path.is_file():
        return [input_path]
    if input_path.is_dir():
        shards = sorted(
            p
            for p in input_path.iterdir()
            if p.is_file() and p.name.lower().endswith(SHARD_SUFFIXES)
        )
        if not shards:
            raise InputError(f"{input_path}: the folder holds no .tar shard")
        return shards
    raise InputError(f"{input_path}: no such file or folder")


def _looks_like_shard(path: Path) -> bool:
    """Cheap: tar magic in the first header, then the names of the first few members."""
    try:
        with path.open("rb") as handle:
            head = handle.read(512)
            gzipped = head[:2] == b"\x1f\x8b"
            if gzipped:
                handle.seek(0)
                head = gzip.GzipFile(fileobj=handle).read(512)
        if head[257:262] != b"ustar":
            return False
        # A plain tar seeks over member data; a compressed one would have to inflate it.
        with tarfile.open(path, "r|gz" if gzipped else "r:") as tar:
            files = 0
            for member in tar:
                if not member.isfile():
                    continue
                _, extension = split_member(member.name)
                if extension not in (*IMAGE_EXTENSIONS, *VIDEO_EXTENSIONS, "txt", "json", "cls"):
                    return False
                files += 1
                if files >= (1 if gzipped else SNIFF_MEMBERS):
                    break
            return files > 0
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        return False


@dataclass
class _Sample:
    key: str
    members: dict[str, tarfile.TarInfo] = field(default_factory=dict)
    texts: dict[str, bytes] = field(default_factory=dict)  # txt/json contents
    extracted: dict[str, Path] = field(default_factory=dict)


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    """Write a member to `target` atomically; keep an earlier complete extraction."""
    if target.is_file() and target.stat().st_size == member.size:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    if source is None:
        raise OSError(f"member {member.name} has no data")
    handle, temporary = tempfile.mkstemp(prefix=".part-", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _safe_name(name: str) -> bool:
    parts = Path(name).parts
    return not Path(name).is_absolute() and ".." not in parts and bool(parts)


def _samples(tar: tarfile.TarFile, scratch: Path) -> Iterator[_Sample]:
    """Consecutive members grouped by key; media extracted as they stream past."""
    sample: _Sample | None = None
    for member in tar:
        if not member.isfile():
            continue
        key, extension = split_member(member.name)
        if sample is None or key != sample.key:
            if sample is not None:
                yield sample
            sample = _Sample(key)
        sample.members[extension] = member
        if extension in ("txt", "json"):
            source = tar.extractfile(member)
            sample.texts[extension] = source.read() if source else b""
        elif (extension in IMAGE_EXTENSIONS or extension in VIDEO_EXTENSIONS) and _safe_name(
            member.name
        ):
            target = scratch / member.name
            _extract(tar, member, target)
            sample.extracted[extension] = target.resolve()
    if sample is not None:
        yield sample


def _draft(path: Path, index: int, sample: _Sample) -> dict[str, Any]:
    meta: Any = None
    meta_error = None
    if "json" in sample.texts:
        try:
            meta = json.loads(sample.texts["json"].decode("utf-8", "replace"))
        except json.JSONDecodeError as error:
            meta_error = f"{sample.key}.json is not valid JSON: {error.msg}"
    caption = sample.texts["txt"].decode("utf-8", "replace") if "txt" in sample.texts else None
    if caption is None and isinstance(meta, dict) and isinstance(meta.get("caption"), str):
        caption = meta["caption"]
    raw = raw_json(
        {
            "__key__": sample.key,
            "members": sorted(m.name for m in sample.members.values()),
            "txt": caption,
            "json": meta,
        }
    )

    def reject(reason: str, message: str) -> dict[str, Any]:
        return rejected(
            record_index=index,
            input_file=path,
            reason=reason,
            message=f"sample {sample.key!r}: {message}",
            raw=raw,
        )

    media = [e for e in sample.members if e in IMAGE_EXTENSIONS or e in VIDEO_EXTENSIONS]
    unsafe = [sample.members[e].name for e in media if not _safe_name(sample.members[e].name)]
    if unsafe:
        return reject(
            "path_escape", f"member {unsafe[0]!r} would be written outside the scratch folder"
        )
    if meta_error:
        return reject("malformed_record", meta_error)
    if not media:
        return reject(
            "malformed_record",
            f"no image or video member (found {', '.join(sorted(sample.members)) or 'nothing'})",
        )
    if caption is None:
        return reject("malformed_record", "no .txt member and no caption in its .json")
    if not caption.strip():
        return reject("empty_text", "the caption is empty")
    source_id = meta.get("key") if isinstance(meta, dict) and meta.get("key") else sample.key
    videos = [str(sample.extracted[e]) for e in media if e in VIDEO_EXTENSIONS]
    images = [str(sample.extracted[e]) for e in media if e in IMAGE_EXTENSIONS]
    common = {
        "record_index": index,
        "input_file": path,
        "raw": raw,
        "source_id": str(source_id),
        "query_text": caption,
    }
    if videos:  # a video sample's thumbnail (if any) is not the target
        return draft(**common, task="video_retrieval", target_video=videos[0])
    return draft(**common, task="caption_retrieval", target_images=images)


@register
class WebDatasetAdapter(Adapter):
    """WebDataset shards (key.jpg|mp4 + key.txt + key.json) → t2i / t2v pairs."""

    name = "webdataset"
    version = "1"
    description = (
        "WebDataset tar shards (img2dataset/video2dataset: key.jpg|mp4 + key.txt + key.json) → "
        "t2i or t2v pairs; media are extracted to the manifest's scratch folder"
    )
    patterns = ("*.tar", "*.tar.gz", "*.tgz")

    @classmethod
    def sniff(cls, path: Path) -> bool:
        """A tar (or a folder whose first .tar) of key.ext members with media/txt/json extensions."""
        if path.is_dir():
            shards = sorted(p for p in path.iterdir() if p.name.lower().endswith(SHARD_SUFFIXES))
            return bool(shards) and _looks_like_shard(shards[0])
        return path.is_file() and _looks_like_shard(path)

    def read(self, ctx: AdapterContext) -> Iterator[pa.Table]:
        check_options(type(self), ctx.options)
        for path in shard_files(Path(ctx.input_path)):
            yield from batched_drafts(
                self._read_shard(path, Path(ctx.scratch_dir) / shard_stem(path)),
                batch_rows=ctx.batch_rows,
            )

    @staticmethod
    def _read_shard(path: Path, scratch: Path) -> Iterator[dict[str, Any]]:
        try:
            tar = tarfile.open(path, "r|*")  # noqa: SIM115 (closed by the `with` below)
        except (tarfile.TarError, OSError) as error:
            raise InputError(f"{path}: not a readable tar shard ({error})") from None
        index = 0
        with tar:
            try:
                for sample in _samples(tar, scratch):
                    yield _draft(path, index, sample)
                    index += 1
            except (tarfile.TarError, EOFError, OSError) as error:
                # A truncated download: keep what was read, and record the loss in the ledger.
                yield rejected(
                    record_index=index,
                    input_file=path,
                    reason="malformed_record",
                    message=f"the shard is truncated or corrupt after {index} samples ({error}); "
                    "the rest of it cannot be read: re-download it",
                    raw=raw_json({"shard": str(path), "samples_read": index}),
                )
