"""The UNITE prompt: chat turns, media placeholders, summary words, instructions."""

from __future__ import annotations

import pytest

from train.config import TemplateConfig
from train.template import EmbedItem, build_prompt, summary_word, user_content

T = TemplateConfig()
IMG, VID = "<I>", "<V>"


def prompt(item, **kw):
    return build_prompt(item, T, image_placeholder=IMG, video_placeholder=VID, **kw)


def test_prompt_has_system_user_summary_and_endoftext_last():
    text = prompt(EmbedItem(text="a dog runs"))
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert "<|im_start|>user\na dog runs\nSummary above sentence in one word:<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n<|endoftext|>")


@pytest.mark.parametrize(
    ("item", "word"),
    [
        (EmbedItem(text="x"), "sentence"),
        (EmbedItem(images=("a.jpg",)), "image"),
        (EmbedItem(video="v.mp4"), "video"),
        (EmbedItem(text="x", images=("a.jpg",)), "sentence and image"),
        (EmbedItem(text="x", video="v.mp4"), "sentence and video"),
    ],
)
def test_summary_names_what_is_present(item, word):
    assert summary_word(item, T) == word
    assert f"Summary above {word} in one word:" in prompt(item)


def test_media_go_first_without_markers_and_where_marked_otherwise():
    plain = user_content(
        EmbedItem(text="two cats", images=("a.jpg", "b.jpg")),
        image_placeholder=IMG,
        video_placeholder=VID,
        use_instruction=False,
    )
    assert plain == "<I><I>two cats"
    marked = user_content(
        EmbedItem(text="before <|IMAGE|> after", images=("a.jpg",)),
        image_placeholder=IMG,
        video_placeholder=VID,
        use_instruction=False,
    )
    assert marked == "before <I> after"
    alone = user_content(
        EmbedItem(video="v.mp4"),
        image_placeholder=IMG,
        video_placeholder=VID,
        use_instruction=False,
    )
    assert alone == "<V>"


def test_instruction_goes_in_front_of_the_query_text_only_when_asked():
    item = EmbedItem(text="a red car", instruction="Find an image that matches the caption:")
    assert "Find an image that matches the caption: a red car\nSummary" in prompt(item)
    assert "user\na red car\nSummary" in prompt(item, use_instruction=False)


def test_items_from_manifest_rows():
    row = {
        "instruction": "Retrieve:",
        "query_text": "q",
        "query_images": None,
        "query_video": "/v.mp4",
        "query_clip_start": 1.5,
        "query_clip_end": 3.0,
        "target_text": None,
        "target_images": ["/t.jpg"],
        "target_video": None,
        "negative_texts": ["n1", "n2"],
        "negative_images": [None, "/n2.jpg"],
    }
    q = EmbedItem.query_of(row)
    assert (q.text, q.video, q.clip_start, q.clip_end, q.instruction) == (
        "q",
        "/v.mp4",
        1.5,
        3.0,
        "Retrieve:",
    )
    assert q.modality == "video+text"
    t = EmbedItem.target_of(row)
    assert t.images == ("/t.jpg",) and t.instruction is None and t.modality == "image"
    negatives = EmbedItem.negatives_of(row)
    assert [n.modality for n in negatives] == ["text", "image+text"]
