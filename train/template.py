"""UNITE prompt building: what one item to embed is, and the text the model reads for it.

The prompt is Qwen2-VL's chat format with a system turn, a user turn holding the media
placeholders, the text and "Summary above {what} in one word:", and an assistant turn whose
content is `<|endoftext|>`: the embedding is that last token's final hidden state.

>>> item = EmbedItem(text="a dog", images=("/x.jpg",))
>>> build_prompt(item, TemplateConfig(), image_placeholder="<IMG>", video_placeholder="<VID>")
'<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\n<IMG>a dog\\nSummary above sentence and image in one word:<|im_end|>\\n<|im_start|>assistant\\n<|endoftext|>'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from train.config import TemplateConfig

#: Markers in a text that say where the media go (UNITE's training JSON uses them).
IMAGE_MARKER = "<|IMAGE|>"
VIDEO_MARKER = "<|VIDEO|>"


@dataclass(frozen=True)
class EmbedItem:
    """One side of a pair (or a candidate) to embed: text, images and/or a video clip."""

    text: str | None = None
    images: tuple[str, ...] = ()
    video: str | None = None
    clip_start: float | None = None
    clip_end: float | None = None
    instruction: str | None = None

    @property
    def modality(self) -> str:
        """The modality set, as in the manifest ("text", "image", "video+text", ...)."""
        from curate.schema import modality_of  # lazily: curate.schema loads pyarrow

        found = modality_of(
            has_text=bool(self.text), has_image=bool(self.images), has_video=bool(self.video)
        )
        return found or "text"

    @classmethod
    def query_of(cls, row: Mapping[str, Any]) -> EmbedItem:
        """The query side of a manifest row (its instruction included)."""
        return cls(
            text=row.get("query_text") or None,
            images=tuple(row.get("query_images") or ()),
            video=row.get("query_video") or None,
            clip_start=row.get("query_clip_start"),
            clip_end=row.get("query_clip_end"),
            instruction=row.get("instruction") or None,
        )

    @classmethod
    def target_of(cls, row: Mapping[str, Any]) -> EmbedItem:
        """The target side of a manifest row."""
        return cls(
            text=row.get("target_text") or None,
            images=tuple(row.get("target_images") or ()),
            video=row.get("target_video") or None,
            clip_start=row.get("target_clip_start"),
            clip_end=row.get("target_clip_end"),
        )

    @classmethod
    def negatives_of(cls, row: Mapping[str, Any]) -> list[EmbedItem]:
        """Hard negatives of a row: the k-th negative text with the k-th negative image."""
        texts = list(row.get("negative_texts") or ())
        images = list(row.get("negative_images") or ())
        out = []
        for k in range(max(len(texts), len(images))):
            text = texts[k] if k < len(texts) else None
            image = images[k] if k < len(images) else None
            if text or image:
                out.append(cls(text=text or None, images=(image,) if image else ()))
        return out


def summary_word(item: EmbedItem, template: TemplateConfig) -> str:
    """What the summary line names: "sentence", "image", "sentence and video", ..."""
    parts = []
    if item.text:
        parts.append(template.text_word)
    if item.images:
        parts.append(template.image_word)
    if item.video:
        parts.append(template.video_word)
    return template.joiner.join(parts or [template.text_word])


def user_content(
    item: EmbedItem,
    *,
    image_placeholder: str,
    video_placeholder: str,
    use_instruction: bool,
    instruction_separator: str = " ",
) -> str:
    """Media placeholders and text. Markers in the text place the media; without markers the
    media come first. The instruction (when used) goes in front of the text."""
    text = item.text or ""
    if use_instruction and item.instruction:
        text = f"{item.instruction}{instruction_separator}{text}" if text else item.instruction
    n_images = len(item.images)
    marked_images = text.count(IMAGE_MARKER)
    marked_video = text.count(VIDEO_MARKER)
    if marked_images != n_images and marked_images:
        raise ValueError(
            f"text has {marked_images} {IMAGE_MARKER} markers but the item has {n_images} images"
        )
    prefix = ""
    if marked_images:
        text = text.replace(IMAGE_MARKER, image_placeholder)
    else:
        prefix += image_placeholder * n_images
    if item.video:
        if marked_video:
            text = text.replace(VIDEO_MARKER, video_placeholder, 1).replace(VIDEO_MARKER, "")
        else:
            prefix += video_placeholder
    else:
        text = text.replace(VIDEO_MARKER, "")
    return prefix + text


def build_prompt(
    item: EmbedItem,
    template: TemplateConfig,
    *,
    image_placeholder: str,
    video_placeholder: str,
    use_instruction: bool = True,
    text: str | None = None,
) -> str:
    """The full chat-format prompt; `text` replaces the item's text (e.g. after truncation)."""
    if text is not None:
        item = EmbedItem(
            text=text,
            images=item.images,
            video=item.video,
            instruction=item.instruction,
        )
    content = user_content(
        item,
        image_placeholder=image_placeholder,
        video_placeholder=video_placeholder,
        use_instruction=use_instruction,
        instruction_separator=template.instruction_separator,
    )
    summary = template.summary.format(what=summary_word(item, template))
    return (
        f"<|im_start|>system\n{template.system}<|im_end|>\n"
        f"<|im_start|>user\n{content}\n{summary}<|im_end|>\n"
        "<|im_start|>assistant\n<|endoftext|>"
    )


def texts_for(
    items: Sequence[EmbedItem], *, use_instruction: bool, separator: str = " "
) -> list[str]:
    """Plain texts (instruction in front) for backbones without a chat template."""
    out = []
    for item in items:
        text = (item.text or "").replace(IMAGE_MARKER, "").replace(VIDEO_MARKER, "").strip()
        if use_instruction and item.instruction:
            text = f"{item.instruction}{separator}{text}" if text else item.instruction
        out.append(text)
    return out
