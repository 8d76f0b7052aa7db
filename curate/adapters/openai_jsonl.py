"""OpenAI-style chat JSON Lines with typed content (LLaMA-Factory's v1 multimodal layout).

One JSON object per line: `{messages: [{role: user|assistant|system, content}]}` where `content`
is a string or a list of typed parts: `{type: text, text|value}`, `{type: image_url, image_url:
{url}|value}`, `{type: image, image|value|path|url}`, `{type: video|video_url, ...}`. Each
(user, assistant) pair becomes one `instruction` draft exactly as in the `llava` adapter (every turn
carries the images shown so far in the conversation; see `curate.adapters.llava`).

Lines: `record_index` is the 0-based line number; blank lines (LLaMA-Factory's file ends with two)
are skipped and are not records; a line that is not a JSON object is rejected as
`malformed_record` with its line number. Inline `data:` images are rejected (extract them to
files first). Image paths in LLaMA-Factory's demo are relative to its repository root
(`data/mllm_demo_data/1.jpg`): ingest with `--media-root <LLaMA-Factory>` or, when the images sit
elsewhere, strip the prefix: `--media-root images/llama_factory --option media_strip_prefix=data/`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from curate.adapters import register
from curate.adapters.base import (
    Adapter,
    AdapterContext,
    batched_drafts,
    json_lines,
)
from curate.adapters.generic import check_options, input_files, option_choice
from curate.adapters.llava import (
    OPTION_HELP,
    TASK,
    Reject,
    Turn,
    record_drafts,
    strip_prefix,
)
from curate.adapters.textpairs import first_jsonl_object
from curate.errors import InputError

_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "system": "system"}
_IMAGE_TYPES = ("image_url", "image")
_VIDEO_TYPES = ("video_url", "video")


def _part_location(part: dict[str, Any], kind: str) -> str:
    """The path or URL of an image/video part, whichever key the writer used."""
    for key in (part["type"], kind, "value", "path", "url"):
        value = part.get(key)
        if isinstance(value, dict):  # OpenAI: {"image_url": {"url": ...}}
            value = value.get("url")
        if isinstance(value, str) and value.strip():
            if value.startswith("data:"):
                raise Reject(
                    "malformed_record",
                    f"inline {kind} data (a data: URL) is not supported; write it to a file",
                )
            return value.removeprefix("file://")
    raise Reject("malformed_record", f"a {part['type']} part has no path or URL")


def message_turn(message: Any, prefix: str) -> Turn:
    """One OpenAI-style message as a Turn with its text and media in order."""
    if not isinstance(message, dict):
        raise Reject("malformed_record", f"a message is a JSON {type(message).__name__}")
    role = _ROLES.get(str(message.get("role", "")).lower())
    if role is None:
        raise Reject(
            "malformed_record",
            f"message role {message.get('role')!r} is not one of {', '.join(sorted(_ROLES))}",
        )
    content = message.get("content")
    if isinstance(content, str):
        return Turn(role, content, raw=message)
    if not isinstance(content, list):
        raise Reject("malformed_record", "message content must be a string or a list of parts")
    texts: list[str] = []
    turn = Turn(role, "", raw=message)
    for part in content:
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise Reject("malformed_record", "a content part has no 'type'")
        kind = part["type"]
        if kind == "text":
            text = part.get("text", part.get("value"))
            if not isinstance(text, str):
                raise Reject("malformed_record", "a text part has no 'text' or 'value' string")
            texts.append(text)
        elif kind in _IMAGE_TYPES:
            turn.images.append(strip_prefix(_part_location(part, "image"), prefix))
        elif kind in _VIDEO_TYPES:
            turn.videos.append(strip_prefix(_part_location(part, "video"), prefix))
        else:
            raise Reject(
                "malformed_record",
                f"content part type {kind!r} is not supported (text, image_url, image, video)",
            )
    turn.text = "\n".join(texts)
    return turn


@register
class OpenAIJsonlAdapter(Adapter):
    """Chat JSON Lines with typed (text/image/video) content → instruction pairs."""

    name = "openai-jsonl"
    version = "1"
    description = (
        "OpenAI-style chat JSON Lines {messages:[{role, content:[{type: text|image_url|video}]}]}"
        " → one instruction pair per question/answer turn"
    )
    patterns = ("*.jsonl",)
    option_help: ClassVar[dict[str, str]] = OPTION_HELP

    @classmethod
    def sniff(cls, path: Path) -> bool:
        """The first line is a JSON object with a `messages` list of role/content objects."""
        record = first_jsonl_object(path)
        if record is None or not isinstance(record.get("messages"), list):
            return False
        first = record["messages"][0] if record["messages"] else None
        return isinstance(first, dict) and "role" in first and "content" in first

    def read(self, ctx: AdapterContext) -> Iterator[pa.Table]:
        check_options(type(self), ctx.options)
        first_only = option_choice(ctx.options, "turns", ("all", "first"), "all") == "first"
        prefix = ctx.options.get("media_strip_prefix", "")
        for path in input_files(ctx.input_path, (".jsonl", ".ndjson")):
            if not path.is_file():
                raise InputError(f"{path}: not a file")
            rows = self._rows(path, prefix, first_only)
            yield from batched_drafts(rows, batch_rows=ctx.batch_rows)

    @staticmethod
    def _rows(path: Path, prefix: str, first_only: bool) -> Iterator[dict[str, Any]]:
        for index, record, *bad in json_lines(path, task=TASK):
            if bad:
                yield bad[0]
                continue
            yield from OpenAIJsonlAdapter._record(path, index, record, prefix, first_only)

    @staticmethod
    def _record(
        path: Path, index: int, record: Any, prefix: str, first_only: bool
    ) -> list[dict[str, Any]]:
        def read_turns(record: Any) -> tuple[list[Turn], str]:
            if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
                raise Reject("malformed_record", "not an object with a 'messages' list")
            return [message_turn(m, prefix) for m in record["messages"]], "messages"

        return record_drafts(
            path, index, record, read_turns, first_only=first_only, where=f"line {index + 1}: "
        )
