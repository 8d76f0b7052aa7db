"""Did every arm train the same way? A composition comparison is about the data only when it is.

`curate ablate --losses mamcl` sets the loss of the *last* config stage that trains on each mixture,
so a single-stage mixture trains its one stage with MAMCL and skips the instruction stage, while a
two-stage mixture trains stage 0 with symmetric InfoNCE and only stage 1 with MAMCL: the results
store's `loss` column says "mamcl" for both, yet the arms differ in stages and losses. This module
compares what each arm's runs actually ran (`analysis.load.RunTraining`: per-stage losses, stages
trained or skipped, resolved config, world size, device and precision) and says, in sentences for
the report, what differs besides the data, and what could not be checked. Only a difference in
what training saw is a warning; what cannot be read is "unchecked", never a difference.

    check = compare_training([("images", 1, training_of_run), ...])
    check.verdict  # "same" | "differ" | "unchecked" | "one arm"
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Literal

from analysis.load import NOT_TRAINING_KEYS, RunTraining
from train.config import StageConfig

#: At most this many differing config keys are named in one sentence.
MAX_KEYS_NAMED = 6
#: How the runtime comparison names the world size and each stage's global batch.
WORLD_SIZE = "world size"
GLOBAL_BATCH = "global batch of stage"
#: The trainer's batch_size when a config does not set it.
DEFAULT_BATCH_SIZE = next(f.default for f in fields(StageConfig) if f.name == "batch_size")

Verdict = Literal["same", "differ", "unchecked", "one arm"]


@dataclass(frozen=True)
class ArmTraining:
    """What the runs of one arm trained, for the report's table."""

    arm: str
    runs: int
    plans: tuple[str, ...]  # distinct stage plans, e.g. "retrieval_adaptation with mamcl"
    stage_counts: tuple[int, ...]  # distinct numbers of stages trained
    hashes: tuple[tuple[int, str], ...]  # (seed, config hash) of each run
    ran_on: tuple[str, ...] = ()  # distinct "world size × device, precision", e.g. "4 × cuda, bf16"

    @property
    def config_hashes(self) -> tuple[str, ...]:
        return tuple(sorted({h for _, h in self.hashes}))


@dataclass(frozen=True)
class TrainingCheck:
    arms: tuple[ArmTraining, ...]
    differences: tuple[str, ...]  # what differs between arms besides the data: warnings
    unchecked: tuple[str, ...]  # what could not be compared, and why
    # The stage plans every arm's runs ran (one, or several when e.g. seeds ran different plans
    # alike in every arm); empty unless every arm ran the same ones.
    common_plans: tuple[str, ...]

    @property
    def verdict(self) -> Verdict:
        if len(self.arms) < 2:
            return "one arm"
        if self.differences:
            return "differ"
        return "unchecked" if self.unchecked else "same"


def plan_text(training: RunTraining) -> str:
    """The stages a run trained with their losses: "a with symmetric_infonce → b with mamcl"."""
    return " → ".join(
        f"{s.name} with {s.loss or 'an unrecorded loss'}" for s in training.trained_stages
    )


def compare_training(runs: Sequence[tuple[str, int, RunTraining]]) -> TrainingCheck:
    """Compare the (arm, seed, what the run trained) of the runs a comparison of arms uses."""
    by_arm: dict[str, list[tuple[int, RunTraining]]] = {}
    for arm, seed, training in runs:
        by_arm.setdefault(arm, []).append((seed, training))
    arms = tuple(
        ArmTraining(
            arm=arm,
            runs=len(items),
            plans=tuple(dict.fromkeys(plan_text(t) for _, t in items if t.stages)),
            stage_counts=tuple(
                sorted({len(t.trained_stages) for _, t in items if t.stages_recorded})
            ),
            hashes=tuple(sorted((seed, t.config_hash) for seed, t in items)),
            ran_on=tuple(dict.fromkeys(r for _, t in items if (r := _ran_on(t)))),
        )
        for arm, items in by_arm.items()
    )
    plan_sets = {frozenset(a.plans) for a in arms}
    common = arms[0].plans if arms and len(plan_sets) == 1 else ()
    if len(by_arm) < 2:
        return TrainingCheck(arms, (), (), common)

    found = [_compare_stages(by_arm), _compare_configs(by_arm), _compare_runtime(by_arm)]
    differences = [difference for difference, _ in found if difference]
    unchecked = [why for _, why in found if why]
    return TrainingCheck(arms, tuple(differences), tuple(unchecked), common)


def _ran_on(training: RunTraining) -> str:
    if training.world_size is None or not training.device:
        return ""
    where = f"{training.world_size} × {training.device}"
    return f"{where}, {training.precision}" if training.precision else where


def _compare_stages(by_arm: Mapping[str, Sequence[tuple[int, RunTraining]]]) -> tuple[str, str]:
    """(what differs, why it could not be checked): a sentence when arms trained different stages
    or losses, or why not every run could be compared; both "" when every arm ran the same."""
    plans: dict[str, set[str]] = {}
    missing = 0
    total = 0
    for arm, items in by_arm.items():
        for _, training in items:
            total += 1
            if not (training.stages and training.stages_recorded):
                missing += 1
                continue
            plans.setdefault(arm, set()).add(_plan_with_count(training))
    why = (
        f"which stages {missing} of {total} runs trained (and with which loss) is not recorded: "
        "their runs/<run_id>/config.toml or finished meta.json is missing"
        if missing
        else ""
    )
    distinct = {p for arm_plans in plans.values() for p in arm_plans}
    if len(distinct) > 1 and len({frozenset(p) for p in plans.values()}) > 1:
        groups: dict[str, list[str]] = {}
        for arm, arm_plans in plans.items():
            for plan in sorted(arm_plans):
                groups.setdefault(plan, []).append(arm)
        described = "; ".join(f"{', '.join(arms)}: {plan}" for plan, arms in groups.items())
        return f"the arms did not train the same stages with the same losses ({described})", why
    return "", why


def _plan_with_count(training: RunTraining) -> str:
    count = len(training.trained_stages)
    return f"{count} stage{'s' if count != 1 else ''}, {plan_text(training)}"


def _compare_configs(
    by_arm: Mapping[str, Sequence[tuple[int, RunTraining]]],
) -> tuple[str, str]:
    """(what differs, why it could not be checked) between the arms' resolved configs apart
    from the seed and bookkeeping; both "" when the configs agree.

    A run whose config.toml is missing is compared through its config hash only where that
    proves something: an equal hash is an identical config. A differing hash proves nothing,
    since the hash also covers settings that do not change training (threads, checkpointing),
    so such runs are "unchecked", never a difference.
    """
    read: dict[str, RunTraining] = {}  # config hash -> a run whose config.toml was read
    for items in by_arm.values():
        for _, training in items:
            if training.config_recorded:
                read.setdefault(training.config_hash, training)
    compared: dict[str, list[tuple[int, RunTraining]]] = {}
    unread: dict[str, dict[str, list[int]]] = {}  # config hash -> arm -> seeds of its runs
    for arm, items in by_arm.items():
        for seed, training in items:
            known = training if training.config_recorded else read.get(training.config_hash)
            if known is not None:
                compared.setdefault(arm, []).append((seed, known))
            else:
                unread.setdefault(training.config_hash, {}).setdefault(arm, []).append(seed)
    difference = _settings_difference(compared) if len(compared) > 1 else ""
    # An unread config that every arm ran (one hash) is the same on every arm; any other leaves
    # its arms unchecked.
    unchecked: dict[str, set[int]] = {}
    for arms in unread.values():
        if len(arms) < len(by_arm):
            for arm, seeds in arms.items():
                unchecked.setdefault(arm, set()).update(seeds)
    if not unchecked:
        return difference, ""
    named = ", ".join(
        f"{arm} (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, sorted(seeds)))})"
        for arm, seeds in ((a, unchecked[a]) for a in by_arm if a in unchecked)
    )
    # log_every is left out of the hash; the seed differs between runs on purpose.
    bookkeeping = ", ".join(sorted(NOT_TRAINING_KEYS - {"seed", "log_every"}))
    return difference, (
        f"the configs of {named} could not be compared with the other arms: their "
        "runs/<run_id>/config.toml is missing and their config hash in the results store is "
        "neither that of a config read here nor shared by every arm; a differing config hash "
        f"does not show a difference in training, since it also covers {bookkeeping}"
    )


def _settings_difference(by_arm: Mapping[str, Sequence[tuple[int, RunTraining]]]) -> str:
    values: dict[str, dict[str, set[str]]] = {}  # key -> arm -> values its runs had
    for arm, items in by_arm.items():
        keys = _keys(t for _, t in items)
        for _, training in items:
            for key in keys:
                shown = _shown(training.settings[key]) if key in training.settings else "absent"
                values.setdefault(key, {}).setdefault(arm, set()).add(shown)
    # A key some arm never set differs too: that arm ran with the trainer's default.
    named = _named_differences(values, list(by_arm), missing="absent")
    return f"their resolved configs differ beyond the seed: {named}" if named else ""


def _compare_runtime(
    by_arm: Mapping[str, Sequence[tuple[int, RunTraining]]],
) -> tuple[str, str]:
    """(what differs, why it could not be checked) in how many processes trained together, on
    which device type and in which precision (recorded in each finished run's meta.json).

    The global batch is batch_size × world size and sets the number of in-batch negatives, so a
    torchrun arm on 4 GPUs does not train like a single-process arm with the same config.
    """
    values: dict[str, dict[str, set[str]]] = {}  # what -> arm -> values its runs had
    unknown: dict[str, int] = {}  # arm -> runs that do not record all of it
    total = 0
    for arm, items in by_arm.items():
        for _, training in items:
            total += 1
            if training.world_size is None or not training.device or not training.precision:
                unknown[arm] = unknown.get(arm, 0) + 1
            for what, value in _runtime_values(training):
                values.setdefault(what, {}).setdefault(arm, set()).add(value)
    world = values.get(WORLD_SIZE, {})
    if len({frozenset(v) for v in world.values()}) <= 1:
        # The same world size everywhere: a differing global batch is a differing batch_size,
        # which the config comparison already names.
        values = {k: v for k, v in values.items() if not k.startswith(GLOBAL_BATCH)}
    named = _named_differences(values, list(by_arm))
    difference = f"they ran on different hardware or parallelism: {named}" if named else ""
    if not unknown:
        return difference, ""
    count = sum(unknown.values())
    return difference, (
        f"the world size, device or precision of {count} of {total} runs "
        f"({', '.join(unknown)}) is not recorded: the world_size and device of their finished "
        "runs/<run_id>/meta.json, or the backbone.precision of their config.toml, is missing"
    )


def _runtime_values(training: RunTraining) -> list[tuple[str, str]]:
    """(what, value) pairs a run records about where it ran; unknown ones are left out."""
    found: list[tuple[str, str]] = []
    if training.world_size is not None:
        found.append((WORLD_SIZE, str(training.world_size)))
        if training.config_recorded:
            for stage in training.trained_stages:
                batch = training.settings.get(f"stages.{stage.index}.batch_size")
                batch = batch if isinstance(batch, int) else DEFAULT_BATCH_SIZE
                found.append(
                    (
                        f"{GLOBAL_BATCH} {stage.name} (batch_size × world size, the number "
                        "of in-batch negatives)",
                        str(batch * training.world_size),
                    )
                )
    if training.device:
        found.append(("device", training.device))
    if training.precision:
        found.append(("precision", training.precision))
    return found


def _named_differences(
    values: Mapping[str, Mapping[str, set[str]]], arms: Sequence[str], *, missing: str = ""
) -> str:
    """ "key = v (arms) vs w (arms); …" for the keys whose values differ between `arms`.

    With `missing`, an arm without a value for a key has that value; without it, such an arm
    is left out of that key's comparison (not known is not different).
    """
    differing = []
    for key, by_arm in values.items():
        among = arms if missing else [a for a in arms if a in by_arm]
        seen = {frozenset(by_arm.get(a, {missing})) for a in among}
        if len(seen) > 1:
            differing.append((key, among))
    if not differing:
        return ""
    named = []
    for key, among in differing[:MAX_KEYS_NAMED]:
        by_value: dict[str, list[str]] = {}
        for arm in among:
            shown = "/".join(sorted(values[key].get(arm, {missing})))
            by_value.setdefault(shown, []).append(arm)
        named.append(
            f"{key} = " + " vs ".join(f"{v} ({', '.join(arms)})" for v, arms in by_value.items())
        )
    more = len(differing) - MAX_KEYS_NAMED
    tail = f"; and {more} more key{'s' if more != 1 else ''}" if more > 0 else ""
    return "; ".join(named) + tail


def _keys(trainings: Iterable[RunTraining]) -> list[str]:
    return list(dict.fromkeys(k for t in trainings for k in t.settings))


def _shown(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
