"""Data parallelism under torchrun: gathering embeddings across ranks and summing gradients.

Every rank computes the loss of the GLOBAL batch: `gather_with_grad` concatenates all ranks'
embeddings with this rank's own slice kept in the graph, so backward gives this rank's share of
the gradient; `all_reduce_grads` sums the shares, which is exactly the gradient of one process
on the concatenated batch (no 1/world scaling: each rank's share is a different term of the same
sum). Ranks may hold different numbers of rows (a short last batch, skipped media): gathers pad
to the largest and cut back.

Parameters that every rank uses whole (a learnable temperature) already have the full gradient
on every rank and are left out of the sum.

Gradients are reduced by hand after backward instead of through DistributedDataParallel:
GradCache runs several backward passes per step, and the trainable LoRA weights are small,
so one flat all-reduce per step costs little. The launch is still `torchrun --nproc_per_node N`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA); no-op alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world=world, local_rank=local_rank)


def is_main_process() -> bool:
    """Rank 0 under torchrun, or a process started alone."""
    return int(os.environ.get("RANK", "0")) == 0


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_sizes(n: int, device: torch.device) -> list[int]:
    if not _active():
        return [n]
    size = torch.tensor([n], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    return [int(s.item()) for s in sizes]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` (rows) from all ranks in rank order; gradients flow into the local rows."""
    if not _active():
        return x
    sizes = gather_sizes(x.shape[0], x.device)
    longest = max(sizes)
    padded = x.detach()
    if x.shape[0] < longest:
        pad = x.new_zeros((longest - x.shape[0], *x.shape[1:]))
        padded = torch.cat([padded, pad])
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    parts = [p[:n] for p, n in zip(parts, sizes, strict=True)]
    parts[dist.get_rank()] = x
    return torch.cat(parts)


def gather_tensor(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from all ranks (no gradient), e.g. modality ids."""
    if not _active():
        return x
    return gather_with_grad(x.detach())


def all_reduce_grads(params: Iterable[torch.nn.Parameter]) -> None:
    """Sum gradients over ranks in one flat buffer (missing grads count as zero)."""
    if not _active():
        return
    params = list(params)
    if not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(g).to(g.dtype)
        offset += n


def all_sum(value: float, device: torch.device) -> float:
    if not _active():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item())


def barrier() -> None:
    if _active():
        dist.barrier()


def broadcast_object(value: object) -> object:
    """Rank 0's value on every rank."""
    if not _active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
