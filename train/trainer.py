"""The training loop: all stages of a config on a mixture, resumable, data-parallel under torchrun.

A run folder (`out_dir`) holds:

    config.toml      the resolved config          mixture.json   the mixture's meta, with name@version
    metrics.jsonl    one line per step             meta.json      versions, backbone, seed, times, skips
    base/            tiny backbones: the untrained weights (a resumed run starts from the same)
    checkpoints/     stage-<i>-step-<s>/ (see train.checkpoint)
    stages/<i>-<name>/adapter.safetensors   each finished stage's adapter (then merged)
    final/           final.json + the adapters `load_embedder` applies in order
    _COMPLETE        written last, with the config hash

Each stage: seed, add LoRA (r, alpha, dropout of the stage), AdamW (no weight decay by default)
with linear warmup and cosine decay, one contrastive step per global batch (plain or GradCache),
gradients summed over ranks, a checkpoint every `checkpoint_every` steps; at the end the adapter
is saved and merged into the weights, and the next stage adds a fresh adapter.

A pair whose media cannot be decoded is dropped from its batch and counted (`skipped_media` in
metrics and meta.json); a batch left empty on every rank still advances the schedule.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import random
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from curate.errors import ConfigError
from curate.locks import exclusive_lock
from curate.workspace import Workspace
from train import distributed as D
from train.backbones import Backbone, build_backbone, resolve_device
from train.checkpoint import (
    clean_temporaries,
    latest_checkpoint,
    load_checkpoint,
    load_tensors,
    save_checkpoint,
    save_tensors,
    set_rng_state,
    write_json,
)
from train.config import StageConfig, TrainConfig
from train.data import (
    MixtureRef,
    PairItems,
    Prefetcher,
    StageData,
    check_stage_table,
    homogeneous_for,
    open_mixture,
    pair_items,
    rank_slice,
    stage_tables,
)
from train.gradcache import contrastive_step, split_chunks
from train.media import MediaError

COMPLETE = "_COMPLETE"
MAX_SKIP_EXAMPLES = 20


def lr_factor(step: int, *, total: int, warmup: int) -> float:
    """Linear warmup over `warmup` steps (first step already non-zero), then cosine to 0.

    >>> [round(lr_factor(s, total=10, warmup=2), 3) for s in (0, 1, 2, 9)]
    [0.333, 0.667, 1.0, 0.03]
    """
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def warmup_steps(total: int, ratio: float) -> int:
    return math.ceil(total * ratio) if ratio > 0 else 0


def stage_seed(seed: int, stage_index: int) -> int:
    return seed * 1000 + 17 * (stage_index + 1)


@dataclass
class PreparedBatch:
    """One rank's share of a global batch, decoded and collated."""

    step: int
    query_chunks: list[Any]
    candidate_chunks: list[Any]
    positive_modalities: list[str]
    negative_modalities: list[str]
    skipped: int
    skip_messages: list[str] = field(default_factory=list)

    @property
    def n_pairs(self) -> int:
        return len(self.positive_modalities)


class BatchMaker:
    """Turns a step number into a PreparedBatch (runs in the prefetch thread)."""

    def __init__(
        self,
        backbone: Backbone,
        data: StageData,
        stage: StageConfig,
        *,
        homogeneous: bool,
        seed: int,
        dist: D.DistInfo,
    ) -> None:
        self.backbone = backbone
        self.data = data
        self.stage = stage
        self.homogeneous = homogeneous
        self.seed = seed
        self.dist = dist
        self.global_batch = stage.batch_size * dist.world
        self._plans: dict[int, list[np.ndarray]] = {}
        self.pool = ThreadPoolExecutor(max(1, backbone.media_config.decode_threads))

    @property
    def batches_per_epoch(self) -> int:
        """Every epoch has the same number of batches (homogeneous batching can need more than
        rows / batch: each modality pair ends with its own short batch)."""
        return max(1, len(self.plan(0)))

    def plan(self, epoch: int) -> list[np.ndarray]:
        if epoch not in self._plans:
            self._plans = {
                epoch: self.data.plan(
                    global_batch=self.global_batch,
                    homogeneous=self.homogeneous,
                    shuffle=self.stage.shuffle,
                    seed=self.seed,
                    epoch=epoch,
                )
            }
        return self._plans[epoch]

    def _load_pair(self, pair: PairItems):
        try:
            q = self.backbone.load(pair.query)
            t = self.backbone.load(pair.target)
            n = self.backbone.load(pair.negative) if pair.negative is not None else None
        except MediaError as error:
            return None, f"{pair.row_id}: {error}"
        return (q, t, n), None

    def __call__(self, step: int) -> PreparedBatch:
        epoch, index = divmod(step, self.batches_per_epoch)
        plan = self.plan(epoch)
        batch = plan[index] if index < len(plan) else np.zeros(0, dtype=np.int64)
        mine = rank_slice(
            batch, rank=self.dist.rank, world=self.dist.world, per_rank=self.stage.batch_size
        )
        pairs = [
            pair_items(r, hard_negatives=self.stage.hard_negatives) for r in self.data.rows(mine)
        ]
        loaded = list(self.pool.map(self._load_pair, pairs))
        queries, positives, negatives, messages = [], [], [], []
        for value, message in loaded:
            if value is None:
                messages.append(message)
                continue
            q, t, n = value
            queries.append(q)
            positives.append(t)
            if n is not None:
                negatives.append(n)
        candidates = positives + negatives
        chunk = self.stage.gradcache_chunk
        use = self.stage.instructions
        collate = self.backbone.collate
        return PreparedBatch(
            step=step,
            query_chunks=[
                collate(queries[s], use_instruction=use) for s in split_chunks(len(queries), chunk)
            ]
            if queries
            else [],
            candidate_chunks=[
                collate(candidates[s], use_instruction=use)
                for s in split_chunks(len(candidates), chunk)
            ]
            if candidates
            else [],
            positive_modalities=[t.item.modality for t in positives],
            negative_modalities=[n.item.modality for n in negatives],
            skipped=len(messages),
            skip_messages=messages,
        )

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


# --- the run folder --------------------------------------------------------------------------


class RunFolder:
    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def base(self) -> Path:
        return self.path / "base"

    @property
    def final(self) -> Path:
        return self.path / "final"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    def stage_dir(self, index: int, stage: StageConfig) -> Path:
        return self.path / "stages" / f"{index}-{stage.name}"

    def complete_hash(self) -> str | None:
        marker = self.path / COMPLETE
        if not marker.is_file():
            return None
        try:
            return str(json.loads(marker.read_text() or "{}").get("config_hash"))
        except json.JSONDecodeError:
            return None

    def read_meta(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / "meta.json").read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def truncate_metrics(self, stage_index: int, step: int) -> None:
        """Keep the lines of earlier stages and of this stage up to `step` (a resumed run
        rewrites the rest)."""
        if not self.metrics.is_file():
            return
        kept = []
        for line in self.metrics.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by the kill
            i = row.get("stage_index", 0)
            if i < stage_index or (i == stage_index and row.get("step", 0) <= step):
                kept.append(line)
        tmp = self.metrics.with_name(f".metrics.{os.getpid()}.tmp")
        tmp.write_text("".join(f"{k}\n" for k in kept))
        os.replace(tmp, self.metrics)


def _run_lock(path: Path, enabled: bool) -> contextlib.AbstractContextManager[None]:
    if not enabled:
        return contextlib.nullcontext()
    return exclusive_lock(path / ".lock", busy=f"the run folder {path} is being trained into")


def _versions() -> dict[str, str]:
    import transformers

    from curate import __version__

    versions = {
        "curate": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    with contextlib.suppress(ImportError):
        import peft

        versions["peft"] = peft.__version__
    return versions


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _prepare_folder(run: RunFolder, config: TrainConfig, mixture: MixtureRef) -> None:
    """Write config.toml and mixture.json, or check that an existing folder holds this run."""
    run.path.mkdir(parents=True, exist_ok=True)
    config_file = run.path / "config.toml"
    config_hash = config.config_hash()
    mix_file = run.path / "mixture.json"
    if config_file.is_file():
        from train.config import load_train_config

        existing = load_train_config(config_file)
        if existing.config_hash() != config_hash:
            raise ConfigError(
                f"{run.path} holds a run with another config (hash {existing.config_hash()}, "
                f"now {config_hash}); choose another --out, or delete the folder to start over"
            )
        if mix_file.is_file():
            ref = json.loads(mix_file.read_text()).get("ref")
            if ref and ref != mixture.ref:
                raise ConfigError(
                    f"{run.path} holds a run on mixture {ref}, not {mixture.ref}; choose another --out"
                )
            return
    write_json(
        run.path / "mixture.json",
        {
            "ref": mixture.ref,
            "name": mixture.name,
            "version": mixture.version,
            "path": str(mixture.path),
            "meta": mixture.meta,
        },
    )
    if not config_file.is_file():
        tmp = config_file.with_name(f".config.{os.getpid()}.tmp")
        tmp.write_text(config.to_toml())
        os.replace(tmp, config_file)


# --- training --------------------------------------------------------------------------------


class _Metrics:
    def __init__(self, run: RunFolder, enabled: bool) -> None:
        self.run = run
        self.enabled = enabled

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.run.metrics, "a") as handle:
            handle.write(json.dumps(row, sort_keys=True) + "\n")
            handle.flush()


def _progress(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, file=sys.stderr, dynamic_ncols=True)


def _loss_closure(stage: StageConfig, batch: PreparedBatch, temperature: torch.Tensor | float):
    from train.losses import LOSSES, LossInputs, modality_ids

    loss = LOSSES[stage.loss]
    n_pos = batch.n_pairs
    device = None

    def run(queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        nonlocal device
        device = queries.device
        q = D.gather_with_grad(queries)
        pos = D.gather_with_grad(candidates[:n_pos])
        neg = D.gather_with_grad(candidates[n_pos:])
        pos_ids = D.gather_tensor(modality_ids(batch.positive_modalities).to(device))
        neg_ids = D.gather_tensor(modality_ids(batch.negative_modalities).to(device).reshape(-1))
        return loss(
            LossInputs(
                query=q,
                candidates=torch.cat([pos, neg]),
                candidate_modality=torch.cat([pos_ids, neg_ids]).long(),
                temperature=temperature,
            )
        )

    return run


def _apply_stage_adapter(backbone: Backbone, stage: StageConfig, index: int, seed: int, adapter):
    torch.manual_seed(stage_seed(seed, index))
    backbone.add_lora(r=stage.lora_r, alpha=stage.lora_alpha, dropout=stage.lora_dropout)
    backbone.load_trainable_state(adapter)
    backbone.merge_lora()


def _train_stage(
    *,
    backbone: Backbone,
    config: TrainConfig,
    stage: StageConfig,
    index: int,
    data: StageData,
    mixture: MixtureRef,
    run: RunFolder,
    dist: D.DistInfo,
    progress: bool,
    totals: dict[str, Any],
) -> dict[str, Any]:
    homogeneous = homogeneous_for(stage, mixture)
    seed = stage_seed(config.seed, index)
    maker = BatchMaker(backbone, data, stage, homogeneous=homogeneous, seed=seed, dist=dist)
    total = stage.max_steps or stage.epochs * maker.batches_per_epoch
    warmup = warmup_steps(total, stage.warmup_ratio)

    torch.manual_seed(seed)  # the adapter's initial weights
    backbone.add_lora(r=stage.lora_r, alpha=stage.lora_alpha, dropout=stage.lora_dropout)
    params = [p for _, p in backbone.trainable_parameters()]
    groups: list[dict[str, Any]] = [{"params": params}]
    log_tau = None
    if stage.learnable_temperature:
        log_tau = torch.nn.Parameter(
            torch.tensor(math.log(stage.temperature), device=backbone.device)
        )
        groups.append({"params": [log_tau], "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=stage.lr, weight_decay=stage.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total=total, warmup=warmup)
    )

    start = 0
    ref = latest_checkpoint(run.checkpoints, index)
    if ref is not None:
        adapter, state = load_checkpoint(ref)
        backbone.load_trainable_state(adapter)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if log_tau is not None and state.get("log_tau") is not None:
            with torch.no_grad():
                log_tau.copy_(torch.as_tensor(state["log_tau"]))
        totals["skipped_media"] = int(state.get("skipped_media", 0))
        totals["skip_examples"] = list(state.get("skip_examples", []))
        start = int(state["step"])
        set_rng_state(state["rng"])
    else:
        torch.manual_seed(seed + 1)
        random.seed(seed + 1)
        np.random.seed((seed + 1) % 2**32)
    if dist.is_main:
        run.truncate_metrics(index, start)

    metrics = _Metrics(run, dist.is_main)
    bar = _progress(total, start, f"stage {index + 1} {stage.name}", progress and dist.is_main)
    backbone.train(True)
    prefetch = Prefetcher(maker, range(start, total), depth=2)
    last_loss = float("nan")
    try:
        for batch in prefetch:
            step = batch.step
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            n_global = int(D.all_sum(batch.n_pairs, backbone.device))
            skipped = int(D.all_sum(batch.skipped, backbone.device))
            totals["skipped_media"] += skipped
            room = MAX_SKIP_EXAMPLES - len(totals["skip_examples"])
            totals["skip_examples"].extend(batch.skip_messages[: max(0, room)])
            temperature: torch.Tensor | float = (
                log_tau.exp() if log_tau is not None else stage.temperature
            )
            lr = optimizer.param_groups[0]["lr"]
            if n_global > 0:
                if batch.n_pairs == 0:
                    # This rank has nothing but must join the collectives of the others.
                    empty = torch.zeros(
                        (0, backbone.dim), device=backbone.device, requires_grad=True
                    )
                    loss = _loss_closure(stage, batch, temperature)(empty, empty)
                    loss.backward()
                else:
                    loss = contrastive_step(
                        backbone,
                        batch.query_chunks,
                        batch.candidate_chunks,
                        _loss_closure(stage, batch, temperature),
                        cached=stage.gradcache_chunk > 0,
                    )
                D.all_reduce_grads(params)
                if stage.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, stage.max_grad_norm)
                optimizer.step()
                last_loss = float(loss)
            scheduler.step()
            elapsed = time.perf_counter() - started
            done = step + 1
            if dist.is_main and (done % config.log_every == 0 or done == total):
                metrics.write(
                    {
                        "stage": stage.name,
                        "stage_index": index,
                        "step": done,
                        "epoch": step // maker.batches_per_epoch,
                        "loss": last_loss if n_global > 0 else None,
                        "lr": lr,
                        "temperature": float(
                            temperature.detach() if torch.is_tensor(temperature) else temperature
                        ),
                        "pairs": n_global,
                        "skipped_media": totals["skipped_media"],
                        "samples_per_s": round(n_global / elapsed, 3) if elapsed > 0 else None,
                        "step_s": round(elapsed, 4),
                        "time": _now(),
                    }
                )
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{last_loss:.4f}")
            if config.checkpoint_every and done % config.checkpoint_every == 0 and done < total:
                if dist.is_main:
                    save_checkpoint(
                        run.checkpoints,
                        stage=index,
                        step=done,
                        adapter=backbone.trainable_state(),
                        state={
                            "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(),
                            "log_tau": None if log_tau is None else log_tau.detach().cpu(),
                            "skipped_media": totals["skipped_media"],
                            "skip_examples": totals["skip_examples"],
                            "config_hash": config.config_hash(),
                        },
                        keep=config.keep_checkpoints,
                    )
                D.barrier()
    finally:
        prefetch.close()
        maker.close()
        if bar is not None:
            bar.close()

    adapter = backbone.trainable_state()
    stage_dir = run.stage_dir(index, stage)
    if dist.is_main:
        stage_dir.mkdir(parents=True, exist_ok=True)
        save_tensors(adapter, stage_dir / "adapter.safetensors")
        info = {
            "name": stage.name,
            "index": index,
            "data": stage.data,
            "rows": len(data),
            "steps": total,
            "loss": stage.loss,
            "lora_r": stage.lora_r,
            "lora_alpha": stage.lora_alpha,
            "lora_dropout": stage.lora_dropout,
            "homogeneous_batches": homogeneous,
            "final_temperature": math.exp(float(log_tau.detach()))
            if log_tau is not None
            else stage.temperature,
            "last_loss": last_loss,
            "skipped_media_total": totals["skipped_media"],
        }
        write_json(stage_dir / "stage.json", info)
        (stage_dir / COMPLETE).write_text("")
    D.barrier()
    backbone.merge_lora()
    return {"name": stage.name, "index": index, "steps": total, "rows": len(data)}


def train_run(
    *,
    mixture: str | Path,
    workspace: Workspace,
    config: TrainConfig,
    out_dir: Path,
    progress: bool = True,
) -> Path:
    """Train every stage of `config` on `mixture` into `out_dir`; resume a killed run.

    A finished run (out_dir/_COMPLETE with the same config hash) returns at once.
    """
    out_dir = Path(out_dir).resolve()
    run = RunFolder(out_dir)
    config_hash = config.config_hash()
    done_hash = run.complete_hash()
    if done_hash == config_hash:
        return out_dir
    if done_hash is not None:
        raise ConfigError(
            f"{out_dir} holds a finished run with another config (hash {done_hash}, now "
            f"{config_hash}); choose another --out"
        )
    device = resolve_device(config.device)
    dist = D.init_distributed(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    mix = open_mixture(mixture, workspace)
    tables = stage_tables(config, mix)
    for table in tables:  # before the run folder exists: a bad mixture leaves nothing behind
        if table is not None:
            check_stage_table(table)

    with _run_lock(out_dir, dist.is_main):
        if dist.is_main:
            _prepare_folder(run, config, mix)
            clean_temporaries(run.checkpoints)
        D.barrier()
        meta = run.read_meta()
        started = meta.get("started") or _now()
        begin = time.perf_counter()
        if dist.is_main and not meta:
            write_json(
                out_dir / "meta.json",
                {
                    "versions": _versions(),
                    "config": config.name,
                    "config_hash": config_hash,
                    "mixture": mix.ref,
                    "seed": config.seed,
                    "started": started,
                },
            )

        base_dir = run.base if (run.base / "config.json").is_file() else None
        backbone = build_backbone(
            config, device=device, base_dir=base_dir, frame_cache=workspace.cache / "frames"
        )
        if base_dir is None and config.backbone.kind == "tiny-qwen2-vl":
            if dist.is_main:
                tmp = out_dir / f".base-{os.getpid()}.tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                backbone.save_base(tmp)
                os.replace(tmp, run.base)
            D.barrier()

        totals: dict[str, Any] = {"skipped_media": 0, "skip_examples": []}
        stages_info: list[dict[str, Any]] = []
        adapters: list[dict[str, Any]] = []
        for index, (stage, table) in enumerate(zip(config.stages, tables, strict=True)):
            if table is None:
                stages_info.append(
                    {
                        "name": stage.name,
                        "index": index,
                        "skipped": True,
                        "reason": f"mixture {mix.ref} has no stage {stage.data!r}",
                    }
                )
                continue
            stage_dir = run.stage_dir(index, stage)
            if (stage_dir / COMPLETE).exists():
                _apply_stage_adapter(
                    backbone,
                    stage,
                    index,
                    config.seed,
                    load_tensors(stage_dir / "adapter.safetensors"),
                )
                info = json.loads((stage_dir / "stage.json").read_text())
                totals["skipped_media"] = int(info.get("skipped_media_total", 0))
                stages_info.append(
                    {
                        "name": stage.name,
                        "index": index,
                        "steps": info["steps"],
                        "rows": info["rows"],
                    }
                )
            else:
                stages_info.append(
                    _train_stage(
                        backbone=backbone,
                        config=config,
                        stage=stage,
                        index=index,
                        data=StageData(table),
                        mixture=mix,
                        run=run,
                        dist=dist,
                        progress=progress,
                        totals=totals,
                    )
                )
            adapters.append(
                {
                    "stage": stage.name,
                    "index": index,
                    "file": f"{index}-{stage.name}.safetensors",
                    "lora_r": stage.lora_r,
                    "lora_alpha": stage.lora_alpha,
                }
            )

        if dist.is_main:
            final = run.final
            tmp = out_dir / f".final-{os.getpid()}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            for entry in adapters:
                stage = config.stages[entry["index"]]
                shutil.copyfile(
                    run.stage_dir(entry["index"], stage) / "adapter.safetensors",
                    tmp / entry["file"],
                )
            write_json(
                tmp / "final.json",
                {
                    "backbone": config.backbone.kind,
                    "config_hash": config_hash,
                    "adapters": adapters,
                    "dim": backbone.dim,
                },
            )
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            write_json(
                out_dir / "meta.json",
                {
                    "versions": _versions(),
                    "backbone": {
                        "kind": config.backbone.kind,
                        "model": config.backbone.model,
                        "dim": backbone.dim,
                    },
                    "config": config.name,
                    "config_hash": config_hash,
                    "mixture": mix.ref,
                    "seed": config.seed,
                    "world_size": dist.world,
                    "device": str(device),
                    "started": started,
                    "finished": _now(),
                    "last_session_s": round(time.perf_counter() - begin, 3),
                    "stages": stages_info,
                    "skipped_media": totals["skipped_media"],
                    "skipped_examples": totals["skip_examples"],
                    "host": platform.node(),
                },
            )
            write_json(out_dir / COMPLETE, {"config_hash": config_hash, "finished": _now()})
        D.barrier()
    return out_dir


def default_run_dir(workspace: Workspace, mixture: str | Path, config: TrainConfig) -> Path:
    """runs/<mixture>-<version8>-<config>-<hash8>: one folder per (mixture version, config)."""
    mix = open_mixture(mixture, workspace)
    return workspace.runs / f"{mix.name}-{mix.version[:8]}-{config.name}-{config.config_hash()[:8]}"


def run_summary(out_dir: Path) -> dict[str, Any]:
    """What a run folder says about itself: status, stages, last losses, skips, throughput."""
    run = RunFolder(Path(out_dir))
    meta = run.read_meta()
    rows = []
    if run.metrics.is_file():
        for line in run.metrics.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                rows.append(json.loads(line))
    stages = []
    for info in meta.get("stages", []):
        mine = [r for r in rows if r.get("stage_index") == info.get("index")]
        losses = [r["loss"] for r in mine if r.get("loss") is not None]
        speed = [r["samples_per_s"] for r in mine if r.get("samples_per_s")]
        stages.append(
            {
                "name": info.get("name"),
                "skipped": bool(info.get("skipped")),
                "steps": info.get("steps", 0),
                "rows": info.get("rows", 0),
                "first_loss": losses[0] if losses else None,
                "last_loss": losses[-1] if losses else None,
                "samples_per_s": round(sum(speed) / len(speed), 2) if speed else None,
            }
        )
    return {
        "run": str(run.path),
        "complete": run.complete_hash() is not None,
        "config": meta.get("config"),
        "config_hash": meta.get("config_hash"),
        "mixture": meta.get("mixture"),
        "backbone": (meta.get("backbone") or {}).get("kind"),
        "seed": meta.get("seed"),
        "stages": stages,
        "skipped_media": meta.get("skipped_media", 0),
        "seconds": meta.get("last_session_s"),
    }
