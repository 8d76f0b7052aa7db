"""Tiny-model training step time with InfoNCE vs MAMCL, and training throughput.

Run by hand:  .venv/bin/python benchmarks/train_step.py [--batch 16 --repeat 30 --run]

1. Step time (forward + backward + AdamW) of the tiny Qwen2-VL with LoRA on one fixed batch of
   real pairs (COCO images with captions, short real video clips, MS MARCO texts), alternating
   InfoNCE and MAMCL step by step so both see the same machine load. Baseline: InfoNCE; the target
   is MAMCL overhead <= 1% (the mask is a (B, B+H) comparison of modality ids).
2. The losses alone on embeddings of a large global batch (where a difference would show).
3. With --run: a whole `tiny-cpu` stage on the real mixture (decode included), pairs per second.

Media come from ../shared/data (or CURATE_SHARED_DATA).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tests.train.mixtures import real_rows, write_mixture  # noqa: E402
from train.backbones import build_backbone  # noqa: E402
from train.config import StageConfig, load_train_config  # noqa: E402
from train.data import StageData, pair_items  # noqa: E402
from train.gradcache import contrastive_step  # noqa: E402
from train.losses import LOSSES, LossInputs, modality_ids  # noqa: E402
from train.trainer import PreparedBatch, _loss_closure  # noqa: E402

DATA = Path(os.environ.get("CURATE_SHARED_DATA", REPO.parent / "shared" / "data"))


def prepared_batch(backbone, rows, *, batch: int) -> PreparedBatch:
    pairs = [pair_items(r, hard_negatives=True) for r in rows[:batch]]
    queries = [backbone.load(p.query) for p in pairs]
    positives = [backbone.load(p.target) for p in pairs]
    negatives = [backbone.load(p.negative) for p in pairs if p.negative is not None]
    return PreparedBatch(
        step=0,
        query_chunks=[backbone.collate(queries, use_instruction=True)],
        candidate_chunks=[backbone.collate(positives + negatives, use_instruction=True)],
        positive_modalities=[x.item.modality for x in positives],
        negative_modalities=[x.item.modality for x in negatives],
        skipped=0,
    )


def step_times(
    backbone, batch: PreparedBatch, losses: list[str], repeat: int
) -> dict[str, list[float]]:
    params = [p for _, p in backbone.trainable_parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    stages = {name: StageConfig(name="bench", data="bench", loss=name) for name in losses}
    times: dict[str, list[float]] = {name: [] for name in losses}
    for i in range(repeat + 2):
        for name in losses if i % 2 == 0 else losses[::-1]:
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            contrastive_step(
                backbone,
                batch.query_chunks,
                batch.candidate_chunks,
                _loss_closure(stages[name], batch, 0.03),
                cached=False,
            )
            optimizer.step()
            if i >= 2:  # two warm-up rounds
                times[name].append(time.perf_counter() - start)
    return times


def loss_only(b: int, h: int, d: int, repeat: int) -> dict[str, float]:
    """Median forward + backward time of each loss on random embeddings (alternating)."""
    gen = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(b, d, generator=gen), dim=-1).requires_grad_()
    c = torch.nn.functional.normalize(torch.randn(b + h, d, generator=gen), dim=-1).requires_grad_()
    mods = ["text", "image", "video", "image+text", "video+text"]
    ids = modality_ids([mods[i % len(mods)] for i in range(b + h)])
    out: dict[str, list[float]] = {"infonce": [], "mamcl": []}
    for i in range(repeat + 2):
        for name in ("infonce", "mamcl") if i % 2 == 0 else ("mamcl", "infonce"):
            start = time.perf_counter()
            LOSSES[name](LossInputs(q, c, ids, 0.03)).backward()
            if i >= 2:
                out[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=16, help="pairs per step (default 16)")
    parser.add_argument("--repeat", type=int, default=30, help="timed steps per loss")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--run", action="store_true", help="also time a whole tiny-cpu stage")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    config = load_train_config("tiny-cpu")
    backbone = build_backbone(config, device=torch.device("cpu"))
    torch.manual_seed(0)
    backbone.add_lora(r=8, alpha=16, dropout=0.0)
    backbone.train(True)
    with tempfile.TemporaryDirectory() as tmp:
        rows = real_rows(DATA)
        mixture = write_mixture(Path(tmp) / "mix", {"retrieval_adaptation": rows})
        data = StageData(mixture / "retrieval_adaptation.parquet")
        batch = prepared_batch(backbone, data.rows(range(len(data))), batch=args.batch)
        n_cand = sum(int(c["input_ids"].shape[0]) for c in batch.candidate_chunks)
        print(
            f"tiny-qwen2-vl (hidden {config.backbone.tiny_hidden}, {config.backbone.tiny_layers} "
            f"layers), LoRA r8, {batch.n_pairs} pairs + {n_cand - batch.n_pairs} hard negatives, "
            f"modalities {sorted(set(batch.positive_modalities))}, {args.threads} thread(s)"
        )
        times = step_times(backbone, batch, ["infonce", "mamcl", "symmetric_infonce"], args.repeat)
        base = statistics.median(times["infonce"])
        print(f"\n{'loss':<20}{'median step ms':>16}{'vs infonce':>12}{'pairs/s':>10}")
        for name, values in times.items():
            median = statistics.median(values)
            print(
                f"{name:<20}{median * 1e3:>16.2f}{median / base:>12.4f}{batch.n_pairs / median:>10.1f}"
            )
        overhead = statistics.median(times["mamcl"]) / base - 1
        print(
            f"MAMCL step overhead vs InfoNCE, measured: {overhead * 100:+.2f}% (target <= 1%; "
            "step-to-step noise on a shared machine is a few %)"
        )
        small = loss_only(batch.n_pairs, n_cand - batch.n_pairs, backbone.dim, 200)
        extra = small["mamcl"] - small["infonce"]
        print(
            f"the losses alone at this batch: infonce {small['infonce'] * 1e6:.0f} us, mamcl "
            f"{small['mamcl'] * 1e6:.0f} us: MAMCL adds {extra * 1e6:.0f} us = "
            f"{100 * extra / base:+.3f}% of a step (the overhead without the noise)"
        )

        print("\nlosses alone (forward + backward on embeddings), B=1024, H=256, d=1536")
        alone = loss_only(1024, 256, 1536, 10)
        print(
            f"  infonce {alone['infonce'] * 1e3:.2f} ms, mamcl {alone['mamcl'] * 1e3:.2f} ms, "
            f"ratio {alone['mamcl'] / alone['infonce']:.3f}"
        )

        if args.run:
            from curate.workspace import Workspace
            from train.trainer import train_run

            run_config = load_train_config(
                "tiny-cpu", {"stages.0.epochs": 2, "checkpoint_every": 0}
            )
            started = time.perf_counter()
            out = train_run(
                mixture=mixture,
                workspace=Workspace.resolve(Path(tmp) / "ws"),
                config=run_config,
                out_dir=Path(tmp) / "run",
                progress=False,
            )
            seconds = time.perf_counter() - started
            import json

            steps = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
            pairs = sum(s["pairs"] for s in steps)
            print(
                f"\ntiny-cpu stage, 2 epochs over {len(rows)} real pairs (videos decoded): "
                f"{seconds:.1f} s wall including model build, "
                f"{pairs / seconds:.1f} pairs/s; steps alone: "
                f"{pairs / sum(s['step_s'] for s in steps):.1f} pairs/s"
            )


if __name__ == "__main__":
    main()
