"""The ingest core: every record accounted for, stable ids, safe and resumable writes."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import tests.curate.draft_adapter  # noqa: F401  (registers the test-drafts format)
from curate.errors import InputError, LockedError
from curate.ingest import IngestOptions, ingest
from curate.schema import LEDGER_SCHEMA, MANIFEST_SCHEMA
from curate.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]


def write_drafts(path: Path, rows: list[dict | str]) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def options(name: str = "m", **kw) -> IngestOptions:
    return IngestOptions(name=name, format="test-drafts", **kw)


@pytest.fixture()
def media(tmp_path: Path, shared_data: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    shutil.copy(shared_data / "images/sentence_transformers_image_search/cat.jpg", root / "cat.jpg")
    shutil.copy(shared_data / "images/llama_factory/mllm_demo_data/1.jpg", root / "one.jpg")
    shutil.copy(shared_data / "videos/mmaction2/test.mp4", root / "clip.mp4")
    return root


def assert_nothing_lost(result) -> None:
    stats = result.stats
    rows = result.manifest.read_rows()
    ledger = result.manifest.read_ledger()
    assert stats["accepted"] == rows.num_rows
    assert stats["rejected"] == ledger.num_rows
    assert stats["read"] == stats["accepted"] + stats["rejected"]
    assert sum(stats["rejected_by_reason"].values()) == stats["rejected"]
    # Each record shows up (a conversation may yield several pairs, each counted as read).
    indices = rows.column("record_index").to_pylist() + ledger.column("record_index").to_pylist()
    assert len(indices) == stats["read"]
    assert sorted(set(indices)) == list(range(len(set(indices))))


def test_every_record_becomes_a_row_or_a_ledger_entry_with_its_reason(
    tmp_path: Path, media: Path, workspace: Workspace
):
    outside = tmp_path / "outside.jpg"
    shutil.copy(media / "cat.jpg", outside)
    (media / "link.jpg").symlink_to(outside)
    source = write_drafts(
        tmp_path / "drafts.jsonl",
        [
            {"task": "caption_retrieval", "query_text": "A  cat\u00a0on a sofa ", "target_images": ["cat.jpg"]},
            {"task": "caption_retrieval", "query_text": "donâ€™t move", "target_images": ["one.jpg"]},
            {"task": "caption_retrieval", "query_text": "   ", "target_images": ["cat.jpg"]},
            {"task": "caption_retrieval", "query_text": "escape", "target_images": ["../outside.jpg"]},
            {"task": "caption_retrieval", "query_text": "symlink", "target_images": ["link.jpg"]},
            {"task": "caption_retrieval", "query_text": "A cat on a sofa", "target_images": ["cat.jpg"]},
            {"task": "caption_retrieval", "query_text": "gone", "target_images": ["missing.jpg"]},
            "{not json",
            {"task": "text_retrieval", "query_text": "q", "target_text": "broken \ufffd text"},
            {"task": "text_retrieval", "query_text": "q", "target_text": "p", "negative_texts": ["n", " "]},
            {"task": "video_retrieval", "query_text": "clip", "target_video": "clip.mp4",
             "target_clip_start": 2.0, "target_clip_end": 5.5},
            {"task": "retrieval", "query_text": "nothing to retrieve"},
            {"task": "caption_retrieval", "query_text": "remote", "target_images": ["https://example.org/a.jpg"]},
        ],
    )  # fmt: skip
    result = ingest(source, options(media_root=media, probe=False), workspace)
    assert_nothing_lost(result)
    stats = result.stats
    assert stats["read"] == 13
    assert stats["rejected_by_reason"] == {
        "duplicate_id": 1,
        "empty_text": 1,
        "encoding_damage": 1,
        "malformed_record": 2,
        "missing_media": 1,
        "path_escape": 2,
    }
    assert stats["text_repaired"] == 1
    assert stats["remote_media"] == 1
    assert stats["by_pair"] == {"t2i": 3, "t2t": 1, "t2v": 1}

    rows = {r["record_index"]: r for r in result.manifest.read_rows().to_pylist()}
    assert rows[0]["query_text"] == "A cat on a sofa"
    assert rows[0]["target_images"] == [str(media / "cat.jpg")]
    assert rows[0]["query_words"] == 5
    assert rows[1]["query_text"] == "don’t move" and rows[1]["text_repaired"] is True
    assert rows[9]["negative_texts"] == ["n"]
    assert rows[10]["pair"] == "t2v" and rows[10]["duration"] == pytest.approx(3.5)
    assert rows[12]["media_remote"] is True and rows[12]["target_images"] == [
        "https://example.org/a.jpg"
    ]
    ledger = {r["record_index"]: r for r in result.manifest.read_ledger().to_pylist()}
    assert ledger[5]["reason"] == "duplicate_id" and rows[0]["id"] in ledger[5]["message"]
    assert ledger[7]["raw"] == "{not json"
    assert "outside the media root" in ledger[3]["message"]
    assert "media_strip_prefix" in ledger[3]["message"]  # '../outside.jpg'
    assert "a symlink points out of it" in ledger[4]["message"]  # 'link.jpg'
    assert pq.read_schema(result.manifest.row_files[0]).equals(
        MANIFEST_SCHEMA, check_metadata=False
    )
    assert pq.read_schema(result.manifest.ledger_files[0]).equals(
        LEDGER_SCHEMA, check_metadata=False
    )


def test_allow_outside_media_root_accepts_escaping_paths(tmp_path: Path, media: Path, workspace):
    shutil.copy(media / "cat.jpg", tmp_path / "outside.jpg")
    source = write_drafts(
        tmp_path / "d.jsonl",
        [{"task": "caption_retrieval", "query_text": "x", "target_images": ["../outside.jpg"]}],
    )
    result = ingest(
        source, options(media_root=media, probe=False, allow_outside_media_root=True), workspace
    )
    assert result.stats["accepted"] == 1


def test_ids_are_stable_across_workspaces_and_media_locations(tmp_path: Path, media: Path):
    rows = [
        {"task": "caption_retrieval", "query_text": f"cap {i}", "target_images": ["cat.jpg"]}
        for i in range(5)
    ]
    first = ingest(
        write_drafts(tmp_path / "a.jsonl", rows),
        options(media_root=media, probe=False),
        Workspace.resolve(tmp_path / "ws1"),
    )
    moved = tmp_path / "moved"
    shutil.copytree(media, moved)
    second = ingest(
        write_drafts(tmp_path / "b.jsonl", rows),
        options(media_root=moved, probe=False),
        Workspace.resolve(tmp_path / "ws2"),
    )
    ids = first.manifest.read_rows().column("id").to_pylist()
    assert ids == second.manifest.read_rows().column("id").to_pylist()
    assert len(set(ids)) == 5


def test_reingest_is_a_noop_and_changed_input_needs_replace(tmp_path: Path, media: Path, workspace):
    source = write_drafts(
        tmp_path / "d.jsonl", [{"task": "text_retrieval", "query_text": "q", "target_text": "p"}]
    )
    first = ingest(source, options(media_root=media), workspace)
    before = first.manifest.row_files[0].read_bytes()
    again = ingest(source, options(media_root=media), workspace)
    assert again.up_to_date and again.manifest.row_files[0].read_bytes() == before
    # More probe workers change the speed, not the manifest: still up to date.
    assert ingest(source, options(media_root=media, probe_workers=1), workspace).up_to_date
    # --replace rebuilds even the same input (media may have changed, which no fingerprint sees).
    rebuilt = ingest(source, options(media_root=media, replace=True), workspace)
    assert not rebuilt.up_to_date and rebuilt.manifest.row_files[0].read_bytes() == before
    # The error says what differs from the manifest's build.
    with pytest.raises(InputError, match=r"\(split was 'train', now 'val'\); pass --replace"):
        ingest(source, options(media_root=media, split="val"), workspace)
    write_drafts(source, [{"task": "text_retrieval", "query_text": "q2", "target_text": "p"}])
    with pytest.raises(InputError, match=r"\(the input file\(s\) changed on disk since.*--replace"):
        ingest(source, options(media_root=media), workspace)
    replaced = ingest(source, options(media_root=media, replace=True), workspace)
    assert replaced.manifest.read_rows().column("query_text").to_pylist() == ["q2"]

    # A manifest built before the fingerprint scheme changed is reported as such.
    info_path = replaced.manifest.path / "ingest.json"
    info = json.loads(info_path.read_text())
    info.pop("fingerprint_scheme")
    info["input_fingerprint"] = "0" * 64
    info_path.write_text(json.dumps(info))
    with pytest.raises(InputError, match="built by an older curate"):
        ingest(source, options(media_root=media), workspace)


def test_a_second_writer_gets_a_clear_lock_error(tmp_path: Path, media: Path, workspace):
    source = write_drafts(
        tmp_path / "d.jsonl", [{"task": "text_retrieval", "query_text": "q", "target_text": "p"}]
    )
    workspace.manifests.mkdir(parents=True)
    with open(workspace.manifests / ".m.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242")
        held.flush()
        with pytest.raises(LockedError, match="being written by pid 4242"):
            ingest(source, options(media_root=media), workspace)
    assert ingest(source, options(media_root=media), workspace).stats["accepted"] == 1


def _ingest_script(source: Path, ws: Path) -> str:
    return (
        "import tests.curate.draft_adapter\n"
        "from pathlib import Path\n"
        "from curate.ingest import IngestOptions, ingest\n"
        "from curate.workspace import Workspace\n"
        f"ingest(Path({str(source)!r}), IngestOptions(name='m', format='test-drafts', probe=False,"
        f" batch_rows=10), Workspace.resolve({str(ws)!r}))\n"
    )


@pytest.mark.slow
def test_a_killed_ingest_leaves_no_manifest_and_a_rerun_finishes_it(tmp_path: Path):
    rows = [
        {"task": "text_retrieval", "query_text": f"q{i}", "target_text": f"p{i % 37}"}
        for i in range(60)
    ]
    rows[25] = rows[3]  # a duplicate across batches must still be found after the resume
    source = write_drafts(tmp_path / "d.jsonl", rows)
    ws = tmp_path / "ws"
    process = subprocess.Popen(
        [sys.executable, "-c", _ingest_script(source, ws)],
        cwd=REPO,
        env={**os.environ, "CURATE_TEST_SLEEP": "0.5"},
    )
    parts = ws / "manifests"
    deadline = time.time() + 60
    while time.time() < deadline:
        markers = list(parts.glob(".m.partial-*/parts/*.json"))
        if len(markers) >= 2:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert len(markers) >= 2, "the ingest did not get far enough to be interrupted"
    assert not (parts / "m").exists()  # nothing half-written is visible
    first_part = next(parts.glob(".m.partial-*/rows/part-00000.parquet"))
    written_before_kill = first_part.stat().st_mtime_ns

    same = IngestOptions(name="m", format="test-drafts", probe=False, batch_rows=10)
    resumed = ingest(source, same, Workspace.resolve(ws))
    fresh = ingest(source, same, Workspace.resolve(tmp_path / "fresh"))
    # The part finished before the kill was kept, not redone.
    assert (ws / "manifests/m/rows/part-00000.parquet").stat().st_mtime_ns == written_before_kill
    assert resumed.manifest.read_rows().equals(fresh.manifest.read_rows())
    assert resumed.stats == fresh.stats
    assert resumed.stats["rejected_by_reason"] == {"duplicate_id": 1}
    assert not list(parts.glob(".m.partial-*"))


def test_cli_reports_user_errors_in_one_line(tmp_path: Path):
    env = {**os.environ, "CURATE_HOME": str(tmp_path / "ws")}
    missing = subprocess.run(
        [sys.executable, "-m", "curate.cli", "ingest", str(tmp_path / "nope.json"), "--name", "x"],
        capture_output=True, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    assert missing.returncode == 1
    assert missing.stderr.strip().count("\n") == 0
    assert "nope.json: no such file" in missing.stderr
    bad_name = subprocess.run(
        [sys.executable, "-m", "curate.cli", "stats", "../etc"],
        capture_output=True, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    assert bad_name.returncode == 1 and "invalid manifest name" in bad_name.stderr
    assert "Traceback" not in missing.stderr + bad_name.stderr


def test_replace_keeps_signal_sidecars(tmp_path: Path, media: Path, workspace):
    source = write_drafts(
        tmp_path / "d.jsonl", [{"task": "text_retrieval", "query_text": "q", "target_text": "p"}]
    )
    first = ingest(source, options(media_root=media), workspace)
    (first.manifest.signals_dir).mkdir()
    (first.manifest.signals_dir / "text.parquet").write_bytes(b"sidecar")
    write_drafts(source, [{"task": "text_retrieval", "query_text": "q2", "target_text": "p"}])
    replaced = ingest(source, options(media_root=media, replace=True), workspace)
    assert (replaced.manifest.signals_dir / "text.parquet").read_bytes() == b"sidecar"


def test_an_absolute_path_outside_the_root_says_how_to_fix_it(
    tmp_path: Path, media: Path, workspace
):
    outside = tmp_path / "elsewhere" / "cat.jpg"  # e.g. a list written by an export
    outside.parent.mkdir()
    shutil.copy(media / "cat.jpg", outside)
    source = write_drafts(
        tmp_path / "d.jsonl",
        [{"task": "caption_retrieval", "query_text": "a cat", "target_images": [str(outside)]}],
    )
    result = ingest(source, options(media_root=media, probe=False), workspace)
    (entry,) = result.manifest.read_ledger().to_pylist()
    assert entry["reason"] == "path_escape"
    assert "the path is absolute: pass a --media-root that contains the files" in entry["message"]
