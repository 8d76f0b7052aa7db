"""Text pairs and triplets for text→text retrieval: MS MARCO TSV and NLI JSON Lines.

`msmarco`: headerless TSV, `query<TAB>positive<TAB>negative` (triplets) or `query<TAB>positive`
(pairs); each line is judged on its own, so a file may mix both. The negative becomes the hard
negative text. Text is passed through as read: MS MARCO's well-known mojibake (`donâ€™t`) is
repaired by the ingest core, not here. Read with the same vectorised line reader as CC3M.

`nli`: JSON Lines as used to train sentence embedders (SimCSE, sentence-transformers AllNLI):
`{anchor|premise|sentence1, positive|entailment|hypothesis|sentence2, [negative|contradiction],
[label]}`. When a record has a `label`, only entailment pairs are positives (label 0, "0",
"entailment" or "entails", as in SNLI/MultiNLI; `--option entailment_label=...` changes the set):
a neutral or contradiction pair is NOT a positive pair for contrastive training, so such records
are rejected (reason `not_a_pair`, the message names the label) rather than silently
turned into false positives. Records without a label are taken as positive pairs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
import pyarrow as pa

from curate.adapters import register
from curate.adapters.base import (
    Adapter,
    AdapterContext,
    batched_drafts,
    draft,
    json_lines,
    raw_json,
    rejected,
)
from curate.adapters.cc3m import (
    fix_bad_lines,
    head_lines,
    is_url,
    iter_line_blocks,
)
from curate.adapters.generic import check_options, frame_to_drafts, read_head
from curate.errors import InputError

_TASK = "text_retrieval"


def _numeric(text: str) -> bool:
    try:
        float(text.strip())
    except ValueError:
        return False
    return True


def _field(i: int) -> pl.Expr:
    return pl.col("fields").list.get(i, null_on_oob=True)


@register
class MsMarcoAdapter(Adapter):
    """MS MARCO-style TSV triples `query<TAB>positive<TAB>negative`, or pairs."""

    name = "msmarco"
    version = "1"
    description = (
        "MS MARCO-style headerless TSV: query<TAB>positive[<TAB>negative] → t2t text retrieval "
        "with the negative as hard negative"
    )
    patterns = ("*.tsv",)

    @classmethod
    def sniff(cls, path: Path) -> bool:
        """The first lines all have 2 or 3 tab fields (the same count), none a URL or a number.

        Numbers rule out id files (`qid<TAB>query`, `pid<TAB>passage`) and labelled TSVs; URLs
        rule out CC3M.
        """
        lines = head_lines(path)
        if not lines:
            return False
        counts = set()
        for line in lines:
            fields = line.split("\t")
            if len(fields) not in (2, 3):
                return False
            if any(is_url(f) or _numeric(f) or not f.strip() for f in fields):
                return False
            counts.add(len(fields))
        return len(counts) == 1

    def read(self, ctx: AdapterContext) -> Iterator[pa.Table]:
        check_options(type(self), ctx.options)
        path = Path(ctx.input_path)
        if not path.is_file():
            raise InputError(f"{path}: format msmarco reads one TSV file; this is not a file")
        n_fields = pl.col("fields").list.len()
        good = n_fields.is_in([2, 3])
        query, positive, negative = _field(0), _field(1), _field(2)
        no_query, no_positive = ~query.str.contains(r"\S"), ~positive.str.contains(r"\S")
        reason = (
            pl.when(~good)
            .then(pl.lit("malformed_record"))
            .when(no_query | no_positive)
            .then(pl.lit("empty_text"))
        )
        message = (
            pl.when(~good)
            .then(pl.lit(None, pl.String))  # filled in by fix_bad_lines
            .when(no_query)
            .then(pl.lit("the query is empty"))
            .when(no_positive)
            .then(pl.lit("the positive passage is empty"))
        )
        raw = (
            pl.when(n_fields == 3)
            .then(pl.struct(query=query, positive=positive, negative=negative).struct.json_encode())
            .otherwise(pl.struct(query=query, positive=positive).struct.json_encode())
        )
        has_negative = (n_fields == 3) & negative.str.contains(r"\S")

        def build(lines: pl.LazyFrame) -> pl.LazyFrame:
            return lines.with_columns(fields=pl.col("line").str.split("\t")).select(
                "record_index",
                pl.lit(str(path)).alias("input_file"),
                raw.alias("raw"),
                reason.alias("reject_reason"),
                message.alias("reject_message"),
                pl.lit(_TASK).alias("task"),
                query.alias("query_text"),
                positive.alias("target_text"),
                pl.when(has_negative).then(pl.concat_list(negative)).alias("negative_texts"),
                (~good).alias("_bad"),
                "line",
            )

        expected = "2 or 3 fields (query, positive[, negative])"
        for frame in iter_line_blocks(path, build, batch_rows=ctx.batch_rows):
            yield frame_to_drafts(fix_bad_lines(frame, expected))


#: Accepted key names per role, in order of preference.
ANCHOR_KEYS = ("anchor", "premise", "sentence1")
POSITIVE_KEYS = ("positive", "entailment", "hypothesis", "sentence2")
NEGATIVE_KEYS = ("negative", "contradiction")
DEFAULT_ENTAILMENT_LABELS = "0,entailment,entails"


def _first_key(record: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    return next((k for k in keys if k in record), None)


def first_jsonl_object(path: Path) -> dict[str, Any] | None:
    """The first non-blank line of a JSON Lines file, if it is a JSON object on its own."""
    head = read_head(path)
    if head is None or not head.lstrip().startswith("{"):
        return None
    for line in head.splitlines():
        if line.strip():
            try:
                value = json.loads(line)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


class _Reject(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _text(record: dict[str, Any], key: str, role: str) -> str:
    value = record[key]
    if not isinstance(value, str):
        raise _Reject(
            "malformed_record", f"{role} {key!r} must be a string, found {type(value).__name__}"
        )
    if not value.strip():
        raise _Reject("empty_text", f"the {role} {key!r} is empty")
    return value


def _negatives(record: dict[str, Any]) -> list[str] | None:
    key = _first_key(record, NEGATIVE_KEYS)
    if key is None or record[key] is None:
        return None
    value = record[key]
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) for v in values):
        raise _Reject("malformed_record", f"negative {key!r} must be a string or list of strings")
    kept = [v for v in values if v.strip()]
    return kept or None


@register
class NliAdapter(Adapter):
    """NLI JSON Lines (anchor/positive[/negative], or premise/hypothesis/label) → t2t pairs."""

    name = "nli"
    version = "1"
    description = (
        "NLI JSON Lines {anchor|premise|sentence1, positive|hypothesis|sentence2, "
        "[negative|contradiction], [label]} → t2t pairs (only entailment when labelled)"
    )
    patterns = ("*.jsonl",)
    option_help: ClassVar[dict[str, str]] = {
        "entailment_label": (
            "comma-separated label values that mean entailment "
            f"(default {DEFAULT_ENTAILMENT_LABELS!r}); other labels are rejected"
        ),
    }

    @classmethod
    def sniff(cls, path: Path) -> bool:
        """The first line is a JSON object with an anchor key and a positive key."""
        record = first_jsonl_object(path)
        return (
            record is not None
            and _first_key(record, ANCHOR_KEYS) is not None
            and _first_key(record, POSITIVE_KEYS) is not None
        )

    def read(self, ctx: AdapterContext) -> Iterator[pa.Table]:
        check_options(type(self), ctx.options)
        path = Path(ctx.input_path)
        if not path.is_file():
            raise InputError(f"{path}: format nli reads one JSON Lines file; this is not a file")
        labels = ctx.options.get("entailment_label", DEFAULT_ENTAILMENT_LABELS)
        entailment = {v.strip().lower() for v in labels.split(",") if v.strip()}
        yield from batched_drafts(self._rows(path, entailment), batch_rows=ctx.batch_rows)

    @staticmethod
    def _rows(path: Path, entailment: set[str]) -> Iterator[dict[str, Any]]:
        for index, record, *bad in json_lines(path, task=_TASK):
            if bad:
                yield bad[0]
                continue
            try:
                yield NliAdapter._draft(path, index, record, entailment)
            except _Reject as reject:
                yield rejected(
                    record_index=index,
                    input_file=path,
                    reason=reject.reason,
                    message=f"line {index + 1}: {reject.message}",
                    raw=raw_json(record),
                    task=_TASK,
                )

    @staticmethod
    def _draft(path: Path, index: int, record: Any, entailment: set[str]) -> dict[str, Any]:
        if not isinstance(record, dict):
            raise _Reject("malformed_record", f"a JSON {type(record).__name__}, not an object")
        anchor_key = _first_key(record, ANCHOR_KEYS)
        positive_key = _first_key(record, POSITIVE_KEYS)
        if anchor_key is None or positive_key is None:
            raise _Reject(
                "malformed_record",
                f"needs an anchor ({'|'.join(ANCHOR_KEYS)}) and a positive "
                f"({'|'.join(POSITIVE_KEYS)}); found keys {sorted(record)}",
            )
        if "label" in record and str(record["label"]).strip().lower() not in entailment:
            raise _Reject(
                "not_a_pair",
                f"label {record['label']!r} is not entailment ({', '.join(sorted(entailment))}): "
                "only entailment pairs are positive pairs",
            )
        return draft(
            record_index=index,
            input_file=path,
            task=_TASK,
            raw=raw_json(record),
            source_id=str(record["id"]) if record.get("id") is not None else None,
            query_text=_text(record, anchor_key, "anchor"),
            target_text=_text(record, positive_key, "positive"),
            negative_texts=_negatives(record),
        )
