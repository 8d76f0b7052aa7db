"""Losses against hand-computed values and an independent loop reference in numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from curate.errors import ConfigError
from train.losses import (
    LOSSES,
    MODALITY_IDS,
    LossInputs,
    get_loss,
    infonce,
    mamcl,
    modality_ids,
    modality_mask,
    symmetric_infonce,
)


def _reference(q, c, modality, tau, kind):
    """Explicit loops in float64: the losses as the docstrings define them."""
    q = np.asarray(q, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    b = q.shape[0]
    s = np.array([[float(np.dot(q[i], c[j])) / tau for j in range(c.shape[0])] for i in range(b)])

    def xent(row, target, keep):
        terms = [math.exp(row[j]) for j in range(len(row)) if keep[j]]
        return -(row[target] - math.log(sum(terms)))

    q2c, c2q = [], []
    for i in range(b):
        if kind == "mamcl":
            keep = [modality[j] == modality[i] or j == i for j in range(c.shape[0])]
        else:
            keep = [True] * c.shape[0]
        q2c.append(xent(s[i], i, keep))
    if kind != "symmetric_infonce":
        return sum(q2c) / b
    for j in range(b):
        column = [s[i][j] for i in range(b)]
        c2q.append(xent(column, j, [True] * b))
    return (sum(q2c) / b + sum(c2q) / b) / 2


def _normalised(*shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(
        torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1
    )


def test_hand_computed_values():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=torch.float64)
    ids = modality_ids(["text", "image", "image"])
    x = LossInputs(query=q, candidates=c, candidate_modality=ids, temperature=1.0)
    e = math.e
    # row 0 logits [1, 0, 0.6], row 1 logits [0, 1, 0.8]
    q0 = -math.log(e / (e + 1 + math.exp(0.6)))
    q1 = -math.log(e / (1 + e + math.exp(0.8)))
    assert infonce(x).item() == pytest.approx((q0 + q1) / 2, abs=1e-12)
    # c->q over the positives: column 0 is [1, 0], column 1 is [0, 1]
    c2q = -math.log(e / (e + 1))
    assert symmetric_infonce(x).item() == pytest.approx(((q0 + q1) / 2 + c2q) / 2, abs=1e-12)
    # MAMCL: query 0's positive is text, the only text candidate -> loss 0; query 1 keeps the
    # two image candidates.
    m1 = -math.log(e / (e + math.exp(0.8)))
    assert mamcl(x).item() == pytest.approx((0.0 + m1) / 2, abs=1e-12)


def test_temperature_scales_the_logits():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    x = LossInputs(query=q, candidates=q.clone(), candidate_modality=modality_ids(["text"] * 2),
                   temperature=0.5)  # fmt: skip
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert infonce(x).item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("kind", sorted(LOSSES))
@pytest.mark.parametrize("hard", [0, 3])
def test_matches_loop_reference(kind, hard):
    b, d = 6, 5
    q = _normalised(b, d, seed=1)
    c = _normalised(b + hard, d, seed=2)
    names = ["text", "image", "image+text", "image", "video", "text", "image", "video+text", "text"]
    modalities = names[: b + hard]
    x = LossInputs(query=q, candidates=c, candidate_modality=modality_ids(modalities),
                   temperature=0.07)  # fmt: skip
    got = LOSSES[kind](x).item()
    want = _reference(q.numpy(), c.numpy(), modalities, 0.07, kind)
    assert got == pytest.approx(want, rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("hard", [0, 4])
def test_mamcl_equals_infonce_when_all_targets_share_a_modality(hard):
    q = _normalised(8, 16, seed=3).float()
    c = _normalised(8 + hard, 16, seed=4).float()
    x = LossInputs(query=q, candidates=c, candidate_modality=modality_ids(["video"] * (8 + hard)))
    assert torch.equal(modality_mask(x), torch.ones(8, 8 + hard, dtype=torch.bool))
    assert torch.allclose(mamcl(x), infonce(x), rtol=0, atol=1e-6)


def test_masking_never_removes_the_positive():
    # Every positive has a modality no other candidate shares: each query keeps only its positive.
    q = _normalised(5, 8, seed=5)
    c = _normalised(5, 8, seed=6)
    x = LossInputs(query=q, candidates=c,
                   candidate_modality=modality_ids(["text", "image", "video", "image+text", "video+text"]))  # fmt: skip
    mask = modality_mask(x)
    assert torch.equal(mask, torch.eye(5, dtype=torch.bool))
    assert mamcl(x).item() == pytest.approx(0.0, abs=1e-12)
    # Random modalities: the diagonal always stays, whatever the ids.
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        ids = torch.randint(0, 5, (12,), generator=g)
        y = LossInputs(query=_normalised(7, 4, seed=7), candidates=_normalised(12, 4, seed=8),
                       candidate_modality=ids)  # fmt: skip
        assert bool(modality_mask(y).diagonal().all())
        assert torch.isfinite(mamcl(y))


def test_hard_negatives_are_masked_by_modality_under_mamcl():
    q = _normalised(3, 8, seed=9)
    c = _normalised(4, 8, seed=10)
    same = LossInputs(query=q, candidates=c, candidate_modality=modality_ids(["image"] * 4))
    other = LossInputs(query=q, candidates=c,
                       candidate_modality=modality_ids(["image", "image", "image", "text"]))  # fmt: skip
    without = LossInputs(query=q, candidates=c[:3], candidate_modality=modality_ids(["image"] * 3))
    # A hard negative of another modality leaves every denominator: as if it were not there.
    assert mamcl(other).item() == pytest.approx(mamcl(without).item(), abs=1e-12)
    # Of the same modality it competes, and raises the loss.
    assert mamcl(same).item() > mamcl(without).item()
    # InfoNCE ignores modalities.
    assert infonce(other).item() == pytest.approx(infonce(same).item(), abs=1e-12)


@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_gradient_reaches_a_learnable_temperature(kind):
    q = _normalised(4, 6, seed=11)
    c = _normalised(6, 6, seed=12)
    ids = modality_ids(["text", "image", "text", "image", "image", "text"])
    tau = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
    loss = LOSSES[kind](LossInputs(query=q, candidates=c, candidate_modality=ids, temperature=tau))
    loss.backward()
    assert tau.grad is not None
    eps = 1e-6

    def at(t):
        return _reference(
            q.numpy(), c.numpy(), ["text", "image", "text", "image", "image", "text"], t, kind
        )

    numeric = (at(0.05 + eps) - at(0.05 - eps)) / (2 * eps)
    assert tau.grad.item() == pytest.approx(numeric, rel=1e-5)


def test_gradients_flow_to_embeddings_and_low_precision_is_finite():
    q = _normalised(4, 8, seed=13).float().requires_grad_()
    c = _normalised(5, 8, seed=14).float().requires_grad_()
    ids = modality_ids(["text", "image", "text", "image", "video"])
    mamcl(LossInputs(query=q, candidates=c, candidate_modality=ids)).backward()
    assert q.grad is not None and c.grad is not None and q.grad.abs().sum() > 0
    for dtype in (torch.bfloat16, torch.float16):
        x = LossInputs(query=q.detach().to(dtype), candidates=c.detach().to(dtype),
                       candidate_modality=ids)  # fmt: skip
        assert torch.isfinite(mamcl(x).float())


def test_modality_ids_are_a_fixed_table_and_errors_name_the_choices():
    assert modality_ids(["image+text", "text"]).tolist() == [
        MODALITY_IDS["image+text"],
        MODALITY_IDS["text"],
    ]
    assert MODALITY_IDS == {"text": 0, "image": 1, "video": 2, "image+text": 3, "video+text": 4}
    assert modality_ids([]).shape == (0,)
    with pytest.raises(ConfigError, match="image,text"):
        modality_ids(["image,text"])
    with pytest.raises(ConfigError, match="known: infonce"):
        get_loss("triplet")


def test_inputs_are_checked():
    q = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="B=3"):
        LossInputs(query=q, candidates=torch.zeros(2, 4), candidate_modality=torch.zeros(2))
    with pytest.raises(ValueError, match="one id per candidate"):
        LossInputs(query=q, candidates=torch.zeros(3, 4), candidate_modality=torch.zeros(4))
    with pytest.raises(ValueError, match="positive"):
        LossInputs(query=q, candidates=torch.zeros(3, 4), candidate_modality=torch.zeros(3),
                   temperature=0.0)  # fmt: skip
