"""MMEB-train (VLM2Vec) parquet: qry, qry_image_path, pos_text, pos_image_path, neg_text, neg_image_path.

Strings are empty when absent; `<|image_1|>` marks where a side's image goes. A record is one row;
its draft's modalities follow what is present (I+T->T for VQA, I->T for classification, T->I, I->I,
I+T->I, T->I+T ...). Paths stay as written (relative to the media root, MMEB's image_dir).

Instruction split (the trainer puts `instruction` in front of the query text, as UNITE and VLM2Vec
do, so nothing is lost; splitting keeps the query's own words measurable and deduplicable):
- the placeholder is removed; then, when the text's first line has a colon, the part before the
  first colon is the instruction and the rest the query text ("Represent the given image with the
  following question: What is in the image" -> instruction "Represent the given image with the
  following question", query "What is in the image");
- a query text without a colon on a side with an image is an instruction alone ("Represent the
  given image for classification" -> image-only query with that instruction);
- a text-only query without a colon stays query text.
`instruction_split=none` keeps the whole query text (placeholder removed) with no instruction.

Target and negative sides: with an image, their text is MMEB's target prompt ("Represent the given
image." or "...with related text information: <text>"): the prompt part is dropped (the manifest
has no target-instruction column; `raw` keeps it) and any text after the colon is the target text.
Without an image their text (a label, answer or caption) is kept whole.

`subset` (default: the parent folder or file name when it is an MMEB-train subset, e.g.
MMEB-train/ImageNet_1K/original-*.parquet) fills source_id and the task: classification
(ImageNet_1K, N24News, HatefulMemes, VOC2007, SUN397), vqa (OK-VQA, A-OKVQA, DocVQA,
InfographicsVQA, ChartQA, Visual7W), caption_retrieval (MSCOCO_i2t/t2i, VisualNews_i2t/t2i),
composed_retrieval (CIRR), retrieval (VisDial, NIGHTS, WebQA, MSCOCO grounding). `task` overrides.

Rejects: a text naming `<|image_N|>` on a side without an image path, or a side with neither text
nor image after the split (empty_text for the query/target).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import polars as pl
import pyarrow as pa

from curate.adapters import register
from curate.adapters.base import Adapter, AdapterContext
from curate.adapters.generic import (
    blank,
    check_options,
    input_files,
    iter_draft_tables,
    option_choice,
    parquet_columns,
    raw_expr,
    reject_exprs,
    require_columns,
)
from curate.errors import ConfigError, InputError
from curate.schema import TASK_KINDS

PLACEHOLDER = r"<\|image_\d+\|>"
#: "instruction: content" when the first line has a colon (instructions never hold one).
_INSTRUCTION = r"^([^:\n]{1,300}):"
_INSTRUCTION_PREFIX = r"^[^:\n]{1,300}:"

SUBSET_TASKS: dict[str, str] = {
    **dict.fromkeys(
        ("ImageNet_1K", "N24News", "HatefulMemes", "VOC2007", "SUN397"), "classification"
    ),
    **dict.fromkeys(
        ("OK-VQA", "A-OKVQA", "DocVQA", "InfographicsVQA", "ChartQA", "Visual7W"), "vqa"
    ),
    **dict.fromkeys(
        ("MSCOCO_i2t", "MSCOCO_t2i", "VisualNews_i2t", "VisualNews_t2i"), "caption_retrieval"
    ),
    "CIRR": "composed_retrieval",
    **dict.fromkeys(("VisDial", "NIGHTS", "WebQA", "MSCOCO"), "retrieval"),
}

REQUIRED = {
    "qry": "the query text with its instruction",
    "qry_image_path": "the query image ('' when none)",
    "pos_text": "the positive target text",
    "pos_image_path": "the positive target image ('' when none)",
}


def subset_of(path: Path, option: str | None) -> str | None:
    """The MMEB subset of a file: the option, else a known subset name in its folder or name."""
    if option:
        return option
    for name in (path.parent.name, path.stem):
        if name in SUBSET_TASKS:
            return name
    return None


def _side(
    text: pl.Expr, image: pl.Expr, *, keep_instruction: bool, split: bool = True
) -> dict[str, pl.Expr]:
    """Split one side's text into instruction/text and detect placeholder problems.

    `keep_instruction` (the query): the instruction becomes a column; otherwise (targets and
    negatives) the prompt that comes with an image is dropped. `split=False` keeps the whole text.
    """
    raw_text = text.cast(pl.String).fill_null("")
    image = pl.when(blank(image.cast(pl.String))).then(None).otherwise(image.cast(pl.String))
    has_image = image.is_not_null()
    has_placeholder = raw_text.str.contains(PLACEHOLDER)
    cleaned = raw_text.str.replace_all(PLACEHOLDER, "").str.strip_chars()
    cleaned = pl.when(cleaned.str.len_chars() == 0).then(None).otherwise(cleaned)
    prefix = cleaned.str.extract(_INSTRUCTION, 1).str.strip_chars()
    content = cleaned.str.replace(_INSTRUCTION_PREFIX, "").str.strip_chars()
    content = pl.when(content.str.len_chars() == 0).then(None).otherwise(content)
    if not split:
        instruction = pl.lit(None, pl.String)
        body = cleaned
    elif keep_instruction:
        instruction = (
            pl.when(prefix.is_not_null())
            .then(prefix)
            .when(has_image & cleaned.is_not_null())
            .then(cleaned)
            .otherwise(None)
        )
        body = (
            pl.when(prefix.is_not_null())
            .then(content)
            .when(has_image)
            .then(None)
            .otherwise(cleaned)
        )
    else:
        instruction = pl.lit(None, pl.String)
        body = (
            pl.when(~has_image)
            .then(cleaned)
            .when(prefix.is_not_null())
            .then(content)
            .otherwise(None)
        )
    return {
        "image": image,
        "instruction": instruction,
        "text": body,
        "orphan_placeholder": has_placeholder & ~has_image,
        "empty": body.is_null() & ~has_image,
    }


@register
class MmebAdapter(Adapter):
    name = "mmeb"
    version = "1"
    description = (
        "MMEB-train (VLM2Vec) parquet with qry, qry_image_path, pos_text, pos_image_path, "
        "neg_text, neg_image_path; instruction split from the query, hard negatives kept."
    )
    patterns = ("MMEB-train/*/*.parquet", "*.parquet")
    option_help: ClassVar[dict[str, str]] = {
        "subset": "MMEB subset name (e.g. MSCOCO_i2t): fills source_id and the task; default "
        "from the parent folder or file name",
        "task": f"task kind overriding the subset's, one of {', '.join(TASK_KINDS)}",
        "instruction_split": "colon (default: text before the first colon is the instruction) "
        "or none (whole query text, no instruction)",
    }

    @classmethod
    def sniff(cls, path: Path) -> bool:
        columns = parquet_columns(path)
        return columns is not None and set(REQUIRED) <= set(columns)

    def read(self, ctx: AdapterContext) -> Iterator[pa.Table]:
        check_options(type(self), ctx.options)
        split_mode = option_choice(ctx.options, "instruction_split", ("colon", "none"), "colon")
        task_option = ctx.options.get("task")
        if task_option is not None and task_option not in TASK_KINDS:
            raise ConfigError(
                f"option task={task_option!r} is invalid; choose one of: {', '.join(TASK_KINDS)}"
            )
        for path in input_files(ctx.input_path, (".parquet",)):
            subset = subset_of(path, ctx.options.get("subset"))
            task = task_option or SUBSET_TASKS.get(subset or "", "retrieval")
            yield from self._read_file(path, subset, task, split_mode, ctx.batch_rows)

    @staticmethod
    def _read_file(
        path: Path, subset: str | None, task: str, split_mode: str, batch_rows: int
    ) -> Iterator[pa.Table]:
        columns = parquet_columns(path)
        if columns is None:
            raise InputError(f"{path}: not a Parquet file (MMEB-train ships parquet)")
        require_columns(path, columns, REQUIRED)
        query = _side(
            pl.col("qry"),
            pl.col("qry_image_path"),
            keep_instruction=True,
            split=split_mode == "colon",
        )
        target = _side(pl.col("pos_text"), pl.col("pos_image_path"), keep_instruction=False)
        negative = _side(
            pl.col("neg_text") if "neg_text" in columns else pl.lit(None, pl.String),
            pl.col("neg_image_path") if "neg_image_path" in columns else pl.lit(None, pl.String),
            keep_instruction=False,
        )

        def one_item_list(expr: pl.Expr) -> pl.Expr:
            return pl.when(expr.is_not_null()).then(pl.concat_list([expr])).otherwise(None)

        reasons = [
            (query["orphan_placeholder"], "malformed_record", "qry names <|image_N|> but qry_image_path is empty"),
            (target["orphan_placeholder"], "malformed_record", "pos_text names <|image_N|> but pos_image_path is empty"),
            (negative["orphan_placeholder"], "malformed_record", "neg_text names <|image_N|> but neg_image_path is empty"),
            (query["empty"], "empty_text", "the query has neither text (besides its instruction) nor an image"),
            (target["empty"], "empty_text", "the positive has neither text nor an image"),
        ]  # fmt: skip
        yield from iter_draft_tables(
            pl.scan_parquet(path, glob=False),
            path,
            batch_rows,
            [
                raw_expr(columns).alias("raw"),
                pl.lit(task).alias("task"),
                pl.lit(subset, pl.String).alias("source_id"),
                query["instruction"].alias("instruction"),
                query["text"].alias("query_text"),
                one_item_list(query["image"]).alias("query_images"),
                target["text"].alias("target_text"),
                one_item_list(target["image"]).alias("target_images"),
                one_item_list(negative["text"]).alias("negative_texts"),
                one_item_list(negative["image"]).alias("negative_images"),
                *reject_exprs(reasons),
            ],
        )
