"""End-to-end training runs on real media: loss falls, skips are counted, kill -9 resumes to the
same weights, finished runs return at once, adapters reload to the same embeddings."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from curate.errors import ConfigError
from tests.conftest import REPO_ROOT
from train.checkpoint import load_tensors
from train.config import load_train_config
from train.embedder import EmbedItem, base_embedder, load_embedder
from train.trainer import lr_factor, train_run


def metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_lr_schedule_warms_up_then_decays_to_zero():
    values = [lr_factor(s, total=100, warmup=3) for s in range(100)]
    assert values[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a >= b for a, b in itertools.pairwise(values[3:]))
    assert values[-1] < 0.001


@pytest.fixture(scope="module")
def trained(real_mixture, tmp_path_factory):
    """tiny-cpu, one stage, 6 epochs over 25 real pairs (images, clips, texts, one broken video)."""
    out = tmp_path_factory.mktemp("runs") / "loss-falls"
    config = load_train_config("tiny-cpu", {"stages.0.epochs": 6, "checkpoint_every": 0})
    workspace = tmp_path_factory.mktemp("ws")
    from curate.workspace import Workspace

    started = time.perf_counter()
    train_run(
        mixture=real_mixture,
        workspace=Workspace.resolve(workspace),
        config=config,
        out_dir=out,
        progress=False,
    )
    return out, config, time.perf_counter() - started


@pytest.mark.slow
def test_tiny_run_on_real_media_trains_and_its_loss_falls(trained):
    out, config, _ = trained
    rows = metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 25))  # 4 batches x 6 epochs
    by_epoch = {}
    for r in rows:
        if r["loss"] is not None and r["pairs"] > 1:
            by_epoch.setdefault(r["epoch"], []).append(r["loss"])
    first, last = sum(by_epoch[0]) / len(by_epoch[0]), sum(by_epoch[5]) / len(by_epoch[5])
    # chance level is about log(8 candidates) = 2.08: falling below it is learning, not the
    # collapse to uniform scores that also lowers a badly initialised loss
    assert last < 0.75 * first and last < 1.8, (first, last)
    meta = json.loads((out / "meta.json").read_text())
    # the broken video is skipped (and counted) once per epoch; training goes on
    assert meta["skipped_media"] == 6
    assert "broken.mp4" in meta["skipped_examples"][0]
    assert meta["backbone"]["kind"] == "tiny-qwen2-vl" and meta["seed"] == config.seed
    assert {"curate", "torch", "transformers"} <= set(meta["versions"])
    assert [s["name"] for s in meta["stages"]] == ["retrieval_adaptation", "instruction_tuning"]
    assert meta["stages"][1]["skipped"]  # the mixture has no instruction_tuning stage
    assert json.loads((out / "mixture.json").read_text())["ref"] == "handmade@v0"
    assert load_train_config(out / "config.toml") == config
    assert json.loads((out / "_COMPLETE").read_text())["config_hash"] == config.config_hash()


@pytest.mark.slow
def test_finished_run_returns_at_once_and_refuses_another_config(trained, real_mixture, workspace):
    out, config, _ = trained
    stamp = (out / "_COMPLETE").stat().st_mtime_ns
    started = time.perf_counter()
    assert (
        train_run(
            mixture=real_mixture, workspace=workspace, config=config, out_dir=out, progress=False
        )
        == out
    )
    assert time.perf_counter() - started < 1.0
    assert (out / "_COMPLETE").stat().st_mtime_ns == stamp
    other = load_train_config("tiny-cpu", {"seed": 9})
    with pytest.raises(ConfigError, match="another config"):
        train_run(
            mixture=real_mixture, workspace=workspace, config=other, out_dir=out, progress=False
        )


@pytest.mark.slow
def test_trained_run_reloads_to_identical_embeddings(trained, shared_data, broken_video):
    out, config, _ = trained
    items = [
        EmbedItem(text="a man sitting in front of a laptop"),
        EmbedItem(
            images=(
                str(
                    next((shared_data / "images" / "coco_val2017_subset" / "val2017").glob("*.jpg"))
                ),
            )
        ),
        EmbedItem(
            text="arm wrestling", video=str(shared_data / "videos" / "mmaction2" / "demo.mp4")
        ),
        EmbedItem(video=str(broken_video)),
    ]
    first = load_embedder(out).embed(items, batch_size=2)
    second_embedder = load_embedder(out)
    second = second_embedder.embed(items, batch_size=3)
    assert torch.equal(first[:3], second[:3]) or torch.allclose(first[:3], second[:3], atol=1e-6)
    assert torch.equal(second[3], torch.zeros(second.shape[1])) and second_embedder.skipped == 1
    assert torch.allclose(first[:3].norm(dim=-1), torch.ones(3))
    base = base_embedder(config).embed(items[:3])
    assert (base - first[:3]).abs().max() > 1e-3  # training changed the model
    # evaluation protocols fix the frame count and the pixel budget
    fixed = load_embedder(out, video_frames=6, max_pixels=28 * 28)
    assert fixed.backbone.media.video(items[2].video).shape[0] == 6
    assert fixed.embed(items[2:]).shape == (2, first.shape[1]) and fixed.skipped == 1


@pytest.mark.slow
def test_kill_9_after_a_checkpoint_then_resume_gives_the_same_weights(two_stage_mixture, tmp_path):
    from curate.workspace import Workspace

    overrides = {
        "checkpoint_every": 2,
        "keep_checkpoints": 1,
        "stages.0.epochs": 2,  # 12 rows / 8 = 2 batches per epoch: 4 steps
        "stages.0.shuffle": True,
        "stages.0.lora_dropout": 0.1,
        "stages.1.max_steps": 5,
        "stages.1.lora_dropout": 0.1,
        "stages.1.learnable_temperature": True,
        "stages.1.batch_size": 4,
    }
    config = load_train_config("tiny-cpu", overrides)
    workspace = Workspace.resolve(tmp_path / "ws")
    straight = train_run(
        mixture=two_stage_mixture,
        workspace=workspace,
        config=config,
        out_dir=tmp_path / "straight",
        progress=False,
    )

    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.train.kill_runner",
            str(two_stage_mixture),
            str(killed),
            str(tmp_path / "ws"),
            json.dumps(overrides),
            "1",
            "2",
        ],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 180
    while not (killed / ".frozen").exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "the training subprocess never reached its checkpoint"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "_COMPLETE").exists()
    assert (killed / "checkpoints" / "stage-1-step-00000002" / "_COMPLETE").is_file()
    assert metrics(killed)[-1]["step"] == 3  # work past the checkpoint, lost with the kill

    train_run(
        mixture=two_stage_mixture,
        workspace=workspace,
        config=config,
        out_dir=killed,
        progress=False,
    )
    for name in ("0-retrieval_adaptation.safetensors", "1-instruction_tuning.safetensors"):
        a = load_tensors(straight / "final" / name)
        b = load_tensors(killed / "final" / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    keep = ("stage_index", "step", "loss", "lr", "temperature", "pairs")
    assert [{k: r[k] for k in keep} for r in metrics(killed)] == [
        {k: r[k] for k in keep} for r in metrics(straight)
    ]
    assert metrics(straight)[-1]["temperature"] != 0.03  # the learnable temperature moved


def test_open_clip_backbone_trains_and_reloads(two_stage_mixture, tmp_path):
    from curate.workspace import Workspace

    config = load_train_config(
        "tiny-cpu",
        {
            "backbone.kind": "open-clip",
            "backbone.model": "tiny",
            "stages.0.max_steps": 2,
            "stages.1.max_steps": 1,
        },
    )
    out = train_run(
        mixture=two_stage_mixture,
        workspace=Workspace.resolve(tmp_path / "ws"),
        config=config,
        out_dir=tmp_path / "clip",
        progress=False,
    )
    assert [r["step"] for r in metrics(out)] == [1, 2, 1]
    items = [EmbedItem(text="a dog"), EmbedItem(text="a cat", instruction="Find:")]
    trained = load_embedder(out).embed(items)
    assert trained.shape == (2, 32)
    assert (trained - base_embedder(config).embed(items)).abs().max() > 1e-4


def test_an_epoch_of_homogeneous_batches_covers_every_row(tiny_backbone, tmp_path):
    import dataclasses

    from tests.train.mixtures import row, write_mixture
    from train.data import StageData
    from train.distributed import DistInfo
    from train.trainer import BatchMaker

    rows = [row(f"t{i}", query_text=f"query {i}", target_text=f"text {i}") for i in range(6)]
    rows += [
        row(f"v{i}", query_text=f"clip {i}", target_text=f"caption {i}", instruction="x")
        for i in range(5)
    ]
    for r in rows[6:]:
        r["pair"] = "t2v"  # a second pair type (media not needed to plan)
    data = StageData(write_mixture(tmp_path / "m", {"s": rows}) / "s.parquet")
    stage = dataclasses.replace(load_train_config("tiny-cpu").stages[0], batch_size=4)
    maker = BatchMaker(tiny_backbone, data, stage, homogeneous=True, seed=0, dist=DistInfo())
    assert maker.batches_per_epoch == 4  # 6 rows -> 2 batches, 5 rows -> 2 batches; not 11 / 4
    seen = []
    for step in range(2 * maker.batches_per_epoch):  # two epochs
        batch = maker(step)
        seen.append(batch.n_pairs)
    maker.close()
    assert seen == [4, 2, 4, 1] * 2  # batches in the order of their first row


def test_a_second_process_on_the_same_run_folder_is_refused(two_stage_mixture, tmp_path):
    import fcntl

    from curate.errors import LockedError
    from curate.workspace import Workspace

    out = tmp_path / "busy"
    out.mkdir()
    with open(out / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # as a training process holds it
        with pytest.raises(LockedError, match="is being trained into by another process"):
            train_run(
                mixture=two_stage_mixture,
                workspace=Workspace.resolve(tmp_path / "ws"),
                config=load_train_config("tiny-cpu"),
                out_dir=out,
                progress=False,
            )
    assert not (out / "config.toml").exists()
