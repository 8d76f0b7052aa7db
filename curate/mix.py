"""`curate mix`: compile a recipe into DuckDB queries over the manifests and write a mixture version.

The engine, in the order it runs:

0. **Name.** The recipe's `name` decides where versions go (`mixtures/<name>/`) and what a
   plain NAME resolves to, so one name is built from one recipe file: `name` must equal the
   file's stem, and a recipe may not take the name of another recipe file (the one `--recipe
   NAME` finds: `<workspace>/mixtures/NAME.toml`, else the shipped one). A copy of a recipe
   needs a name of its own. After every build, or a rebuild that finds its version already
   built, that version becomes the name's current one (`curate.mixtures`, CURRENT).
1. **Inputs.** The candidate manifests (the recipe's `manifests`; else, when every component
   names manifests, those; else every complete manifest of the workspace) and, of these, only
   the ones that can contribute: some row passes some component's pair, source, task, split and
   manifest selectors (answered from each manifest's stats.json counters, with a `LIMIT 1` query
   when two columns must match at once). Then their row files and the signal sidecars
   (`signals/<signal>.parquet`, keyed by `id`) that provide a column the recipe names. A column
   that is neither a manifest column nor in any sidecar is an error naming the `curate score`
   call that computes it; so is a component naming a manifest that does not exist, or a source
   or split that none of the manifests it reads holds (a typo would otherwise select nothing and,
   under "redistribute", quietly hand its share to the others). Pair codes and tasks are a closed
   vocabulary, checked when the recipe is parsed; one without rows is a shortfall whose reason
   says the inputs have none (v3 relies on this to scale to whatever has been ingested).
2. **Version.** sha256 of the canonical recipe, the contributing manifests' fingerprints, their
   used sidecars' content hashes, the manifest schema version and `MIX_ALGORITHM`: ingesting a
   manifest no component can read from (an evaluation split, say) changes no version. An
   existing version folder means there is nothing to build: versions are immutable.
3. **Pool.** One query reads only the columns it needs, assigns each row to the first component of
   each stage whose selector matches it (so components of a stage never overlap), applies the
   global filters in order and then the dedup keys in order, and records for each row the first
   step that removed it (so the removed counts add up).
4. **Plan.** Pure integer arithmetic (exact fractions) on the counts: stage totals, component
   counts by weight with the shortfall policy, and source counts by temperature (p ~ n^(1/T)) with
   `max_per_source` and `max_repeat` as capacities.
5. **Selection.** Within a (component, source) the rows are ranked by a 64-bit key of (id, seed,
   stage, component); the first k are taken, and when a source must be upsampled, full passes over
   its rows plus the first remainder. Training order (`position`) is a second key over the stage.
   The key is `row_key`: the id's first 16 hex digits (ingest ids are md5 hex; any other id is
   md5-hashed), xor a salt (md5 of seed, stage and component), through the splitmix64 finalizer.
   It is plain integer arithmetic, identical in Python and in DuckDB and stable across DuckDB
   versions (DuckDB's own `hash()` is not), and about 40x cheaper than an md5 per row and stage.
6. **Write.** Each stage streams to Parquet in a temporary folder beside the final one, then
   `mixture.json`, then one rename: a killed run leaves no version behind, and the next run
   removes its leftovers.

Shortfalls: when a component cannot supply its share, `on_shortfall` decides. "redistribute"
(the default) gives the missing rows to the other components in proportion to their weights, up to
their capacities, so the stage reaches its target; "leave_short" keeps every other component at its
requested count and the stage ends smaller; "error" refuses to build. With `target = "all"`, the
stage takes the largest size at which every component (under "redistribute": every component that
has rows) meets its share; components with no rows are shortfalls.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate import __version__
from curate.db import connect, duckdb_errors, sql_identifier, sql_string
from curate.errors import ConfigError, InputError, NotFoundError
from curate.manifest import Manifest, list_manifests, open_manifest
from curate.mixtures import (
    MIXTURE_FILE,
    MIXTURE_ROW_SCHEMA,
    Mixture,
    MixtureWriteError,
    load_mixture,
    set_current,
)
from curate.predicate import Parameters, Predicate
from curate.recipe import (
    ANY_SPLIT,
    Component,
    Recipe,
    Stage,
    check_recipe_owns_name,
    find_recipe,
    load_recipe,
)
from curate.schema import MANIFEST_SCHEMA, MANIFEST_SCHEMA_VERSION, check_schema
from curate.workspace import Workspace

#: Bump when the selection algorithm changes: every version id changes with it.
MIX_ALGORITHM = 1
VERSION_CHARS = 16
ROW_GROUP_ROWS = 65_536
#: Columns with few distinct values: dictionary-encoded. Ids, texts and paths are not (trying
#: costs time and makes the files larger).
DICTIONARY_COLUMNS = (
    "source", "split", "task", "pair", "query_modality", "target_modality", "instruction",
    "media_kind", "codec", "input_file", "adapter", "adapter_version", "manifest", "stage",
    "component",
)  # fmt: skip
_MASK64 = (1 << 64) - 1
_HEX_RE = re.compile(r"[0-9a-fA-F]+")  # the same test as ROW_KEY_BASE_SQL

#: A row's base key in SQL: its id's first 16 hex digits, or the md5 of an id that is not hex
#: (DuckDB's md5_number_upper: the digest's first 8 bytes, little-endian). The hex test is an
#: explicit RE2 match rather than a TRY_CAST, whose leniency ('_' separators) may change.
ROW_KEY_BASE_SQL = (
    "CASE WHEN regexp_full_match(left(id, 16), '[0-9a-fA-F]+') "
    "THEN ('0x' || left(id, 16))::UBIGINT ELSE md5_number_upper(id) END"
)

#: Progress callback: (step, done, total or None).
Progress = Callable[[str, int, int | None], None]

#: Where each known signal column comes from, for the error naming a missing one.
SIGNAL_SOURCES: dict[str, str] = {
    "clip_score": "curate score NAME --signals clip",
    "phash": "curate score NAME --signals phash",
    "dhash": "curate score NAME --signals phash",
    "near_dup_cluster": "curate score NAME --signals near_dup",
    "near_dup_keep": "curate score NAME --signals near_dup",
    "text_hash": "curate score NAME --signals text",
    "text_chars": "curate score NAME --signals text",
    "text_words": "curate score NAME --signals text",
    "contaminated": "curate decontaminate --train NAME --eval EVAL",
    "decontaminated": "curate decontaminate --train NAME --eval EVAL",
}
NEAR_DUP_KEEP = "near_dup_keep"
MANIFEST_COLUMNS: frozenset[str] = frozenset(MANIFEST_SCHEMA.names)


# --- the plan -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourcePlan:
    available: int  # rows after filters and dedup
    usable: int  # after max_per_source
    share: float  # temperature share among the component's sources
    taken: int


@dataclass(frozen=True)
class ComponentPlan:
    name: str
    weight: float
    share: float  # weight / sum of the stage's weights
    matched: int  # rows its selector matches, before global filters and dedup
    available: int  # after global filters and dedup
    usable: int  # after max_per_source
    capacity: int  # usable x max_repeat
    requested: int
    taken: int
    shortfall: int
    shortfall_reason: str | None
    redistributed: int  # rows received beyond its request (policy "redistribute")
    sources: dict[str, SourcePlan]

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in {"sources", "name"}}
        out["sources"] = {k: v.__dict__ for k, v in self.sources.items()}
        return out


@dataclass(frozen=True)
class StagePlan:
    name: str
    target: int | str
    resolved_target: int
    on_shortfall: str
    components: list[ComponentPlan]
    limited_by: list[str]  # for target "all": the components whose supply set the size

    @property
    def taken(self) -> int:
        return sum(c.taken for c in self.components)


@dataclass(frozen=True)
class FilterStep:
    step: str  # e.g. "text_chars", "signal_min.clip_score", "where[0]", "dedup.text"
    rule: str
    removed: int
    note: str | None = None


@dataclass(frozen=True)
class InputManifest:
    name: str
    path: Path
    fingerprint: str
    files: tuple[Path, ...]
    rows: int


@dataclass(frozen=True)
class SignalFile:
    manifest: str
    signal: str  # the file's stem, e.g. "clip"
    path: Path
    columns: dict[str, pa.DataType]  # every column but id
    sha256: str = ""


@dataclass(frozen=True)
class MixPlan:
    recipe: Recipe
    version: str
    manifests: list[InputManifest]
    signals: list[SignalFile]  # sidecars whose columns the recipe uses
    rows_read: int
    candidates: int  # rows some component of some stage selects
    filters: list[FilterStep]
    kept: int
    stages: list[StagePlan]
    notes: list[str] = field(default_factory=list)
    # Candidate manifests not read because no component can take a row from them. Not part of
    # mixture.json: the version does not depend on them.
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MixResult:
    plan: MixPlan
    mixture: Mixture | None  # None for a dry run
    built: bool  # False when the version existed already (or dry run)
    path: Path  # the version folder (existing or not)
    # Problems that did not fail the command (a rebuild that could not update CURRENT); each is
    # also the last of plan.notes, which `curate mix` prints.
    warnings: list[str] = field(default_factory=list)

    @property
    def version(self) -> str:
        return self.plan.version


# --- pure arithmetic ----------------------------------------------------------------------------


def splitmix64(value: int) -> int:
    """The splitmix64 finalizer: a bijective 64-bit mix (the reference for `splitmix64_sql`).

    >>> splitmix64(0), splitmix64(1)
    (0, 12994781566227106604)
    """
    z = value & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def splitmix64_sql(value: str) -> str:
    """`splitmix64` of a UBIGINT SQL expression (multiplications in UHUGEINT, then masked)."""

    def step(x: str, shift: int, multiplier: int) -> str:
        return (
            f"((xor({x}, {x} >> {shift})::UHUGEINT * {multiplier}::UHUGEINT) "
            f"& {_MASK64}::UHUGEINT)::UBIGINT"
        )

    z = step(step(f"({value})", 30, 0xBF58476D1CE4E5B9), 27, 0x94D049BB133111EB)
    return f"xor({z}, {z} >> 31)"


def salt(*parts: object) -> int:
    """A 64-bit salt from text parts (md5, so it is the same everywhere)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.md5(text.encode()).digest()[:8], "big")


def row_key_base(row_id: str) -> int:
    """A row's base key (the reference for ROW_KEY_BASE_SQL)."""
    head = row_id[:16]
    if _HEX_RE.fullmatch(head):
        return int(head, 16)
    return int.from_bytes(hashlib.md5(row_id.encode()).digest()[:8], "little")


def row_key(row_id: str, *salt_parts: object) -> int:
    """The ranking key of a row within (seed, stage, component): smaller keys are taken first.

    >>> row_key("00000000000000000000000000000001", 0, "s", "c") == splitmix64(1 ^ salt(0, "s", "c"))
    True
    """
    return splitmix64(row_key_base(row_id) ^ salt(*salt_parts))


def largest_remainder(total: int, shares: Sequence[Fraction]) -> list[int]:
    """Integers summing to `total` in proportion to `shares` (Hamilton's method; ties by order).

    >>> largest_remainder(10, [Fraction(1, 3)] * 3)
    [4, 3, 3]
    """
    if total < 0:
        raise ValueError("total must be >= 0")
    weight = sum(shares, Fraction(0))
    if total == 0 or weight == 0:
        return [0] * len(shares)
    exact = [total * s / weight for s in shares]
    floors = [math.floor(x) for x in exact]
    left = total - sum(floors)
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return floors


def allocate(total: int, shares: Sequence[Fraction], capacities: Sequence[int]) -> list[int]:
    """Split `total` in proportion to `shares`, never above `capacities` (water-filling).

    What a capped entry cannot take goes to the others in proportion to their shares; the
    result sums to min(total, sum of capacities of entries with a positive share).

    >>> allocate(10, [Fraction(1, 2), Fraction(1, 2)], [2, 100])
    [2, 8]
    """
    n = len(shares)
    alloc = [0] * n
    active = [i for i in range(n) if shares[i] > 0 and capacities[i] > 0]
    remaining = min(total, sum(capacities[i] for i in active))
    while remaining > 0 and active:
        weight = sum((shares[i] for i in active), Fraction(0))
        ideal = {i: remaining * shares[i] / weight for i in active}
        full = [i for i in active if alloc[i] + ideal[i] >= capacities[i]]
        if full:
            for i in full:
                remaining -= capacities[i] - alloc[i]
                alloc[i] = capacities[i]
            active = [i for i in active if i not in full]
            continue
        parts = largest_remainder(remaining, [shares[i] for i in active])
        for i, part in zip(active, parts, strict=True):
            alloc[i] += part
        remaining = 0
    return alloc


def temperature_shares(sizes: Sequence[int], temperature: float) -> list[Fraction]:
    """Source sampling shares p ~ n^(1/T): T = 1 is proportional, large T tends to uniform.

    >>> [float(s) for s in temperature_shares([100, 25], 2.0)]
    [0.6666666666666666, 0.3333333333333333]
    """
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    if temperature == 1:
        raw = [Fraction(n) for n in sizes]
    else:
        raw = [Fraction(float(n) ** (1.0 / temperature)) if n > 0 else Fraction(0) for n in sizes]
    total = sum(raw, Fraction(0))
    return [r / total if total else Fraction(0) for r in raw]


@dataclass(frozen=True)
class StageCounts:
    resolved_target: int
    requested: list[int]
    taken: list[int]
    limited_by: list[int]


def stage_counts(
    target: int | str, weights: Sequence[float], capacities: Sequence[int], policy: str
) -> StageCounts:
    """Rows per component for one stage (see the module docstring for the policies).

    >>> stage_counts(100, [1, 1], [10, 1000], "redistribute").taken
    [10, 90]
    >>> stage_counts(100, [1, 1], [10, 1000], "leave_short").taken
    [10, 50]
    >>> stage_counts("all", [1, 3], [10, 1000], "redistribute").taken
    [10, 30]
    """
    # Weights as the decimals the user wrote (39.2, not its binary neighbour), so shares are exact.
    shares = [Fraction(repr(float(w))) for w in weights]
    total_weight = sum(shares, Fraction(0))
    shares = [s / total_weight for s in shares]
    n = len(shares)
    limited: list[int] = []
    if target == "all":
        supplied = [i for i in range(n) if capacities[i] > 0]
        if not supplied:
            resolved = 0
        else:
            base = shares
            if policy == "redistribute":
                kept = sum((shares[i] for i in supplied), Fraction(0))
                base = [s / kept for s in shares]
            ratios = {i: Fraction(capacities[i]) / base[i] for i in supplied}
            best = min(ratios.values())
            resolved = math.floor(best)
            limited = [i for i in supplied if ratios[i] == best]
    else:
        resolved = int(target)
    requested = largest_remainder(resolved, shares)
    if policy == "redistribute":
        taken = allocate(resolved, shares, capacities)
    else:
        taken = [min(r, c) for r, c in zip(requested, capacities, strict=True)]
    return StageCounts(resolved, requested, taken, limited)


# --- inputs -------------------------------------------------------------------------------------


def resolve_recipe(workspace: Workspace, ref: str | Path | Recipe) -> Recipe:
    """The recipe `ref` names, once it is known to own its name (`check_recipe_owns_name`)."""
    recipe = ref if isinstance(ref, Recipe) else load_recipe(find_recipe(workspace, ref))
    check_recipe_owns_name(workspace, recipe)
    return recipe


def _input_manifests(workspace: Workspace, recipe: Recipe) -> list[Manifest]:
    """The manifests the recipe may read: its `manifests`, else those its components name when
    every component names some, else every manifest of the workspace."""
    named = set(recipe.manifests)
    components = [c for s in recipe.stages for c in s.components]
    if recipe.manifests:
        outside = sorted({m for c in components for m in c.manifests} - named)
        if outside:
            raise ConfigError(
                f"recipe {recipe.name!r}: components name manifest(s) {outside} that the "
                f"recipe's `manifests` ({sorted(named)}) leaves out"
            )
        return [open_manifest(workspace, name) for name in sorted(named)]
    found = list_manifests(workspace)
    known = [m.name for m in found]
    for stage in recipe.stages:
        for component in stage.components:
            missing = [m for m in component.manifests if m not in known]
            if missing:
                raise NotFoundError(
                    f"recipe {recipe.name!r}, component {stage.name}/{component.name}: "
                    f"`manifests` names {missing}, which {'is' if len(missing) == 1 else 'are'} "
                    f"not in {workspace.manifests} (known: {', '.join(known) or 'none'}); fix "
                    f"the name or create it with `curate ingest PATH --name {missing[0]}`"
                )
    if not found:
        raise NotFoundError(
            f"no manifests in {workspace.manifests}; ingest data first with "
            "`curate ingest PATH --name NAME`"
        )
    if components and all(c.manifests for c in components):
        wanted = {m for c in components for m in c.manifests}
        return [m for m in found if m.name in wanted]
    return found


#: The columns component selectors test, with the recipe key and the stats.json counter of each.
SELECTOR_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("pair", "pairs", "by_pair"),
    ("source", "sources", "by_source"),
    ("task", "tasks", "by_task"),
    ("split", "splits", "by_split"),
)

#: Column -> the distinct values one manifest holds there.
SelectorValues = dict[str, frozenset[str]]


def _selector_values(manifest: Manifest) -> SelectorValues:
    """The pairs, sources, tasks and splits a manifest holds: from the counters ingest writes to
    stats.json, else (a manifest written by other means) one DISTINCT query over those columns."""
    stats = manifest.stats
    counters = [stats.get(key) for _, _, key in SELECTOR_COLUMNS]
    if all(isinstance(c, dict) for c in counters):
        return {
            column: frozenset(str(v) for v, n in counter.items() if n)
            for (column, _, _), counter in zip(SELECTOR_COLUMNS, counters, strict=True)
        }
    values: dict[str, set[str]] = {column: set() for column, _, _ in SELECTOR_COLUMNS}
    files = manifest.row_files
    if files:
        columns = ", ".join(_q(column) for column in values)
        con = connect(read_paths=files)
        try:
            with duckdb_errors(f"reading manifest {manifest.name!r}"):
                found = con.execute(
                    f"SELECT DISTINCT {columns} FROM "
                    f"read_parquet([{', '.join(sql_string(f) for f in files)}])"
                ).fetchall()
        finally:
            con.close()
        for combination in found:
            for column, value in zip(values, combination, strict=True):
                if value is not None:
                    values[column].add(str(value))
    return {column: frozenset(v) for column, v in values.items()}


def _selected_values(component: Component) -> SelectorValues:
    """Column -> the values the component's selector accepts (columns it does not restrict are
    left out)."""
    out: SelectorValues = {}
    for column, key, _ in SELECTOR_COLUMNS:
        values = getattr(component, key)
        if values and values != (ANY_SPLIT,):
            out[column] = frozenset(values)
    return out


def _check_selector_names(
    recipe: Recipe, candidates: list[Manifest], present: dict[str, SelectorValues]
) -> None:
    """A source or split a component names must occur in one of the manifests it can read.

    Sources and splits are free text, so a value no input holds is almost always a typo; without
    this check it would select nothing, and "redistribute" would quietly hand its share to the
    other components. Pair codes and tasks come from a closed vocabulary that the recipe parser
    already checks; one with no rows yet is a shortfall with its reason (as v3 intends).
    """
    all_names = [m.name for m in candidates]
    for stage in recipe.stages:
        for component in stage.components:
            readable = list(component.manifests) or all_names
            for column, key, _ in (SELECTOR_COLUMNS[1], SELECTOR_COLUMNS[3]):
                named = getattr(component, key)
                if not named or named == (ANY_SPLIT,):
                    continue
                known = frozenset().union(*(present[m][column] for m in readable))
                missing = [v for v in named if v not in known]
                if not missing:
                    continue
                hint = ""
                if column == "split" and named == ("train",):
                    hint = '; `splits` defaults to ["train"], ["*"] selects any split'
                raise ConfigError(
                    f"recipe {recipe.name!r}, component {stage.name}/{component.name}: {key} "
                    f"{missing} occur in none of the manifests it reads ({', '.join(readable)}); "
                    f"{key} there: {', '.join(sorted(known)) or 'none'}; fix `{key}` (values are "
                    f"case-sensitive){hint}"
                )


def _can_contribute(component: Component, manifest: Manifest, present: SelectorValues) -> bool:
    """Whether some row of `manifest` passes the component's pair, source, task, split and
    manifest selectors (its `where` predicates and the global filters are not considered)."""
    if component.manifests and manifest.name not in component.manifests:
        return False
    if not present["pair"]:
        return False  # no rows
    wanted = _selected_values(component)
    if any(not (present[column] & values) for column, values in wanted.items()):
        return False
    # Each restricted column has matching rows. When at most one column holds values outside
    # the selector, every row matching that column matches all of them: some row contributes.
    partial = {c: v for c, v in wanted.items() if not present[c] <= v}
    if len(partial) <= 1:
        return True
    params = Parameters()
    condition = " AND ".join(
        f"{_q(column)} IN ({', '.join(params.bind(v) for v in sorted(values))})"
        for column, values in sorted(partial.items())
    )
    files = manifest.row_files
    con = connect(read_paths=files)
    try:
        with duckdb_errors(f"reading manifest {manifest.name!r}"):
            hit = con.execute(
                f"SELECT 1 FROM read_parquet([{', '.join(sql_string(f) for f in files)}]) "
                f"WHERE {condition} LIMIT 1",
                params.values,
            ).fetchone()
    finally:
        con.close()
    return hit is not None


def _contributing_manifests(
    recipe: Recipe, candidates: list[Manifest], present: dict[str, SelectorValues]
) -> list[Manifest]:
    """The candidates that can give some component a row: the only manifests the mixture (and
    so its version and lineage) depends on. An evaluation manifest ingested next to the training
    data changes no recipe that does not select its split."""
    components = [c for stage in recipe.stages for c in stage.components]
    kept = [
        m for m in candidates if any(_can_contribute(c, m, present[m.name]) for c in components)
    ]
    if not kept:
        held = "; ".join(
            f"{m.name}: pairs {', '.join(sorted(present[m.name]['pair'])) or 'none'}, splits "
            f"{', '.join(sorted(present[m.name]['split'])) or 'none'}"
            for m in candidates
        )
        raise ConfigError(
            f"recipe {recipe.name!r} selects no rows: no input manifest has rows that a "
            f"component's pairs, sources, tasks, splits and manifests select ({held}); check the "
            "selectors against `curate stats NAME`"
        )
    return kept


def _signal_files(manifest: Manifest) -> list[SignalFile]:
    out = []
    if manifest.signals_dir.is_dir():
        for path in sorted(manifest.signals_dir.glob("*.parquet")):
            try:
                schema = pq.read_schema(path)
            except (pa.ArrowInvalid, OSError) as error:
                raise ConfigError(
                    f"signal file {path} of manifest {manifest.name!r} is not readable Parquet "
                    f"({error}); recompute it with `curate score {manifest.name}`"
                ) from None
            if "id" not in schema.names:
                raise ConfigError(
                    f"signal file {path} has no `id` column; sidecars are keyed by manifest id"
                )
            columns = {
                f.name: f.type
                for f in schema
                if f.name != "id" and f.name not in MANIFEST_COLUMNS and f.name != "manifest"
            }
            out.append(SignalFile(manifest.name, path.stem, path, columns))
    return out


def _recipe_columns(recipe: Recipe) -> set[str]:
    """Every column the recipe names (predicates, thresholds, dedup columns)."""
    predicates: list[Predicate] = list(recipe.filters.where)
    for stage in recipe.stages:
        for component in stage.components:
            predicates.extend(component.where)
    names = {c for p in predicates for c in p.columns}
    names |= {k for k, _ in recipe.filters.signal_min}
    names |= {k for k, _ in recipe.filters.signal_max}
    names |= {k for k in recipe.filters.dedup if k not in _BUILTIN_DEDUP}
    return names


_BUILTIN_DEDUP = ("text", "media", "exact", "near_dup")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class _Inputs:
    manifests: list[InputManifest]
    # column -> manifest name -> the sidecar that has it (only columns the recipe uses)
    signal_columns: dict[str, dict[str, SignalFile]]
    signal_types: dict[str, pa.DataType]
    used_signals: list[SignalFile]
    notes: list[str]
    skipped: list[str]  # candidate manifests no component can take a row from: not read
    present: SelectorValues  # pairs, sources, tasks and splits of the manifests read


def _resolve_inputs(workspace: Workspace, recipe: Recipe) -> _Inputs:
    candidates = _input_manifests(workspace, recipe)
    present = {m.name: _selector_values(m) for m in candidates}
    _check_selector_names(recipe, candidates, present)
    manifests = _contributing_manifests(recipe, candidates, present)
    skipped = [m.name for m in candidates if m not in manifests]
    inputs: list[InputManifest] = []
    available: dict[str, dict[str, list[SignalFile]]] = {}
    for manifest in manifests:
        files = tuple(manifest.row_files)
        rows = 0
        for file in files:
            meta = pq.read_metadata(file)
            check_schema(
                meta.schema.to_arrow_schema(),
                MANIFEST_SCHEMA,
                where=f"manifest {manifest.name!r} ({file.name})",
            )
            rows += meta.num_rows
        inputs.append(
            InputManifest(manifest.name, manifest.path, manifest.fingerprint, files, rows)
        )
        for signal in _signal_files(manifest):
            for column in signal.columns:
                available.setdefault(column, {}).setdefault(manifest.name, []).append(signal)

    wanted = set(_recipe_columns(recipe))
    notes: list[str] = []
    if "near_dup" in recipe.filters.dedup:
        if NEAR_DUP_KEEP in available:
            wanted.add(NEAR_DUP_KEEP)
        else:
            notes.append(
                "dedup key 'near_dup' skipped: no input manifest has a near-duplicate signal "
                "(compute it with `curate score NAME --signals near_dup`)"
            )
    signal_columns: dict[str, dict[str, SignalFile]] = {}
    signal_types: dict[str, pa.DataType] = {}
    names = [m.name for m in inputs]
    for column in sorted(wanted):
        if column in MANIFEST_COLUMNS or column == "manifest":
            continue
        if column not in available:
            hint = SIGNAL_SOURCES.get(column)
            how = (
                f"`{hint}` computes it"
                if hint
                else "compute it with `curate score NAME --signals ...`"
            )
            known = sorted(available)
            raise ConfigError(
                f"recipe {recipe.name!r} names column {column!r}, which is neither a manifest "
                f"column nor a signal of the input manifests {names}; {how} "
                f"(signal columns present: {', '.join(known) or 'none'})"
            )
        per_manifest: dict[str, SignalFile] = {}
        for manifest_name, files in available[column].items():
            if len(files) > 1:
                raise ConfigError(
                    f"column {column!r} is in more than one signal file of manifest "
                    f"{manifest_name!r} ({', '.join(str(f.path) for f in files)}); remove one"
                )
            per_manifest[manifest_name] = files[0]
        types = {str(f.columns[column]) for f in per_manifest.values()}
        if len(types) > 1:
            raise ConfigError(
                f"signal column {column!r} has different types across manifests ({sorted(types)}); "
                "recompute the signals with one version of curate"
            )
        signal_columns[column] = per_manifest
        signal_types[column] = next(iter(per_manifest.values())).columns[column]
        missing = [n for n in names if n not in per_manifest]
        if missing:
            notes.append(
                f"signal column {column!r} is missing for manifest(s) {missing}: their rows have "
                "NULL there (thresholds let NULL pass; `where` predicates treat NULL as false)"
            )
    used: dict[Path, SignalFile] = {}
    for per_manifest in signal_columns.values():
        for signal in per_manifest.values():
            used.setdefault(signal.path, signal)
    used_signals = [
        SignalFile(s.manifest, s.signal, s.path, s.columns, _sha256(s.path))
        for s in sorted(used.values(), key=lambda s: (s.manifest, s.signal))
    ]
    union = {
        column: frozenset().union(*(present[m.name][column] for m in manifests))
        for column, _, _ in SELECTOR_COLUMNS
    }
    return _Inputs(inputs, signal_columns, signal_types, used_signals, notes, skipped, union)


def version_of(
    recipe: Recipe, manifests: Iterable[InputManifest], signals: Iterable[SignalFile]
) -> str:
    """The content hash that names a mixture version."""
    identity = {
        "algorithm": MIX_ALGORITHM,
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "recipe": recipe.canonical(),
        "manifests": [[m.name, m.fingerprint] for m in sorted(manifests, key=lambda m: m.name)],
        "signals": [[s.manifest, s.signal, s.sha256] for s in signals],
    }
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:VERSION_CHARS]


# --- SQL ----------------------------------------------------------------------------------------


@dataclass
class _Compiled:
    pool_sql: str
    params: dict[str, Any]
    steps: list[tuple[str, str, str | None]]  # (step, rule, note) in code order 1..n


def _q(name: str) -> str:
    return sql_identifier(name)


def _selector_sql(component: Component, manifest_index: dict[str, int], params: Parameters) -> str:
    parts: list[str] = []
    if component.manifests:
        # Named manifests that are not read (no row of theirs can match) are left out.
        read = [manifest_index[m] for m in component.manifests if m in manifest_index]
        if not read:
            return "false"
        parts.append(f"_m IN ({', '.join(params.bind(i) for i in read)})")
    for column, values in (
        ("pair", component.pairs),
        ("source", component.sources),
        ("task", component.tasks),
    ):
        if values:
            parts.append(f"{_q(column)} IN ({', '.join(params.bind(v) for v in values)})")
    if component.splits != (ANY_SPLIT,):
        parts.append(f"{_q('split')} IN ({', '.join(params.bind(v) for v in component.splits)})")
    for predicate in component.where:
        parts.append(f"coalesce({predicate.to_sql(params)}, false)")
    return " AND ".join(parts) if parts else "true"


def _compile(recipe: Recipe, inputs: _Inputs) -> _Compiled:
    params = Parameters()
    manifest_index = {m.name: i for i, m in enumerate(inputs.manifests)}
    filters = recipe.filters

    # Global filters: (step, rule, keep-expression) in the order they apply.
    keep: list[tuple[str, str, str, str | None]] = []
    if filters.text_chars:
        lo, hi = filters.text_chars
        lo_p, hi_p = params.bind(lo), params.bind(hi)
        keep.append((
            "text_chars",
            f"query and target text between {lo} and {hi} characters",
            f"(query_chars IS NULL OR query_chars BETWEEN {lo_p} AND {hi_p}) AND "
            f"(target_chars IS NULL OR target_chars BETWEEN {lo_p} AND {hi_p})",
            None,
        ))  # fmt: skip
    if filters.video_duration:
        lo, hi = filters.video_duration
        keep.append((
            "video_duration",
            f"videos between {lo} and {hi} seconds (unknown durations pass)",
            f"(media_kind IS DISTINCT FROM 'video' OR duration IS NULL OR duration BETWEEN "
            f"{params.bind(lo)} AND {params.bind(hi)})",
            None,
        ))  # fmt: skip
    if filters.min_resolution:
        keep.append((
            "min_resolution",
            f"shorter side of the primary image/video >= {filters.min_resolution} px",
            f"(media_kind IS NULL OR width IS NULL OR height IS NULL OR "
            f"least(width, height) >= {params.bind(filters.min_resolution)})",
            None,
        ))  # fmt: skip
    for column, value in filters.signal_min:
        keep.append((
            f"signal_min.{column}",
            f"{column} >= {value} (rows without it pass)",
            f"({_q(column)} IS NULL OR {_q(column)} >= {params.bind(value)})",
            None,
        ))  # fmt: skip
    for column, value in filters.signal_max:
        keep.append((
            f"signal_max.{column}",
            f"{column} <= {value} (rows without it pass)",
            f"({_q(column)} IS NULL OR {_q(column)} <= {params.bind(value)})",
            None,
        ))  # fmt: skip
    for i, predicate in enumerate(filters.where):
        keep.append(
            (f"where[{i}]", predicate.text, f"coalesce({predicate.to_sql(params)}, false)", None)
        )

    # Dedup keys: (step, rule, kind, expression) with kind "group" (one row per key) or "flag".
    dedup: list[tuple[str, str, str, str, str | None]] = []
    for key in filters.dedup:
        if key == "text":
            # Partitioning on the texts themselves is exact (no hash collisions) and cheaper
            # than hashing them first.
            expr = (
                "CASE WHEN instruction IS NULL AND query_text IS NULL AND target_text IS NULL "
                "THEN NULL ELSE struct_pack(instruction, query_text, target_text) END"
            )
            dedup.append(
                ("dedup.text", "one row per pair code and identical texts", "group", expr, None)
            )
        elif key == "media":
            dedup.append((
                "dedup.media", "one row per pair code and primary media content hash", "group",
                "media_hash", None,
            ))  # fmt: skip
        elif key == "exact":
            expr = (
                "struct_pack(instruction, query_text, target_text, "
                "media := list_transform(media, lambda m: m.role || ':' || "
                "coalesce(m.content_hash, m.path)), query_clip_start, query_clip_end, "
                "target_clip_start, target_clip_end)"
            )
            dedup.append((
                "dedup.exact", "one row per pair code, identical texts and identical media",
                "group", expr, None,
            ))  # fmt: skip
        elif key == "near_dup":
            if NEAR_DUP_KEEP in inputs.signal_columns:
                dedup.append((
                    "dedup.near_dup", f"rows whose {NEAR_DUP_KEEP} signal is false are removed",
                    "flag", _q(NEAR_DUP_KEEP), None,
                ))  # fmt: skip
            else:
                dedup.append(
                    ("dedup.near_dup", "no near-duplicate signal present", "skip", "", "skipped")
                )
        else:
            column_type = inputs.signal_types.get(key) or MANIFEST_SCHEMA.field(key).type
            if pa.types.is_boolean(column_type):
                dedup.append(
                    (
                        f"dedup.{key}",
                        f"rows whose {key} is false are removed",
                        "flag",
                        _q(key),
                        None,
                    )
                )
            else:
                dedup.append(
                    (f"dedup.{key}", f"one row per pair code and {key}", "group", _q(key), None)
                )

    # Columns the pool query reads.
    needed = {"id", "source", "pair", "task", "split"}
    if filters.text_chars:
        needed |= {"query_chars", "target_chars"}
    if filters.video_duration:
        needed |= {"media_kind", "duration"}
    if filters.min_resolution:
        needed |= {"media_kind", "width", "height"}
    if "text" in filters.dedup or "exact" in filters.dedup:
        needed |= {"instruction", "query_text", "target_text"}
    if "media" in filters.dedup:
        needed.add("media_hash")
    if "exact" in filters.dedup:
        needed |= {
            "media",
            "query_clip_start",
            "query_clip_end",
            "target_clip_start",
            "target_clip_end",
        }
    referenced = _recipe_columns(recipe)
    needed |= {c for c in referenced if c in MANIFEST_COLUMNS}
    signal_names = sorted(inputs.signal_columns)
    want_manifest_name = "manifest" in referenced

    branches = []
    for index, manifest in enumerate(inputs.manifests):
        files = ", ".join(sql_string(f) for f in manifest.files)
        columns = [f"{index}::SMALLINT AS _m"]
        columns += [f"r.{_q(c)}" for c in MANIFEST_SCHEMA.names if c in needed]
        if want_manifest_name:
            columns.append(f"{sql_string(manifest.name)} AS manifest")
        joins = []
        aliases: dict[Path, str] = {}
        for column in signal_names:
            signal = inputs.signal_columns[column].get(manifest.name)
            if signal is None:
                columns.append(f"NULL AS {_q(column)}")
                continue
            if signal.path not in aliases:
                alias = f"s{len(aliases)}"
                aliases[signal.path] = alias
                joins.append(
                    f"LEFT JOIN read_parquet({sql_string(signal.path)}) {alias} "
                    f"ON {alias}.id = r.id"
                )
            columns.append(f"{aliases[signal.path]}.{_q(column)} AS {_q(column)}")
        if not manifest.files:
            branches.append(f"SELECT {', '.join(columns)} FROM (SELECT NULL) WHERE false")
            continue
        branches.append(
            f"SELECT {', '.join(columns)} FROM read_parquet([{files}]) r " + " ".join(joins)
        )
    source_sql = "\nUNION ALL\n".join(branches)

    stage_columns = []
    for i, stage in enumerate(recipe.stages):
        cases = " ".join(
            f"WHEN {_selector_sql(c, manifest_index, params)} THEN {j}"
            for j, c in enumerate(stage.components)
        )
        stage_columns.append(f"CASE {cases} ELSE -1 END::SMALLINT AS _c{i}")
    any_stage = " OR ".join(f"_c{i} >= 0" for i in range(len(recipe.stages)))

    steps: list[tuple[str, str, str | None]] = []
    removed_cases = []
    for step, rule, expr, note in keep:
        steps.append((step, rule, note))
        removed_cases.append(f"WHEN NOT ({expr}) THEN {len(steps)}")
    removed_expr = (
        f"(CASE {' '.join(removed_cases)} ELSE 0 END)::SMALLINT" if removed_cases else "0::SMALLINT"
    )
    key_columns = []
    for k, (_, _, kind, expr, _) in enumerate(dedup):
        if kind != "skip":
            key_columns.append(f"{expr} AS _k{k}")
    stage_names = [f"_c{i}" for i in range(len(recipe.stages))]
    carried = ["_m", "id", "source", "pair", *stage_names]
    base_key = f"{ROW_KEY_BASE_SQL} AS _h"

    ctes = [
        f"src AS ({source_sql})",
        f"assigned AS (SELECT *, {', '.join(stage_columns)} FROM src)",
        "filtered AS (SELECT "
        + ", ".join([*carried, base_key, f"{removed_expr} AS _removed", *key_columns])
        + f" FROM assigned WHERE {any_stage})",
    ]
    previous = "filtered"
    for k, (step, rule, kind, _, note) in enumerate(dedup):
        steps.append((step, rule, note))
        code = len(steps)
        if kind == "skip":
            continue
        name = f"d{k}"
        if kind == "flag":
            condition = f"_removed = 0 AND _k{k} = false"
            ctes.append(
                f"{name} AS (SELECT * REPLACE (CASE WHEN {condition} THEN {code}::SMALLINT "
                f"ELSE _removed END AS _removed) FROM {previous})"
            )
        else:
            condition = (
                f"_removed = 0 AND _k{k} IS NOT NULL AND row_number() OVER "
                f"(PARTITION BY _removed, pair, _k{k} ORDER BY id, _m) > 1"
            )
            ctes.append(
                f"{name} AS (SELECT * REPLACE (CASE WHEN {condition} THEN {code}::SMALLINT "
                f"ELSE _removed END AS _removed) FROM {previous})"
            )
        previous = name
    pool_sql = (
        "CREATE TEMP TABLE pool AS WITH "
        + ",\n".join(ctes)
        + f"\nSELECT {', '.join([*carried, '_h', '_removed'])} FROM {previous}"
    )
    return _Compiled(pool_sql, params.values, steps)


# --- the engine ---------------------------------------------------------------------------------


def _plan_stages(
    con: duckdb.DuckDBPyConnection, recipe: Recipe, present: SelectorValues
) -> list[StagePlan]:
    plans = []
    for i, stage in enumerate(recipe.stages):
        rows = con.execute(
            f"SELECT _c{i}, source, count(*), count(*) FILTER (WHERE _removed = 0) "
            f"FROM pool WHERE _c{i} >= 0 GROUP BY ALL ORDER BY 1, 2"
        ).fetchall()
        matched = [0] * len(stage.components)
        per_source: list[dict[str, int]] = [{} for _ in stage.components]
        for comp, source, n_matched, n_available in rows:
            matched[comp] += n_matched
            if n_available:
                per_source[comp][source] = n_available
        plans.append(_plan_stage(stage, matched, per_source, present))
    return plans


def _plan_stage(
    stage: Stage,
    matched: list[int],
    per_source: list[dict[str, int]],
    present: SelectorValues | None = None,
) -> StagePlan:
    comps = stage.components
    usable = [
        {s: min(n, c.max_per_source or n) for s, n in sorted(per_source[j].items())}
        for j, c in enumerate(comps)
    ]
    capacities = [sum(u.values()) * c.max_repeat for u, c in zip(usable, comps, strict=True)]
    counts = stage_counts(stage.target, [c.weight for c in comps], capacities, stage.on_shortfall)
    shares = stage.shares
    plans: list[ComponentPlan] = []
    for j, comp in enumerate(comps):
        requested, taken = counts.requested[j], counts.taken[j]
        available = sum(per_source[j].values())
        n_usable = sum(usable[j].values())
        reason = None
        if taken < requested:
            if matched[j] == 0:
                reason = "no rows match its selector" + _selector_text(comp)
                reason += _absent_text(comp, present or {})
            elif available == 0:
                reason = (
                    f"all {matched[j]} matching rows were removed by the global filters or dedup"
                )
            else:
                capped = (
                    f", {available} before max_per_source={comp.max_per_source}"
                    if n_usable < available
                    else ""
                )
                reason = (
                    f"only {n_usable} usable rows{capped} x max_repeat {comp.max_repeat} = "
                    f"capacity {capacities[j]} < {requested} requested"
                )
        sources = list(usable[j])
        source_shares = temperature_shares([usable[j][s] for s in sources], comp.temperature)
        source_taken = allocate(
            taken, source_shares, [usable[j][s] * comp.max_repeat for s in sources]
        )
        plans.append(
            ComponentPlan(
                name=comp.name,
                weight=comp.weight,
                share=shares[comp.name],
                matched=matched[j],
                available=available,
                usable=n_usable,
                capacity=capacities[j],
                requested=requested,
                taken=taken,
                shortfall=max(0, requested - taken),
                shortfall_reason=reason,
                redistributed=max(0, taken - requested),
                sources={
                    s: SourcePlan(per_source[j][s], usable[j][s], float(p), t)
                    for s, p, t in zip(sources, source_shares, source_taken, strict=True)
                },
            )
        )
    return StagePlan(
        name=stage.name,
        target=stage.target,
        resolved_target=counts.resolved_target,
        on_shortfall=stage.on_shortfall,
        components=plans,
        limited_by=[comps[j].name for j in counts.limited_by],
    )


def _selector_text(component: Component) -> str:
    parts = []
    for key in ("pairs", "sources", "manifests", "tasks", "splits"):
        value = getattr(component, key)
        if value:
            parts.append(f"{key}={list(value)}")
    parts += [f"where={p.text!r}" for p in component.where]
    return f" ({', '.join(parts)})" if parts else ""


def _absent_text(component: Component, present: SelectorValues) -> str:
    """Why a selector matched nothing, when the reason is that no input holds a pair or task it
    names: "; the inputs have no pair i2i (pairs there: i2t, t2i)"."""
    out = []
    for column, key in (("pair", "pairs"), ("task", "tasks")):
        named = getattr(component, key)
        there = present.get(column, frozenset())
        if named and not there & set(named):
            out.append(
                f"; the inputs have no {column} {', '.join(named)} "
                f"({key} there: {', '.join(sorted(there)) or 'none'})"
            )
    return "".join(out)


def _check_plan(recipe: Recipe, stages: list[StagePlan]) -> None:
    for stage in stages:
        if stage.on_shortfall == "error":
            short = [c for c in stage.components if c.shortfall > 0 or c.capacity == 0]
            if short:
                details = "; ".join(
                    f"{c.name}: {c.shortfall_reason or 'no rows available'}" for c in short
                )
                raise ConfigError(
                    f"recipe {recipe.name!r}, stage {stage.name!r}: the weights cannot be met "
                    f"({details}); lower the target, add data, raise max_repeat, or set "
                    'on_shortfall = "redistribute" or "leave_short"'
                )
        if stage.taken == 0:
            details = "; ".join(
                f"{c.name}: {c.shortfall_reason or 'no rows'}" for c in stage.components
            )
            raise ConfigError(
                f"recipe {recipe.name!r}, stage {stage.name!r} selects no rows ({details}); "
                "check the component selectors against `curate stats NAME`"
            )


def rank_threshold(need: int, available: int) -> int:
    """A key bound below which a group's `need` smallest keys almost surely lie.

    Keys are uniform 64-bit numbers, so about need/available of a group's rows fall below
    (need/available) * 2^64; the bound adds 8 standard deviations and a few rows. Only the rows
    under it are ranked (far fewer than all when a stage takes a small share), and
    `_select_stage` checks that every group still had enough rows, ranking all of them otherwise:
    the result is exactly the full ranking's.

    >>> rank_threshold(10, 10) == 2**64 - 1
    True
    >>> rank_threshold(1000, 1_000_000) < 2**64 // 500
    True
    """
    if need >= available:
        return _MASK64
    p = need / available
    bound = p + 8 * math.sqrt(p * (1 - p) / available) + 16 / available
    return _MASK64 if bound >= 1 else int(bound * 2**64)


def _select_stage(
    con: duckdb.DuckDBPyConnection, recipe: Recipe, index: int, plan: StagePlan
) -> None:
    """Create temp table sel{index}: the chosen rows with their repeat and position."""
    if not _select_stage_with(con, recipe, index, plan, prefilter=True):
        # Some group had fewer rows under its bound than it needs (odds ~1e-15): rank all rows.
        con.execute(f"DROP TABLE sel{index}")
        if not _select_stage_with(con, recipe, index, plan, prefilter=False):
            raise RuntimeError(f"stage {plan.name}: selection does not match its plan")


def _select_stage_with(
    con: duckdb.DuckDBPyConnection, recipe: Recipe, index: int, plan: StagePlan, *, prefilter: bool
) -> bool:
    params = Parameters()
    quota_rows = []
    expected: dict[tuple[int, str], int] = {}
    for j, comp in enumerate(plan.components):
        for source, sp in comp.sources.items():
            if sp.taken:
                full, rem = divmod(sp.taken, sp.usable)
                need = sp.usable if full else rem
                bound = rank_threshold(need, sp.available) if prefilter else _MASK64
                expected[(j, source)] = need
                quota_rows.append(
                    f"({j}, {params.bind(source)}, {sp.usable}::BIGINT, {full}::BIGINT, "
                    f"{rem}::BIGINT, {bound}::UBIGINT)"
                )
    key_cases = " ".join(
        f"WHEN {j} THEN "
        + splitmix64_sql(f"xor(p._h, {params.bind(salt(recipe.seed, plan.name, comp.name))})")
        for j, comp in enumerate(plan.components)
    )
    order_key = splitmix64_sql(
        f"xor({splitmix64_sql(f'xor(_h, {params.bind(salt(recipe.seed, plan.name))})')}, "
        "repeat::UBIGINT)"
    )
    sql = f"""
        CREATE TEMP TABLE sel{index} AS
        WITH quotas(comp, source, usable, full_passes, remainder, bound) AS (
            VALUES {", ".join(quota_rows)}
        ),
        keyed AS (
            SELECT p._m, p.id, p._h, p._c{index} AS comp, p.source, p.pair,
                   q.usable, q.full_passes, q.remainder, q.bound,
                   CASE p._c{index} {key_cases} END AS _key
            FROM pool p JOIN quotas q ON q.comp = p._c{index} AND q.source = p.source
            WHERE p._removed = 0
        ),
        ranked AS (
            SELECT *, row_number() OVER (
                       PARTITION BY comp, source ORDER BY _key, id, _m
                   ) AS _rank
            FROM keyed WHERE _key <= bound
        ),
        counted AS (
            SELECT _m, id, _h, comp, source, pair,
                   full_passes + CASE WHEN _rank <= remainder THEN 1 ELSE 0 END AS copies
            FROM ranked
            WHERE _rank <= usable  -- max_per_source keeps the first `usable` by key
        ),
        copies AS (
            SELECT _m, id, _h, comp, source, pair, unnest(range(copies)) AS repeat
            FROM counted WHERE copies > 0
        )
        SELECT _m, id, comp, source, pair, repeat::INTEGER AS repeat,
               (row_number() OVER (
                   ORDER BY {order_key}, _m, id, repeat
               ) - 1)::BIGINT AS position
        FROM copies
    """
    con.execute(sql, params.values)
    got = con.execute(
        f"SELECT comp, source, count(*) FROM sel{index} WHERE repeat = 0 GROUP BY ALL"
    ).fetchall()
    return {(j, source): n for j, source, n in got} == expected


def _counts(con: duckdb.DuckDBPyConnection, table: str, column: str) -> dict[str, int]:
    rows = con.execute(f"SELECT {column}, count(*) FROM {table} GROUP BY 1 ORDER BY 1").fetchall()
    return {str(k): int(n) for k, n in rows}


def _shares(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: v / total for k, v in sorted(counts.items())} if total else {}


class _StageFile:
    """One stage's Parquet file, written in row groups of exactly ROW_GROUP_ROWS rows."""

    def __init__(self, path: Path, name: str, total: int, progress: Progress | None) -> None:
        self.writer = pq.ParquetWriter(
            path, MIXTURE_ROW_SCHEMA, compression="zstd", use_dictionary=list(DICTIONARY_COLUMNS)
        )
        self.name = name
        self.total = total
        self.progress = progress
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.written = 0

    def add(self, table: pa.Table) -> None:
        self.pending.append(table)
        self.pending_rows += table.num_rows
        while self.pending_rows >= ROW_GROUP_ROWS:
            self._flush(ROW_GROUP_ROWS)

    def close(self) -> None:
        if self.pending_rows:
            self._flush(self.pending_rows)
        self.writer.close()

    def _flush(self, rows: int) -> None:
        table = pa.concat_tables(self.pending)
        chunk, rest = table.slice(0, rows), table.slice(rows)
        self.writer.write_table(chunk.cast(MIXTURE_ROW_SCHEMA), row_group_size=ROW_GROUP_ROWS)
        self.pending = [rest] if rest.num_rows else []
        self.pending_rows = rest.num_rows
        self.written += rows
        if self.progress:
            self.progress(f"writing {self.name}", self.written, self.total)


def _write_stages(
    con: duckdb.DuckDBPyConnection,
    inputs: _Inputs,
    stages: list[StagePlan],
    folder: Path,
    progress: Progress | None,
) -> None:
    """Join the chosen rows back to their manifests (one scan for all stages) and write them."""
    selections = " UNION ALL ".join(
        f"SELECT {i}::SMALLINT AS _stage, * FROM sel{i}" for i in range(len(stages))
    )
    used = [
        m for (m,) in con.execute(f"SELECT DISTINCT _m FROM ({selections}) ORDER BY 1").fetchall()
    ]
    params = Parameters()
    branches = []
    for m in used:
        manifest = inputs.manifests[m]
        files = ", ".join(sql_string(f) for f in manifest.files)
        branches.append(
            f"SELECT {m}::SMALLINT AS _m, {sql_string(manifest.name)} AS manifest, * "
            f"FROM read_parquet([{files}])"
        )
    stage_case = " ".join(f"WHEN {i} THEN {params.bind(st.name)}" for i, st in enumerate(stages))
    component_case = " ".join(
        f"WHEN s._stage = {i} AND s.comp = {j} THEN {params.bind(c.name)}"
        for i, st in enumerate(stages)
        for j, c in enumerate(st.components)
    )
    columns = ", ".join(f"r.{_q(c)}" for c in MANIFEST_SCHEMA.names)
    sql = f"""
        SELECT {columns}, r.manifest, CASE s._stage {stage_case} END AS stage,
               CASE {component_case} END AS component, s.position, s.repeat
        FROM ({" UNION ALL ".join(branches)}) r
        JOIN ({selections}) s ON s._m = r._m AND s.id = r.id
        ORDER BY s._stage, s.position
    """
    files = [
        _StageFile(folder / f"{st.name}.parquet", st.name, st.taken, progress) for st in stages
    ]
    index = {st.name: i for i, st in enumerate(stages)}
    try:
        for batch in con.sql(sql, params=params.values).to_arrow_reader(ROW_GROUP_ROWS):
            table = pa.Table.from_batches([batch])
            names = table.column("stage").unique().to_pylist()
            for name in sorted(names, key=index.__getitem__):
                part = table if len(names) == 1 else table.filter(pc.equal(table["stage"], name))
                files[index[name]].add(part)
    finally:
        for file in files:
            file.close()
    for stage, file in zip(stages, files, strict=True):
        if file.written != stage.taken:
            names = ", ".join(inputs.manifests[m].name for m in used)
            raise InputError(
                f"stage {stage.name!r}: {file.written} rows joined back for {stage.taken} "
                f"selected; an input manifest ({names}) or one of its signal sidecars lists an "
                "id more than once. Ids must be unique per manifest and per sidecar: re-create "
                "them with `curate ingest` and `curate score`"
            )


def _remove_stale_temps(folder: Path) -> None:
    """Delete `.tmp-<version>-<pid>` folders left by builds whose process is gone."""
    for stale in folder.glob(".tmp-*"):
        pid_text = stale.name.rsplit("-", 1)[-1]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except PermissionError:
            pass  # alive, owned by someone else


def build_mixture(
    workspace: Workspace,
    recipe: str | Path | Recipe,
    *,
    seed: int | None = None,
    dry_run: bool = False,
    memory_limit: str | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
) -> MixResult:
    """Build (or find) the mixture version a recipe and the workspace's manifests define.

    `recipe` is a Recipe, a recipe name or a path to a .toml file; `seed` overrides the recipe's.
    With `dry_run` nothing is written: the result carries the plan and the version it would have.
    Everything a user can get wrong (recipe, columns, predicates) fails before anything is read
    or written.

    The version built or found becomes NAME's current one (`mixtures/NAME/CURRENT`, written only
    when it changes). When CURRENT cannot be written, a build raises MixtureWriteError (the
    version is complete; rerunning once CURRENT is writable makes it current), while a rebuild of
    a version that exists succeeds with a warning in `warnings`: it has its answer, and failing
    would refuse read-only and shared workspaces a command that only needs to read.
    """
    recipe = resolve_recipe(workspace, recipe)
    if seed is not None:
        recipe = recipe.with_seed(seed)
    inputs = _resolve_inputs(workspace, recipe)
    version = version_of(recipe, inputs.manifests, inputs.used_signals)
    final = workspace.mixtures / recipe.name / version
    if (final / MIXTURE_FILE).is_file() and not dry_run:
        existing = load_mixture(workspace, f"{recipe.name}@{version}")
        plan = _plan_from_meta(recipe, version, inputs, existing.meta)
        warnings: list[str] = []
        try:
            # Built before: what the recipe means now, so what NAME resolves to again.
            set_current(workspace, recipe.name, version)
        except MixtureWriteError as error:
            resolved = load_mixture(workspace, recipe.name).ref
            warnings.append(f"{error}; `{recipe.name}` still resolves to {resolved}")
            plan.notes.extend(warnings)
        return MixResult(plan=plan, mixture=existing, built=False, path=final, warnings=warnings)

    compiled = _compile(recipe, inputs)
    read_paths = [f for m in inputs.manifests for f in m.files]
    read_paths += [s.path for s in inputs.used_signals]
    spill = Path(tempfile.mkdtemp(prefix="curate-mix-"))
    con = connect(
        read_paths=read_paths,
        memory_limit=memory_limit,
        threads=threads,
        temp_directory=spill / "duckdb",
    )
    try:
        with duckdb_errors(f"mixing recipe {recipe.name!r}"):
            plan = _plan(con, recipe, version, inputs, compiled, progress)
            # A dry run fails where the build would, rather than promise a write that cannot happen.
            _check_plan(recipe, plan.stages)
            if dry_run:
                return MixResult(plan=plan, mixture=None, built=False, path=final)
            for i, stage in enumerate(plan.stages):
                if progress:
                    progress(f"sampling {stage.name}", 0, stage.taken)
                _select_stage(con, recipe, i, stage)
            built = _write_version(con, inputs, plan, final, progress)
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    try:
        set_current(workspace, recipe.name, version)
    except MixtureWriteError as error:
        raise MixtureWriteError(f"wrote {recipe.name}@{version} to {final}, but {error}") from None
    mixture = load_mixture(workspace, f"{recipe.name}@{version}")
    return MixResult(plan=plan, mixture=mixture, built=built, path=final)


def _plan(
    con: duckdb.DuckDBPyConnection,
    recipe: Recipe,
    version: str,
    inputs: _Inputs,
    compiled: _Compiled,
    progress: Progress | None,
) -> MixPlan:
    """Build the pool table and plan every stage from its counts."""
    if progress:
        progress("reading manifests", 0, None)
    con.execute(compiled.pool_sql, compiled.params)
    candidates = con.execute("SELECT count(*) FROM pool").fetchone()[0]  # type: ignore[index]
    removed = dict(con.execute("SELECT _removed, count(*) FROM pool GROUP BY 1").fetchall())
    return MixPlan(
        recipe=recipe,
        version=version,
        manifests=inputs.manifests,
        signals=inputs.used_signals,
        rows_read=sum(m.rows for m in inputs.manifests),
        candidates=int(candidates),
        filters=[
            FilterStep(step, rule, int(removed.get(code, 0)), note)
            for code, (step, rule, note) in enumerate(compiled.steps, start=1)
        ],
        kept=int(removed.get(0, 0)),
        stages=_plan_stages(con, recipe, inputs.present),
        notes=inputs.notes,
        skipped=inputs.skipped,
    )


def _write_version(
    con: duckdb.DuckDBPyConnection,
    inputs: _Inputs,
    plan: MixPlan,
    final: Path,
    progress: Progress | None,
) -> bool:
    """Write the stages and mixture.json beside `final`, then rename into place.

    Returns False when another process renamed the same version into place first (same
    content: theirs is kept).
    """
    folder = final.parent
    folder.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(folder)
    tmp = folder / f".tmp-{plan.version}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write_stages(con, inputs, plan.stages, tmp, progress)
        stage_meta: dict[str, Any] = {}
        all_pairs: Counter[str] = Counter()
        all_sources: Counter[str] = Counter()
        for i, stage in enumerate(plan.stages):
            by_pair = _counts(con, f"sel{i}", "pair")
            by_source = _counts(con, f"sel{i}", "source")
            unique = con.execute(f"SELECT count(*) FROM sel{i} WHERE repeat = 0").fetchone()[0]  # type: ignore[index]
            all_pairs.update(by_pair)
            all_sources.update(by_source)
            stage_meta[stage.name] = _stage_meta(
                stage, f"{stage.name}.parquet", by_pair, by_source, unique
            )
        meta = _mixture_meta(plan, stage_meta, dict(all_pairs), dict(all_sources))
        (tmp / MIXTURE_FILE).write_text(
            json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / MIXTURE_FILE).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            return False
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty: no trace of a failed first build
        raise
    return True


def _stage_meta(
    stage: StagePlan,
    file_name: str,
    by_pair: dict[str, int],
    by_source: dict[str, int],
    unique: int,
) -> dict[str, Any]:
    return {
        "file": file_name,
        "target": stage.target,
        "resolved_target": stage.resolved_target,
        "on_shortfall": stage.on_shortfall,
        "limited_by": stage.limited_by,
        "rows": stage.taken,
        "taken": stage.taken,
        "unique_rows": int(unique),
        "components": {c.name: c.to_dict() for c in stage.components},
        "shortfalls": {
            c.name: {"shortfall": c.shortfall, "reason": c.shortfall_reason}
            for c in stage.components
            if c.shortfall
        },
        "rows_by_pair": by_pair,
        "rows_by_source": by_source,
        "shares_by_pair": _shares(by_pair),
        "shares_by_source": _shares(by_source),
    }


def _mixture_meta(
    plan: MixPlan,
    stage_meta: dict[str, Any],
    all_pairs: dict[str, int],
    all_sources: dict[str, int],
) -> dict[str, Any]:
    recipe = plan.recipe
    return {
        "format": 1,
        "name": recipe.name,
        "version": plan.version,
        "description": recipe.description,
        "recipe": recipe.canonical(),
        "recipe_path": str(recipe.path) if recipe.path else None,
        "seed": recipe.seed,
        "batching": recipe.batching,
        "shortfall_policy": {s.name: s.on_shortfall for s in plan.stages},
        "rows": sum(s.taken for s in plan.stages),
        "stages": stage_meta,
        "rows_by_pair": dict(sorted(all_pairs.items())),
        "rows_by_source": dict(sorted(all_sources.items())),
        "shares_by_pair": _shares(all_pairs),
        "shares_by_source": _shares(all_sources),
        "filters": {
            "rows_read": plan.rows_read,
            "candidates": plan.candidates,
            "applied": [s.__dict__ for s in plan.filters],
            "kept": plan.kept,
        },
        "notes": plan.notes,
        "lineage": {
            "manifests": [
                {"name": m.name, "fingerprint": m.fingerprint, "rows": m.rows}
                for m in plan.manifests
            ],
            "signals": [
                {
                    "manifest": s.manifest,
                    "signal": s.signal,
                    "file": s.path.name,
                    "sha256": s.sha256,
                }
                for s in plan.signals
            ],
        },
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "algorithm": MIX_ALGORITHM,
        "tool": {"curate": __version__, "duckdb": duckdb.__version__},
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


def _plan_from_meta(recipe: Recipe, version: str, inputs: _Inputs, meta: dict[str, Any]) -> MixPlan:
    """The plan of an existing version, read back from its mixture.json."""
    stages = []
    for name, info in meta["stages"].items():
        components = [
            ComponentPlan(
                name=cname,
                **{k: v for k, v in c.items() if k != "sources"},
                sources={s: SourcePlan(**sp) for s, sp in c["sources"].items()},
            )
            for cname, c in info["components"].items()
        ]
        stages.append(
            StagePlan(
                name=name,
                target=info["target"],
                resolved_target=info["resolved_target"],
                on_shortfall=info["on_shortfall"],
                components=components,
                limited_by=info["limited_by"],
            )
        )
    filters = meta["filters"]
    return MixPlan(
        recipe=recipe,
        version=version,
        manifests=inputs.manifests,
        signals=inputs.used_signals,
        rows_read=filters["rows_read"],
        candidates=filters["candidates"],
        filters=[FilterStep(**s) for s in filters["applied"]],
        kept=filters["kept"],
        stages=stages,
        notes=list(meta.get("notes", [])),
        skipped=inputs.skipped,
    )


def plan_to_dict(plan: MixPlan) -> dict[str, Any]:
    """The plan as JSON-ready data (what `--dry-run --json` prints)."""
    return {
        "name": plan.recipe.name,
        "version": plan.version,
        "rows_read": plan.rows_read,
        "candidates": plan.candidates,
        "filters": [s.__dict__ for s in plan.filters],
        "kept": plan.kept,
        "stages": {
            s.name: {
                "target": s.target,
                "resolved_target": s.resolved_target,
                "on_shortfall": s.on_shortfall,
                "limited_by": s.limited_by,
                "taken": s.taken,
                "components": {c.name: c.to_dict() for c in s.components},
            }
            for s in plan.stages
        },
        "notes": plan.notes,
        "skipped_manifests": plan.skipped,
    }


__all__ = [
    "MIX_ALGORITHM",
    "ComponentPlan",
    "FilterStep",
    "MixPlan",
    "MixResult",
    "StagePlan",
    "allocate",
    "build_mixture",
    "largest_remainder",
    "plan_to_dict",
    "stage_counts",
    "temperature_shares",
    "version_of",
]
