"""Mixture recipes: TOML files turned into frozen, validated dataclasses.

A recipe names the rows a training run sees, stage by stage:

    name = "demo-mixed"
    seed = 0
    batching = "pair"                  # optional hint for the trainer: "pair", "source", "component"
    manifests = []                     # optional: read only these; default every manifest

    [filters]                          # global filters, applied in this order
    text_chars = [1, 2000]             # every text of a pair within [min, max] characters
    video_duration = [1.0, 600.0]      # videos (clips) within [min, max] seconds
    min_resolution = 64                # shorter side of the primary image/video, pixels
    signal_min = { clip_score = 0.2 }  # rows below are removed; rows without the signal pass
    where = ["query_words >= 2"]       # predicates over manifest and signal columns
    dedup = ["exact", "near_dup"]      # "text", "media", "exact", "near_dup" or a signal column

    [[stages]]
    name = "retrieval_adaptation"
    target = "all"                     # or a row count
    on_shortfall = "redistribute"      # or "leave_short", or "error"

    [[stages.components]]
    name = "image_text"
    pairs = ["t2i", "i2t"]             # select by pair code; also sources, manifests, tasks,
    weight = 39.2                      # splits (default ["train"]; "*" = any) and `where`
    max_per_source = 100000            # cap rows taken from one source (before repetition)
    max_repeat = 1                     # upsampling factor: a row appears at most this often
    temperature = 1.0                  # across sources: p(source) ~ rows^(1/T)

Validation happens here, before anything is read or written: unknown keys, wrong types, weights
that are not positive finite numbers, unknown pair codes and unparsable predicates are
`ConfigError`s naming the key and the recipe file.

One name, one recipe file: the name decides where versions go, so `curate mix` refuses a recipe
whose `name` differs from its file stem, or that takes the name of another recipe file (the one
`--recipe NAME` finds); see `check_recipe_owns_name`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import curate
from curate.errors import ConfigError, NotFoundError
from curate.predicate import Predicate, parse_predicate
from curate.schema import MODALITY_CODES, TASK_KINDS
from curate.workspace import Workspace, check_name

#: Folder of the recipes shipped with the code (v1, v2, v3, demo-*).
SHIPPED_RECIPES = Path(curate.__file__).resolve().parents[1] / "mixtures"

ShortfallPolicy = Literal["redistribute", "leave_short", "error"]
SHORTFALL_POLICIES: tuple[str, ...] = ("redistribute", "leave_short", "error")
BATCHING_HINTS: tuple[str, ...] = ("pair", "source", "component")
#: Every pair code a manifest can hold: query code + "2" + target code.
PAIR_CODES: frozenset[str] = frozenset(
    f"{q}2{t}" for q in MODALITY_CODES.values() for t in MODALITY_CODES.values()
)
#: Dedup keys with a built-in meaning; any other key names a (signal) column.
BUILTIN_DEDUP_KEYS: tuple[str, ...] = ("text", "media")
ANY_SPLIT = "*"


@dataclass(frozen=True)
class Component:
    """One slice of a stage: a selector over rows, its weight, caps and source temperature."""

    name: str
    weight: float
    pairs: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    manifests: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    splits: tuple[str, ...] = ("train",)
    where: tuple[Predicate, ...] = ()
    max_per_source: int | None = None
    max_repeat: int = 1
    temperature: float = 1.0

    def canonical(self, share: float) -> dict[str, Any]:
        """`share` (the weight normalised within its stage) replaces the weight: 1:3 and 25:75
        are the same recipe."""
        return {
            "name": self.name,
            "share": float(f"{share:.12g}"),
            "pairs": sorted(self.pairs),
            "sources": sorted(self.sources),
            "manifests": sorted(self.manifests),
            "tasks": sorted(self.tasks),
            "splits": sorted(self.splits),
            "where": [p.text for p in self.where],
            "max_per_source": self.max_per_source,
            "max_repeat": self.max_repeat,
            "temperature": self.temperature,
        }


@dataclass(frozen=True)
class Stage:
    name: str
    target: int | Literal["all"]
    components: tuple[Component, ...]
    on_shortfall: ShortfallPolicy = "redistribute"

    @property
    def shares(self) -> dict[str, float]:
        """Weights normalised to fractions of the stage, by component name."""
        total = math.fsum(c.weight for c in self.components)
        return {c.name: c.weight / total for c in self.components}

    def canonical(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "on_shortfall": self.on_shortfall,
            "components": [c.canonical(self.shares[c.name]) for c in self.components],
        }


@dataclass(frozen=True)
class Filters:
    text_chars: tuple[int | None, int | None] | None = None
    video_duration: tuple[float | None, float | None] | None = None
    min_resolution: int | None = None
    signal_min: tuple[tuple[str, float], ...] = ()
    signal_max: tuple[tuple[str, float], ...] = ()
    where: tuple[Predicate, ...] = ()
    dedup: tuple[str, ...] = ()

    def canonical(self) -> dict[str, Any]:
        return {
            "text_chars": list(self.text_chars) if self.text_chars else None,
            "video_duration": list(self.video_duration) if self.video_duration else None,
            "min_resolution": self.min_resolution,
            "signal_min": dict(self.signal_min),
            "signal_max": dict(self.signal_max),
            "where": [p.text for p in self.where],
            "dedup": list(self.dedup),
        }


@dataclass(frozen=True)
class Recipe:
    name: str
    stages: tuple[Stage, ...]
    seed: int = 0
    description: str = ""
    filters: Filters = field(default_factory=Filters)
    batching: str | None = None
    manifests: tuple[str, ...] = ()  # restrict the inputs; empty: every manifest of the workspace
    # Where it was read from, absolute but with symlinks kept: its stem is the name the file was
    # given or found by (not part of its identity).
    path: Path | None = None

    def canonical(self) -> dict[str, Any]:
        """Everything that decides the rows, with defaults filled in (not the description)."""
        return {
            "name": self.name,
            "seed": self.seed,
            "batching": self.batching,
            "manifests": sorted(self.manifests),
            "filters": self.filters.canonical(),
            "stages": [s.canonical() for s in self.stages],
        }

    def canonical_json(self) -> str:
        return json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def with_seed(self, seed: int) -> Recipe:
        return replace(self, seed=_int(seed, "seed", self._where(), minimum=0))

    def _where(self) -> str:
        return f"recipe {self.path}" if self.path else f"recipe {self.name!r}"


# --- finding and loading ------------------------------------------------------------------------


def find_recipe(workspace: Workspace, ref: str | Path) -> Path:
    """The TOML file a `--recipe` value names: a path, else a name in the workspace or shipped.

    Names are looked up as `<workspace>/mixtures/<name>.toml`, then in the recipes shipped with
    curate (`mixtures/` next to the package). The path is made absolute but symlinks are kept:
    `mixtures/team.toml` linking to `team-2026-11.toml` is the recipe file `team.toml`.
    """
    text = str(ref)
    if text.endswith(".toml") or "/" in text or Path(text).is_absolute():
        path = Path(text).expanduser()
        if not path.is_file():
            raise NotFoundError(f"recipe file {path} does not exist")
        return path.absolute()
    check_name(text, what="recipe name")
    for folder in (workspace.mixtures, SHIPPED_RECIPES):
        candidate = folder / f"{text}.toml"
        if candidate.is_file():
            return candidate.absolute()
    known = sorted({p.stem for p in available_recipes(workspace)})
    raise NotFoundError(
        f"no recipe named {text!r} in {workspace.mixtures} or the shipped recipes "
        f"({SHIPPED_RECIPES}); known: {', '.join(known) or 'none'}; or pass a path to a .toml file"
    )


def check_recipe_owns_name(workspace: Workspace, recipe: Recipe) -> None:
    """Refuse a recipe that would build versions of a name another recipe file defines.

    A recipe's `name` decides where its versions go (`<workspace>/mixtures/<name>/`) and what
    `curate mixtures show NAME`, `curate export NAME` and training resolve, so one name must mean
    one recipe file, the one `--recipe NAME` finds:

    - a recipe file's `name` equals its file stem (leave `name` out and it does), and
    - no other recipe file answers to that name: when `<workspace>/mixtures/NAME.toml` (or else
      a shipped NAME.toml) exists, only that file builds versions of NAME.

    A Recipe built in code (no file) may not take the name of a recipe file either. The stem is
    that of the path the file was given or found by, symlinks kept, and the file `--recipe NAME`
    finds is accepted under any path (`os.path.samefile`): a workspace's `team.toml` may link to
    `team-2026-11.toml`, and that file may be given by its own path.
    """
    where = recipe._where()
    try:
        owner: Path | None = find_recipe(workspace, recipe.name)
    except NotFoundError:
        owner = None  # no recipe file answers to this name: it is free
    is_owner = owner is not None and recipe.path is not None and _same_file(owner, recipe.path)
    if recipe.path is not None and not is_owner and recipe.path.stem != recipe.name:
        fix = f'set name = "{recipe.path.stem}" (or leave `name` out)'
        if owner is None:
            fix = f"rename the file to {recipe.name}.toml or {fix}"
        else:
            fix += f"; {recipe.name!r} is the name of {owner}"
        raise ConfigError(
            f"{where} is named {recipe.name!r} but its file is {recipe.path.name}: the name "
            f"decides where versions go ({workspace.mixtures / recipe.name}/) and what "
            f"`--recipe {recipe.name}` finds, so make them match: {fix}"
        )
    if owner is not None and not is_owner:
        raise ConfigError(
            f"{where} takes the name {recipe.name!r} of {owner}, the recipe `--recipe "
            f"{recipe.name}` finds and whose versions `{recipe.name}` resolves to; one name is "
            f"built from one recipe file: edit {owner.name} to change the mixture, or give the "
            "copy a new name (file and `name` alike)"
        )


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (False when either is gone)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def available_recipes(workspace: Workspace) -> list[Path]:
    """Recipe files of the workspace, then shipped ones whose names the workspace does not shadow."""
    found: dict[str, Path] = {}
    for folder in (workspace.mixtures, SHIPPED_RECIPES):
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                found.setdefault(path.stem, path)
    return list(found.values())


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate one recipe file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(f"recipe file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"recipe {path} is not valid TOML: {error}") from None
    return recipe_from_dict(data, path=path, default_name=path.stem)


def recipe_from_dict(
    data: Mapping[str, Any], *, path: Path | None = None, default_name: str | None = None
) -> Recipe:
    """Validate a parsed recipe (a TOML document as a dict)."""
    where = f"recipe {path}" if path else "recipe"
    _keys(
        data,
        {"name", "description", "seed", "batching", "manifests", "filters", "stages"},
        where,
    )
    name = data.get("name", default_name)
    if name is None:
        raise ConfigError(f"{where}: missing `name`")
    name = check_name(_str(name, "name", where), what="recipe name")
    where = f"recipe {path}" if path else f"recipe {name!r}"
    description = _str(data.get("description", ""), "description", where)
    seed = _int(data.get("seed", 0), "seed", where, minimum=0)
    batching = data.get("batching")
    if batching is not None:
        batching = _choice(batching, BATCHING_HINTS, "batching", where)
    manifests = _names(data.get("manifests", []), "manifests", where, kind="manifest name")
    filters = _filters(data.get("filters", {}), where)
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise ConfigError(
            f"{where}: expected at least one [[stages]] table with components, found "
            f"{type(raw_stages).__name__ if raw_stages is not None else 'none'}"
        )
    stages = tuple(_stage(raw, i, where) for i, raw in enumerate(raw_stages))
    seen: set[str] = set()
    for stage in stages:
        if stage.name in seen:
            raise ConfigError(f"{where}: two stages are named {stage.name!r}; names must differ")
        seen.add(stage.name)
    return Recipe(
        name=name,
        description=description,
        seed=seed,
        batching=batching,
        manifests=manifests,
        filters=filters,
        stages=stages,
        path=path.absolute() if path else None,
    )


# --- validation helpers -------------------------------------------------------------------------


def _keys(data: Any, allowed: set[str], where: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a table, found {type(data).__name__}: {data!r}")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown}; valid keys: {', '.join(sorted(allowed))}"
        )


def _str(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: `{key}` must be a string, found {value!r}")
    return value


def _int(value: Any, key: str, where: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: `{key}` must be an integer, found {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where}: `{key}` must be >= {minimum}, found {value}")
    return value


def _number(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: `{key}` must be a finite number, found {value!r}")
    return float(value)


def _choice(value: Any, choices: tuple[str, ...], key: str, where: str) -> str:
    if value not in choices:
        raise ConfigError(f"{where}: `{key}` must be one of {', '.join(choices)}, found {value!r}")
    return str(value)


def _strings(value: Any, key: str, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: `{key}` must be a list of non-empty strings, found {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: `{key}` lists a value twice: {value!r}")
    return tuple(value)


def _names(value: Any, key: str, where: str, *, kind: str) -> tuple[str, ...]:
    names = _strings(value, key, where)
    for name in names:
        check_name(name, what=f"{kind} in `{key}` of {where}")
    return names


def _range(value: Any, key: str, where: str, *, integer: bool) -> tuple[Any, Any] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2:
        raise ConfigError(f"{where}: `{key}` must be [min, max], found {value!r}")
    bounds = []
    for bound in value:
        if integer:
            bounds.append(_int(bound, key, where, minimum=0))
        else:
            bounds.append(_number(bound, key, where))
    if bounds[0] > bounds[1]:
        raise ConfigError(f"{where}: `{key}` has min > max: {value!r}")
    return bounds[0], bounds[1]


def _predicates(value: Any, key: str, where: str) -> tuple[Predicate, ...]:
    texts = _strings(value, key, where)
    return tuple(parse_predicate(text, what=f"`{key}` predicate in {where}") for text in texts)


def _thresholds(value: Any, key: str, where: str) -> tuple[tuple[str, float], ...]:
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{where}: `{key}` must be a table of column = number, e.g. {{ clip_score = 0.2 }}, "
            f"found {value!r}"
        )
    return tuple(sorted((str(k), _number(v, f"{key}.{k}", where)) for k, v in value.items()))


def _filters(data: Any, where: str) -> Filters:
    where = f"[filters] of {where}"
    _keys(
        data,
        {
            "text_chars", "video_duration", "min_resolution", "signal_min", "signal_max",
            "where", "dedup",
        },
        where,
    )  # fmt: skip
    min_resolution = data.get("min_resolution")
    if min_resolution is not None:
        min_resolution = _int(min_resolution, "min_resolution", where, minimum=1)
    return Filters(
        text_chars=_range(data.get("text_chars"), "text_chars", where, integer=True),
        video_duration=_range(data.get("video_duration"), "video_duration", where, integer=False),
        min_resolution=min_resolution,
        signal_min=_thresholds(data.get("signal_min", {}), "signal_min", where),
        signal_max=_thresholds(data.get("signal_max", {}), "signal_max", where),
        where=_predicates(data.get("where", []), "where", where),
        dedup=_strings(data.get("dedup", []), "dedup", where),
    )


def _stage(data: Any, index: int, where: str) -> Stage:
    here = f"stage #{index + 1} of {where}"
    _keys(data, {"name", "target", "on_shortfall", "components"}, here)
    if "name" not in data:
        raise ConfigError(f'{here}: missing `name` (e.g. "retrieval_adaptation")')
    name = check_name(_str(data["name"], "name", here), what=f"stage name in {here}")
    here = f"stage {name!r} of {where}"
    target = data.get("target", "all")
    if target != "all":
        target = _int(target, "target", here, minimum=1)
    policy = _choice(
        data.get("on_shortfall", "redistribute"), SHORTFALL_POLICIES, "on_shortfall", here
    )
    raw_components = data.get("components")
    if not isinstance(raw_components, list) or not raw_components:
        raise ConfigError(f"{here}: expected at least one [[stages.components]] table")
    components = tuple(_component(raw, i, here) for i, raw in enumerate(raw_components))
    names = [c.name for c in components]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{here}: component names must differ; repeated: {duplicates}")
    return Stage(name=name, target=target, components=components, on_shortfall=policy)  # type: ignore[arg-type]


def _component(data: Any, index: int, where: str) -> Component:
    here = f"component #{index + 1} of {where}"
    _keys(
        data,
        {
            "name", "weight", "pairs", "sources", "manifests", "tasks", "splits", "where",
            "max_per_source", "max_repeat", "temperature",
        },
        here,
    )  # fmt: skip
    if "name" not in data:
        raise ConfigError(f"{here}: missing `name`")
    name = check_name(_str(data["name"], "name", here), what=f"component name in {here}")
    here = f"component {name!r} of {where}"
    if "weight" not in data:
        raise ConfigError(f"{here}: missing `weight` (its share of the stage, any positive number)")
    weight = _number(data["weight"], "weight", here)
    if weight <= 0:
        raise ConfigError(
            f"{here}: `weight` must be > 0, found {data['weight']!r}; remove the component to "
            "leave its rows out"
        )
    pairs = _strings(data.get("pairs", []), "pairs", here)
    bad = sorted(set(pairs) - PAIR_CODES)
    if bad:
        raise ConfigError(
            f"{here}: unknown pair code(s) {bad}; valid codes: {', '.join(sorted(PAIR_CODES))}"
        )
    tasks = _strings(data.get("tasks", []), "tasks", here)
    bad = sorted(set(tasks) - set(TASK_KINDS))
    if bad:
        raise ConfigError(f"{here}: unknown task(s) {bad}; valid: {', '.join(TASK_KINDS)}")
    splits = _strings(data.get("splits", ["train"]), "splits", here)
    if ANY_SPLIT in splits and len(splits) > 1:
        raise ConfigError(f'{here}: `splits` is either ["*"] (any split) or a list of names')
    max_per_source = data.get("max_per_source")
    if max_per_source is not None:
        max_per_source = _int(max_per_source, "max_per_source", here, minimum=1)
    temperature = _number(data.get("temperature", 1.0), "temperature", here)
    if temperature <= 0:
        raise ConfigError(f"{here}: `temperature` must be > 0, found {temperature}")
    return Component(
        name=name,
        weight=weight,
        pairs=pairs,
        sources=_strings(data.get("sources", []), "sources", here),
        manifests=_names(data.get("manifests", []), "manifests", here, kind="manifest name"),
        tasks=tasks,
        splits=splits,
        where=_predicates(data.get("where", []), "where", here),
        max_per_source=max_per_source,
        max_repeat=_int(data.get("max_repeat", 1), "max_repeat", here, minimum=1),
        temperature=temperature,
    )
