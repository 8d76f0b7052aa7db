"""`score_manifest` on real images and videos: near-duplicates, CLIP parity, determinism, resume."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from curate.manifest import open_manifest
from curate.signals import clip as clip_module
from curate.signals import score as score_module
from curate.signals.clip import TINY_CLIP_CONFIG, TINY_CLIP_NAME, ClipOptions
from curate.signals.frames import FrameSampling, sample_frames
from curate.signals.score import NearDupOptions, ScoreConfig, score_manifest
from curate.signals.store import read_sidecar, read_sidecar_meta
from curate.workspace import Workspace

from .conftest import pair, write_manifest

TINY = ClipOptions(model=TINY_CLIP_NAME, pretrained=None, batch_size=3, device="cpu", seed=0)
PART_0 = "videos/mmaction2/rawvideo_dataset/part_0.mp4"
PART_1 = "videos/mmaction2/rawvideo_dataset/part_1.mp4"
DEMO = "videos/mmaction2/demo.mp4"


@pytest.fixture()
def copies(tmp_path, coco_images):
    """A resized copy and a JPEG-quality-30 copy of a real COCO photo."""
    original = Image.open(coco_images[0]).convert("RGB")
    resized = tmp_path / "resized.jpg"
    original.resize((original.width // 2, original.height // 2), Image.Resampling.BICUBIC).save(
        resized, quality=90
    )
    recoded = tmp_path / "recoded.jpg"
    original.save(recoded, quality=30)
    return resized, recoded


def media_rows(shared_data, coco_images, copies):
    resized, recoded = copies
    rows = [
        pair("a-original", query_text="a photo", target_image=coco_images[0]),
        pair("b-resized", query_text="the same photo, smaller", target_image=resized),
        pair("c-recoded", query_text="the same photo, blocky", target_image=recoded),
    ]
    rows += [
        pair(f"d-unrelated-{i}", query_text=f"another photo {i}", target_image=path)
        for i, path in enumerate(coco_images[1:6])
    ]
    rows += [
        pair("e-part0", query_text="a clip", target_video=shared_data / PART_0, duration=1.067),
        pair("f-part1", query_text="a clip", target_video=shared_data / PART_1, duration=1.067),
        pair("g-demo", query_text="arm wrestling", target_video=shared_data / DEMO, clip=(2, 6)),
        pair("h-text", query_text="what is a dog", target_text="a dog is an animal"),
    ]
    return rows


def test_near_duplicates_on_real_media(make_manifest, workspace, shared_data, coco_images, copies):
    manifest = make_manifest("real", media_rows(shared_data, coco_images, copies))
    config = ScoreConfig(signals=("phash", "near_dup"), near_dup=NearDupOptions(cosine=None))
    result = score_manifest(workspace, "real", config)
    assert [o.signal for o in result.outcomes] == ["phash", "near_dup"]
    dup = {r["id"]: r for r in read_sidecar(manifest, "near_dup").to_pylist()}
    # The resized and the re-encoded copy join the original; it is kept (smallest id).
    assert dup["b-resized"]["near_dup_cluster"] == dup["a-original"]["near_dup_cluster"] == 0
    assert dup["c-recoded"]["near_dup_cluster"] == 0
    assert [dup[k]["near_dup_keep"] for k in ("a-original", "b-resized", "c-recoded")] == [
        True,
        False,
        False,
    ]
    assert (
        dup["a-original"]["near_dup_size"] == 3 and dup["b-resized"]["near_dup_method"] == "phash"
    )
    for i in range(5):  # unrelated photos stay alone
        row = dup[f"d-unrelated-{i}"]
        assert (row["near_dup_size"], row["near_dup_keep"], row["near_dup_method"]) == (
            1,
            True,
            None,
        )
    # The byte-identical mmaction2 videos: same media hash (from ingest), same pHash, one cluster.
    rows = {r["id"]: r for r in manifest.read_rows().to_pylist()}
    assert rows["e-part0"]["media_hash"] == rows["f-part1"]["media_hash"]
    hashes = {r["id"]: r for r in read_sidecar(manifest, "phash").to_pylist()}
    assert hashes["e-part0"]["phash"] == hashes["f-part1"]["phash"] is not None
    assert hashes["e-part0"]["phash_frames"] == [hashes["e-part0"]["phash"]]
    assert len(hashes["g-demo"]["phash_frames"]) == 4  # 4 s clip at 1 frame/s
    assert dup["e-part0"]["near_dup_cluster"] == dup["f-part1"]["near_dup_cluster"]
    assert (dup["e-part0"]["near_dup_keep"], dup["f-part1"]["near_dup_keep"]) == (True, False)
    assert dup["g-demo"]["near_dup_size"] == 1 and dup["h-text"]["near_dup_size"] == 1
    assert hashes["h-text"]["phash"] is None and hashes["h-text"]["phash_error"] is None
    # Nothing to do on a second run.
    again = score_manifest(workspace, "real", config)
    assert [(o.computed, o.reused) for o in again.outcomes] == [(0, 12), (0, 12)]


@pytest.fixture(scope="module")
def direct_clip(tmp_path_factory):
    """The tiny model built directly with open_clip (own config name, same seed)."""
    import open_clip
    import torch

    folder = tmp_path_factory.mktemp("clip-config")
    (folder / "direct-tiny.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(folder)
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("direct-tiny", pretrained=None)
    model.eval()
    tokenizer = open_clip.get_tokenizer("direct-tiny")

    def cosines(images: list[Image.Image], caption: str) -> np.ndarray:
        with torch.no_grad():
            image = model.encode_image(torch.stack([preprocess(i) for i in images]))
            text = model.encode_text(tokenizer([caption]))
        image = image / image.norm(dim=-1, keepdim=True)
        text = text / text.norm(dim=-1, keepdim=True)
        return (image @ text.T).squeeze(1).numpy()

    return cosines


@pytest.mark.slow  # the first import of open_clip takes seconds
def test_clip_scores_match_open_clip_and_are_deterministic(
    workspace, tmp_path, shared_data, coco_images, copies, direct_clip
):
    rows = media_rows(shared_data, coco_images, copies)
    rows.append(pair("i-missing", query_text="gone", target_image=tmp_path / "deleted.jpg"))
    config = ScoreConfig(signals=("clip",), clip=TINY, chunk_rows=4)
    write_manifest(workspace, "m", rows)
    score_manifest(workspace, "m", config)
    manifest = write_manifest(workspace, "m", rows)  # same rows: same fingerprint
    got = {r["id"]: r for r in read_sidecar(manifest, "clip").to_pylist()}
    for row in rows[:8]:  # images: the caption is the query text
        image = Image.open(row["target_images"][0]).convert("RGB")
        expected = direct_clip([image], row["query_text"])[0]
        assert got[row["id"]]["clip_score"] == pytest.approx(expected, abs=1e-5)
        assert got[row["id"]]["clip_frames"] == 1
    frames = sample_frames(shared_data / DEMO, FrameSampling(), start=2, end=6)
    expected = direct_clip([Image.fromarray(f) for f in frames], "arm wrestling").mean()
    assert got["g-demo"]["clip_score"] == pytest.approx(expected, abs=1e-5)
    assert got["g-demo"]["clip_frames"] == 4
    assert got["e-part0"]["clip_score"] == got["f-part1"]["clip_score"]
    assert got["h-text"]["clip_score"] is None and got["h-text"]["clip_error"] is None
    assert got["i-missing"]["clip_score"] is None
    assert "No such file" in got["i-missing"]["clip_error"]
    assert {r["clip_model"] for r in got.values()} == {"curate-tiny-clip:random"}
    meta = read_sidecar_meta(manifest, "clip")
    assert meta["params"]["weights"] == "random" and meta["params"]["seed"] == 0

    # A second workspace, a freshly built model: byte-identical sidecars.
    clip_module._MODELS.clear()
    other = Workspace.resolve(tmp_path / "other")
    write_manifest(other, "m", rows)
    score_manifest(other, "m", config)
    for name in ("clip.parquet", "embeddings/clip.parquet"):
        first = (manifest.signals_dir / name).read_bytes()
        assert first == (other.manifest_dir("m") / "signals" / name).read_bytes()


def test_near_duplicates_by_clip_embedding(make_manifest, workspace, tmp_path, coco_images):
    twin = tmp_path / "twin.jpg"
    shutil.copy(coco_images[0], twin)
    rows = [pair("a", query_text="x", target_image=coco_images[0])]
    rows += [pair(f"b{i}", query_text="x", target_image=p) for i, p in enumerate(coco_images[1:4])]
    rows.append(pair("c", query_text="x", target_image=twin))
    manifest = make_manifest("emb", rows)
    # Weights from a checkpoint file (as real weights would be): random ones are not trusted.
    import torch

    from curate.signals.clip import ClipModel

    checkpoint = tmp_path / "tiny-clip.pt"
    torch.save(ClipModel(TINY).model.state_dict(), checkpoint)
    clip = ClipOptions(model=TINY_CLIP_NAME, pretrained=str(checkpoint), batch_size=3, device="cpu")
    config = ScoreConfig(
        signals=("clip", "near_dup"),
        clip=clip,
        near_dup=NearDupOptions(phash_bits=None, cosine=0.99999),
    )
    outcomes = {o.signal: o for o in score_manifest(workspace, "emb", config).outcomes}
    assert "cosine" not in outcomes["near_dup"].summary  # used: no note
    dup = {r["id"]: r for r in read_sidecar(manifest, "near_dup").to_pylist()}
    assert dup["a"]["near_dup_cluster"] == dup["c"]["near_dup_cluster"] == 0
    assert dup["c"]["near_dup_method"] == "embedding"
    assert all(dup[f"b{i}"]["near_dup_size"] == 1 for i in range(3))
    embeddings = read_sidecar(manifest, "embeddings/clip").column("embedding").to_pylist()
    assert len(embeddings[0]) == 32
    assert np.linalg.norm(np.array(embeddings[0], dtype=np.float32)) == pytest.approx(1.0, abs=2e-3)


def test_near_dup_does_not_trust_embeddings_of_random_weights(
    make_manifest, workspace, coco_images
):
    rows = [pair(f"r{i}", query_text="x", target_image=p) for i, p in enumerate(coco_images[:4])]
    manifest = make_manifest("rand", rows)
    config = ScoreConfig(
        signals=("clip", "near_dup"),
        clip=TINY,  # random weights, as in the demo
        near_dup=NearDupOptions(phash_bits=None, cosine=-1.0),  # any two would match
    )
    outcomes = {o.signal: o for o in score_manifest(workspace, "rand", config).outcomes}
    assert outcomes["near_dup"].summary["cosine"] == (
        "not used: the CLIP embeddings come from random weights"
    )
    sizes = read_sidecar(manifest, "near_dup").column("near_dup_size").to_pylist()
    assert sizes == [1, 1, 1, 1]


class Interrupt(Exception):
    pass


def test_interrupted_run_resumes_with_only_the_missing_ids(
    workspace, tmp_path, shared_data, coco_images, copies, monkeypatch
):
    rows = media_rows(shared_data, coco_images, copies)[:10]  # 8 images, 2 videos
    config = ScoreConfig(signals=("text", "phash", "clip"), clip=TINY, chunk_rows=2)
    manifest = write_manifest(workspace, "m", rows)
    written = {"clip": 0}

    def crash_after_three_clip_chunks(signal: str, count: int) -> None:
        if signal == "clip":
            written["clip"] += 1
            if written["clip"] == 3:
                raise Interrupt

    with pytest.raises(Interrupt):
        score_manifest(workspace, "m", config, on_chunk=crash_after_three_clip_chunks)
    assert not (manifest.signals_dir / "clip.parquet").exists()  # nothing finalised yet

    loaded: list[str] = []
    real_load = score_module.load_media

    def recording_load(ref, sampling):
        loaded.append(ref.path)
        return real_load(ref, sampling)

    monkeypatch.setattr(score_module, "load_media", recording_load)
    result = score_manifest(workspace, "m", config)
    computed = {o.signal: o.computed for o in result.outcomes}
    # Per chunk: text, phash, clip, then the embeddings; the crash came after chunk 3's clip.
    assert computed == {"text": 4, "phash": 4, "clip": 4, "embeddings/clip": 6}
    path_of = {r["id"]: (r["target_images"] or [r["target_video"]])[0] for r in rows}
    assert loaded == [path_of[r["id"]] for r in rows[4:]]

    # The resumed result equals an uninterrupted run.
    fresh = Workspace.resolve(tmp_path / "fresh")
    write_manifest(fresh, "m", rows)
    score_manifest(fresh, "m", config)
    for signal in ("text", "phash", "clip"):
        resumed = read_sidecar(manifest, signal).to_pylist()
        straight = read_sidecar(open_manifest(fresh, "m"), signal).to_pylist()
        if signal == "clip":
            for a, b in zip(resumed, straight, strict=True):
                assert a["id"] == b["id"]
                assert a["clip_score"] == pytest.approx(b["clip_score"], abs=1e-6)
        else:
            assert resumed == straight


def test_changed_frame_sampling_recomputes_video_signals(make_manifest, workspace, shared_data):
    manifest = make_manifest(
        "v",
        [pair("demo", query_text="arm wrestling", target_video=shared_data / DEMO, duration=10.0)],
    )
    score_manifest(workspace, "v", ScoreConfig(signals=("phash",)))
    assert len(read_sidecar(manifest, "phash").column("phash_frames")[0]) == 8
    slower = ScoreConfig(signals=("phash",), frames=FrameSampling(rate=0.5))
    result = score_manifest(workspace, "v", slower)
    assert result.outcomes[0].computed == 1
    assert len(read_sidecar(manifest, "phash").column("phash_frames")[0]) == 5


def test_pair_scope_keeps_distinct_captions_of_one_image(make_manifest, workspace, coco_images):
    # COCO-style: one photo with several captions, one caption repeated.
    rows = [
        pair("a", query_text="A dog on a couch.", target_image=coco_images[0]),
        pair("b", query_text="A brown dog lying down.", target_image=coco_images[0]),
        pair("c", query_text="a dog on a couch", target_image=coco_images[0]),
        pair("d", query_text="A dog on a couch.", target_image=coco_images[1]),
    ]
    manifest = make_manifest("coco", rows)
    media = ScoreConfig(signals=("near_dup",), near_dup=NearDupOptions(cosine=None))
    score_manifest(workspace, "coco", media)
    sizes = [r["near_dup_size"] for r in read_sidecar(manifest, "near_dup").to_pylist()]
    assert sizes == [3, 3, 3, 1]
    scoped = ScoreConfig(signals=("near_dup",), near_dup=NearDupOptions(cosine=None, scope="pair"))
    result = score_manifest(workspace, "coco", scoped)
    assert [o.signal for o in result.outcomes] == ["text", "phash", "near_dup"]
    dup = read_sidecar(manifest, "near_dup").to_pylist()
    assert [r["near_dup_cluster"] for r in dup] == [0, 1, 0, 3]
    assert [r["near_dup_keep"] for r in dup] == [True, True, False, True]
    assert [r["near_dup_method"] for r in dup] == ["phash", None, "phash", None]


def test_local_checkpoint_goes_through_the_same_loading_path(tmp_path, coco_images):
    import torch

    from curate.errors import ConfigError
    from curate.signals.clip import ClipModel, score_items
    from curate.signals.media import load_image

    random = ClipModel(TINY)
    checkpoint = tmp_path / "tiny-clip.pt"
    torch.save(random.model.state_dict(), checkpoint)
    loaded = ClipModel(
        ClipOptions(model=TINY_CLIP_NAME, pretrained=str(checkpoint), seed=99, device="cpu")
    )
    assert loaded.label == "curate-tiny-clip:tiny-clip.pt"
    items = [
        clip_module.ClipItem(random.pixels([load_image(str(p))]), "a photo")
        for p in coco_images[:3]
    ]
    np.testing.assert_array_equal(score_items(random, items)[0], score_items(loaded, items)[0])
    assert len(clip_module.weights_label(loaded.options)["sha256"]) == 16
    broken = tmp_path / "broken.pt"
    broken.write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="could not load open_clip model"):
        ClipModel(ClipOptions(model=TINY_CLIP_NAME, pretrained=str(broken)))
    with pytest.raises(ConfigError, match="unknown open_clip model 'ViT-Q-99'"):
        ClipModel(ClipOptions(model="ViT-Q-99"))


@pytest.mark.parametrize("device", ["nope", "gpu0"])
def test_clip_device_that_is_not_a_device_name_is_a_config_error(device):
    from curate.errors import ConfigError

    with pytest.raises(ConfigError, match="is not a device name"):
        clip_module.resolve_device(device)


def test_uncached_pretrained_weights_give_one_short_line(caplog) -> None:
    import logging

    from curate.errors import ConfigError
    from curate.signals.clip import ClipModel

    # conftest sets HF_HUB_OFFLINE=1 and an empty cache: the tag cannot be downloaded.
    with caplog.at_level(logging.INFO), pytest.raises(ConfigError) as error:
        ClipModel(ClipOptions(model="ViT-B-32", pretrained="openai", device="cpu"))
    message = str(error.value)
    assert "the weights of tag 'openai' are not in the local cache" in message
    assert "\n" not in message and len(message) < 300
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no stray log line
