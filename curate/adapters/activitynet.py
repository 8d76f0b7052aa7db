"""ActivityNet Captions: `{video_id: {duration, timestamps: [[start, end], ...], sentences: [...]}}`.

A record is one sentence: record_index numbers the sentences over the whole file (videos in file
order, sentences in list order). Each becomes a text-to-clip draft: target_video from
`video_pattern` (default "{video_id}.mp4"), target_clip_start/end = its segment in seconds,
source_id = the video id. Sentences are kept as written (many start with a space; ingest
normalises whitespace).

Segment checks, per sentence:
- start/end not numbers, a missing timestamp, start < 0, end <= start, or start at or beyond the
  video's duration: malformed_record.
- end past the duration (the real val_2 file has v_tXuNa_h804c ending at 234.94 s of 234.93 s):
  clamped to the duration. Ends within 1e-6 s of it are float noise of the file (113.26 against
  113.25999999999999, 110 times in val_2) and are kept as written. The raw record keeps the original as `clamped_end_from`, and
  `ActivitynetAdapter.clamped_ends` counts them for the run (`curate stats` shows the count).
A video entry that is not an object or has no `sentences` list counts as one rejected record.
"""

from __future__ import annotations

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
    seconds,
)
from curate.errors import InputError

TASK = "video_retrieval"
#: Durations in the real files carry float noise (113.25999999999999 for an end of 113.26); an end
#: within this many seconds of the duration is not past it.
EPSILON = 1e-6


@register
class ActivitynetAdapter(Adapter):
    name = "activitynet"
    version = "2"  # 2: annotated_duration
    description = (
        "ActivityNet Captions JSON {video_id: {duration, timestamps, sentences}} (seconds); one "
        "text-to-clip pair per sentence, ends past the duration clamped."
    )
    patterns = ("train.json", "val_1.json", "val_2.json", "*.json")
    option_help: ClassVar[dict[str, str]] = {
        "video_pattern": "video file of a video id, relative to the media root "
        "(default '{video_id}.mp4')",
    }

    def __init__(self) -> None:
        #: Segments whose end was clamped to the video duration in the last `read`.
        self.clamped_ends = 0

    @classmethod
    def sniff(cls, path: Path) -> bool:
        head = first_json_item(path)
        return (
            head is not None
            and head.kind == "object"
            and isinstance(head.first, dict)
            and "timestamps" in head.first
            and "sentences" in head.first
        )

    def read(self, ctx: AdapterContext) -> Iterator[pa.Table]:
        check_options(type(self), ctx.options)
        pattern = check_pattern(
            ctx.options.get("video_pattern", "{video_id}.mp4"),
            option="video_pattern",
            fields=("video_id",),
        )
        self.clamped_ends = 0
        for path in input_files(ctx.input_path, (".json",)):
            document = load_json(path)
            if not isinstance(document, dict):
                raise InputError(
                    f"{path}: expected the ActivityNet Captions layout "
                    "{video_id: {duration, timestamps, sentences}}; found a JSON "
                    f"{type(document).__name__}"
                )
            yield from batched_drafts(
                self._drafts(path, document, pattern), batch_rows=ctx.batch_rows
            )

    def _drafts(
        self, path: Path, document: dict[str, Any], pattern: str
    ) -> Iterator[dict[str, Any]]:
        index = 0
        for video_id, entry in document.items():
            sentences = entry.get("sentences") if isinstance(entry, dict) else None
            if not isinstance(sentences, list):
                yield rejected(
                    record_index=index, input_file=path, reason="malformed_record",
                    message=f"video {video_id!r} has no 'sentences' list",
                    raw=raw_json({"video_id": video_id, "entry": entry}), task=TASK,
                )  # fmt: skip
                index += 1
                continue
            timestamps = entry.get("timestamps")
            timestamps = timestamps if isinstance(timestamps, list) else []
            duration = seconds(entry.get("duration"))
            target_video = format_pattern(pattern, option="video_pattern", video_id=video_id)
            for number, sentence in enumerate(sentences):
                segment = timestamps[number] if number < len(timestamps) else None
                yield self._sentence(
                    path, index, video_id, duration, number, sentence, segment, target_video
                )
                index += 1

    def changes(self) -> dict[str, int]:
        return {"segment_end_clamped_to_duration": self.clamped_ends} if self.clamped_ends else {}

    def _sentence(
        self,
        path: Path,
        index: int,
        video_id: str,
        duration: float | None,
        number: int,
        sentence: Any,
        segment: Any,
        target_video: str,
    ) -> dict[str, Any]:
        record: dict[str, Any] = {
            "video_id": video_id,
            "duration": duration,
            "sentence_index": number,
            "sentence": sentence,
            "timestamp": segment,
        }

        def reject(reason: str, message: str) -> dict[str, Any]:
            return rejected(
                record_index=index, input_file=path, reason=reason,
                message=f"{video_id} sentence {number}: {message}", raw=raw_json(record), task=TASK,
            )  # fmt: skip

        if not isinstance(sentence, str):
            return reject("malformed_record", f"sentence is a {type(sentence).__name__}, not text")
        if not sentence.strip():
            return reject("empty_text", "the sentence is empty")
        if not (isinstance(segment, list | tuple) and len(segment) == 2):
            return reject("malformed_record", f"no [start, end] timestamp (found {segment!r})")
        start, end = seconds(segment[0]), seconds(segment[1])
        if start is None or end is None:
            return reject("malformed_record", f"timestamp {segment!r} is not two numbers")
        if start < 0:
            return reject("malformed_record", f"segment starts before 0 ({start} s)")
        if end <= start:
            return reject(
                "malformed_record", f"segment end {end} s is not after its start {start} s"
            )
        if duration is not None:
            if start >= duration:
                return reject(
                    "malformed_record",
                    f"segment starts at {start} s, at or after the video's duration {duration} s",
                )
            if end > duration + EPSILON:
                record["clamped_end_from"] = end
                end = duration
                self.clamped_ends += 1
        return draft(
            record_index=index,
            input_file=path,
            task=TASK,
            raw=raw_json(record),
            source_id=video_id,
            query_text=sentence,
            target_video=target_video,
            target_clip_start=start,
            target_clip_end=end,
            annotated_duration=duration,
        )
