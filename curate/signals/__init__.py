"""Quality signals and dedup for manifests: CLIP score, perceptual hashes, text signals,
near-duplicates and train↔eval decontamination, each written as a sidecar table keyed by the
manifest's `id` (see `curate.signals.store`).

Library entry points: `score_manifest` (`curate score`) and `decontaminate`
(`curate decontaminate`). Names are imported on first use, so `import curate.signals.neardup`
loads neither polars nor torch; the CLIP scorer imports torch when it builds a model.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CONTAMINATION_SCHEMA": "curate.signals.decontaminate",
    "DecontaminationOptions": "curate.signals.decontaminate",
    "DecontaminationResult": "curate.signals.decontaminate",
    "decontaminate": "curate.signals.decontaminate",
    "EMBEDDINGS": "curate.signals.score",
    "NEAR_DUP_SCHEMA": "curate.signals.score",
    "SIGNALS": "curate.signals.score",
    "NearDupOptions": "curate.signals.score",
    "ScoreConfig": "curate.signals.score",
    "ScoreResult": "curate.signals.score",
    "SignalOutcome": "curate.signals.score",
    "score_manifest": "curate.signals.score",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'curate.signals' has no attribute {name!r}")
