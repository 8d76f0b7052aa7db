"""LLaVA / ShareGPT4V conversation JSON, and LLaMA-Factory's multimodal `messages` layout.

LLaVA: a JSON list of `{id, image, conversations: [{from: human|gpt, value}]}` where `<image>`
sits at the start or the end of the first human turn. LLaMA-Factory (mllm_demo.json): a JSON list
of `{messages: [{role: user|assistant, content}], images: [path, ...]}` with one `<image>` token
per listed image (`videos` / `<video>` likewise).

Every (user turn, assistant answer) pair becomes one `instruction` draft: the query is the user
text with the `<image>`/`<video>` tokens removed plus the media, the target is the answer text.

Which turns carry the image: EVERY turn carries the images shown so far in the conversation
(default `turns=all`). Later LLaVA questions ("What color is the pickup truck?") are about the
image and mean nothing without it; as text-only t2t pairs they would teach the embedder to match
questions to answers about pictures it never saw. So each turn is an it2t pair. `turns=first`
keeps only the first pair of each conversation (one pair per image, UNITE-style), for corpora
where later turns repeat the first. A system turn becomes the draft's instruction.

A conversation whose `<image>` count differs from its image list, whose turns do not alternate,
or that lacks an answer is rejected (`malformed_record`), in part or whole: a dangling turn gets
its own reject row, so every record is accounted for by at least one row. Paths stay as written
(relative to the media root); `media_strip_prefix` removes a leading prefix first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from curate.adapters import register
from curate.adapters.base import Adapter, AdapterContext, batched_drafts, draft, raw_json, rejected
from curate.adapters.generic import (
    check_options,
    first_json_item,
    input_files,
    iter_json_list,
    option_choice,
)

TASK = "instruction"
IMAGE_TOKEN = "<image>"
VIDEO_TOKEN = "<video>"
_TOKEN_RE = re.compile(r"\s*(?:<image>|<video>)\s*")
_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}

OPTION_HELP: dict[str, str] = {
    "turns": "all (default: every user/assistant pair, each with the conversation's media so "
    "far) or first (only the first pair of each conversation)",
    "media_strip_prefix": "prefix removed from the start of media paths, e.g. 'data/'",
}


class Reject(Exception):
    """A record (or one turn of it) the adapter cannot use; becomes a rejected draft."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Turn:
    """One message of a conversation, media already assigned to it."""

    role: str  # user | assistant | system
    text: str
    images: list[str] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)
    raw: Any = None  # the message as read


def strip_prefix(path: str, prefix: str) -> str:
    """>>> strip_prefix("data/mllm_demo_data/1.jpg", "data/")
    'mllm_demo_data/1.jpg'
    """
    return path[len(prefix) :] if prefix and path.startswith(prefix) else path


def clean_text(text: str) -> str | None:
    """The text without media tokens and surrounding whitespace; None when nothing is left.

    >>> clean_text("<image>\\nWhat is the man doing?")
    'What is the man doing?'
    """
    cleaned = _TOKEN_RE.sub(" ", text).strip()
    return cleaned or None


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def conversation_drafts(
    turns: Sequence[Turn],
    *,
    path: Path,
    index: int,
    source_id: str | None,
    raw_pair: Callable[[Turn, Turn, int], str],
    first_only: bool,
) -> list[dict[str, Any]]:
    """Drafts for the (user, assistant) pairs of one conversation; rejects for what is left over.

    `raw_pair(user, assistant, k)` gives the raw text of the k-th pair (the part of the record
    it comes from).
    """
    out: list[dict[str, Any]] = []
    images: list[str] = []
    videos: list[str] = []
    instruction: str | None = None
    pending: Turn | None = None
    pairs = 0

    def reject(reason: str, message: str, raw: Any) -> None:
        out.append(
            rejected(
                record_index=index,
                input_file=path,
                reason=reason,
                message=message,
                raw=raw_json(raw),
                task=TASK,
            )
        )

    for position, turn in enumerate(turns):
        if turn.role == "system":
            instruction = turn.text.strip() or None
            continue
        if turn.role == "user":
            if pending is not None:
                reject("malformed_record", f"turn {position - 1} has no answer", pending.raw)
            images = _unique([*images, *turn.images])
            videos = _unique([*videos, *turn.videos])
            pending = Turn(turn.role, turn.text, list(images), list(videos), turn.raw)
            continue
        if pending is None:
            reject("malformed_record", f"turn {position} answers no question", turn.raw)
            continue
        user, pending = pending, None
        if first_only and pairs:
            continue
        pairs += 1
        raw = raw_pair(user, turn, pairs - 1)
        try:
            out.append(_pair_draft(user, turn, path, index, source_id, instruction, raw))
        except Reject as problem:
            out.append(
                rejected(
                    record_index=index,
                    input_file=path,
                    reason=problem.reason,
                    message=f"pair {pairs - 1}: {problem.message}",
                    raw=raw,
                    task=TASK,
                )
            )
    if pending is not None and not (first_only and pairs):
        reject("malformed_record", "the last question has no answer", pending.raw)
    if not out:
        raise Reject("malformed_record", "the conversation has no question/answer pair")
    return out


def _pair_draft(
    user: Turn,
    answer: Turn,
    path: Path,
    index: int,
    source_id: str | None,
    instruction: str | None,
    raw: str,
) -> dict[str, Any]:
    if len(user.videos) > 1:
        raise Reject(
            "malformed_record",
            f"the question comes with {len(user.videos)} videos; a manifest side holds one video",
        )
    query = clean_text(user.text)
    if query is None and not user.images and not user.videos:
        raise Reject("empty_text", "the question is empty and has no image or video")
    target = clean_text(answer.text)
    if target is None:
        raise Reject("empty_text", "the answer is empty")
    return draft(
        record_index=index,
        input_file=path,
        task=TASK,
        raw=raw,
        source_id=source_id,
        instruction=instruction,
        query_text=query,
        query_images=user.images or None,
        query_video=user.videos[0] if user.videos else None,
        target_text=target,
    )


def media_list(record: Mapping[str, Any], keys: Sequence[str], prefix: str) -> list[str]:
    """Media paths under the first of `keys` present (a string or a list of strings)."""
    for key in keys:
        if key in record and record[key] is not None:
            value = record[key]
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise Reject("malformed_record", f"{key!r} must be a path or a list of paths")
            return [strip_prefix(v, prefix) for v in values]
    return []


def _assign(turns: list[Turn], media: list[str], token: str, kind: str) -> None:
    """Give each turn the media whose tokens it holds (in order); no tokens: the first user turn."""
    if not media:
        return
    counts = [t.text.count(token) for t in turns]
    if sum(counts) == 0:
        first_user = next((t for t in turns if t.role == "user"), None)
        if first_user is None:
            raise Reject("malformed_record", f"the record has {kind}s but no user turn")
        (first_user.images if kind == "image" else first_user.videos).extend(media)
        return
    if sum(counts) != len(media):
        raise Reject(
            "malformed_record",
            f"{sum(counts)} {token} tokens but {len(media)} {kind}(s) listed; they must match",
        )
    start = 0
    for turn, count in zip(turns, counts, strict=True):
        (turn.images if kind == "image" else turn.videos).extend(media[start : start + count])
        start += count


def _message_turn(message: Any, *, role_key: str, text_key: str) -> Turn:
    if not isinstance(message, dict):
        raise Reject(
            "malformed_record", f"a turn is a JSON {type(message).__name__}, not an object"
        )
    role = _ROLES.get(str(message.get(role_key, "")).lower())
    if role is None:
        raise Reject(
            "malformed_record",
            f"turn role {message.get(role_key)!r} is not one of {', '.join(sorted(_ROLES))}",
        )
    text = message.get(text_key)
    if not isinstance(text, str):
        raise Reject(
            "malformed_record", f"turn {text_key!r} must be a string, found {type(text).__name__}"
        )
    return Turn(role, text, raw=message)


def record_drafts(
    path: Path,
    index: int,
    record: Any,
    read_turns: Callable[[Any], tuple[list[Turn], str]],
    *,
    first_only: bool,
    where: str = "",
) -> list[dict[str, Any]]:
    """The drafts of one conversation record, or one rejected draft saying why it has none.

    `read_turns` returns the record's turns and the key that holds them (raising Reject);
    `where` prefixes rejection messages (e.g. "line 7: ").
    """
    try:
        turns, key = read_turns(record)
        source = record.get("id")

        def raw_pair(user: Turn, answer: Turn, k: int) -> str:
            rest = {name: value for name, value in record.items() if name != key}
            return raw_json({**rest, "pair": k, key: [user.raw, answer.raw]})

        return conversation_drafts(
            turns,
            path=path,
            index=index,
            source_id=None if source is None else str(source),
            raw_pair=raw_pair,
            first_only=first_only,
        )
    except Reject as problem:
        return [
            rejected(
                record_index=index,
                input_file=path,
                reason=problem.reason,
                message=f"{where}{problem.message}",
                raw=raw_json(record),
                task=TASK,
            )
        ]


def record_turns(record: Any, prefix: str) -> tuple[list[Turn], str]:
    """The turns of a LLaVA or LLaMA-Factory record, media assigned; and the turns' key."""
    if not isinstance(record, dict):
        raise Reject("malformed_record", f"a JSON {type(record).__name__}, not an object")
    if isinstance(record.get("conversations"), list):
        key, role_key, text_key = "conversations", "from", "value"
    elif isinstance(record.get("messages"), list):
        key, role_key, text_key = "messages", "role", "content"
    else:
        raise Reject(
            "malformed_record",
            f"needs a 'conversations' or 'messages' list; found keys {sorted(record)}",
        )
    turns = [_message_turn(m, role_key=role_key, text_key=text_key) for m in record[key]]
    _assign(turns, media_list(record, ("images", "image"), prefix), IMAGE_TOKEN, "image")
    _assign(turns, media_list(record, ("videos", "video"), prefix), VIDEO_TOKEN, "video")
    return turns, key


@register
class LlavaAdapter(Adapter):
    """LLaVA/ShareGPT4V conversations and LLaMA-Factory multimodal messages → instruction pairs."""

    name = "llava"
    version = "1"
    description = (
        "LLaVA/ShareGPT4V conversation JSON (and LLaMA-Factory's messages+images list) → one "
        "it2t instruction pair per question/answer turn"
    )
    patterns = ("*.json",)
    option_help: ClassVar[dict[str, str]] = OPTION_HELP

    @classmethod
    def sniff(cls, path: Path) -> bool:
        """A JSON list whose first item has a `conversations` or `messages` list."""
        head = first_json_item(path)
        if head is None or head.kind != "list" or not isinstance(head.first, dict):
            return False
        return isinstance(head.first.get("conversations"), list) or (
            isinstance(head.first.get("messages"), list)
        )

    def read(self, ctx: AdapterContext) -> Iterator[pa.Table]:
        check_options(type(self), ctx.options)
        first_only = option_choice(ctx.options, "turns", ("all", "first"), "all") == "first"
        prefix = ctx.options.get("media_strip_prefix", "")
        for path in input_files(ctx.input_path, (".json",)):
            # Streamed: LLaVA-665k and ShareGPT4V lists are a gigabyte or more of JSON.
            records = iter_json_list(
                path,
                expected="a JSON list of conversations ({id, image, conversations} or "
                "{messages, images})",
            )
            rows = (
                row
                for index, record in enumerate(records)
                for row in self._record(path, index, record, prefix, first_only)
            )
            yield from batched_drafts(rows, batch_rows=ctx.batch_rows)

    @staticmethod
    def _record(
        path: Path, index: int, record: Any, prefix: str, first_only: bool
    ) -> list[dict[str, Any]]:
        return record_drafts(
            path, index, record, lambda r: record_turns(r, prefix), first_only=first_only
        )
