"""Run under `torchrun --nproc_per_node N` (or alone): one contrastive step on this rank's slice
of a fixed global batch, then a short real training run. Writes what the test compares.

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m tests.train.ddp_worker OUT MIXTURE
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from curate.workspace import Workspace
from train import distributed as D
from train.backbones import build_backbone
from train.config import load_train_config
from train.data import StageData, open_mixture
from train.gradcache import contrastive_step
from train.trainer import BatchMaker, _loss_closure, train_run


def one_step(config, data, stage, dist, *, rows: int, cached: bool) -> dict:
    """Loss and summed gradients for the first `rows` rows as one global batch."""
    backbone = build_backbone(config, device=torch.device("cpu"))
    torch.manual_seed(0)
    backbone.add_lora(r=4, alpha=8, dropout=0.0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, p in backbone.trainable_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    backbone.train(True)
    per_rank = -(-rows // dist.world)  # ceil: the last rank may get fewer rows
    import dataclasses

    stage = dataclasses.replace(stage, batch_size=per_rank, gradcache_chunk=2 if cached else 0)
    maker = BatchMaker(backbone, data, stage, homogeneous=False, seed=0, dist=dist)
    maker._plans = {0: [torch.arange(rows).numpy()]}
    batch = maker(0)
    loss = contrastive_step(
        backbone,
        batch.query_chunks,
        batch.candidate_chunks,
        _loss_closure(stage, batch, stage.temperature),
        cached=cached,
    )
    params = [p for _, p in backbone.trainable_parameters()]
    D.all_reduce_grads(params)
    maker.close()
    return {
        "loss": float(loss),
        "pairs": batch.n_pairs,
        "grads": {n: p.grad.flatten().tolist() for n, p in backbone.trainable_parameters()},
    }


def run_all(out: Path, mixture: Path, dist: D.DistInfo) -> dict:
    """Both gradient cases and a short two-stage run; also called in-process for world 1."""
    config = load_train_config("tiny-cpu", {"stages.0.loss": "mamcl"})
    mix = open_mixture(mixture)
    data = StageData(next(iter(mix.stages.values())))
    stage = config.stages[0]
    result = {
        "world": dist.world,
        "full": one_step(config, data, stage, dist, rows=6, cached=False),
        "uneven": one_step(config, data, stage, dist, rows=5, cached=True),
    }
    per_rank = 4 // dist.world
    run_config = load_train_config(
        "tiny-cpu",
        {
            "stages.0.batch_size": per_rank,
            "stages.1.batch_size": per_rank,
            "stages.0.max_steps": 3,
            "stages.1.max_steps": 2,
            "checkpoint_every": 0,
        },
    )
    run_dir = out / f"run-world{dist.world}"
    train_run(
        mixture=mixture,
        workspace=Workspace.resolve(out / "ws"),
        config=run_config,
        out_dir=run_dir,
        progress=False,
    )
    return result


def main() -> None:
    out, mixture = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    dist = D.init_distributed("cpu")
    result = run_all(out, mixture, dist)
    (out / f"result-world{dist.world}-rank{dist.rank}.json").write_text(json.dumps(result))
    D.shutdown()


if __name__ == "__main__":
    main()
