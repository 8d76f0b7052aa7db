"""GradCache gives the plain path's loss and gradients (with and without LoRA dropout)."""

from __future__ import annotations

import pytest
import torch

from tests.train.test_backbones import perturb_lora
from train.gradcache import contrastive_step, split_chunks
from train.template import EmbedItem
from train.trainer import PreparedBatch, _loss_closure


@pytest.fixture(scope="module")
def pairs(shared_data):
    coco = sorted((shared_data / "images" / "coco_val2017_subset" / "val2017").glob("*.jpg"))[:3]
    queries = [EmbedItem(text=f"caption number {i} of a photo") for i in range(3)]
    queries.append(EmbedItem(images=(str(coco[0]),)))
    queries.append(EmbedItem(text="what is this", images=(str(coco[1]),), instruction="Answer:"))
    targets = [EmbedItem(images=(str(c),)) for c in coco]
    targets += [EmbedItem(text="a caption"), EmbedItem(text="an answer")]
    negatives = [EmbedItem(text="a wrong caption"), EmbedItem(images=(str(coco[2]),))]
    return queries, targets, negatives


def grads_of(backbone, pairs, *, chunk, cached, loss="mamcl"):
    import dataclasses

    from train.config import StageConfig

    queries, targets, negatives = pairs
    stage = dataclasses.replace(StageConfig(name="s", data="s"), loss=loss, gradcache_chunk=chunk)
    collate = backbone.collate
    q_loaded = [backbone.load(i) for i in queries]
    c_loaded = [backbone.load(i) for i in targets + negatives]
    batch = PreparedBatch(
        step=0,
        query_chunks=[
            collate(q_loaded[s], use_instruction=True) for s in split_chunks(len(q_loaded), chunk)
        ],
        candidate_chunks=[
            collate(c_loaded[s], use_instruction=True) for s in split_chunks(len(c_loaded), chunk)
        ],
        positive_modalities=[t.modality for t in targets],
        negative_modalities=[n.modality for n in negatives],
        skipped=0,
    )
    for _, p in backbone.trainable_parameters():
        p.grad = None
    torch.manual_seed(123)
    loss = contrastive_step(
        backbone,
        batch.query_chunks,
        batch.candidate_chunks,
        _loss_closure(stage, batch, 0.05),
        cached=cached,
    )
    rng_after = torch.get_rng_state()
    return loss, {n: p.grad.clone() for n, p in backbone.trainable_parameters()}, rng_after


@pytest.mark.parametrize("loss", ["mamcl", "symmetric_infonce"])
def test_gradcache_equals_plain_gradients(tiny_backbone, pairs, loss):
    tiny_backbone.add_lora(r=4, alpha=8, dropout=0.0)
    perturb_lora(tiny_backbone)
    tiny_backbone.train(True)
    plain_loss, plain, _ = grads_of(tiny_backbone, pairs, chunk=0, cached=False, loss=loss)
    for chunk in (1, 3):
        cached_loss, cached, _ = grads_of(tiny_backbone, pairs, chunk=chunk, cached=True, loss=loss)
        assert torch.allclose(cached_loss, plain_loss, atol=1e-6)
        assert plain.keys() == cached.keys()
        for name in plain:
            assert (cached[name] - plain[name]).norm() <= 1e-5 * plain[name].norm() + 1e-7, name
    assert max(g.abs().max() for g in plain.values()) > 1e-4  # gradients are not trivially zero


def test_gradcache_replays_dropout_masks(tiny_backbone, pairs):
    tiny_backbone.add_lora(r=4, alpha=8, dropout=0.3)
    perturb_lora(tiny_backbone)
    tiny_backbone.train(True)
    # The plain path over the same chunks draws the same dropout masks in the same order.
    plain_loss, plain, plain_rng = grads_of(tiny_backbone, pairs, chunk=2, cached=False)
    cached_loss, cached, cached_rng = grads_of(tiny_backbone, pairs, chunk=2, cached=True)
    assert torch.allclose(cached_loss, plain_loss, atol=1e-6)
    for name in plain:
        assert (cached[name] - plain[name]).norm() <= 1e-5 * plain[name].norm() + 1e-7, name
    assert torch.equal(plain_rng, cached_rng)  # the RNG ends where the plain path leaves it
