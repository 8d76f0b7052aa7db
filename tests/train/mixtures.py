"""Hand-built mixtures over the real shared data (MANIFEST_SCHEMA rows + `position`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate.schema import MANIFEST_SCHEMA, modality_of, pair_code

STAGE_SCHEMA = MANIFEST_SCHEMA.append(pa.field("position", pa.int64()))


def row(
    rid: str,
    *,
    query_text: str | None = None,
    query_images: list[str] | None = None,
    query_video: str | None = None,
    query_clip: tuple[float, float] | None = None,
    target_text: str | None = None,
    target_images: list[str] | None = None,
    target_video: str | None = None,
    target_clip: tuple[float, float] | None = None,
    negative_texts: list[str] | None = None,
    instruction: str | None = None,
    source: str = "test",
) -> dict[str, Any]:
    qm = modality_of(
        has_text=bool(query_text), has_image=bool(query_images), has_video=bool(query_video)
    )
    tm = modality_of(
        has_text=bool(target_text), has_image=bool(target_images), has_video=bool(target_video)
    )
    values: dict[str, Any] = dict.fromkeys(MANIFEST_SCHEMA.names)
    values.update(
        id=rid,
        source=source,
        split="train",
        task="retrieval",
        pair=pair_code(qm, tm),
        query_modality=qm,
        target_modality=tm,
        instruction=instruction,
        query_text=query_text,
        target_text=target_text,
        negative_texts=negative_texts,
        query_images=query_images,
        target_images=target_images,
        query_video=query_video,
        query_clip_start=query_clip[0] if query_clip else None,
        query_clip_end=query_clip[1] if query_clip else None,
        target_video=target_video,
        target_clip_start=target_clip[0] if target_clip else None,
        target_clip_end=target_clip[1] if target_clip else None,
        text_repaired=False,
        input_file="hand-built",
        record_index=0,
        adapter="test",
        adapter_version="1",
    )
    return values


def write_mixture(
    folder: Path,
    stages: dict[str, list[dict[str, Any]]],
    *,
    name: str = "handmade",
    version: str = "v0",
    batching: str | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stage, rows in stages.items():
        rows = [dict(r, position=i, record_index=i) for i, r in enumerate(rows)]
        pq.write_table(pa.Table.from_pylist(rows, schema=STAGE_SCHEMA), folder / f"{stage}.parquet")
    meta = {"name": name, "version": version, "stages": list(stages), "batching": batching}
    (folder / "mixture.json").write_text(json.dumps(meta))
    return folder


def real_rows(data: Path, *, videos: bool = True, broken: Path | None = None) -> list[dict]:
    """Image-text pairs (COCO + SugarCrepe captions, with hard negative captions), video-text
    pairs (short real clips), text-text triples (MS MARCO toy), and optionally one row whose
    video cannot be decoded."""
    coco = data / "images" / "coco_val2017_subset" / "val2017"
    present = {p.name for p in coco.glob("*.jpg")}
    captions = json.loads((data / "annotations" / "sugar_crepe" / "replace_obj.json").read_text())
    seen: set[str] = set()
    rows: list[dict] = []
    for entry in captions.values():
        if entry["filename"] in present and entry["filename"] not in seen:
            seen.add(entry["filename"])
            image = str(coco / entry["filename"])
            if len(seen) % 3:
                rows.append(
                    row(
                        f"t2i-{len(seen)}",
                        query_text=entry["caption"],
                        target_images=[image],
                        negative_texts=None,
                    )
                )
            else:
                rows.append(
                    row(
                        f"i2t-{len(seen)}",
                        query_images=[image],
                        target_text=entry["caption"],
                        negative_texts=[entry["negative_caption"]],
                    )
                )
        if len(seen) >= 12:
            break
    if videos:
        mm = data / "videos" / "mmaction2"
        clips = [
            ("arm wrestling", mm / "demo.mp4", None),
            ("two men arm wrestling at a table", mm / "demo.mp4", (5.0, 10.0)),
            ("A person is cleaning a swimming pool", mm / "test.mp4", (0.0, 5.0)),
            (
                "A person is using a cleaning machine to clean the swimming pool",
                mm / "test.mp4",
                None,
            ),
            ("a short clip of a person", mm / "rawvideo_dataset" / "part_0.mp4", None),
            ("an old avi test clip", mm / "test.avi", None),
        ]
        for i, (text, path, clip) in enumerate(clips):
            rows.append(row(f"t2v-{i}", query_text=text, target_video=str(path), target_clip=clip))
    triples = (data / "annotations" / "msmarco_splade_toy" / "triplets_raw.tsv").read_text()
    for i, line in enumerate(triples.splitlines()[:6]):
        query, positive, negative = line.split("\t")[:3]
        rows.append(
            row(
                f"t2t-{i}",
                query_text=query,
                target_text=positive[:300],
                negative_texts=[negative[:300]],
            )
        )
    if broken is not None:
        rows.append(
            row("broken-0", query_text="a video that will not decode", target_video=str(broken))
        )
    # Interleave pair types so that mixed batches really mix.
    by_pair: dict[str, list[dict]] = {}
    for r in rows:
        by_pair.setdefault(r["pair"], []).append(r)
    mixed: list[dict] = []
    while any(by_pair.values()):
        for key in sorted(by_pair):
            if by_pair[key]:
                mixed.append(by_pair[key].pop(0))
    return mixed
