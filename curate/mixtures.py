"""Built mixtures: finding, loading, describing and comparing them.

A mixture version lives in `<workspace>/mixtures/<name>/<version>/`:

  <stage>.parquet   one file per stage: MIXTURE_ROW_SCHEMA rows in training order (`position`)
  mixture.json      the canonical recipe, counts, shortfalls, filters, shares and lineage

The folder appears in one rename once complete, so a folder with `mixture.json` is a finished,
immutable version. The trainer, the ablation runner and the report read mixtures only through
`load_mixture`.

A plain NAME means the *current* version: the one the last `curate mix` of that name built or
found already built, recorded in `<workspace>/mixtures/<name>/CURRENT` (one line, the version id,
replaced atomically). So rebuilding an older recipe state makes that version current again rather
than only saying it exists. Without a valid CURRENT (older workspaces, a deleted version, a file
that cannot be read), NAME is the most recently created version. CURRENT is written only when it
changes, so a rebuild of the current version only reads (and works on a read-only workspace).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import ConfigError, CurateError, NotFoundError
from curate.schema import MANIFEST_SCHEMA, MANIFEST_SCHEMA_VERSION, check_schema
from curate.workspace import Workspace, check_name

MIXTURE_FILE: Final = "mixture.json"
#: In `<workspace>/mixtures/<name>/`: the version a plain NAME resolves to.
CURRENT_FILE: Final = "CURRENT"
_VERSION_CHARS: Final = frozenset("0123456789abcdef")

#: The rows of one stage: every manifest column, then where the row came from and its order.
MIXTURE_ROW_SCHEMA: Final = pa.schema(
    [
        *MANIFEST_SCHEMA,
        pa.field("manifest", pa.string(), nullable=False),  # the manifest the row was read from
        pa.field("stage", pa.string(), nullable=False),
        pa.field("component", pa.string(), nullable=False),  # the recipe component that took it
        pa.field("position", pa.int64(), nullable=False),  # training order within the stage, 0..n-1
        pa.field(
            "repeat", pa.int32(), nullable=False
        ),  # 0 for a row's first copy, 1.. for upsampling
    ],
    metadata={
        "curate.schema": "mixture_rows",
        "curate.schema_version": str(MANIFEST_SCHEMA_VERSION),
    },
)


class MixtureWriteError(CurateError):
    """A file of a mixture (its CURRENT pointer) cannot be written: a read-only or shared
    workspace, a full disk, or something else (a directory) where the file goes."""


@dataclass(frozen=True)
class Mixture:
    """One built version of a mixture."""

    name: str
    version: str
    path: Path  # the version folder
    stages: dict[str, Path]  # stage name -> its Parquet file, in recipe order
    meta: dict[str, Any]  # the parsed mixture.json
    batching: str | None  # homogeneous-batching hint for the trainer, e.g. "pair"

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def rows(self) -> int:
        return int(self.meta.get("rows", 0))

    @property
    def created(self) -> str:
        return str(self.meta.get("created", ""))

    def read_stage(self, stage: str, columns: list[str] | None = None) -> pa.Table:
        """One stage's rows in training order (check the schema when reading all columns)."""
        if stage not in self.stages:
            raise NotFoundError(
                f"mixture {self.ref} has no stage {stage!r}; stages: {', '.join(self.stages)}"
            )
        table = pq.read_table(self.stages[stage], columns=columns)
        if columns is None:
            check_schema(table.schema, MIXTURE_ROW_SCHEMA, where=f"stage {stage!r} of {self.ref}")
        return table

    def iter_batches(self, stage: str, batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        """Stream a stage in training order without reading it whole."""
        yield from pq.ParquetFile(self.stages[stage]).iter_batches(batch_size=batch_rows)


def parse_ref(ref: str) -> tuple[str, str | None]:
    """ "NAME" or "NAME@VERSION" -> (name, version prefix or None)."""
    name, _, version = ref.partition("@")
    check_name(name, what="mixture name")
    if "@" in ref and not version:
        raise ConfigError(
            f"mixture reference {ref!r} has an empty version; use NAME or NAME@VERSION"
        )
    if version and not all(c in "0123456789abcdef" for c in version):
        raise ConfigError(f"version {version!r} of {ref!r} is not a hex version id")
    return name, version or None


def _open(path: Path) -> Mixture:
    meta = json.loads((path / MIXTURE_FILE).read_text(encoding="utf-8"))
    stages = {name: path / info["file"] for name, info in meta.get("stages", {}).items()}
    return Mixture(
        name=meta["name"],
        version=meta["version"],
        path=path,
        stages=stages,
        meta=meta,
        batching=meta.get("batching"),
    )


def list_versions(workspace: Workspace, name: str) -> list[Mixture]:
    """Built versions of one mixture, oldest first (by creation time, then version)."""
    folder = workspace.mixtures / check_name(name, what="mixture name")
    if not folder.is_dir():
        return []
    found = [_open(p) for p in folder.iterdir() if p.is_dir() and (p / MIXTURE_FILE).is_file()]
    return sorted(found, key=lambda m: (m.created, m.version))


def list_mixtures(workspace: Workspace) -> list[Mixture]:
    """Every built version of every mixture in the workspace, by name then age."""
    if not workspace.mixtures.is_dir():
        return []
    out: list[Mixture] = []
    for folder in sorted(workspace.mixtures.iterdir()):
        if folder.is_dir() and not folder.name.startswith("."):
            try:
                out.extend(list_versions(workspace, folder.name))
            except ConfigError:
                continue  # not a mixture folder (name we would never write)
    return out


def current_version(workspace: Workspace, name: str) -> str | None:
    """The version CURRENT records for `name`, if it names a built version; else None."""
    folder = workspace.mixtures / check_name(name, what="mixture name")
    try:
        version = (folder / CURRENT_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None  # missing, a directory, unreadable: not a valid CURRENT (see module docstring)
    if not version or not set(version) <= _VERSION_CHARS:
        return None
    return version if (folder / version / MIXTURE_FILE).is_file() else None


def set_current(workspace: Workspace, name: str, version: str) -> bool:
    """Make `version` (a built version of `name`) what a plain NAME resolves to.

    Returns False, writing nothing, when CURRENT already records `version`; True when it was
    written. Raises MixtureWriteError (one line) when CURRENT cannot be written; the temporary
    file it is written through never stays behind.
    """
    folder = workspace.mixtures / check_name(name, what="mixture name")
    if not (folder / version / MIXTURE_FILE).is_file():
        raise NotFoundError(f"mixture {name!r} has no built version {version!r} in {folder}")
    if current_version(workspace, name) == version:
        return False
    target = folder / CURRENT_FILE
    tmp = folder / f".{CURRENT_FILE}.{os.getpid()}"
    try:
        tmp.write_text(version + "\n", encoding="utf-8")
        os.replace(tmp, target)  # atomic: readers see the old or the new id
    except OSError as error:
        fix = (
            f"remove the directory {target}"
            if target.is_dir()
            else f"make {folder} writable for this user"
        )
        raise MixtureWriteError(
            f"could not make {name}@{version} current: writing {target} failed "
            f"({error.strerror or error}); {fix}, then rerun `curate mix --recipe {name}`"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # gone already after the rename
    return True


def load_mixture(workspace: Workspace, ref: str) -> Mixture:
    """The mixture `ref` names: "NAME" (its current version, see the module docstring) or
    "NAME@VERSION" (a unique prefix of a version id)."""
    name, version = parse_ref(ref)
    versions = list_versions(workspace, name)
    if not versions:
        built = sorted({m.name for m in list_mixtures(workspace)})
        raise NotFoundError(
            f"no built mixture named {name!r} in {workspace.mixtures} (built: "
            f"{', '.join(built) or 'none'}); build it with `curate mix --recipe {name}`"
        )
    if version is None:
        current = current_version(workspace, name)
        return next((m for m in versions if m.version == current), versions[-1])
    matches = [m for m in versions if m.version.startswith(version)]
    if not matches:
        raise NotFoundError(
            f"mixture {name!r} has no version starting with {version!r}; versions: "
            + ", ".join(m.version for m in versions)
        )
    if len(matches) > 1:
        raise ConfigError(
            f"version prefix {version!r} of mixture {name!r} is ambiguous: "
            + ", ".join(m.version for m in matches)
            + "; give more characters"
        )
    return matches[0]


# --- describing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompositionRow:
    stage: str  # a stage name, or "all" for the whole mixture
    key: str  # a pair code or a source name
    rows: int
    share: float


def composition(mixture: Mixture, *, by: str = "pair") -> list[CompositionRow]:
    """Rows and shares by pair (or source) for each stage and for the whole mixture."""
    if by not in ("pair", "source"):
        raise ConfigError(f"composition is by 'pair' or 'source', not {by!r}")
    out: list[CompositionRow] = []
    stages = mixture.meta.get("stages", {})
    for stage, info in [*stages.items(), ("all", mixture.meta)]:
        counts = info.get(f"rows_by_{by}", {})
        total = sum(counts.values())
        for key, rows in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            out.append(CompositionRow(stage, key, rows, rows / total if total else 0.0))
    return out


@dataclass(frozen=True)
class ShareDiff:
    stage: str
    by: str  # "pair" or "source"
    key: str
    share_a: float
    share_b: float

    @property
    def delta_pp(self) -> float:
        return 100.0 * (self.share_b - self.share_a)


@dataclass(frozen=True)
class RowDiff:
    """Distinct rows (manifest, id) of a stage, or of the whole mixture ("all")."""

    stage: str
    rows_a: int
    rows_b: int
    added: int  # in B, not in A
    removed: int  # in A, not in B
    kept: int  # in both


@dataclass(frozen=True)
class MixtureDiff:
    a: str
    b: str
    shares: list[ShareDiff]
    rows: list[RowDiff]

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "shares": [{**s.__dict__, "delta_pp": round(s.delta_pp, 6)} for s in self.shares],
            "rows": [r.__dict__ for r in self.rows],
        }


def diff_mixtures(workspace: Workspace, ref_a: str, ref_b: str) -> MixtureDiff:
    """Shares side by side (by pair and by source, per stage and overall) and row set changes.

    Rows are compared as distinct (manifest, id) keys, so upsampled copies count once; stages
    are matched by name ("all" compares the union over stages).
    """
    from curate.db import connect, duckdb_errors, sql_string

    a = load_mixture(workspace, ref_a)
    b = load_mixture(workspace, ref_b)
    shares: list[ShareDiff] = []
    stage_names = list(dict.fromkeys([*a.stages, *b.stages]))
    for by in ("pair", "source"):
        for stage in [*stage_names, "all"]:
            info_a = a.meta if stage == "all" else a.meta["stages"].get(stage, {})
            info_b = b.meta if stage == "all" else b.meta["stages"].get(stage, {})
            sa = info_a.get(f"shares_by_{by}", {})
            sb = info_b.get(f"shares_by_{by}", {})
            for key in sorted(set(sa) | set(sb)):
                shares.append(ShareDiff(stage, by, key, sa.get(key, 0.0), sb.get(key, 0.0)))

    files = [*a.stages.values(), *b.stages.values()]
    rows: list[RowDiff] = []
    con = connect(read_paths=files)
    try:

        def keys(files: list[Path]) -> str:
            if not files:
                return "SELECT NULL::VARCHAR AS manifest, NULL::VARCHAR AS id WHERE false"
            listed = ", ".join(sql_string(f) for f in files)
            return f"SELECT DISTINCT manifest, id FROM read_parquet([{listed}])"

        with duckdb_errors(f"comparing {a.ref} with {b.ref}"):
            for stage in [*stage_names, "all"]:
                fa = _stage_files(a, stage)
                fb = _stage_files(b, stage)
                query = f"""
                    WITH ka AS ({keys(fa)}), kb AS ({keys(fb)})
                    SELECT
                        (SELECT count(*) FROM ka),
                        (SELECT count(*) FROM kb),
                        (SELECT count(*) FROM (SELECT * FROM kb EXCEPT SELECT * FROM ka)),
                        (SELECT count(*) FROM (SELECT * FROM ka EXCEPT SELECT * FROM kb)),
                        (SELECT count(*) FROM (SELECT * FROM ka INTERSECT SELECT * FROM kb))
                """
                na, nb, added, removed, kept = con.execute(query).fetchone()  # type: ignore[misc]
                rows.append(RowDiff(stage, na, nb, added, removed, kept))
    finally:
        con.close()
    return MixtureDiff(a=a.ref, b=b.ref, shares=shares, rows=rows)


def _stage_files(mixture: Mixture, stage: str) -> list[Path]:
    if stage == "all":
        return list(mixture.stages.values())
    return [mixture.stages[stage]] if stage in mixture.stages else []
