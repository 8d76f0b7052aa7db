"""One contrastive step's forward and backward: plain, or GradCache for big batches.

Plain: embed every chunk with autograd on, compute the loss, backward (memory grows with the
batch). GradCache (Gao et al. 2021): embed every chunk WITHOUT autograd, compute the loss on the
detached embeddings and get d(loss)/d(embedding), then re-embed chunk by chunk WITH autograd and
backpropagate that cached gradient. Peak memory is one chunk's activations; the gradients are
the plain path's, because the loss is a function of the embeddings only. Each chunk's RNG state
is replayed on the second pass, so dropout draws the same masks.

>>> # loss = contrastive_step(backbone, q_chunks, c_chunks, loss_fn, cached=True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from train.backbones.base import Backbone


class RngState:
    """CPU and CUDA generator states, captured and restored around a forward."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


def _embed(backbone: Backbone, chunks: Sequence[Any]) -> list[torch.Tensor]:
    return [backbone.forward(chunk) for chunk in chunks]


def contrastive_step(
    backbone: Backbone,
    query_chunks: Sequence[Any],
    candidate_chunks: Sequence[Any],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    cached: bool,
) -> torch.Tensor:
    """Forward and backward one step; returns the detached loss.

    `loss_fn(queries, candidates)` receives this rank's embeddings in chunk order (it gathers
    across ranks itself). Gradients accumulate into the backbone's parameters (and whatever
    `loss_fn` uses, e.g. a learnable temperature).
    """
    if not cached:
        queries = torch.cat(_embed(backbone, query_chunks))
        candidates = torch.cat(_embed(backbone, candidate_chunks))
        loss = loss_fn(queries, candidates)
        loss.backward()
        return loss.detach()

    chunks = [*query_chunks, *candidate_chunks]
    states: list[RngState] = []
    reps: list[torch.Tensor] = []
    with torch.no_grad():
        for chunk in chunks:
            states.append(RngState())
            reps.append(backbone.forward(chunk))
    after = RngState()
    leaves = [r.detach().requires_grad_(True) for r in reps]
    n_query = len(query_chunks)
    loss = loss_fn(torch.cat(leaves[:n_query]), torch.cat(leaves[n_query:]))
    loss.backward()
    for chunk, state, leaf in zip(chunks, states, leaves, strict=True):
        if leaf.grad is None:
            continue
        state.restore()
        emb = backbone.forward(chunk)
        emb.backward(gradient=leaf.grad)
    after.restore()
    return loss.detach()


def split_chunks(n: int, chunk: int) -> list[slice]:
    """Slices of at most `chunk` rows covering range(n) (one slice when chunk <= 0)."""
    if chunk <= 0 or chunk >= n:
        return [slice(0, n)]
    return [slice(i, min(n, i + chunk)) for i in range(0, n, chunk)]
