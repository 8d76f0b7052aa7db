"""Evaluation on real manifests (the demo corpora, a WebVid-CoVR-format file over real videos)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from curate.errors import ConfigError, NotFoundError
from curate.manifest import open_manifest
from curate.workspace import Workspace
from train.evaluate import (
    EVAL_SCHEMA,
    EmbeddingCache,
    build_task,
    embed_items,
    evaluate_run,
    item_key,
    resolve_run,
)
from train.suites import load_suite, suite_from_dict
from train.template import EmbedItem


class FakeEmbedder:
    """An embedder whose vectors a test chooses: `fn(item) -> 1-D tensor`."""

    def __init__(self, fn, dim):
        self.fn = fn
        self.dim = dim
        self.skipped = 0
        self.embedded: list[EmbedItem] = []

    def embed(self, items, *, batch_size=16, progress=False):
        self.embedded.extend(items)
        rows = [self.fn(item) for item in items]
        self.skipped += sum(1 for r in rows if not torch.any(r))
        return torch.nn.functional.normalize(torch.stack(rows).float(), dim=-1)


@pytest.fixture(scope="module")
def ws(tmp_path_factory, shared_data) -> Workspace:
    """The demo corpora ingested, plus a CoVR-format file over real shared videos."""
    from curate.demo import ingest_demo
    from curate.ingest import IngestOptions, ingest

    workspace = Workspace.resolve(tmp_path_factory.mktemp("eval") / "ws")
    ingest_demo(workspace)
    covr = workspace.root / "covr.csv"
    covr.write_text(
        "source_video,target_video,edit\n"
        "data-juicer/video1.mp4,data-juicer/video2.mp4,make it snowy\n"
        "data-juicer/video2.mp4,data-juicer/video3.mp4,show it at night\n"
        "data-juicer/video3.mp4,data-juicer/video1.mp4,add a dog\n"
        "mmaction2/demo.mp4,data-juicer/video1.mp4,zoom out\n"
    )
    ingest(covr, IngestOptions(name="covr-mini", format="covr", split="test",
                               media_root=shared_data / "videos"), workspace)  # fmt: skip
    return workspace


def _image_of_caption(ws: Workspace) -> dict[str, str]:
    rows = open_manifest(ws, "demo-images-test").read_rows(["pair", "query_text", "target_images"])
    return {r["query_text"]: r["target_images"][0] for r in rows.to_pylist() if r["pair"] == "t2i"}


def _oracle(ws: Workspace):
    """Images and their captions share a one-hot vector: perfect retrieval."""
    image_of = _image_of_caption(ws)
    images = sorted(set(image_of.values()))

    def fn(item: EmbedItem) -> torch.Tensor:
        image = item.images[0] if item.images else image_of[item.text]
        return torch.eye(len(images))[images.index(image)]

    return FakeEmbedder(fn, len(images))


def _suite(*tasks, **extra):
    return suite_from_dict({"video_frames": 4, "max_pixels": 3136, "tasks": list(tasks), **extra},
                           default_name="t")  # fmt: skip


IMAGE_TASKS = (
    {"name": "t2i", "manifest": "demo-images-test", "direction": "t2i"},
    {"name": "i2t", "manifest": "demo-images-test", "direction": "i2t"},
)


def test_tasks_deduplicate_candidates_and_collect_several_positives(ws):
    i2t = build_task(_suite(*IMAGE_TASKS).tasks[1], ws)
    assert (len(i2t.queries), len(i2t.candidates)) == (7, 14)
    assert i2t.positives.counts().tolist() == [2] * 7  # two captions per image
    image_of = _image_of_caption(ws)
    for q, query in enumerate(i2t.queries):
        captions = {i2t.candidates[c].text for c in i2t.positives.row(q)}
        assert {image_of[t] for t in captions} == {query.images[0]}
    t2i = build_task(_suite(*IMAGE_TASKS).tasks[0], ws)
    assert (len(t2i.queries), len(t2i.candidates)) == (14, 7)
    assert t2i.positives.counts().tolist() == [1] * 14
    # v2t is read from the t2v rows with query and target swapped
    v2t = build_task(load_suite("demo").tasks[3], ws)
    assert (v2t.source_pair, v2t.swapped) == ("t2v", True)
    assert all(q.video and q.clip_end for q in v2t.queries) and all(c.text for c in v2t.candidates)
    # the same content gives the same key; clip bounds are part of it
    a = EmbedItem(video="/x.mp4", clip_start=0.0, clip_end=1.0)
    assert item_key(a, {"/x.mp4": "h"}) == item_key(
        EmbedItem(video="/y.mp4", clip_start=0.0, clip_end=1.0), {"/y.mp4": "h"}
    )
    assert item_key(a, {}) != item_key(EmbedItem(video="/x.mp4", clip_start=0.0, clip_end=2.0), {})


def test_perfect_and_collapsed_embeddings_give_hand_computed_metrics(ws, tmp_path):
    suite = _suite(*IMAGE_TASKS)
    run = tmp_path / "oracle"
    run.mkdir()
    perfect = evaluate_run(run, suite, ws, load=lambda *_, **__: _oracle(ws), device="cpu")
    for task in perfect.tasks:
        assert task.metrics["R@1"] == 1.0 and task.metrics["MedR"] == 1.0
        assert task.metrics["nDCG@10"] == pytest.approx(1.0)

    collapsed_run = tmp_path / "collapsed"
    collapsed_run.mkdir()
    same = FakeEmbedder(lambda item: torch.ones(4), 4)
    collapsed = evaluate_run(collapsed_run, suite, ws, load=lambda *_, **__: same, device="cpu")
    t2i, i2t = collapsed.tasks
    # t2i: every query has 1 positive among 7 equal images; pessimistic ties put it last.
    assert t2i.metrics["MedR"] == 7 and t2i.metrics["R@5"] == 0.0
    assert t2i.metrics["MRR"] == pytest.approx(1 / 7)
    assert t2i.metrics["nDCG@10"] == pytest.approx(1 / math.log2(8))
    # i2t: 2 positives among 14 equal captions -> positions 13 and 14.
    assert i2t.metrics["MedR"] == 13 and i2t.metrics["R@10"] == 0.0
    assert i2t.metrics["nDCG@10"] == 0.0 and i2t.metrics["MRR"] == pytest.approx(1 / 13)


def test_results_are_written_reused_and_cached(ws, tmp_path):
    suite = _suite(*IMAGE_TASKS)
    run = tmp_path / "run"
    run.mkdir()
    loads = []

    def load(run_dir, **kwargs):
        loads.append(kwargs)
        return _oracle(ws)

    first = evaluate_run(run, suite, ws, load=load, device="cpu")
    folder = run / "eval" / suite.name
    table = pq.read_table(folder / "results.parquet")
    assert table.schema.equals(EVAL_SCHEMA, check_metadata=False)
    assert table.num_rows == 2 * 7  # two tasks, seven metrics each
    data = json.loads((folder / "results.json").read_text())
    assert data["suite"]["video_frames"] == 4 and data["suite"]["tasks"][0]["pool"] == "global"
    assert loads == [{"video_frames": 4, "max_pixels": 3136, "device": "cpu"}]

    again = evaluate_run(run, suite, ws, load=load, device="cpu")
    assert again.reused and len(loads) == 1 and again.fingerprint == first.fingerprint

    embedder = _oracle(ws)
    forced = evaluate_run(run, suite, ws, load=lambda *_, **__: embedder, device="cpu", force=True)
    assert embedder.embedded == []  # every item came from the embedding cache
    assert [t.metrics for t in forced.tasks] == [t.metrics for t in first.tasks]


def test_failed_media_are_zero_vectors_that_rank_last_and_are_not_cached(ws, tmp_path):
    def fn(item):  # every video "fails to decode"
        return torch.zeros(3) if item.video else torch.tensor([1.0, 0.5, 0.0])

    embedder = FakeEmbedder(fn, 3)
    task = load_suite("demo").tasks[2]  # t2v
    data = build_task(task, ws)
    cache = EmbeddingCache(tmp_path / "cache")
    vectors = embed_items(embedder, data.candidates, data.candidate_keys, cache)
    assert not vectors.any() and embedder.skipped == 4
    assert not any(k in EmbeddingCache(tmp_path / "cache").vectors for k in data.candidate_keys)
    queries = embed_items(embedder, data.queries, data.query_keys, cache)
    assert len(EmbeddingCache(tmp_path / "cache").vectors) == len(set(data.query_keys))
    from train.evaluate import score_task

    metrics = score_task(data, queries, vectors)
    assert metrics["MedR"] == 4  # all scores 0: the positive ranks behind the 3 others


def test_local_lists_sample_distractors_that_are_not_positives(ws):
    task = load_suite("demo").tasks[4]
    data = build_task(task, ws)
    again = build_task(task, ws)
    assert data.lists is not None and len(data.lists) == 14  # one list per row
    image_of = _image_of_caption(ws)
    for q, members in enumerate(data.lists):
        assert len(members) == 4 and data.positives.row(q).tolist() == [0]
        image = data.queries[q].images[0]
        assert image_of[data.candidates[members[0]].text] == image
        assert all(image_of[data.candidates[m].text] != image for m in members[1:])
    assert all(np.array_equal(a, b) for a, b in zip(data.lists, again.lists, strict=True))
    from train.evaluate import score_task

    oracle = _oracle(ws)
    q = oracle.embed(data.queries).numpy()
    c = oracle.embed(data.candidates).numpy()
    assert score_task(data, q, c) == {"P@1": 1.0}


def test_composed_queries_never_retrieve_their_own_source(ws, tmp_path):
    suite = _suite({"name": "covr", "manifest": "covr-mini", "direction": "vt2v", "pool": "composed",
                    "metrics": ["R@1", "MedR"]})  # fmt: skip
    data = build_task(suite.tasks[0], ws)
    names = [Path(c.video).name for c in data.candidates]
    assert sorted(names) == ["video1.mp4", "video2.mp4", "video3.mp4"]
    own = {Path(q.video).name: [names[c] for c in data.exclude.row(i)]
           for i, q in enumerate(data.queries)}  # fmt: skip
    assert own == {"video1.mp4": ["video1.mp4"], "video2.mp4": ["video2.mp4"],
                   "video3.mp4": ["video3.mp4"], "demo.mp4": []}  # fmt: skip
    # A model that ignores the edit text embeds each query as its source video.
    videos = ["video1.mp4", "video2.mp4", "video3.mp4", "demo.mp4"]
    copycat = FakeEmbedder(lambda item: torch.eye(4)[videos.index(Path(item.video).name)], 4)
    run = tmp_path / "copycat"
    run.mkdir()
    result = evaluate_run(run, suite, ws, load=lambda *_, **__: copycat, device="cpu")
    # Three queries see only their positive and one other video, both at score 0 (rank 2);
    # the demo.mp4 query sees all three at 0 (rank 3). Retrieving the source is never a hit.
    assert result.tasks[0].metrics == {"R@1": 0.0, "MedR": 2.0}


def test_wrong_tasks_say_what_to_fix(ws, tmp_path):
    with pytest.raises(ConfigError, match="no rows of split 'val'"):
        build_task(_suite({**IMAGE_TASKS[0], "split": "val"}).tasks[0], ws)
    with pytest.raises(ConfigError, match="no t2t rows nor t2t rows"):
        build_task(_suite({**IMAGE_TASKS[0], "direction": "t2t"}).tasks[0], ws)
    with pytest.raises(ConfigError, match="use local_candidates"):
        build_task(_suite({**IMAGE_TASKS[1], "pool": "local"}).tasks[0], ws)
    with pytest.raises(NotFoundError, match="no manifest named 'missing'"):
        evaluate_run(tmp_path, _suite({**IMAGE_TASKS[0], "manifest": "missing"}), ws,
                     load=lambda *_, **__: None)  # fmt: skip
    (ws.runs / "some-run").mkdir(parents=True)
    assert resolve_run(ws, "some-run") == (ws.runs / "some-run").resolve()
    with pytest.raises(NotFoundError, match="known runs: some-run"):
        resolve_run(ws, "other-run")


@pytest.mark.slow
def test_the_real_tiny_backbone_on_the_demo_suite(ws, tmp_path):
    """Real decoding (images, video clips at 4 frames) and a real untrained tiny Qwen2-VL."""
    from train.config import load_train_config
    from train.embedder import base_embedder

    torch.manual_seed(0)
    config = load_train_config("tiny-cpu")
    seen = []

    def load(run_dir, **kwargs):
        seen.append(kwargs)
        return base_embedder(config, **kwargs)

    run = tmp_path / "base"
    run.mkdir()
    result = evaluate_run(run, "demo", ws, load=load, device="cpu")
    assert seen == [{"video_frames": 4, "max_pixels": 3136, "device": "cpu"}]
    assert [t.task for t in result.tasks] == [t.name for t in load_suite("demo").tasks]
    for task in result.tasks:
        assert task.skipped_media == 0
        for name, value in task.metrics.items():
            if name in ("MedR", "MeanR"):
                assert 1 <= value <= task.candidates
            else:
                assert 0.0 <= value <= 1.0
    table = pq.read_table(run / "eval" / "demo" / "results.parquet")
    assert table.num_rows == 4 * 7 + 1
