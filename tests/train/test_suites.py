"""Evaluation suites: the shipped TOML files and the validation of hand-written ones."""

from __future__ import annotations

import pytest

from curate.errors import ConfigError, NotFoundError
from train.suites import (
    DEFAULT_METRICS,
    list_suites,
    load_suite,
    reverse_direction,
    split_direction,
    suite_from_dict,
)


def test_shipped_suites_load_and_resolve_every_setting():
    assert {"default", "demo", "msrvtt-1ka", "webvid-covr"} <= set(list_suites())
    demo = load_suite("demo")
    assert {t.manifest for t in demo.tasks} == {"demo-images-test", "demo-videos-test"}
    assert load_suite("default").tasks == demo.tasks
    data = demo.to_dict()
    local = next(t for t in data["tasks"] if t["pool"] == "local")
    assert local["metrics"] == ["P@1"] and local["group"] == "i2t"
    assert all(t["video_frames"] == 4 and t["max_pixels"] == 3136 for t in data["tasks"])
    covr = load_suite("webvid-covr").tasks[0]
    assert covr.task_group == "composed"
    assert covr.metric_names == DEFAULT_METRICS["composed"] and "R@50" in covr.metric_names
    assert load_suite("msrvtt-1ka").frames_of(load_suite("msrvtt-1ka").tasks[0]) == 48


def test_a_suite_by_path_and_its_fingerprint(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(
        'video_frames = 8\nmax_pixels = 50000\n[[tasks]]\nname = "a"\nmanifest = "m"\n'
        'direction = "vt2v"\npool = "composed"\nvideo_frames = 16\nmetrics = ["R@1", "R@50"]\n'
    )
    suite = load_suite(path)
    assert suite.name == "mine" and suite.frames_of(suite.tasks[0]) == 16
    assert suite.pixels_of(suite.tasks[0]) == 50000
    assert suite.tasks[0].metric_names == ("R@1", "R@50")
    before = suite.fingerprint()
    path.write_text(path.read_text().replace("video_frames = 16", "video_frames = 32"))
    assert load_suite(path).fingerprint() != before  # the protocol changed, so do the results


def test_directions():
    assert split_direction("vt2v") == ("video+text", "video")
    assert split_direction("t2it") == ("text", "image+text")
    assert reverse_direction("t2v") == "v2t"
    for bad in ("tv", "x2t", "t2", "video2text"):
        with pytest.raises(ConfigError, match="pair code"):
            split_direction(bad)


def _task(**extra):
    return {"name": "t", "manifest": "m", "direction": "t2i", **extra}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"tasks": []}, "no \\[\\[tasks\\]\\]"),
        ({"tasks": [_task(), _task()]}, "unique"),
        ({"tasks": [_task(direction="t2x")]}, "pair code"),
        ({"tasks": [_task(pool="mixed")]}, "pool must be one of"),
        ({"tasks": [_task(metrics=["R@0"])]}, "unknown metric"),
        ({"tasks": [_task(pool="local", local_candidates="sampled")]}, "local_size >= 2"),
        ({"tasks": [_task(source_pair="t2v")]}, "source_pair"),
        ({"tasks": [_task(frames=4)]}, "unknown keys \\['frames'\\]"),
        ({"tasks": [_task(video_frames="8")]}, "must be an integer"),
        ({"tasks": [{"name": "t"}]}, "missing \\['manifest', 'direction'\\]"),
        ({"ties": "random", "tasks": [_task()]}, "ties must be one of"),
        ({"video_frames": 0, "tasks": [_task()]}, ">= 1"),
        ({"pool_size": 3, "tasks": [_task()]}, "unknown keys"),
        ({"tasks": [_task(manifest="../etc")]}, "invalid manifest name"),
    ],
)
def test_invalid_suites_say_what_is_wrong(data, message):
    with pytest.raises(ConfigError, match=message):
        suite_from_dict(data, default_name="s")


def test_missing_suites():
    with pytest.raises(NotFoundError, match="shipped: default"):
        load_suite("nope")
    with pytest.raises(NotFoundError, match="does not exist"):
        load_suite("/nonexistent/suite.toml")


def test_check_manifests_names_every_missing_manifest_and_how_to_create_it(tmp_path):
    from curate.manifest import COMPLETE_MARKER
    from curate.workspace import Workspace
    from train.suites import check_manifests, missing_manifests

    ws = Workspace.resolve(tmp_path / "ws")
    demo = load_suite("demo")
    with pytest.raises(NotFoundError) as info:
        check_manifests(demo, ws)
    message = str(info.value)
    assert message.startswith("suite 'demo' evaluates on manifests that are not in ")
    assert "demo-images-test (tasks demo_t2i, demo_i2t, demo_i2t_local)" in message
    assert "demo-videos-test (tasks demo_t2v, demo_v2t)" in message
    assert "(present: none)" in message and "`curate demo --until ingest`" in message
    assert "\n" not in message

    # A manifest counts once its ingest finished (the marker open_manifest looks for).
    (ws.manifest_dir("demo-images-test") / COMPLETE_MARKER).parent.mkdir(parents=True)
    (ws.manifest_dir("demo-images-test") / COMPLETE_MARKER).write_text("{}")
    assert missing_manifests(demo, ws) == {"demo-videos-test": ["demo_t2v", "demo_v2t"]}
    with pytest.raises(NotFoundError, match=r"present: demo-images-test\)"):
        check_manifests(demo, ws)
    (ws.manifest_dir("demo-videos-test") / COMPLETE_MARKER).parent.mkdir(parents=True)
    (ws.manifest_dir("demo-videos-test") / COMPLETE_MARKER).write_text("{}")
    check_manifests(demo, ws)  # nothing missing: no error

    with pytest.raises(NotFoundError, match="create them with `curate ingest PATH --name NAME`"):
        check_manifests(load_suite("msrvtt-1ka"), ws)
