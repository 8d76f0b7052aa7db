"""`curate export`: a mixture version in the formats trainers already read.

`--out` is a folder that must not exist yet; it is written beside itself under a temporary name and
renamed into place when complete. It holds one file (or shard set) per stage, in training order,
plus `export.json` (mixture, version, format, rows written and rows skipped, with reasons).

- `jsonl`: `<stage>.jsonl`, every column of every row (the lossless format).
- `unite-json`: `<stage>.json`, UNITE's training list `[{query, candidate, negative?,
  target_modal}]`; `<|IMAGE|>`/`<|VIDEO|>` mark the media in texts of fused sides; the instruction
  goes in front of the query text (UNITE has no instruction field); a clip's span is kept under
  `clip` (UNITE itself ignores it).
- `mmeb-parquet`: `<stage>.parquet` with VLM2Vec's columns qry, qry_image_path, pos_text,
  pos_image_path, neg_text, neg_image_path; `<|image_1|>` marks an image, the instruction is
  written as "instruction: query". MMEB-train holds images only: rows with a video or with more
  than one image on a side are skipped and counted.
- `webdataset`: `<stage>-NNNNN.tar` shards (img2dataset layout): per row `KEY.json` (the row),
  `KEY.txt` (its caption: target text, else query text) and `KEY.<ext>`, the bytes of the row's
  primary image or video when it is a local file that exists. Tar members carry no timestamps
  or owners, so the same mixture gives the same bytes.

Media paths are written as stored in the manifest (absolute), or relative to `relative_to`.
Re-ingest an export with the same `--media-root` as the original ingest to get the same ids.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import ConfigError, InputError
from curate.mixtures import Mixture, load_mixture
from curate.workspace import Workspace

ExportFormat = Literal["unite-json", "mmeb-parquet", "webdataset", "jsonl"]
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)
UNITE_IMAGE = "<|IMAGE|>"
UNITE_VIDEO = "<|VIDEO|>"
MMEB_IMAGE = "<|image_1|>"
MMEB_TARGET_PROMPT = "Represent the given image"

MMEB_SCHEMA = pa.schema(
    [
        pa.field("qry", pa.string()),
        pa.field("qry_image_path", pa.string()),
        pa.field("pos_text", pa.string()),
        pa.field("pos_image_path", pa.string()),
        pa.field("neg_text", pa.string()),
        pa.field("neg_image_path", pa.string()),
    ]
)


@dataclass(frozen=True)
class ExportResult:
    mixture: str  # NAME@VERSION
    format: str
    out: Path
    files: list[Path]
    rows: dict[str, int]  # stage -> rows written
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows
    lossy: dict[str, int] = field(default_factory=dict)  # what the format cannot carry -> rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "mixture": self.mixture,
            "format": self.format,
            "out": str(self.out),
            "files": [p.name for p in self.files],
            "rows": self.rows,
            "skipped": self.skipped,
            "lossy": self.lossy,
        }


def export_mixture(
    workspace: Workspace,
    ref: str,
    *,
    format: str,
    out: str | Path,
    relative_to: str | Path | None = None,
    shard_rows: int = 1000,
) -> ExportResult:
    """Write mixture `ref` (NAME or NAME@VERSION) in `format` to the new folder `out`."""
    if format not in EXPORT_FORMATS:
        raise ConfigError(
            f"unknown export format {format!r}; choose one of {', '.join(EXPORT_FORMATS)}"
        )
    if shard_rows < 1:
        raise ConfigError(f"shard rows must be at least 1, found {shard_rows}")
    mixture = load_mixture(workspace, ref)
    out = Path(out).expanduser().resolve()
    if out.exists():
        raise InputError(
            f"{out} exists already; choose a new --out folder (exports never overwrite)"
        )
    root = Path(relative_to).expanduser().resolve() if relative_to else None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    writer = _Writer(mixture, format, tmp, root, shard_rows)
    try:
        for stage in mixture.stages:
            writer.stage(stage)
        result = ExportResult(
            mixture=mixture.ref,
            format=format,
            out=out,
            files=[out / p.name for p in writer.files],
            rows=writer.rows,
            skipped=dict(sorted(writer.skipped.items())),
            lossy=dict(sorted(writer.lossy.items())),
        )
        (tmp / "export.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


class _Writer:
    def __init__(
        self, mixture: Mixture, format: str, folder: Path, root: Path | None, shard_rows: int
    ) -> None:
        self.mixture = mixture
        self.format = format
        self.folder = folder
        self.root = root
        self.shard_rows = shard_rows
        self.files: list[Path] = []
        self.rows: dict[str, int] = {}
        self.skipped: Counter[str] = Counter()
        self.lossy: Counter[str] = Counter()

    def path(self, value: str | None) -> str | None:
        if value is None or self.root is None:
            return value
        candidate = Path(value)
        if candidate.is_absolute() and candidate.is_relative_to(self.root):
            return candidate.relative_to(self.root).as_posix()
        return value

    def records(self, stage: str) -> Iterator[dict[str, Any]]:
        for batch in self.mixture.iter_batches(stage):
            yield from batch.to_pylist()

    def stage(self, stage: str) -> None:
        count = getattr(self, "_" + self.format.replace("-", "_"))(stage)
        self.rows[stage] = count

    # jsonl ---------------------------------------------------------------------------------
    def _jsonl(self, stage: str) -> int:
        path = self.folder / f"{stage}.jsonl"
        count = 0
        with open(path, "w", encoding="utf-8") as handle:
            for row in self.records(stage):
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
        self.files.append(path)
        return count

    # unite-json ----------------------------------------------------------------------------
    def _unite_json(self, stage: str) -> int:
        path = self.folder / f"{stage}.json"
        count = 0
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("[")
            for row in self.records(stage):
                record = self.unite_record(row)
                handle.write(
                    ("\n" if count == 0 else ",\n") + json.dumps(record, ensure_ascii=False)
                )
                count += 1
            handle.write("\n]\n")
        self.files.append(path)
        return count

    def unite_record(self, row: dict[str, Any]) -> dict[str, Any]:
        query_text = row["query_text"]
        if row["instruction"]:
            query_text = row["instruction"] + ("\n" + query_text if query_text else "")
            self.lossy["instruction folded into the query text"] += 1
        query = self.unite_side(
            query_text, row["query_images"], row["query_video"],
            row["query_clip_start"], row["query_clip_end"],
        )  # fmt: skip
        candidate = self.unite_side(
            row["target_text"], row["target_images"], row["target_video"],
            row["target_clip_start"], row["target_clip_end"],
        )  # fmt: skip
        record: dict[str, Any] = {"id": row["source_id"] or row["id"], "query": query}
        record["candidate"] = candidate
        negatives = [{"text": t} for t in row["negative_texts"] or []]
        negatives += [{"image": self.path(p)} for p in row["negative_images"] or []]
        if negatives:
            record["negative"] = negatives[0] if len(negatives) == 1 else negatives
        record["target_modal"] = ",".join(
            kind
            for kind, present in (
                ("text", candidate.get("text") is not None),
                ("image", "image" in candidate),
                ("video", "video" in candidate),
            )
            if present
        )
        if any(
            row[f"{s}_clip_{e}"] is not None for s in ("query", "target") for e in ("start", "end")
        ):
            self.lossy["clip span (UNITE has no clip fields; kept under 'clip')"] += 1
        return record

    def unite_side(
        self,
        text: str | None,
        images: list[str] | None,
        video: str | None,
        clip_start: float | None,
        clip_end: float | None,
    ) -> dict[str, Any]:
        side: dict[str, Any] = {}
        markers = UNITE_IMAGE * len(images or []) + (UNITE_VIDEO if video else "")
        if text is not None:
            side["text"] = f"{markers}\n{text}" if markers else text
        if images:
            paths = [self.path(p) for p in images]
            side["image"] = paths[0] if len(paths) == 1 else paths
        if video:
            side["video"] = self.path(video)
            if clip_start is not None or clip_end is not None:
                side["clip"] = [clip_start, clip_end]
        return side

    # mmeb-parquet --------------------------------------------------------------------------
    def _mmeb_parquet(self, stage: str) -> int:
        path = self.folder / f"{stage}.parquet"
        count = 0
        with pq.ParquetWriter(path, MMEB_SCHEMA, compression="zstd") as writer:
            batch: list[dict[str, str]] = []
            for row in self.records(stage):
                record = self.mmeb_record(row)
                if record is None:
                    continue
                batch.append(record)
                count += 1
                if len(batch) >= 65_536:
                    writer.write_table(pa.Table.from_pylist(batch, schema=MMEB_SCHEMA))
                    batch = []
            if batch or count == 0:
                writer.write_table(pa.Table.from_pylist(batch, schema=MMEB_SCHEMA))
        self.files.append(path)
        return count

    def mmeb_record(self, row: dict[str, Any]) -> dict[str, str] | None:
        if row["query_video"] or row["target_video"]:
            self.skipped["video (MMEB-train holds images only)"] += 1
            return None
        if len(row["query_images"] or []) > 1 or len(row["target_images"] or []) > 1:
            self.skipped["more than one image on a side"] += 1
            return None
        query_image = (row["query_images"] or [None])[0]
        target_image = (row["target_images"] or [None])[0]
        instruction, text = row["instruction"], row["query_text"]
        if instruction and text:
            qry = f"{instruction}: {text}"
        else:
            qry = instruction or text or ""
            if text and (query_image or ":" in text.split("\n", 1)[0]):
                # MMEB readers take such a text as an instruction (or split it at its colon).
                self.lossy["query text read back as an instruction"] += 1
        if query_image:
            qry = f"{MMEB_IMAGE} {qry}".rstrip()
        negative_text = (row["negative_texts"] or [None])[0]
        negative_image = (row["negative_images"] or [None])[0]
        if len(row["negative_texts"] or []) + len(row["negative_images"] or []) > 1:
            self.lossy["hard negatives beyond the first"] += 1
        return {
            "qry": qry,
            "qry_image_path": self.path(query_image) or "",
            "pos_text": _mmeb_target(row["target_text"], target_image),
            "pos_image_path": self.path(target_image) or "",
            "neg_text": _mmeb_target(negative_text, negative_image),
            "neg_image_path": self.path(negative_image) or "",
        }

    # webdataset ----------------------------------------------------------------------------
    def _webdataset(self, stage: str) -> int:
        count = 0
        for shard_index, chunk in enumerate(_chunks(self.records(stage), self.shard_rows)):
            path = self.folder / f"{stage}-{shard_index:05d}.tar"
            self.files.append(path)
            with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as shard:
                for row in chunk:
                    self.webdataset_sample(shard, row)
                    count += 1
        return count

    def webdataset_sample(self, shard: tarfile.TarFile, row: dict[str, Any]) -> None:
        key = f"{row['position']:09d}"
        _add(shard, f"{key}.json", json.dumps(row, ensure_ascii=False).encode())
        caption = row["target_text"] or row["query_text"]
        if caption is not None:
            _add(shard, f"{key}.txt", caption.encode())
        media = _primary_media(row)
        if media is not None:
            file = Path(media)
            if file.is_file():
                _add(shard, f"{key}{file.suffix.lower() or '.bin'}", file.read_bytes())
            else:
                self.lossy["media file not found (path kept in .json)"] += 1


def _chunks(items: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _mmeb_target(text: str | None, image: str | None) -> str:
    if image is None:
        return text or ""
    if text:
        return f"{MMEB_IMAGE} {MMEB_TARGET_PROMPT} with related text information: {text}"
    return f"{MMEB_IMAGE} {MMEB_TARGET_PROMPT}."


def _primary_media(row: dict[str, Any]) -> str | None:
    for role in ("target", "query"):
        for item in row["media"] or []:
            if item["role"] == role and not item["remote"]:
                return item["path"]
    return None


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    archive.addfile(info, io.BytesIO(data))
