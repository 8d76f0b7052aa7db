"""Evaluation suites: which manifests are evaluated how, declared in TOML.

A suite names its media budget (frames per video, pixels per image or frame) and a list of tasks.
Scores in this field move with frame counts, pixel budgets and candidate pools, so every setting
here is written next to the results and quoted by the report.

    name = "demo"
    description = "Retrieval on the demo test splits."
    video_frames = 4          # frames sampled uniformly from each video (or clip)
    max_pixels = 3136         # pixel budget per image and per frame
    ties = "pessimistic"      # see train.metrics

    [[tasks]]
    name = "demo_t2v"
    manifest = "demo-videos-test"
    direction = "t2v"         # query -> target, as pair codes: t, i, v, it, vt
    pool = "global"           # global | local | composed

A task reads the manifest rows whose `pair` is `direction`; when there are none and `source_pair`
is not set, it reads the rows of the reverse pair with query and target swapped (v2t from t2v
rows). Pools:

- **global**: every distinct target competes for every query (MSR-VTT, COCO, DiDeMo style).
  Defaults: R@1, R@5, R@10, MedR, MeanR, MRR, nDCG@10.
- **local**: each query ranks its own candidate list (MMEB style): its target plus its row's
  negatives (`local_candidates = "negatives"`), or plus `local_size - 1` distractors drawn from the
  other targets of the task with `seed` (`"sampled"`). Default: P@1.
- **composed**: a global pool for composed queries (video+text -> video, CoVR; image+text ->
  image, CIRR) where a query's own source media is not a candidate for it
  (`exclude_query_media`). Defaults: R@1, R@5, R@10, R@50, MedR, MeanR, MRR.

Suites ship in `train/suites/<name>.toml`; any other TOML file can be given by path.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Final, Literal, get_args

from curate.errors import ConfigError, NotFoundError
from curate.schema import MODALITY_CODES
from curate.workspace import Workspace, check_name
from train.metrics import TIES, check_metrics

SUITE_DIR: Final = Path(__file__).resolve().parent / "suites"

PoolKind = Literal["global", "local", "composed"]
POOLS: Final[tuple[str, ...]] = get_args(PoolKind)
LocalCandidates = Literal["negatives", "sampled"]

DEFAULT_METRICS: Final[dict[str, tuple[str, ...]]] = {
    "global": ("R@1", "R@5", "R@10", "MedR", "MeanR", "MRR", "nDCG@10"),
    "local": ("P@1",),
    "composed": ("R@1", "R@5", "R@10", "R@50", "MedR", "MeanR", "MRR"),
}

_CODES: Final = frozenset(MODALITY_CODES.values())
_MODALITY_OF_CODE: Final = {code: name for name, code in MODALITY_CODES.items()}


def split_direction(direction: str) -> tuple[str, str]:
    """'vt2v' -> ('video+text', 'video'); raises ConfigError for anything else."""
    query, sep, target = direction.partition("2")
    if not sep or query not in _CODES or target not in _CODES:
        raise ConfigError(
            f"direction {direction!r} is not a pair code QUERY2TARGET with codes "
            f"{sorted(_CODES)} (e.g. t2v, i2t, vt2v)"
        )
    return _MODALITY_OF_CODE[query], _MODALITY_OF_CODE[target]


def reverse_direction(direction: str) -> str:
    """'t2v' -> 'v2t'."""
    query, _, target = direction.partition("2")
    return f"{target}2{query}"


@dataclass(frozen=True)
class TaskSpec:
    """One retrieval task of a suite (see the module docstring)."""

    name: str
    manifest: str
    direction: str
    pool: PoolKind = "global"
    group: str = ""  # results' task_group; default: the direction, "composed" for composed pools
    split: str = ""  # only rows of this split; "" = all rows of the manifest
    source_pair: str = ""  # pair of the rows to read; "" = direction, else its reverse (swapped)
    metrics: tuple[str, ...] = ()  # default: DEFAULT_METRICS[pool]
    video_frames: int = 0  # 0: the suite's
    max_pixels: int = 0  # 0: the suite's
    instruction: str = ""  # put in front of every query ("" keeps the rows' own instructions)
    local_candidates: LocalCandidates = "negatives"
    local_size: int = 0  # sampled lists: candidates per query, the positive included
    exclude_query_media: bool = True  # composed pools
    max_queries: int = 0  # 0: all; else the first N queries in a stable order
    seed: int = 0

    def __post_init__(self) -> None:
        where = f"task {self.name!r}"
        check_name(self.name, what="task name")
        check_name(self.manifest, what=f"manifest name of {where}")
        split_direction(self.direction)
        if self.source_pair:
            split_direction(self.source_pair)
            if self.source_pair not in (self.direction, reverse_direction(self.direction)):
                raise ConfigError(
                    f"{where}: source_pair {self.source_pair!r} must be the direction "
                    f"{self.direction!r} or its reverse {reverse_direction(self.direction)!r}"
                )
        if self.pool not in POOLS:
            raise ConfigError(f"{where}: pool must be one of {list(POOLS)}, found {self.pool!r}")
        try:
            check_metrics(self.metrics)
        except ValueError as error:
            raise ConfigError(f"{where}: {error}") from None
        if self.pool == "local" and self.local_candidates == "sampled" and self.local_size < 2:
            raise ConfigError(
                f"{where}: sampled local lists need local_size >= 2 (the positive and at least "
                f"one distractor), found {self.local_size}"
            )
        for key in ("video_frames", "max_pixels", "max_queries", "local_size"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{where}: {key} must be >= 0, found {getattr(self, key)}")

    @property
    def task_group(self) -> str:
        return self.group or ("composed" if self.pool == "composed" else self.direction)

    @property
    def metric_names(self) -> tuple[str, ...]:
        return self.metrics or DEFAULT_METRICS[self.pool]


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: tuple[TaskSpec, ...]
    description: str = ""
    video_frames: int = 8
    max_pixels: int = 1280 * 28 * 28
    ties: str = "pessimistic"
    batch_size: int = 16  # items per embedding batch
    path: str = ""  # where it was read from (not part of the fingerprint)

    def __post_init__(self) -> None:
        check_name(self.name, what="suite name")
        if not self.tasks:
            raise ConfigError(f"suite {self.name!r} has no [[tasks]]; add at least one")
        names = [t.name for t in self.tasks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"suite {self.name!r}: task names must be unique, found {duplicates}")
        if self.ties not in TIES:
            raise ConfigError(
                f"suite {self.name!r}: ties must be one of {list(TIES)}, found {self.ties!r}"
            )
        if self.video_frames < 1 or self.max_pixels < 1 or self.batch_size < 1:
            raise ConfigError(
                f"suite {self.name!r}: video_frames, max_pixels and batch_size must be >= 1, "
                f"found {self.video_frames}, {self.max_pixels}, {self.batch_size}"
            )

    def frames_of(self, task: TaskSpec) -> int:
        return task.video_frames or self.video_frames

    def pixels_of(self, task: TaskSpec) -> int:
        return task.max_pixels or self.max_pixels

    def to_dict(self) -> dict[str, Any]:
        """Every setting, each task resolved (its frames, pixels, group and metrics filled in)."""
        data = asdict(self)
        data.pop("path")
        data["tasks"] = [
            {
                **asdict(t),
                "metrics": list(t.metric_names),
                "group": t.task_group,
                "video_frames": self.frames_of(t),
                "max_pixels": self.pixels_of(t),
            }
            for t in self.tasks
        ]
        return data

    def fingerprint(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def list_suites() -> list[str]:
    """Names of the suites shipped in train/suites/."""
    return sorted(p.stem for p in SUITE_DIR.glob("*.toml"))


def load_suite(name_or_path: str | Path) -> Suite:
    """A shipped suite by name, or a suite TOML file by path."""
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise NotFoundError(f"suite file {path} does not exist")
    else:
        path = SUITE_DIR / f"{text}.toml"
        if not path.is_file():
            raise NotFoundError(
                f"no evaluation suite named {text!r}; shipped: {', '.join(list_suites())}, "
                "or give the path of a suite .toml file"
            )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"suite {path} is not valid TOML: {error}") from None
    return suite_from_dict(data, default_name=path.stem, path=str(path.resolve()))


def missing_manifests(suite: Suite, workspace: Workspace) -> dict[str, list[str]]:
    """The manifests the suite's tasks read that `workspace` lacks, each with its tasks."""
    from curate.manifest import list_manifests

    present = {m.name for m in list_manifests(workspace)}
    missing: dict[str, list[str]] = {}
    for task in suite.tasks:
        if task.manifest not in present:
            missing.setdefault(task.manifest, []).append(task.name)
    return missing


def check_manifests(suite: Suite, workspace: Workspace) -> None:
    """Raise one NotFoundError naming every manifest of the suite missing from the workspace.

    Evaluation needs them only after training, so callers check first rather than learn it from
    every trained cell.
    """
    missing = missing_manifests(suite, workspace)
    if not missing:
        return
    from curate.manifest import list_manifests

    which = ", ".join(f"{name} (tasks {', '.join(tasks)})" for name, tasks in missing.items())
    known = [m.name for m in list_manifests(workspace)]
    shown = ", ".join(known[:10]) + (f" and {len(known) - 10} more" if len(known) > 10 else "")
    demo = [name.startswith("demo-") for name in missing]  # `curate demo` ingests these
    if all(demo):
        how = "create them with `curate demo --until ingest`"
    elif any(demo):
        how = (
            "create the demo-* ones with `curate demo --until ingest` and the others with "
            "`curate ingest PATH --name NAME`"
        )
    else:
        how = "create them with `curate ingest PATH --name NAME`"
    raise NotFoundError(
        f"suite {suite.name!r} evaluates on manifests that are not in {workspace.manifests}: "
        f"{which} (present: {shown or 'none'}); {how}, or choose another suite (--suite)"
    )


def suite_from_dict(data: dict[str, Any], *, default_name: str, path: str = "") -> Suite:
    where = f"suite {path or default_name}"
    allowed = {f.name for f in fields(Suite)} - {"path"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; allowed: {sorted(allowed)}")
    raw_tasks = data.get("tasks", [])
    if not isinstance(raw_tasks, list) or not all(isinstance(t, dict) for t in raw_tasks):
        raise ConfigError(f"{where}: tasks must be an array of tables ([[tasks]])")
    tasks = tuple(_task(t, i, where) for i, t in enumerate(raw_tasks))
    values = {k: v for k, v in data.items() if k != "tasks"}
    values.setdefault("name", default_name)
    _check_types(Suite, values, where)
    return Suite(tasks=tasks, path=path, **values)


def _task(data: dict[str, Any], index: int, where: str) -> TaskSpec:
    here = f"{where}, task {index} ({data.get('name', '?')})"
    allowed = {f.name for f in fields(TaskSpec)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"{here}: unknown keys {unknown}; allowed: {sorted(allowed)}")
    missing = [k for k in ("name", "manifest", "direction") if k not in data]
    if missing:
        raise ConfigError(f"{here}: missing {missing}")
    values = dict(data)
    if "metrics" in values:
        if not isinstance(values["metrics"], list):
            raise ConfigError(f'{here}: metrics must be a list of names, e.g. ["R@1", "MedR"]')
        values["metrics"] = tuple(values["metrics"])
    _check_types(TaskSpec, values, here)
    return TaskSpec(**values)


def _check_types(cls: type, values: dict[str, Any], where: str) -> None:
    """Plain type checks with messages naming the key (TOML gives str/int/bool/list)."""
    for f in fields(cls):
        if f.name not in values or f.name == "tasks":
            continue
        value = values[f.name]
        kind = str(f.type)
        if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"{where}: {f.name} must be an integer, found {value!r}")
        if kind == "bool" and not isinstance(value, bool):
            raise ConfigError(f"{where}: {f.name} must be true or false, found {value!r}")
        if kind in ("str", "PoolKind", "LocalCandidates") and not isinstance(value, str):
            raise ConfigError(f"{where}: {f.name} must be a string, found {value!r}")
