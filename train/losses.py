"""Contrastive losses as pure functions of embeddings.

Every loss takes a `LossInputs`: the (gathered, global) batch of B query embeddings, B + H candidate
embeddings (row i < B is query i's positive, then H hard negatives shared by every query), the
modality id of each candidate and the temperature. Logits are `s_ij = <q_i, c_j> / tau`.

- `infonce`: query -> candidate cross-entropy over all B + H candidates, mean over queries.
- `symmetric_infonce`: (q -> c over all candidates + c -> q over the B positives) / 2, as in UNITE's
  stage 1 and CLIP. Hard negatives take part only in the q -> c half (they have no query).
- `mamcl`: UNITE's modal-aware masked contrastive loss: for query i, candidate j stays in the
  softmax denominator only if its modality equals the modality of i's positive
  (`candidate_modality[j] == candidate_modality[i]`); masked logits are set to -1e9. The positive
  always stays, so the loss is always finite. Hard negatives are masked by the same rule. When all
  candidates share a modality, MAMCL is InfoNCE exactly.

Modalities are compared exactly as modality sets ("image" != "image+text"), through the fixed ids
of `modality_ids`, so every rank gets the same id for the same string.

A learnable temperature is a tensor the trainer owns: gradients flow to it through `1 / tau`.

>>> import torch
>>> q = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
>>> x = LossInputs(query=q, candidates=q.clone(), candidate_modality=modality_ids(["text"] * 4))
>>> bool(torch.isclose(mamcl(x), infonce(x)))
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import torch
import torch.nn.functional as F

from curate.errors import ConfigError
from curate.schema import MODALITIES

#: Logit given to candidates masked out of a query's denominator (UNITE uses -1e9).
MASKED_LOGIT: Final = -1e9
DEFAULT_TEMPERATURE: Final = 0.03

#: Fixed modality ids: the same string maps to the same id in every process.
MODALITY_IDS: Final[dict[str, int]] = {m: i for i, m in enumerate(MODALITIES)}


@dataclass(frozen=True)
class LossInputs:
    """Embeddings of one global batch; see the module docstring for the layout."""

    query: torch.Tensor  # (B, d) L2-normalised
    candidates: torch.Tensor  # (B + H, d): row i < B is query i's positive, then H hard negatives
    candidate_modality: torch.Tensor  # (B + H,) int64 modality id of each candidate
    temperature: torch.Tensor | float = DEFAULT_TEMPERATURE

    def __post_init__(self) -> None:
        q, c, m = self.query, self.candidates, self.candidate_modality
        if q.ndim != 2 or c.ndim != 2:
            raise ValueError(
                f"query and candidates must be 2-D (n, d); found {tuple(q.shape)} and "
                f"{tuple(c.shape)}"
            )
        if c.shape[0] < q.shape[0] or c.shape[1] != q.shape[1]:
            raise ValueError(
                f"candidates must be (B + H, d) with the query's B={q.shape[0]} and "
                f"d={q.shape[1]}; found {tuple(c.shape)}"
            )
        if m.shape != (c.shape[0],):
            raise ValueError(
                f"candidate_modality must have one id per candidate ({c.shape[0]},); "
                f"found {tuple(m.shape)}"
            )
        t = self.temperature
        if not isinstance(t, torch.Tensor) and not t > 0:
            raise ValueError(f"temperature must be positive, found {t}")

    @property
    def batch(self) -> int:
        return int(self.query.shape[0])


def logits(x: LossInputs) -> torch.Tensor:
    """(B, B + H) scaled similarities `<q_i, c_j> / tau`."""
    return (x.query @ x.candidates.T) / x.temperature


def modality_mask(x: LossInputs) -> torch.Tensor:
    """(B, B + H) bool: True where candidate j stays in query i's MAMCL denominator."""
    b = x.batch
    ids = x.candidate_modality.to(x.query.device)
    keep = ids[None, :] == ids[:b, None]
    # The positive shares its own modality, but keep it explicitly: masking must never remove it.
    keep[torch.arange(b, device=keep.device), torch.arange(b, device=keep.device)] = True
    return keep


def _targets(x: LossInputs) -> torch.Tensor:
    return torch.arange(x.batch, device=x.query.device)


def infonce(x: LossInputs) -> torch.Tensor:
    """Query -> candidate cross-entropy over all B + H candidates, mean over the B queries."""
    return F.cross_entropy(logits(x), _targets(x))


def symmetric_infonce(x: LossInputs) -> torch.Tensor:
    """(q -> c over all candidates + c -> q over the B positives) / 2."""
    s = logits(x)
    target = _targets(x)
    q2c = F.cross_entropy(s, target)
    c2q = F.cross_entropy(s[:, : x.batch].T, target)
    return (q2c + c2q) / 2


def mamcl(x: LossInputs) -> torch.Tensor:
    """Modal-aware masked InfoNCE (q -> c): other-modality candidates leave the denominator."""
    s = logits(x)
    masked = max(MASKED_LOGIT, torch.finfo(s.dtype).min)
    s = s.masked_fill(~modality_mask(x), masked)
    return F.cross_entropy(s, _targets(x))


LOSSES: Final[dict[str, Callable[[LossInputs], torch.Tensor]]] = {
    "infonce": infonce,
    "symmetric_infonce": symmetric_infonce,
    "mamcl": mamcl,
}


def get_loss(name: str) -> Callable[[LossInputs], torch.Tensor]:
    """The loss called `name`, with an error that lists the known ones."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ConfigError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}") from None


def modality_ids(modalities: Sequence[str]) -> torch.Tensor:
    """(n,) int64 ids of modality strings from a fixed table of the five modalities.

    >>> modality_ids(["text", "image+text", "image"]).tolist()
    [0, 3, 1]
    """
    try:
        return torch.tensor([MODALITY_IDS[m] for m in modalities], dtype=torch.long)
    except KeyError as error:
        raise ConfigError(
            f"unknown modality {error.args[0]!r}; expected one of {', '.join(MODALITIES)}"
        ) from None
