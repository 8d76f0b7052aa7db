"""Decontamination finds planted train↔eval overlaps on real images, and nothing else."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

from curate.errors import ConfigError, NotFoundError
from curate.signals.decontaminate import DecontaminationOptions, decontaminate
from curate.signals.store import read_sidecar

from .conftest import pair, write_manifest

CAPTION = "A man riding a wave on top of a surfboard."


@pytest.fixture()
def planted(workspace, tmp_path, coco_images, shared_data):
    """An eval set of 4 photos + 1 video; a training set with 3 planted overlaps among 8 rows."""
    evals = [
        pair("eval-0", query_text=CAPTION, target_image=coco_images[0]),
        pair("eval-1", query_text="Two dogs play in the snow.", target_image=coco_images[1]),
        pair("eval-2", query_text="a cat", target_image=coco_images[2]),
        pair("eval-3", query_text="A plate of food with broccoli.", target_image=coco_images[3]),
        pair(
            "eval-4",
            query_text="People arm wrestling at a table.",
            target_video=shared_data / "videos/mmaction2/demo.mp4",
            duration=10.0,
        ),
    ]
    exact = tmp_path / "renamed_copy.jpg"  # the same file under another name
    shutil.copy(coco_images[1], exact)
    resized = tmp_path / "smaller.jpg"
    image = Image.open(coco_images[3]).convert("RGB")
    image.resize((image.width * 2 // 3, image.height * 2 // 3)).save(resized, quality=75)
    train = [
        pair("t-exact-file", query_text="A photo of animals outside.", target_image=exact),
        pair("t-resized", query_text="Some vegetables on a dish.", target_image=resized),
        # Same caption, other case and punctuation, other image.
        pair(
            "t-caption",
            query_text="a man riding a wave on top of a surfboard",
            target_image=coco_images[5],
        ),
        # A short caption shared with eval-2 proves nothing.
        pair("t-short", query_text="A cat.", target_image=coco_images[6]),
        pair("t-clean-0", query_text="A red bus on a street.", target_image=coco_images[7]),
        pair("t-clean-1", query_text="A kitchen with a stove.", target_image=coco_images[8]),
        pair(
            "t-video",
            query_text="Kids running in a park.",
            target_video=shared_data / "videos/mmaction2/test.mp4",
            duration=10.0,
        ),
        pair("t-text", query_text="who wrote hamlet", target_text="William Shakespeare wrote it"),
    ]
    write_manifest(workspace, "coco-eval", evals)
    return write_manifest(workspace, "train", train)


def test_planted_overlaps_are_found_and_nothing_else(workspace, planted):
    result = decontaminate(workspace, "train", ["coco-eval"])
    flags = {r["id"]: r for r in read_sidecar(planted, "contamination").to_pylist()}
    flagged = {
        k: (v["contamination_reason"], v["contamination_match"])
        for k, v in flags.items()
        if v["contaminated"]
    }
    assert flagged == {
        "t-exact-file": ("media_hash", "eval-1"),
        "t-resized": ("phash", "eval-3"),
        "t-caption": ("text", "eval-0"),
    }
    assert flags["t-resized"]["contamination_distance"] <= 4
    assert all(flags[k]["contamination_eval"] == "coco-eval" for k in flagged)
    assert result.contaminated == 3 and result.rows == 8
    assert result.by_reason == {"media_hash": 1, "phash": 1, "text": 1}
    # The pHash sidecars of both manifests were computed on the way, and a rerun does nothing.
    assert read_sidecar(planted, "phash").num_rows == 8
    assert decontaminate(workspace, "train", ["coco-eval"]).up_to_date


def test_options_switch_criteria_off(workspace, planted):
    options = DecontaminationOptions(phash_bits=None, min_text_words=None)
    result = decontaminate(workspace, "train", ["coco-eval"], options)
    assert result.by_reason == {"media_hash": 1, "phash": 0, "text": 0}
    # With a 2-word minimum the short caption "a cat" counts too.
    loose = decontaminate(
        workspace, "train", ["coco-eval"], DecontaminationOptions(min_text_words=2)
    )
    flags = {r["id"]: r for r in read_sidecar(planted, "contamination").to_pylist()}
    assert loose.contaminated == 4 and flags["t-short"]["contamination_match"] == "eval-2"


def test_user_mistakes(workspace, planted):
    with pytest.raises(NotFoundError, match="no manifest named 'nope'"):
        decontaminate(workspace, "train", ["nope"])
    with pytest.raises(ConfigError, match="both the training and an evaluation"):
        decontaminate(workspace, "train", ["train"])
    with pytest.raises(ConfigError, match="phash_bits"):
        DecontaminationOptions(phash_bits=64)
