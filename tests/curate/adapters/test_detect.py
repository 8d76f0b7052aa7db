"""Format detection of folders, and the warning for a --format that does not fit the input."""

from __future__ import annotations

from pathlib import Path

import pytest

import curate.adapters as adapters_module
from curate.adapters import all_adapters, detect_format, folder_data_files, format_mismatch
from curate.errors import InputError

CC3M = "annotations/cc3m/Validation_GCC-1.1.0-Validation.first2000.tsv"
SUGARCREPE = ("annotations/sugar_crepe/replace_obj.json", "annotations/sugar_crepe/swap_att.json")
WEBVID_CSV = "annotations/webvid/test_webvid.csv"
KINETICS_LABELS = "annotations/kinetics/kinetics_400_labels.csv"  # no format claims it


def link(folder: Path, name: str, target: Path) -> Path:
    """A symlink to a real shared file (the data is never copied into tests)."""
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)
    return path


@pytest.mark.parametrize(
    ("relative", "fmt"),
    [("annotations/sugar_crepe", "sugarcrepe"), ("annotations/webvid", "webvid")],
)
def test_folder_of_one_format(shared_data: Path, relative: str, fmt: str) -> None:
    folder = shared_data / relative
    assert not any(cls.sniff(folder) for cls in all_adapters().values())  # no folder-level claim
    assert detect_format(folder) == fmt


def test_a_folder_an_adapter_claims_itself_keeps_that_format(shared_data: Path) -> None:
    # laion claims a folder of shards (its first .parquet), even beside an unclaimed .txt.
    assert detect_format(shared_data / "annotations/image_text_pairs") == "laion"


def test_hidden_docs_and_media_are_not_sniffed(shared_data: Path, tmp_path: Path) -> None:
    for index, relative in enumerate(SUGARCREPE):
        link(tmp_path, f"nested/deeper/part{index}.json", shared_data / relative)
    # Each of these would be detected as something else (or as nothing) if it were sniffed.
    link(tmp_path, ".cache/captions.tsv", shared_data / CC3M)
    link(tmp_path, ".captions.tsv", shared_data / CC3M)
    link(tmp_path, "PROVENANCE.md", shared_data / "PROVENANCE.md")
    link(tmp_path, "README.txt", shared_data / CC3M)
    link(tmp_path, "clip.mp4", shared_data / "videos/mmaction2/test.mp4")
    (tmp_path / "empty.csv").write_bytes(b"")

    files, complete = folder_data_files(tmp_path)
    assert complete
    assert [f.relative_to(tmp_path).as_posix() for f in files] == [
        "nested/deeper/part0.json",
        "nested/deeper/part1.json",
    ]
    assert detect_format(tmp_path) == "sugarcrepe"


def test_files_of_different_formats_are_named(shared_data: Path, tmp_path: Path) -> None:
    link(tmp_path, "captions.tsv", shared_data / CC3M)
    link(tmp_path, "sub/negatives.json", shared_data / SUGARCREPE[0])
    with pytest.raises(InputError) as error:
        detect_format(tmp_path)
    message = str(error.value)
    assert "different formats" in message
    assert "cc3m: captions.tsv" in message
    assert "sugarcrepe: sub/negatives.json" in message
    assert "--format" in message
    assert "split the folder" in message


def test_a_disagreement_shows_a_few_examples_not_all(shared_data: Path, tmp_path: Path) -> None:
    for index in range(6):
        link(tmp_path, f"sc{index}.json", shared_data / SUGARCREPE[index % 2])
    link(tmp_path, "webvid.csv", shared_data / WEBVID_CSV)
    with pytest.raises(InputError) as error:
        detect_format(tmp_path)
    message = str(error.value)
    assert "sugarcrepe: sc0.json, sc1.json and 4 more" in message
    assert "sc5.json" not in message
    assert "webvid: webvid.csv" in message


def test_unclaimed_files_do_not_disagree(shared_data: Path, tmp_path: Path) -> None:
    link(tmp_path, "a.csv", shared_data / WEBVID_CSV)
    link(tmp_path, "labels.csv", shared_data / KINETICS_LABELS)
    assert detect_format(tmp_path) == "webvid"


def test_folder_of_unrecognised_files_gets_a_short_message(
    shared_data: Path, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("shopping list\neggs\nmilk\n")
    with pytest.raises(InputError) as error:
        detect_format(tmp_path)
    message = str(error.value)
    assert "cannot tell its format" in message
    assert "1 data file;" in message
    assert "curate formats" in message
    # The list of every format is long; the message points to `curate formats` instead.
    assert "webdataset" not in message and "activitynet" not in message
    assert len(message) < len(str(tmp_path)) + 150


def test_unrecognised_file_gets_the_same_short_message(shared_data: Path) -> None:
    with pytest.raises(InputError) as error:
        detect_format(shared_data / KINETICS_LABELS)
    assert "cannot tell its format" in str(error.value)
    assert "curate formats" in str(error.value)
    assert "webdataset" not in str(error.value)


def test_folder_without_data_files(shared_data: Path, tmp_path: Path) -> None:
    link(tmp_path, "README.md", shared_data / "PROVENANCE.md")
    with pytest.raises(InputError, match="cannot tell its format, the folder holds no data file"):
        detect_format(tmp_path)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file or folder"):
        detect_format(tmp_path / "missing")


def test_a_one_file_format_is_not_given_to_a_folder(shared_data: Path) -> None:
    # msmarco reads one TSV file; detecting it for the folder would fail later in ingest.
    with pytest.raises(InputError) as error:
        detect_format(shared_data / "annotations/msmarco_splade_toy")
    assert "look like msmarco (triplets_raw.tsv)" in str(error.value)
    assert "reads one file" in str(error.value)


def test_sniffing_is_bounded(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adapters_module, "MAX_SNIFFED_FILES", 3)
    for index in range(3):
        link(tmp_path, f"a{index}.json", shared_data / SUGARCREPE[0])
    link(tmp_path, "z.tsv", shared_data / CC3M)  # beyond the sample, so never sniffed
    files, complete = folder_data_files(tmp_path)
    assert [f.name for f in files] == ["a0.json", "a1.json", "a2.json"]
    assert not complete
    assert detect_format(tmp_path) == "sugarcrepe"

    monkeypatch.setattr(adapters_module, "MAX_SNIFFED_FILES", 32)
    monkeypatch.setattr(adapters_module, "MAX_ENTRIES_PER_FOLDER", 2)
    files, complete = folder_data_files(tmp_path)
    assert len(files) <= 2
    assert not complete


def test_a_big_media_folder_does_not_hide_the_annotations_beside_it(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adapters_module, "MAX_ENTRIES_PER_FOLDER", 50)
    clips = tmp_path / "clips"  # sorted before meta/, and bigger than one folder's budget
    clips.mkdir()
    for index in range(120):
        (clips / f"{index:05d}.mp4").write_bytes(b"x")
    link(tmp_path / "meta", "test_webvid.csv", shared_data / "annotations/webvid/test_webvid.csv")
    assert detect_format(tmp_path) == "webvid"
    # With no data file among the entries looked at, the message says it only looked at some.
    (tmp_path / "meta" / "test_webvid.csv").unlink()
    with pytest.raises(InputError, match="among the entries looked at, it has no data file"):
        detect_format(tmp_path)


# --------------------------------------------------------------------------------------------
# format_mismatch


def test_mismatch_names_the_detected_format(shared_data: Path) -> None:
    warning = format_mismatch(shared_data / CC3M, "msmarco")
    assert warning is not None
    assert "\n" not in warning
    assert "looks like cc3m, not msmarco" in warning
    assert "check --format" in warning


def test_no_mismatch_when_the_chosen_format_fits(shared_data: Path) -> None:
    assert format_mismatch(shared_data / CC3M, "cc3m") is None


def test_a_weaker_hint_when_nothing_else_is_detected(shared_data: Path) -> None:
    # No format claims an MS MARCO queries file (qid<TAB>query): forcing msmarco on it would
    # read the ids as queries.
    queries = shared_data / "annotations/msmarco_splade_toy/dev_queries_raw.tsv"
    warning = format_mismatch(queries, "msmarco")
    assert warning is not None and "does not look like msmarco at its start" in warning
    assert (
        format_mismatch(shared_data / "annotations/msmarco_splade_toy/triplets_raw.tsv", "msmarco")
        is None
    )


def test_generic_is_never_a_mismatch(shared_data: Path) -> None:
    # Chosen on purpose to map columns by hand, even on a file another format claims.
    assert format_mismatch(shared_data / CC3M, "generic") is None


def test_mismatch_on_folders(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "annotations/sugar_crepe"
    warning = format_mismatch(folder, "coco")
    assert warning is not None
    assert "look like sugarcrepe (e.g. replace_obj.json), not coco" in warning
    assert format_mismatch(folder, "sugarcrepe") is None
    # Files of several formats: no single other format, so no claim of a mismatch.
    link(tmp_path, "captions.tsv", shared_data / CC3M)
    link(tmp_path, "negatives.json", shared_data / SUGARCREPE[0])
    assert format_mismatch(tmp_path, "coco") is None
    assert format_mismatch(tmp_path, "cc3m") is None  # one file fits the chosen format


def test_mismatch_of_an_unknown_format_is_an_input_error(shared_data: Path) -> None:
    with pytest.raises(InputError, match="unknown format"):
        format_mismatch(shared_data / CC3M, "no-such-format")
