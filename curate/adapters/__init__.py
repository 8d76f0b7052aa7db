"""The registry of ingest adapters, and format detection.

Each format lives in its own module of this package and registers its class with `@register`.
`ADAPTER_MODULES` lists them so that `curate formats` can show all without guessing.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from curate.adapters.base import Adapter, AdapterContext
from curate.errors import InputError

#: Modules of this package that define adapters (imported on first use).
ADAPTER_MODULES: tuple[str, ...] = (
    "coco",
    "sugarcrepe",
    "cc3m",
    "laion",
    "webdataset",
    "llava",
    "openai_jsonl",
    "textpairs",
    "msrvtt",
    "webvid",
    "activitynet",
    "didemo",
    "mmeb",
    "unite",
    "covr",
    "generic",
)

_REGISTRY: dict[str, type[Adapter]] = {}
_loaded = False


def register(cls: type[Adapter]) -> type[Adapter]:
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise RuntimeError(f"two adapters are named {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for module in ADAPTER_MODULES:
        # A module not written yet is skipped; one that fails to import is a bug and raises.
        if importlib.util.find_spec(f"curate.adapters.{module}") is not None:
            importlib.import_module(f"curate.adapters.{module}")
    _loaded = True


def all_adapters() -> dict[str, type[Adapter]]:
    _load_all()
    return dict(sorted(_REGISTRY.items()))


def get_adapter(name: str) -> type[Adapter]:
    adapters = all_adapters()
    if name not in adapters:
        raise InputError(
            f"unknown format {name!r}; known formats: {', '.join(adapters)} "
            "(`curate formats` describes each)"
        )
    return adapters[name]


def detect_format(path: Path) -> str:
    """The one format whose sniff accepts `path`, or an error listing the candidates."""
    adapters = all_adapters()
    matches = [name for name, cls in adapters.items() if cls.sniff(path)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise InputError(
            f"{path}: cannot tell its format from its content; pass --format, one of: "
            f"{', '.join(adapters)}"
        )
    raise InputError(
        f"{path}: the format is ambiguous, it could be any of: {', '.join(matches)}; "
        "pass --format to choose"
    )


__all__ = [
    "ADAPTER_MODULES",
    "Adapter",
    "AdapterContext",
    "all_adapters",
    "detect_format",
    "get_adapter",
    "register",
]
