"""Small manifests for the mixing tests, written the way `curate ingest` lays them out.

`write_manifest` puts MANIFEST_SCHEMA rows in `manifests/<name>/rows/part-*.parquet`, a
`stats.json` with a content fingerprint and the by_pair/by_source/by_split/by_task counts,
optional signal sidecars and the `_COMPLETE` marker, so the tests do not depend on ingest (and on
probing media) to exercise the mixer.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate.manifest import COMPLETE_MARKER
from curate.schema import MANIFEST_SCHEMA, MODALITY_CODES
from curate.workspace import Workspace

_CODE_TO_MODALITY = {code: modality for modality, code in MODALITY_CODES.items()}
_TASK_OF_PAIR = {
    "t2t": "text_retrieval",
    "t2i": "caption_retrieval",
    "i2t": "caption_retrieval",
    "t2v": "video_retrieval",
    "v2t": "video_retrieval",
    "it2t": "vqa",
    "it2i": "composed_retrieval",
    "vt2v": "composed_retrieval",
}


def split_pair(pair: str) -> tuple[str, str]:
    query, target = pair.split("2")
    return _CODE_TO_MODALITY[query], _CODE_TO_MODALITY[target]


def row(
    source: str,
    index: int,
    pair: str = "t2i",
    *,
    split: str = "train",
    text: str | None = None,
    media_hash: str | None = None,
    width: int = 640,
    height: int = 480,
    duration: float = 10.0,
    media_root: str = "/data/media",
    **overrides: Any,
) -> dict[str, Any]:
    """One manifest row of `pair` whose content is derived from (source, index)."""
    query_modality, target_modality = split_pair(pair)
    caption = text if text is not None else f"{source} caption number {index}"
    row: dict[str, Any] = {name: None for name in MANIFEST_SCHEMA.names}
    row.update(
        id=hashlib.md5(f"{source}|{pair}|{split}|{index}|{caption}".encode()).hexdigest(),
        source=source,
        split=split,
        task=_TASK_OF_PAIR.get(pair, "retrieval"),
        pair=pair,
        query_modality=query_modality,
        target_modality=target_modality,
        source_id=f"{source}-{index}",
        text_repaired=False,
        input_file=f"/data/{source}.jsonl",
        record_index=index,
        adapter="fixture",
        adapter_version="1",
        media=[],
    )
    media: list[dict[str, Any]] = []
    for role, modality in (("query", query_modality), ("target", target_modality)):
        if "text" in modality:
            row[f"{role}_text"] = (
                caption if role != "query" or pair != "t2t" else f"query {caption}"
            )
            if pair == "t2t" and role == "target":
                row["target_text"] = f"passage for {caption}"
        if modality.startswith("image"):
            path = f"{media_root}/{source}/{role}-{index}.jpg"
            row[f"{role}_images"] = [path]
            media.append(_media(role, "image", path, media_hash, width, height, None, index))
        if modality.startswith("video"):
            path = f"{media_root}/{source}/{role}-{index}.mp4"
            row[f"{role}_video"] = path
            media.append(_media(role, "video", path, media_hash, width, height, duration, index))
    row["media"] = media
    primary = next((m for m in media if m["role"] == "target"), media[0] if media else None)
    if primary is not None:
        row.update(
            media_kind=primary["kind"],
            media_remote=False,
            width=primary["width"],
            height=primary["height"],
            duration=primary["duration"],
            fps=primary["fps"],
            frame_count=primary["frame_count"],
            codec=primary["codec"],
            rotation=0,
            media_bytes=primary["bytes"],
            media_hash=primary["content_hash"],
        )
    for side in ("query", "target"):
        value = row[f"{side}_text"]
        row[f"{side}_chars"] = len(value) if value is not None else None
        row[f"{side}_words"] = len(value.split()) if value is not None else None
    row.update(overrides)
    return row


def _media(
    role: str,
    kind: str,
    path: str,
    content_hash: str | None,
    width: int,
    height: int,
    duration: float | None,
    index: int,
) -> dict[str, Any]:
    return {
        "role": role,
        "kind": kind,
        "path": path,
        "remote": False,
        "width": width,
        "height": height,
        "duration": duration,
        "fps": 25.0 if kind == "video" else None,
        "frame_count": int(duration * 25) if duration else None,
        "codec": "h264" if kind == "video" else "jpeg",
        "rotation": 0,
        "bytes": 1000 + index,
        "content_hash": content_hash or hashlib.sha256(path.encode()).hexdigest(),
    }


def rows(source: str, n: int, pair: str = "t2i", *, start: int = 0, **kw: Any) -> list[dict]:
    return [row(source, i, pair, **kw) for i in range(start, start + n)]


def write_manifest(
    workspace: Workspace,
    name: str,
    manifest_rows: Iterable[Mapping[str, Any]],
    *,
    signals: Mapping[str, pa.Table | list[dict[str, Any]]] | None = None,
    part_rows: int | None = None,
    counters: bool = True,
) -> Path:
    """Write a complete manifest folder; returns it. `counters=False` leaves the by_pair,
    by_source, by_split and by_task counts out of stats.json (as a hand-made manifest might)."""
    table = pa.Table.from_pylist(list(manifest_rows), schema=MANIFEST_SCHEMA)
    folder = workspace.manifest_dir(name)
    (folder / "rows").mkdir(parents=True, exist_ok=True)
    step = part_rows or max(table.num_rows, 1)
    digest = hashlib.sha256()
    for part, offset in enumerate(range(0, max(table.num_rows, 1), step)):
        path = folder / "rows" / f"part-{part:05d}.parquet"
        pq.write_table(table.slice(offset, step), path)
        digest.update(path.read_bytes())
    for signal, data in (signals or {}).items():
        (folder / "signals").mkdir(exist_ok=True)
        sidecar = data if isinstance(data, pa.Table) else pa.Table.from_pylist(list(data))
        pq.write_table(sidecar, folder / "signals" / f"{signal}.parquet")
    stats: dict[str, Any] = {
        "read": table.num_rows,
        "accepted": table.num_rows,
        "rejected": 0,
        "fingerprint": digest.hexdigest(),
    }
    if counters:  # what ingest writes; the mixer reads a manifest's pairs, sources... from them
        for column in ("pair", "source", "split", "task"):
            stats[f"by_{column}"] = dict(sorted(Counter(table.column(column).to_pylist()).items()))
    (folder / "stats.json").write_text(json.dumps(stats))
    (folder / "ingest.json").write_text(json.dumps({"fixture": True}))
    (folder / COMPLETE_MARKER).write_text("")
    return folder


def write_recipe(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path
