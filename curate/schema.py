"""The contract between pipeline steps: explicit, versioned pyarrow schemas.

A manifest has one row per query/target pair. Adapters produce *drafts* (the fields they read from a
native format); ingest turns drafts into manifest rows (normalised text, resolved and probed media,
stable ids) or ledger rows (a reason code and the raw record). Every step checks the schema of what
it reads and writes with `check_schema`.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

import pyarrow as pa

from curate.errors import SchemaError

MANIFEST_SCHEMA_VERSION: Final = 1

Modality = Literal["text", "image", "video", "image+text", "video+text"]
MODALITIES: Final[tuple[str, ...]] = get_args(Modality)

#: Short codes used in pair names such as "t2i" or "vt2v".
MODALITY_CODES: Final[dict[str, str]] = {
    "text": "t",
    "image": "i",
    "video": "v",
    "image+text": "it",
    "video+text": "vt",
}

TaskKind = Literal[
    "caption_retrieval",  # image <-> caption
    "video_retrieval",  # video or clip <-> caption
    "text_retrieval",  # query -> passage, NLI pairs
    "classification",  # input -> label text
    "vqa",  # image/video + question -> answer
    "composed_retrieval",  # media + modification text -> media (CIRR, WebVid-CoVR)
    "instruction",  # conversation turn pairs (LLaVA, ShareGPT4V)
    "retrieval",  # anything else that is a plain retrieval pair
]
TASK_KINDS: Final[tuple[str, ...]] = get_args(TaskKind)

RejectReason = Literal[
    "missing_media",  # the file the record names does not exist
    "corrupt_media",  # exists but cannot be read or decoded
    "unsupported_codec",  # decodable container, codec we cannot use
    "not_media",  # the file is not an image/video at all (e.g. text with a .mp4 name)
    "path_escape",  # resolves outside the media root
    "lfs_pointer",  # a Git-LFS pointer saved under a media name
    "probe_timeout",  # probing took longer than the per-file timeout
    "empty_text",  # a side that needs text has none
    "encoding_damage",  # text damage that cannot be repaired
    "malformed_record",  # the record does not have the fields the format requires
    "not_a_pair",  # a valid record that is not a positive pair (e.g. an NLI contradiction)
    "duplicate_id",  # same content as an earlier record of this manifest
]
REJECT_REASONS: Final[tuple[str, ...]] = get_args(RejectReason)


def modality_of(*, has_text: bool, has_image: bool, has_video: bool) -> str | None:
    """The modality of one side of a pair, or None when the side is empty.

    >>> modality_of(has_text=True, has_image=True, has_video=False)
    'image+text'
    """
    if has_video:
        return "video+text" if has_text else "video"
    if has_image:
        return "image+text" if has_text else "image"
    return "text" if has_text else None


def pair_code(query_modality: str, target_modality: str) -> str:
    """>>> pair_code("video+text", "video")
    'vt2v'
    """
    return f"{MODALITY_CODES[query_modality]}2{MODALITY_CODES[target_modality]}"


MEDIA_ITEM_TYPE: Final = pa.struct(
    [
        pa.field("role", pa.string()),  # query | target | negative
        pa.field("kind", pa.string()),  # image | video
        pa.field("path", pa.string()),  # absolute path, or the URL for remote media
        pa.field("remote", pa.bool_()),
        pa.field("width", pa.int32()),  # as displayed: rotation/EXIF orientation applied
        pa.field("height", pa.int32()),
        pa.field("duration", pa.float64()),  # seconds, videos only
        pa.field("fps", pa.float64()),
        pa.field("frame_count", pa.int64()),
        pa.field("codec", pa.string()),  # e.g. jpeg, png, h264, mpeg4
        pa.field("rotation", pa.int16()),  # degrees, from EXIF or the video's display matrix
        pa.field("bytes", pa.int64()),
        pa.field("content_hash", pa.string()),  # sha256 of the file's bytes
    ]
)

#: The columns that say what a pair is (texts, media references, clips), shared by drafts,
#: manifests and the readers of mixtures.
PAIR_CONTENT_COLUMNS: Final[tuple[str, ...]] = (
    "instruction",
    "query_text",
    "target_text",
    "negative_texts",
    "query_images",
    "target_images",
    "negative_images",
    "query_video",
    "query_clip_start",
    "query_clip_end",
    "target_video",
    "target_clip_start",
    "target_clip_end",
)

#: Columns an adapter fills. Everything else in a manifest row is derived by ingest.
DRAFT_SCHEMA: Final = pa.schema(
    [
        pa.field("record_index", pa.int64(), nullable=False),  # record number / line, 0-based
        pa.field("input_file", pa.string(), nullable=False),
        pa.field("raw", pa.string()),  # the record as read (JSON text), kept for the ledger
        pa.field("reject_reason", pa.string()),  # set when the adapter already rejects it
        pa.field("reject_message", pa.string()),
        pa.field("split", pa.string()),  # null: the --split given to ingest
        pa.field("task", pa.string(), nullable=False),
        pa.field("source_id", pa.string()),  # the record's own id in its corpus
        pa.field("instruction", pa.string()),
        pa.field("query_text", pa.string()),
        pa.field("target_text", pa.string()),
        pa.field("negative_texts", pa.list_(pa.string())),
        pa.field("query_images", pa.list_(pa.string())),  # paths as written in the record
        pa.field("target_images", pa.list_(pa.string())),
        pa.field("negative_images", pa.list_(pa.string())),
        pa.field("query_video", pa.string()),
        pa.field("query_clip_start", pa.float64()),
        pa.field("query_clip_end", pa.float64()),
        pa.field("target_video", pa.string()),
        pa.field("target_clip_start", pa.float64()),
        pa.field("target_clip_end", pa.float64()),
        # The duration of the pair's primary video (the target's, else the query's), in seconds,
        # as the corpus records it (WebVid, ActivityNet). Fills the manifest's `duration` where
        # that video is not probed (a URL, or --no-probe); a probed duration always wins.
        pa.field("annotated_duration", pa.float64()),
    ]
)

MANIFEST_SCHEMA: Final = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("task", pa.string(), nullable=False),
        pa.field("pair", pa.string(), nullable=False),
        pa.field("query_modality", pa.string(), nullable=False),
        pa.field("target_modality", pa.string(), nullable=False),
        pa.field("source_id", pa.string()),
        pa.field("instruction", pa.string()),
        pa.field("query_text", pa.string()),
        pa.field("target_text", pa.string()),
        pa.field("negative_texts", pa.list_(pa.string())),
        pa.field("query_images", pa.list_(pa.string())),  # absolute paths or URLs
        pa.field("target_images", pa.list_(pa.string())),
        pa.field("negative_images", pa.list_(pa.string())),
        pa.field("query_video", pa.string()),
        pa.field("query_clip_start", pa.float64()),
        pa.field("query_clip_end", pa.float64()),
        pa.field("target_video", pa.string()),
        pa.field("target_clip_start", pa.float64()),
        pa.field("target_clip_end", pa.float64()),
        # Every media item of the pair, probed.
        pa.field("media", pa.list_(MEDIA_ITEM_TYPE)),
        # The pair's primary media flattened for filtering: the target's first media item when
        # the target has media, else the query's. `duration` is the clip length for clips; for a
        # video that was not probed it comes from the corpus's own annotation when it has one
        # (the `media` item's duration stays null: only probed values are kept there).
        pa.field("media_kind", pa.string()),
        pa.field("media_remote", pa.bool_()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("duration", pa.float64()),
        pa.field("fps", pa.float64()),
        pa.field("frame_count", pa.int64()),
        pa.field("codec", pa.string()),
        pa.field("rotation", pa.int16()),
        pa.field("media_bytes", pa.int64()),
        pa.field("media_hash", pa.string()),
        # Text statistics (after repair and normalisation).
        pa.field("query_chars", pa.int32()),
        pa.field("query_words", pa.int32()),
        pa.field("target_chars", pa.int32()),
        pa.field("target_words", pa.int32()),
        pa.field("text_repaired", pa.bool_(), nullable=False),
        # Provenance.
        pa.field("input_file", pa.string(), nullable=False),
        pa.field("record_index", pa.int64(), nullable=False),
        pa.field("adapter", pa.string(), nullable=False),
        pa.field("adapter_version", pa.string(), nullable=False),
    ],
    metadata={"curate.schema": "manifest", "curate.schema_version": str(MANIFEST_SCHEMA_VERSION)},
)

LEDGER_SCHEMA: Final = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("input_file", pa.string(), nullable=False),
        pa.field("record_index", pa.int64(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
        pa.field("raw", pa.string()),
        pa.field("adapter", pa.string(), nullable=False),
        pa.field("adapter_version", pa.string(), nullable=False),
    ],
    metadata={"curate.schema": "ledger", "curate.schema_version": str(MANIFEST_SCHEMA_VERSION)},
)


def check_schema(actual: pa.Schema, expected: pa.Schema, *, where: str) -> None:
    """Raise SchemaError unless `actual` has exactly the fields (names and types) of `expected`."""
    want = [(f.name, f.type) for f in expected]
    got = [(f.name, f.type) for f in actual]
    if want == got:
        return
    missing = [n for n, _ in want if n not in dict(got)]
    extra = [n for n, _ in got if n not in dict(want)]
    wrong = [
        f"{n}: expected {t}, found {dict(got)[n]}"
        for n, t in want
        if n in dict(got) and dict(got)[n] != t
    ]
    parts = []
    if missing:
        parts.append(f"missing columns {missing}")
    if extra:
        parts.append(f"unexpected columns {extra}")
    if wrong:
        parts.append("wrong types: " + "; ".join(wrong))
    if not parts:
        parts.append("columns are in a different order")
    kind = (expected.metadata or {}).get(b"curate.schema", b"expected").decode()
    raise SchemaError(
        f"{where} does not match the {kind} schema: {', '.join(parts)}. "
        "Re-create it with this version of curate."
    )


def empty_table(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


#: One row per (ablation cell, task, metric): the results store `curate ablate` appends to
#: (`<workspace>/results/results.parquet`) and the analysis module reads.
RESULTS_SCHEMA: Final = pa.schema(
    [
        pa.field("ablation", pa.string(), nullable=False),  # the grid's name
        pa.field("run_id", pa.string(), nullable=False),  # hash of mixture version, config, seed
        pa.field("mixture", pa.string(), nullable=False),
        pa.field("mixture_version", pa.string(), nullable=False),
        # The mixture's shares of rows, e.g. {"t2i": 0.4, ...} and {"coco": 0.2, ...}.
        pa.field("pair_shares", pa.map_(pa.string(), pa.float64())),
        pa.field("source_shares", pa.map_(pa.string(), pa.float64())),
        pa.field("config", pa.string(), nullable=False),  # config name, e.g. tiny-cpu
        pa.field("config_hash", pa.string(), nullable=False),
        pa.field("backbone", pa.string(), nullable=False),
        pa.field("loss", pa.string(), nullable=False),  # mamcl | infonce | symmetric_infonce
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("suite", pa.string(), nullable=False),
        pa.field("task", pa.string(), nullable=False),  # e.g. msrvtt_t2v
        pa.field("task_group", pa.string(), nullable=False),  # e.g. t2v, i2t, composed
        pa.field("metric", pa.string(), nullable=False),  # R@1, R@5, MedR, MRR, nDCG@10, P@1
        pa.field("value", pa.float64(), nullable=False),
        pa.field("created", pa.string(), nullable=False),  # ISO-8601 UTC
    ],
    metadata={"curate.schema": "results", "curate.schema_version": "1"},
)
