"""Checkpoints: everything a killed run needs to continue bit for bit.

`checkpoints/stage-<i>-step-<s>/` holds the trainable weights (`adapter.safetensors`), and in
`state.pt` the optimizer, the scheduler, the learnable temperature, every RNG state (torch CPU and
CUDA, Python, NumPy) and the data position (stage index and step; see `train.data`). A checkpoint
is written in a temporary folder and renamed into place, with `_COMPLETE` written inside before
the rename, so a kill at any moment leaves either the previous or the new checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

_NAME = re.compile(r"^stage-(\d+)-step-(\d+)$")
MARKER = "_COMPLETE"


@dataclass(frozen=True)
class CheckpointRef:
    path: Path
    stage: int
    step: int


def rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors file written atomically (temp file in the same folder, then rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def save_checkpoint(
    folder: Path,
    *,
    stage: int,
    step: int,
    adapter: dict[str, torch.Tensor],
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write checkpoint (stage, step) atomically and prune all but the newest `keep`."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"stage-{stage}-step-{step:08d}"
    tmp = folder / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file({k: v.contiguous() for k, v in adapter.items()}, str(tmp / "adapter.safetensors"))
    torch.save({**state, "stage": stage, "step": step, "rng": rng_state()}, tmp / "state.pt")
    (tmp / MARKER).write_text("")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        shutil.rmtree(old.path, ignore_errors=True)
    return final


def list_checkpoints(folder: Path, stage: int | None = None) -> list[CheckpointRef]:
    """Complete checkpoints, oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _NAME.match(p.name)
        if m and (p / MARKER).exists():
            ref = CheckpointRef(path=p, stage=int(m.group(1)), step=int(m.group(2)))
            if stage is None or ref.stage == stage:
                found.append(ref)
    return sorted(found, key=lambda r: (r.stage, r.step))


def latest_checkpoint(folder: Path, stage: int) -> CheckpointRef | None:
    found = list_checkpoints(folder, stage)
    return found[-1] if found else None


def load_checkpoint(ref: CheckpointRef) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(adapter tensors, state); call `set_rng_state(state["rng"])` last, after any init."""
    adapter = load_file(str(ref.path / "adapter.safetensors"))
    state = torch.load(ref.path / "state.pt", weights_only=False)
    return adapter, state


def clean_temporaries(folder: Path) -> None:
    """Remove half-written checkpoints a killed run left behind."""
    if folder.is_dir():
        for p in folder.glob(".tmp-*"):
            shutil.rmtree(p, ignore_errors=True)
