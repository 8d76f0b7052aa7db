"""Small manifests built by hand (MANIFEST_SCHEMA rows in the `curate ingest` layout) pointing at the
real images and videos of the shared data, so these tests do not depend on ingest."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.manifest import COMPLETE_MARKER, Manifest
from curate.schema import MANIFEST_SCHEMA, modality_of, pair_code
from curate.workspace import Workspace

COCO = "images/coco_val2017_subset/val2017"


def sha256_file(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def pair(
    row_id: str,
    *,
    query_text: str | None = None,
    target_text: str | None = None,
    query_image: str | Path | None = None,
    target_image: str | Path | None = None,
    query_video: str | Path | None = None,
    target_video: str | Path | None = None,
    clip: tuple[float, float] | None = None,
    duration: float | None = None,
    text_repaired: bool = False,
) -> dict[str, Any]:
    """One manifest row with every column filled the way ingest fills it."""
    media = []
    for role, image, video in (
        ("query", query_image, query_video),
        ("target", target_image, target_video),
    ):
        path = image or video
        if path is None:
            continue
        remote = "://" in str(path)
        exists = not remote and Path(path).exists()  # a file deleted after ingest
        media.append(
            {
                "role": role,
                "kind": "image" if image else "video",
                "path": str(path),
                "remote": remote,
                "width": None,
                "height": None,
                "duration": duration if video else None,
                "fps": None,
                "frame_count": None,
                "codec": None,
                "rotation": 0,
                "bytes": Path(path).stat().st_size if exists else None,
                "content_hash": sha256_file(path) if exists else None,
            }
        )
    target_media = [m for m in media if m["role"] == "target"]
    primary = (target_media or media or [None])[0]
    q_mod = modality_of(
        has_text=query_text is not None,
        has_image=query_image is not None,
        has_video=query_video is not None,
    )
    t_mod = modality_of(
        has_text=target_text is not None,
        has_image=target_image is not None,
        has_video=target_video is not None,
    )
    clip_role = "target" if target_video else "query"
    return {
        "id": row_id,
        "source": "test",
        "split": "train",
        "task": "retrieval",
        "pair": pair_code(q_mod, t_mod),
        "query_modality": q_mod,
        "target_modality": t_mod,
        "source_id": row_id,
        "instruction": None,
        "query_text": query_text,
        "target_text": target_text,
        "negative_texts": None,
        "query_images": [str(query_image)] if query_image else None,
        "target_images": [str(target_image)] if target_image else None,
        "negative_images": None,
        "query_video": str(query_video) if query_video else None,
        "query_clip_start": clip[0] if clip and clip_role == "query" else None,
        "query_clip_end": clip[1] if clip and clip_role == "query" else None,
        "target_video": str(target_video) if target_video else None,
        "target_clip_start": clip[0] if clip and clip_role == "target" else None,
        "target_clip_end": clip[1] if clip and clip_role == "target" else None,
        "media": media or None,
        "media_kind": primary["kind"] if primary else None,
        "media_remote": primary["remote"] if primary else None,
        "width": None,
        "height": None,
        "duration": (clip[1] - clip[0]) if clip else duration,
        "fps": None,
        "frame_count": None,
        "codec": None,
        "rotation": None,
        "media_bytes": primary["bytes"] if primary else None,
        "media_hash": primary["content_hash"] if primary else None,
        "query_chars": len(query_text) if query_text else None,
        "query_words": len(query_text.split()) if query_text else None,
        "target_chars": len(target_text) if target_text else None,
        "target_words": len(target_text.split()) if target_text else None,
        "text_repaired": text_repaired,
        "input_file": "test.jsonl",
        "record_index": 0,
        "adapter": "test",
        "adapter_version": "1",
    }


def write_manifest(
    workspace: Workspace, name: str, rows: list[dict[str, Any]], *, part_rows: int = 1000
) -> Manifest:
    """Write `rows` as a finished manifest (rows/part-*.parquet, stats.json, _COMPLETE)."""
    folder = workspace.manifest_dir(name)
    (folder / "rows").mkdir(parents=True, exist_ok=True)
    for old in (folder / "rows").glob("part-*.parquet"):
        old.unlink()
    digest = hashlib.sha256()
    for number, start in enumerate(range(0, max(len(rows), 1), part_rows)):
        chunk = [
            dict(row, record_index=start + i)
            for i, row in enumerate(rows[start : start + part_rows])
        ]
        path = folder / "rows" / f"part-{number:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(chunk, schema=MANIFEST_SCHEMA), path)
        digest.update(path.read_bytes())
    (folder / "stats.json").write_text(
        json.dumps({"fingerprint": digest.hexdigest(), "accepted": len(rows)})
    )
    (folder / "ingest.json").write_text(json.dumps({"input_fingerprint": "test"}))
    (folder / COMPLETE_MARKER).write_text("")
    return Manifest(name=name, path=folder)


@pytest.fixture()
def make_manifest(workspace: Workspace) -> Callable[..., Manifest]:
    def make(name: str, rows: list[dict[str, Any]], **kwargs: Any) -> Manifest:
        return write_manifest(workspace, name, rows, **kwargs)

    return make


@pytest.fixture(scope="session")
def coco_images(shared_data: Path) -> list[Path]:
    return sorted((shared_data / COCO).glob("*.jpg"))
