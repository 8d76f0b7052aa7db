"""DiDeMo moment annotations: a JSON list of {annotation_id, description, video, times, ...}.

Videos are cut into 5-second chunks (index 0..5 for the usual 30 s cap); `times` holds one
[start_chunk, end_chunk] span per annotator (usually 4), both ends inclusive. A record is one list
element, and becomes one text-to-clip draft:

- the clip is the consensus span: the span given by the most annotators; ties go to the earliest
  span (smallest start chunk, then smallest end chunk). DiDeMo's evaluation scores against all
  spans; the manifest holds one clip, so the others stay in `raw`.
- seconds: start_chunk * 5 .. (end_chunk + 1) * 5. The last chunk of a video may be shorter
  than 5 s; ingest knows the real duration after probing.
- target_video = `video_pattern` (default "{video}": the name as written, e.g.
  "12090392@N02_13482799053_87ef417396.mov"); source_id = annotation_id.

A record whose spans are not pairs of chunk indices with 0 <= start <= end (or whose `times` is
empty) is malformed_record; an empty description is empty_text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from curate.adapters import register
from curate.adapters.base import Adapter, AdapterContext, batched_drafts, draft, raw_json, rejected
from curate.adapters.generic import (
    check_options,
    check_pattern,
    first_json_item,
    format_pattern,
    input_files,
    load_json,
)
from curate.errors import InputError

TASK = "video_retrieval"
CHUNK_SECONDS = 5.0


def consensus_span(spans: list[tuple[int, int]]) -> tuple[int, int]:
    """The most common span; ties broken by the earliest (start, then end).

    >>> consensus_span([(2, 3), (1, 1), (2, 3), (1, 1)])
    (1, 1)
    """
    counts = Counter(spans)
    return min(counts, key=lambda span: (-counts[span], span[0], span[1]))


def chunk_seconds(span: tuple[int, int]) -> tuple[float, float]:
    """Seconds covered by an inclusive span of 5-second chunks.

    >>> chunk_seconds((1, 2))
    (5.0, 15.0)
    """
    return span[0] * CHUNK_SECONDS, (span[1] + 1) * CHUNK_SECONDS


@register
class DidemoAdapter(Adapter):
    name = "didemo"
    version = "1"
    description = (
        "DiDeMo JSON list of {annotation_id, description, video, times} where times holds one "
        "start/end 5-second chunk span per annotator; one text-to-clip pair per description, "
        "clip = the most common span."
    )
    patterns = ("train_data.json", "val_data.json", "test_data.json", "*.json")
    option_help: ClassVar[dict[str, str]] = {
        "video_pattern": "video file of a record, relative to the media root; may use {video} "
        "(the 'video' field) and {stem} (it without extension); default '{video}'",
    }

    @classmethod
    def sniff(cls, path: Path) -> bool:
        head = first_json_item(path)
        return (
            head is not None
            and head.kind == "list"
            and isinstance(head.first, dict)
            and {"annotation_id", "description", "times", "video"} <= set(head.first)
        )

    def read(self, ctx: AdapterContext) -> Iterator[pa.Table]:
        check_options(type(self), ctx.options)
        pattern = check_pattern(
            ctx.options.get("video_pattern", "{video}"),
            option="video_pattern",
            fields=("video", "stem"),
        )
        for path in input_files(ctx.input_path, (".json",)):
            document = load_json(path)
            if not isinstance(document, list):
                raise InputError(
                    f"{path}: expected a DiDeMo JSON list of {{annotation_id, description, video, "
                    f"times}}; found a JSON {type(document).__name__}"
                )
            rows = (_draft(path, i, record, pattern) for i, record in enumerate(document))
            yield from batched_drafts(rows, batch_rows=ctx.batch_rows)


def _draft(path: Path, index: int, record: Any, pattern: str) -> dict[str, Any]:
    raw = raw_json(record)

    def reject(reason: str, message: str) -> dict[str, Any]:
        return rejected(
            record_index=index, input_file=path, reason=reason, message=message, raw=raw, task=TASK
        )

    if not isinstance(record, dict):
        return reject(
            "malformed_record", f"element is a JSON {type(record).__name__}, not an object"
        )
    video = record.get("video")
    if not isinstance(video, str) or not video.strip():
        return reject("malformed_record", "the record has no 'video'")
    description = record.get("description")
    if description is not None and not isinstance(description, str):
        return reject(
            "malformed_record", f"description is a {type(description).__name__}, not text"
        )
    if description is None or not description.strip():
        return reject("empty_text", "the description is empty")
    times = record.get("times")
    if not isinstance(times, list) or not times:
        return reject("malformed_record", f"'times' holds no spans (found {times!r})")
    spans: list[tuple[int, int]] = []
    for span in times:
        if not (
            isinstance(span, list | tuple)
            and len(span) == 2
            and all(isinstance(c, int) and not isinstance(c, bool) for c in span)
            and 0 <= span[0] <= span[1]
        ):
            return reject(
                "malformed_record",
                f"span {span!r} is not [start_chunk, end_chunk] with 0 <= start <= end",
            )
        spans.append((span[0], span[1]))
    start, end = chunk_seconds(consensus_span(spans))
    annotation_id = record.get("annotation_id")
    stem = video.rsplit(".", 1)[0] if "." in video else video
    return draft(
        record_index=index,
        input_file=path,
        task=TASK,
        raw=raw,
        source_id=None if annotation_id is None else str(annotation_id),
        query_text=description,
        target_video=format_pattern(pattern, option="video_pattern", video=video, stem=stem),
        target_clip_start=start,
        target_clip_end=end,
    )
