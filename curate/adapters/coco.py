"""COCO captions JSON: `{images: [{id, file_name, ...}], annotations: [{image_id, caption}]}`.

One draft per caption annotation (the record; `record_index` is its position in `annotations`):
by default text→image (`query_text` = caption, `target_images` = [file_name]); `direction=i2t`
turns it around and `direction=both` gives two drafts per caption. `source_id` is the image id.

A COCO *instances* (detection) file has the same `images` list but annotations without captions;
it is detected as this format on purpose, and every annotation is rejected as `malformed_record`
with a message that says to use the captions file: ingesting it must not produce garbage.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from curate.adapters import register
from curate.adapters.base import Adapter, AdapterContext, batched_drafts, draft, raw_json, rejected
from curate.adapters.generic import (
    check_options,
    input_files,
    load_json,
    option_choice,
    read_head,
)
from curate.errors import InputError

TASK = "caption_retrieval"
DIRECTIONS = ("t2i", "i2t", "both")

_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\r\n]*")
INCOMPLETE = object()  # a value cut off by the end of the head


def object_entries(text: str) -> Iterator[tuple[str, Any, int]]:
    """Top-level `(key, value, value_offset)` of a JSON object read from the start of `text`.

    `text` may be cut anywhere: iteration stops at the cut, and a value that the cut runs through
    is given as INCOMPLETE (so a big `images` list can still be inspected from its offset).
    """
    position = _SPACE.match(text, 0).end()
    if not text.startswith("{", position):
        return
    position += 1
    while True:
        position = _SPACE.match(text, position).end()
        if not text.startswith('"', position):
            return
        try:
            key, position = _DECODER.raw_decode(text, position)
        except ValueError:
            return
        position = _SPACE.match(text, position).end()
        if not text.startswith(":", position):
            return
        start = _SPACE.match(text, position + 1).end()
        try:
            value, position = _DECODER.raw_decode(text, start)
        except ValueError:
            yield key, INCOMPLETE, start
            return
        yield key, value, start
        position = _SPACE.match(text, position).end()
        if not text.startswith(",", position):
            return
        position += 1


def first_list_element(text: str, offset: int) -> Any:
    """The first element of the JSON list starting at `offset`, or INCOMPLETE."""
    position = _SPACE.match(text, offset).end()
    if not text.startswith("[", position):
        return INCOMPLETE
    try:
        value, _ = _DECODER.raw_decode(text, _SPACE.match(text, position + 1).end())
    except ValueError:
        return INCOMPLETE
    return value


def _looks_like_instances(annotation: dict[str, Any], document: dict[str, Any]) -> bool:
    return bool({"bbox", "segmentation", "keypoints"} & set(annotation)) or "categories" in document


@register
class CocoAdapter(Adapter):
    """COCO captions (`captions_*.json`) → caption/image pairs."""

    name = "coco"
    version = "1"
    description = (
        "COCO captions JSON {images:[{id,file_name}], annotations:[{image_id,caption}]} → one "
        "caption/image pair per caption (t2i, i2t or both)"
    )
    patterns = ("captions_*.json",)
    option_help: ClassVar[dict[str, str]] = {
        "direction": "t2i (caption → image, default), i2t (image → caption) or both",
    }

    @classmethod
    def sniff(cls, path: Path) -> bool:
        """A JSON object with a top-level `images` list whose first item has `file_name`."""
        head = read_head(path)
        if head is None:
            return False
        for key, value, offset in object_entries(head):
            if key == "images":
                if value is INCOMPLETE:
                    first = first_list_element(head, offset)
                else:
                    first = value[0] if isinstance(value, list) and value else None
                return isinstance(first, dict) and "file_name" in first
        return False

    def read(self, ctx: AdapterContext) -> Iterator[pa.Table]:
        check_options(type(self), ctx.options)
        direction = option_choice(ctx.options, "direction", DIRECTIONS, "t2i")
        for path in input_files(ctx.input_path, (".json",)):
            document = load_json(path)
            if not (
                isinstance(document, dict)
                and isinstance(document.get("images"), list)
                and isinstance(document.get("annotations"), list)
            ):
                found = (
                    f"keys {sorted(document)}"
                    if isinstance(document, dict)
                    else f"a JSON {type(document).__name__}"
                )
                raise InputError(
                    f"{path}: expected a COCO captions object with 'images' and 'annotations' "
                    f"lists; found {found}"
                )
            yield from batched_drafts(
                self._rows(path, document, direction), batch_rows=ctx.batch_rows
            )

    @staticmethod
    def _rows(path: Path, document: dict[str, Any], direction: str) -> Iterator[dict[str, Any]]:
        files: dict[Any, Any] = {}
        for image in document["images"]:
            if isinstance(image, dict) and "id" in image:
                files[image["id"]] = image.get("file_name")
        for index, annotation in enumerate(document["annotations"]):
            raw = raw_json(annotation)

            def reject(reason: str, message: str, index: int = index, raw: str = raw) -> dict:
                return rejected(
                    record_index=index,
                    input_file=path,
                    reason=reason,
                    message=message,
                    raw=raw,
                    task=TASK,
                )

            if not isinstance(annotation, dict):
                yield reject("malformed_record", "the annotation is not a JSON object")
                continue
            caption = annotation.get("caption")
            if caption is None:
                if _looks_like_instances(annotation, document):
                    message = (
                        "the annotation has no caption: this looks like a COCO instances "
                        "(detection) file; ingest the captions file instead "
                        "(annotations/captions_<split>.json)"
                    )
                else:
                    message = "the annotation has no 'caption'"
                yield reject("malformed_record", message)
                continue
            if not isinstance(caption, str):
                yield reject("malformed_record", f"caption is a {type(caption).__name__}")
                continue
            image_id = annotation.get("image_id")
            file_name = files.get(image_id) if isinstance(image_id, int | str) else None
            if not isinstance(file_name, str) or not file_name.strip():
                yield reject(
                    "malformed_record",
                    f"image_id {image_id!r} names no image with a file_name in 'images'",
                )
                continue
            if not caption.strip():
                yield reject("empty_text", "the caption is empty")
                continue
            common = {
                "record_index": index,
                "input_file": path,
                "task": TASK,
                "raw": raw,
                "source_id": str(image_id),
            }
            if direction in ("t2i", "both"):
                yield draft(**common, query_text=caption, target_images=[file_name])
            if direction in ("i2t", "both"):
                yield draft(**common, query_images=[file_name], target_text=caption)
