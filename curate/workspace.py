"""The workspace: one folder holding manifests, mixtures, runs, results and reports.

Chosen by `--workspace DIR`, else the `CURATE_HOME` environment variable, else the current folder.
Run from the repository root, the workspace is the repository, so `mixtures/` (recipes) and
`reports/` are the repository's own folders.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from curate.errors import ConfigError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(name: str, *, what: str = "name") -> str:
    """Names become folder names: letters, digits, '.', '_' and '-' only."""
    if not _NAME_RE.match(name) or name in {".", ".."}:
        raise ConfigError(
            f"invalid {what} {name!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def resolve(cls, workspace: str | Path | None = None) -> Workspace:
        chosen = workspace or os.environ.get("CURATE_HOME") or "."
        return cls(Path(chosen).expanduser().resolve())

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def mixtures(self) -> Path:
        return self.root / "mixtures"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def cache(self) -> Path:
        return self.root / ".curate-cache"

    def manifest_dir(self, name: str) -> Path:
        return self.manifests / check_name(name, what="manifest name")

    def signals_dir(self, name: str) -> Path:
        """Sidecar signal tables for manifest `name` (keyed by manifest id)."""
        return self.manifest_dir(name) / "signals"
