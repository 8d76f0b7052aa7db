"""SugarCrepe-style caption JSON: `{"<idx>": {filename, caption, negative_caption}}`.

Each entry is an image→text pair with a hard negative caption (a compositional edit of the true
one): `query_images` = [filename], `target_text` = caption, `negative_texts` = [negative_caption],
task `caption_retrieval`, pair i2t. `record_index` is the entry's position, `source_id` its key.
File names are COCO val2017 names relative to the media root (pass `--media-root` to the folder
that holds them); a missing file is the core's `missing_media`, not a malformed record.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from curate.adapters import register
from curate.adapters.base import Adapter, AdapterContext, batched_drafts, draft, raw_json, rejected
from curate.adapters.generic import check_options, first_json_item, input_files, load_json
from curate.errors import InputError

TASK = "caption_retrieval"


def _entry(path: Path, index: int, key: str, entry: Any) -> dict[str, Any]:
    raw = raw_json({key: entry})

    def reject(reason: str, message: str) -> dict[str, Any]:
        return rejected(
            record_index=index,
            input_file=path,
            reason=reason,
            message=f"entry {key!r}: {message}",
            raw=raw,
            task=TASK,
        )

    if not isinstance(entry, dict):
        return reject("malformed_record", f"a JSON {type(entry).__name__}, not an object")
    filename, caption = entry.get("filename"), entry.get("caption")
    negative = entry.get("negative_caption")
    if not isinstance(filename, str) or not filename.strip():
        return reject("malformed_record", "needs a 'filename' string")
    if not isinstance(caption, str):
        return reject("malformed_record", "needs a 'caption' string")
    if negative is not None and not isinstance(negative, str):
        return reject("malformed_record", "'negative_caption' must be a string")
    if not caption.strip():
        return reject("empty_text", "the caption is empty")
    return draft(
        record_index=index,
        input_file=path,
        task=TASK,
        raw=raw,
        source_id=key,
        query_images=[filename],
        target_text=caption,
        negative_texts=[negative] if negative and negative.strip() else None,
    )


@register
class SugarCrepeAdapter(Adapter):
    """SugarCrepe caption JSON → image→caption pairs with a hard negative caption."""

    name = "sugarcrepe"
    version = "1"
    description = (
        'SugarCrepe-style JSON {"<idx>": {filename, caption, negative_caption}} → i2t caption '
        "pairs with the negative caption as hard negative"
    )
    patterns = ("*.json",)

    @classmethod
    def sniff(cls, path: Path) -> bool:
        """A JSON object whose first value is an object with `filename` and `caption`."""
        head = first_json_item(path)
        return (
            head is not None
            and head.kind == "object"
            and isinstance(head.first, dict)
            and {"filename", "caption"} <= set(head.first)
        )

    def read(self, ctx: AdapterContext) -> Iterator[pa.Table]:
        check_options(type(self), ctx.options)
        for path in input_files(ctx.input_path, (".json",)):
            document = load_json(path)
            if not isinstance(document, dict):
                raise InputError(
                    f"{path}: expected a SugarCrepe JSON object "
                    '{"<idx>": {filename, caption, negative_caption}}; found a JSON '
                    f"{type(document).__name__}"
                )
            rows = (
                _entry(path, index, str(key), entry)
                for index, (key, entry) in enumerate(document.items())
            )
            yield from batched_drafts(rows, batch_rows=ctx.batch_rows)
