"""UNITE training JSON (friedrichor/UNITE, `FusedRetTrainDataset`): a list of query/candidate dicts.

    [{"query": {"text"?, "image"?, "video"?},
      "candidate": {...},            # "pos" or "positive" are accepted as well
      "negative"?: {...} or [{...}],
      "target_modal"?: "image" | "text" | "video" | "text,image" | ...}, ...]

`image` and `video` are a path, a list of paths, or {"type": "image", "image": path} /
{"type": "video", "video": path}, as UNITE's `process_*_content` accepts. In a text, `<|IMAGE|>`
and `<|VIDEO|>` mark where the media goes: the markers are removed from the stored text, and a
text that was only markers means the side is media only.

A record is one list element and becomes one draft. The manifest holds one video per side: a
side listing several videos is malformed_record. Negatives give negative_texts/negative_images;
a negative video has no draft column and stays in `raw`. UNITE puts instructions inside the query
text, so instruction stays null. `target_modal` is kept in `raw` (ingest derives the target
modality from what the candidate holds). The task is derived from the modalities (t2v ->
video_retrieval, i2t -> caption_retrieval, vt2v -> composed_retrieval, ...) unless `task` is given;
source_id is the record's `id` when it has one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from curate.adapters import register
from curate.adapters.base import Adapter, AdapterContext, batched_drafts, draft, raw_json, rejected
from curate.adapters.generic import (
    check_options,
    first_json_item,
    infer_task,
    input_files,
    iter_json_list,
)
from curate.errors import ConfigError
from curate.schema import TASK_KINDS, modality_of

PLACEHOLDERS = re.compile(r"<\|IMAGE\|>|<\|VIDEO\|>")
CANDIDATE_KEYS = ("candidate", "pos", "positive")


class _Malformed(Exception):
    pass


def _paths(value: Any, kind: str, where: str) -> list[str]:
    """Media paths of one side in any of the shapes UNITE accepts."""
    if value is None:
        return []
    if isinstance(value, dict):
        value = value.get(kind)
    items = value if isinstance(value, list) else [value]
    paths = []
    for item in items:
        if isinstance(item, dict):
            item = item.get(kind)
        if not isinstance(item, str):
            raise _Malformed(f"{where}.{kind} holds a {type(item).__name__}, not a path")
        if item.strip():
            paths.append(item.strip())
    return paths


def _side(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Malformed(f"'{where}' is a {type(value).__name__}, not an object")
    text = value.get("text")
    if text is not None and not isinstance(text, str):
        raise _Malformed(f"{where}.text is a {type(text).__name__}, not text")
    images = _paths(value.get("image"), "image", where)
    videos = _paths(value.get("video"), "video", where)
    if text is not None:
        for marker, media, kind in (("<|IMAGE|>", images, "image"), ("<|VIDEO|>", videos, "video")):
            if marker in text and not media:
                raise _Malformed(f"{where}.text has {marker} but {where} has no {kind}")
        text = PLACEHOLDERS.sub(" ", text)
        text = text if text.strip() else None
    return {"text": text, "names_text": "text" in value, "images": images, "videos": videos}


@register
class UniteAdapter(Adapter):
    name = "unite"
    version = "1"
    description = (
        "UNITE training JSON: a list of {query, candidate|pos, negative?, target_modal?} with "
        "text/image/video per side and <|IMAGE|>/<|VIDEO|> placeholders."
    )
    patterns = ("unite_*.json", "*.json")
    option_help: ClassVar[dict[str, str]] = {
        "task": f"task kind of every row, one of {', '.join(TASK_KINDS)} (default: from the "
        "modalities of each pair)",
    }

    @classmethod
    def sniff(cls, path: Path) -> bool:
        head = first_json_item(path)
        return (
            head is not None
            and head.kind == "list"
            and isinstance(head.first, dict)
            and isinstance(head.first.get("query"), dict)
            and any(isinstance(head.first.get(k), dict) for k in CANDIDATE_KEYS)
        )

    def read(self, ctx: AdapterContext) -> Iterator[pa.Table]:
        check_options(type(self), ctx.options)
        task = ctx.options.get("task")
        if task is not None and task not in TASK_KINDS:
            raise ConfigError(
                f"option task={task!r} is invalid; choose one of: {', '.join(TASK_KINDS)}"
            )
        for path in input_files(ctx.input_path, (".json",)):
            # Streamed: training lists run to hundreds of MB of JSON.
            records = iter_json_list(path, expected="a UNITE JSON list of {query, candidate, ...}")
            rows = (_draft(path, i, record, task) for i, record in enumerate(records))
            yield from batched_drafts(rows, batch_rows=ctx.batch_rows)


def _draft(path: Path, index: int, record: Any, task: str | None) -> dict[str, Any]:
    raw = raw_json(record)
    fallback_task = task or "retrieval"
    try:
        if not isinstance(record, dict):
            raise _Malformed(f"element is a JSON {type(record).__name__}, not an object")
        if "query" not in record:
            raise _Malformed("the record has no 'query'")
        key = next((k for k in CANDIDATE_KEYS if k in record), None)
        if key is None:
            raise _Malformed(f"the record has none of {', '.join(CANDIDATE_KEYS)}")
        query = _side(record["query"], "query")
        target = _side(record[key], key)
        negatives_value = record.get("negative")
        if negatives_value is None:
            negatives = []
        elif isinstance(negatives_value, list):
            negatives = [_side(n, f"negative[{i}]") for i, n in enumerate(negatives_value)]
        else:
            negatives = [_side(negatives_value, "negative")]
        for name, side in (("query", query), (key, target)):
            if len(side["videos"]) > 1:
                raise _Malformed(
                    f"{name} lists {len(side['videos'])} videos; a manifest row holds one video "
                    "per side"
                )
    except _Malformed as error:
        return rejected(
            record_index=index, input_file=path, reason="malformed_record",
            message=str(error), raw=raw, task=fallback_task,
        )  # fmt: skip
    modalities = {}
    for name, side in (("query", query), ("target", target)):
        modalities[name] = modality_of(
            has_text=side["text"] is not None,
            has_image=bool(side["images"]),
            has_video=bool(side["videos"]),
        )
        if modalities[name] is None:
            reason = "empty_text" if side["names_text"] else "malformed_record"
            return rejected(
                record_index=index, input_file=path, reason=reason,
                message=f"the {name} has no text, image or video", raw=raw, task=fallback_task,
            )  # fmt: skip
    negative_texts = [n["text"] for n in negatives if n["text"] is not None]
    negative_images = [p for n in negatives for p in n["images"]]
    record_id = record.get("id")
    return draft(
        record_index=index,
        input_file=path,
        task=task or infer_task(modalities["query"], modalities["target"]),
        raw=raw,
        source_id=None
        if record_id is None or isinstance(record_id, dict | list)
        else str(record_id),
        query_text=query["text"],
        query_images=query["images"] or None,
        query_video=query["videos"][0] if query["videos"] else None,
        target_text=target["text"],
        target_images=target["images"] or None,
        target_video=target["videos"][0] if target["videos"] else None,
        negative_texts=negative_texts or None,
        negative_images=negative_images or None,
    )
