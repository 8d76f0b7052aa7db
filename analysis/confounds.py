"""Did every arm train the same way? A composition comparison is about the data only when it is.

`curate ablate --losses mamcl` sets the loss of the *last* config stage that trains on each mixture,
so a single-stage mixture trains its one stage with MAMCL and skips the instruction stage, while a
two-stage mixture trains stage 0 with symmetric InfoNCE and only stage 1 with MAMCL: the results
store's `loss` column says "mamcl" for both, yet the arms differ in stages and losses. This module
compares what each arm's runs actually ran (`analysis.load.RunTraining`: per-stage losses, stages
trained or skipped, resolved config) and says, in sentences for the report, what differs besides the
data, and what could not be checked.

    check = compare_training([("images", 1, training_of_run), ...])
    check.verdict  # "same" | "differ" | "unchecked" | "one arm"
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from analysis.load import RunTraining

#: At most this many differing config keys are named in one sentence.
MAX_KEYS_NAMED = 6

Verdict = Literal["same", "differ", "unchecked", "one arm"]


@dataclass(frozen=True)
class ArmTraining:
    """What the runs of one arm trained, for the report's table."""

    arm: str
    runs: int
    plans: tuple[str, ...]  # distinct stage plans, e.g. "retrieval_adaptation with mamcl"
    stage_counts: tuple[int, ...]  # distinct numbers of stages trained
    hashes: tuple[tuple[int, str], ...]  # (seed, config hash) of each run

    @property
    def config_hashes(self) -> tuple[str, ...]:
        return tuple(sorted({h for _, h in self.hashes}))


@dataclass(frozen=True)
class TrainingCheck:
    arms: tuple[ArmTraining, ...]
    differences: tuple[str, ...]  # what differs between arms besides the data: warnings
    unchecked: tuple[str, ...]  # what could not be compared, and why
    common_plan: str  # the one stage plan every arm ran ("" unless all ran the same)

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
        )
        for arm, items in by_arm.items()
    )
    if len(by_arm) < 2:
        plans = {p for a in arms for p in a.plans}
        return TrainingCheck(arms, (), (), next(iter(plans)) if len(plans) == 1 else "")

    found = [_compare_stages(by_arm), _compare_configs(by_arm)]
    differences = [difference for difference, _ in found if difference]
    unchecked = [why for _, why in found if why]
    plans = {p for a in arms for p in a.plans}
    common = next(iter(plans)) if len(plans) == 1 and not differences else ""
    return TrainingCheck(arms, tuple(differences), tuple(unchecked), common)


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
    from the seed; both "" when the configs agree."""
    every = [t for items in by_arm.values() for _, t in items]
    if every and all(t.config_recorded for t in every):
        return _settings_difference(by_arm), ""
    # Without every resolved config, the hashes still tell: the runs of a grid at one seed
    # share a config hash unless something besides the data differs.
    hashes: dict[int, dict[str, set[str]]] = {}
    for arm, items in by_arm.items():
        for seed, training in items:
            hashes.setdefault(seed, {}).setdefault(arm, set()).add(training.config_hash)
    shared = {seed: arms for seed, arms in hashes.items() if len(arms) > 1}
    for seed, arms in sorted(shared.items()):
        if len({frozenset(h) for h in arms.values()}) > 1:
            listed = ", ".join(
                f"{arm} {'/'.join(h[:12] for h in sorted(found))}" for arm, found in arms.items()
            )
            return (
                f"their configs differ (config hashes at seed {seed}: {listed}); the resolved "
                "config.toml of some runs is missing, so what differs cannot be named"
            ), ""
    if not shared:
        return "", (
            "no seed ran on two arms and some runs' resolved config.toml is missing, "
            "so their configs cannot be compared"
        )
    return "", ""


def _settings_difference(by_arm: Mapping[str, Sequence[tuple[int, RunTraining]]]) -> str:
    values: dict[str, dict[str, set[str]]] = {}  # key -> arm -> values its runs had
    for arm, items in by_arm.items():
        keys = _keys(t for _, t in items)
        for _, training in items:
            for key in keys:
                shown = _shown(training.settings[key]) if key in training.settings else "absent"
                values.setdefault(key, {}).setdefault(arm, set()).add(shown)
    differing = [
        key
        for key, arms in values.items()
        if len(arms) < len(by_arm) or len({frozenset(v) for v in arms.values()}) > 1
    ]
    if not differing:
        return ""
    named = []
    for key in differing[:MAX_KEYS_NAMED]:
        by_value: dict[str, list[str]] = {}
        for arm in by_arm:
            shown = "/".join(sorted(values[key].get(arm, {"absent"})))
            by_value.setdefault(shown, []).append(arm)
        named.append(
            f"{key} = " + " vs ".join(f"{v} ({', '.join(arms)})" for v, arms in by_value.items())
        )
    more = len(differing) - MAX_KEYS_NAMED
    tail = f"; and {more} more key{'s' if more != 1 else ''}" if more > 0 else ""
    return f"their resolved configs differ beyond the seed: {'; '.join(named)}{tail}"


def _keys(trainings: Iterable[RunTraining]) -> list[str]:
    return list(dict.fromkeys(k for t in trainings for k in t.settings))


def _shown(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)
