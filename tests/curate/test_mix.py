"""`curate mix`: allocation math, determinism, shares, caps, dedup, filters and hostile recipes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate.errors import ConfigError, InputError, NotFoundError
from curate.mix import (
    allocate,
    build_mixture,
    largest_remainder,
    stage_counts,
    temperature_shares,
)
from curate.mixtures import MIXTURE_ROW_SCHEMA, load_mixture
from curate.workspace import Workspace
from tests.curate.mix_fixtures import row, rows, write_manifest, write_recipe

REPO = Path(__file__).resolve().parents[2]


# --- pure arithmetic ----------------------------------------------------------------------------


def test_largest_remainder_sums_exactly_and_stays_within_one_of_the_ideal():
    shares = [Fraction(216, 1000), Fraction(392, 1000), Fraction(392, 1000)]
    for total in (0, 1, 7, 100, 999, 12_345):
        counts = largest_remainder(total, shares)
        assert sum(counts) == total
        for count, share in zip(counts, shares, strict=True):
            assert abs(count - total * share) < 1
    assert largest_remainder(10, [Fraction(1, 3)] * 3) == [4, 3, 3]


def test_allocate_fills_capped_entries_and_redistributes_the_rest():
    half = [Fraction(1, 2), Fraction(1, 2)]
    assert allocate(10, half, [2, 100]) == [2, 8]
    assert allocate(10, half, [100, 100]) == [5, 5]
    assert allocate(10, half, [3, 4]) == [3, 4]  # not enough anywhere: everything, no more
    thirds = [Fraction(1, 3)] * 3
    # The middle entry saturates, the others split what it leaves in proportion.
    assert allocate(90, thirds, [50, 10, 50]) == [40, 10, 40]
    assert allocate(5, [Fraction(0), Fraction(1)], [10, 10]) == [0, 5]


def test_temperature_shares_interpolate_between_proportional_and_uniform():
    sizes = [900, 100]
    assert temperature_shares(sizes, 1.0) == [Fraction(9, 10), Fraction(1, 10)]
    warm = [float(s) for s in temperature_shares(sizes, 2.0)]
    assert warm == pytest.approx([30 / 40, 10 / 40])  # sqrt(900) : sqrt(100)
    hot = [float(s) for s in temperature_shares(sizes, 1000.0)]
    assert hot == pytest.approx([0.5, 0.5], abs=0.01)
    assert temperature_shares([0, 10], 3.0)[0] == 0


def test_stage_counts_under_each_shortfall_policy():
    weights, caps = [1, 1], [10, 1000]
    redistribute = stage_counts(100, weights, caps, "redistribute")
    assert (redistribute.requested, redistribute.taken) == ([50, 50], [10, 90])
    short = stage_counts(100, weights, caps, "leave_short")
    assert short.taken == [10, 50]
    # "all": the largest stage at which every component with rows meets its share.
    everything = stage_counts("all", [21.6, 39.2, 39.2], [10_000, 392, 5_000], "redistribute")
    assert everything.resolved_target == 1000 and everything.taken == [216, 392, 392]
    assert everything.limited_by == [1]
    # A component without rows: redistribute scales the others to their own limit ...
    empty = stage_counts("all", [1, 1, 2], [0, 100, 1000], "redistribute")
    assert empty.taken == [0, 100, 200]
    # ... leave_short keeps the others at the share they have of the full stage.
    empty_short = stage_counts("all", [1, 1, 2], [0, 100, 1000], "leave_short")
    assert empty_short.resolved_target == 400 and empty_short.taken == [0, 100, 200]
    assert empty_short.requested == [100, 100, 200]


# --- fixtures -----------------------------------------------------------------------------------

RECIPE = """
name = "{name}"
seed = {seed}
batching = "pair"
{filters}

[[stages]]
name = "retrieval_adaptation"
target = {target}
on_shortfall = "{policy}"

[[stages.components]]
name = "text_text"
pairs = ["t2t"]
weight = 21.6

[[stages.components]]
name = "image_text"
pairs = ["t2i", "i2t"]
weight = 39.2

[[stages.components]]
name = "video_text"
pairs = ["t2v", "v2t"]
weight = 39.2
{extra}
"""


def recipe_text(
    name: str = "mix", *, seed: int = 0, target: str | int = 500, policy: str = "redistribute",
    extra: str = "", filters: str = "",
) -> str:  # fmt: skip
    target_text = f'"{target}"' if target == "all" else str(target)
    return RECIPE.format(
        name=name, seed=seed, target=target_text, policy=policy, extra=extra, filters=filters
    )


def standard_manifests(ws: Workspace) -> None:
    write_manifest(
        ws, "images", rows("coco", 400, "t2i") + rows("coco", 300, "i2t") + rows("cc3m", 300, "t2i")
    )
    write_manifest(
        ws, "videos", rows("webvid", 250, "t2v") + rows("msrvtt", 150, "v2t"), part_rows=100
    )
    write_manifest(ws, "text", rows("msmarco", 300, "t2t") + rows("nli", 100, "t2t"))
    write_manifest(ws, "eval", rows("coco", 50, "t2i", split="test"))


@pytest.fixture()
def ws(workspace: Workspace) -> Workspace:
    standard_manifests(workspace)
    return workspace


def build(ws: Workspace, text: str, name: str = "mix", **kw):
    write_recipe(ws.mixtures, name, text)
    return build_mixture(ws, name, **kw)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --- determinism and versions -------------------------------------------------------------------


def test_same_inputs_give_identical_bytes_and_version(tmp_path: Path):
    results = []
    for i, threads in enumerate((1, 2)):
        ws = Workspace.resolve(tmp_path / f"ws{i}")
        standard_manifests(ws)
        results.append(build(ws, recipe_text(), threads=threads))
    a, b = results
    assert a.version == b.version and a.built and b.built
    for stage in a.mixture.stages:
        assert a.mixture.stages[stage].read_bytes() == b.mixture.stages[stage].read_bytes()
    meta_a = {k: v for k, v in a.mixture.meta.items() if k not in ("created", "recipe_path")}
    meta_b = {k: v for k, v in b.mixture.meta.items() if k not in ("created", "recipe_path")}
    assert meta_a == meta_b


def test_rebuilding_is_a_no_op_and_seed_or_input_changes_make_new_versions(ws: Workspace):
    first = build(ws, recipe_text())
    stage_file = first.mixture.stages["retrieval_adaptation"]
    before = (stage_file.stat().st_mtime_ns, (first.path / "mixture.json").read_text())
    again = build(ws, recipe_text())
    assert not again.built and again.version == first.version
    assert (stage_file.stat().st_mtime_ns, (first.path / "mixture.json").read_text()) == before

    reseeded = build_mixture(ws, "mix", seed=1)
    assert reseeded.built and reseeded.version != first.version

    def ids(result):
        stage = result.mixture.stages["retrieval_adaptation"]
        return pq.read_table(stage, columns=["id"]).column("id").to_pylist()

    assert ids(reseeded) != ids(first)

    # Same recipe, one more row in an input manifest: a new version.
    write_manifest(ws, "text", rows("msmarco", 301, "t2t") + rows("nli", 100, "t2t"))
    changed = build(ws, recipe_text())
    assert changed.built and changed.version not in (first.version, reseeded.version)
    versions = sorted(p.name for p in (ws.mixtures / "mix").iterdir() if p.is_dir())
    assert versions == sorted([first.version, reseeded.version, changed.version])


def test_stage_rows_follow_the_contract(ws: Workspace):
    result = build(ws, recipe_text())
    mixture = load_mixture(ws, "mix")
    assert mixture.version == result.version and mixture.batching == "pair"
    assert list(mixture.stages) == ["retrieval_adaptation"]
    table = mixture.read_stage("retrieval_adaptation")
    assert table.schema.names == MIXTURE_ROW_SCHEMA.names
    assert table.column("position").to_pylist() == list(range(table.num_rows))
    assert set(table.column("stage").to_pylist()) == {"retrieval_adaptation"}
    by_manifest = Counter(
        zip(table.column("manifest").to_pylist(), table.column("pair").to_pylist(), strict=True)
    )
    assert {m for m, _ in by_manifest} == {"images", "videos", "text"}
    assert all(
        (m, p)
        in {
            ("images", "t2i"),
            ("images", "i2t"),
            ("videos", "t2v"),
            ("videos", "v2t"),
            ("text", "t2t"),
        }
        for m, p in by_manifest
    )
    # The test split of the eval manifest is not training data.
    assert "test" not in set(table.column("split").to_pylist())
    # Training order interleaves components instead of listing them one after another.
    first_hundred = set(table.column("component").to_pylist()[:100])
    assert first_hundred == {"text_text", "image_text", "video_text"}
    meta = json.loads((mixture.path / "mixture.json").read_text())
    assert meta["lineage"]["manifests"][0].keys() >= {"name", "fingerprint"}
    # Only the manifests that can contribute rows: eval holds the test split, which no component
    # selects, so it is neither in the lineage nor in the version.
    assert [m["name"] for m in meta["lineage"]["manifests"]] == ["images", "text", "videos"]
    assert meta["recipe"]["name"] == "mix" and meta["seed"] == 0
    assert meta["tool"]["curate"] and meta["created"].endswith("Z")


# --- shares, shortfalls, caps -------------------------------------------------------------------


def test_shares_are_met_within_one_point_when_rows_suffice(ws: Workspace):
    result = build(ws, recipe_text(target=500))
    stage = result.mixture.meta["stages"]["retrieval_adaptation"]
    assert stage["rows"] == 500
    table = result.mixture.read_stage("retrieval_adaptation", columns=["component", "pair"])
    counts = Counter(table.column("component").to_pylist())
    for name, share in (("text_text", 0.216), ("image_text", 0.392), ("video_text", 0.392)):
        assert abs(counts[name] / 500 - share) <= 0.01
        assert stage["components"][name]["shortfall"] == 0
    pairs = Counter(table.column("pair").to_pylist())
    assert stage["shares_by_pair"] == pytest.approx({k: v / 500 for k, v in pairs.items()})
    assert sum(stage["shares_by_source"].values()) == pytest.approx(1.0)
    assert result.mixture.meta["shares_by_pair"] == pytest.approx(stage["shares_by_pair"])


@pytest.mark.parametrize(("policy", "image_taken"), [("redistribute", 1000), ("leave_short", 784)])
def test_a_shortfall_is_reported_with_its_reason(ws: Workspace, policy: str, image_taken: int):
    # 2000 rows ask 432 text-text (400 exist), 784 image-text (1000 exist), 784 video-text (400).
    result = build(ws, recipe_text(target=2000, policy=policy))
    stage = result.mixture.meta["stages"]["retrieval_adaptation"]
    comps = stage["components"]
    video = comps["video_text"]
    assert video["requested"] == 784 and video["taken"] == 400 and video["shortfall"] == 384
    assert video["shortfall_reason"] == (
        "only 400 usable rows x max_repeat 1 = capacity 400 < 784 requested"
    )
    assert comps["text_text"]["shortfall"] == 32
    assert stage["shortfalls"] == {
        "text_text": {"shortfall": 32, "reason": comps["text_text"]["shortfall_reason"]},
        "video_text": {"shortfall": 384, "reason": video["shortfall_reason"]},
    }
    # redistribute hands the missing rows to image-text up to its 1000; leave_short does not.
    assert comps["image_text"]["taken"] == image_taken
    assert comps["image_text"]["redistributed"] == image_taken - 784
    assert stage["rows"] == result.mixture.rows == 400 + image_taken + 400


def test_leave_short_keeps_requested_counts_and_redistribute_fills_the_target(ws: Workspace):
    short = build(ws, recipe_text("short", target=1500, policy="leave_short"), "short")
    comps = short.mixture.meta["stages"]["retrieval_adaptation"]["components"]
    assert [comps[c]["taken"] for c in ("text_text", "image_text", "video_text")] == [324, 588, 400]
    full = build(ws, recipe_text("full", target=1500, policy="redistribute"), "full")
    comps = full.mixture.meta["stages"]["retrieval_adaptation"]["components"]
    taken = [comps[c]["taken"] for c in ("text_text", "image_text", "video_text")]
    assert sum(taken) == 1500 and taken[2] == 400
    # The 188 missing video rows go to the others in proportion 21.6 : 39.2.
    assert taken[0] == 324 + round(188 * 21.6 / 60.8) and taken[1] == 1500 - 400 - taken[0]


def test_impossible_weights_with_on_shortfall_error_fail_without_side_effects(ws: Workspace):
    write_recipe(ws.root / "recipes", "strict", recipe_text("strict", target=2000, policy="error"))
    before = tree(ws.root)
    with pytest.raises(
        ConfigError,
        match=r"weights cannot be met \(text_text: only 400 usable .* video_text: only 400 usable",
    ):
        build_mixture(ws, ws.root / "recipes" / "strict.toml")
    assert tree(ws.root) == before
    # A dry run says the same instead of promising a write.
    with pytest.raises(ConfigError, match="weights cannot be met"):
        build_mixture(ws, ws.root / "recipes" / "strict.toml", dry_run=True)
    assert tree(ws.root) == before


def test_target_all_scales_to_the_scarcest_component(ws: Workspace):
    result = build(ws, recipe_text(target="all"))
    stage = result.mixture.meta["stages"]["retrieval_adaptation"]
    # 700 image-text rows (+300 cc3m t2i = 1000) and 400 video-text: video limits at 39.2%.
    assert stage["resolved_target"] == 1020 and stage["limited_by"] == ["video_text"]
    assert stage["components"]["video_text"]["taken"] == 400
    assert stage["components"]["image_text"]["taken"] == 400
    assert stage["components"]["text_text"]["taken"] == 220


def test_caps_and_repetition_limits_are_respected(ws: Workspace):
    extra = """
[[stages]]
name = "upsampled"
target = 1000
on_shortfall = "leave_short"

[[stages.components]]
name = "videos"
pairs = ["t2v", "v2t"]
weight = 1
max_repeat = 2
max_per_source = 120
"""
    result = build(ws, recipe_text(extra=extra))
    table = result.mixture.read_stage("upsampled", columns=["id", "source", "repeat"])
    ids = table.column("id").to_pylist()
    sources = table.column("source").to_pylist()
    per_id = Counter(ids)
    assert max(per_id.values()) == 2  # max_repeat
    unique_per_source = Counter(s for (i, s) in {(i, s) for i, s in zip(ids, sources, strict=True)})
    assert unique_per_source == {"webvid": 120, "msrvtt": 120}  # max_per_source
    assert table.num_rows == 480  # 2 sources x 120 rows x 2 copies: short of 1000
    component = result.mixture.meta["stages"]["upsampled"]["components"]["videos"]
    assert component["capacity"] == 480 and component["shortfall"] == 520
    assert component["shortfall_reason"] == (
        "only 240 usable rows, 400 before max_per_source=120 x max_repeat 2 = capacity 480 "
        "< 1000 requested"
    )
    repeats = Counter(table.column("repeat").to_pylist())
    assert repeats == {0: 240, 1: 240}


def test_partial_upsampling_repeats_the_first_rows_by_hash(ws: Workspace):
    extra = """
[[stages]]
name = "partial"
target = 250
[[stages.components]]
name = "nli"
sources = ["nli"]
weight = 1
max_repeat = 5
"""
    result = build(ws, recipe_text(extra=extra))
    table = result.mixture.read_stage("partial", columns=["id", "repeat"])
    per_id = Counter(table.column("id").to_pylist())
    # 250 rows from 100: two full passes, then the first 50 by hash a third time.
    assert len(per_id) == 100 and Counter(per_id.values()) == {2: 50, 3: 50}
    assert table.num_rows == 250
    assert Counter(table.column("repeat").to_pylist()) == {0: 100, 1: 100, 2: 50}


def test_temperature_flattens_source_shares(ws: Workspace):
    extra = """
[[stages]]
name = "hot"
target = 300
[[stages.components]]
name = "image_text"
pairs = ["t2i"]
weight = 1
temperature = 100
"""
    result = build(ws, recipe_text(extra=extra))
    sources = result.mixture.meta["stages"]["hot"]["components"]["image_text"]["sources"]
    # coco has 400 t2i rows and cc3m 300: proportional would be 171/129, hot is nearly 150/150.
    assert abs(sources["coco"]["taken"] - 150) <= 2 and abs(sources["cc3m"]["taken"] - 150) <= 2
    cold = build(
        ws, recipe_text("cold", extra=extra.replace("temperature = 100", "temperature = 1")), "cold"
    )
    sources = cold.mixture.meta["stages"]["hot"]["components"]["image_text"]["sources"]
    assert (sources["coco"]["taken"], sources["cc3m"]["taken"]) == (171, 129)


def test_components_do_not_overlap_and_selectors_work(ws: Workspace):
    text = """
name = "sel"
[[stages]]
name = "s"
target = "all"
[[stages.components]]
name = "coco_first"
sources = ["coco"]
weight = 1
[[stages.components]]
name = "all_t2i"
pairs = ["t2i"]
manifests = ["images", "eval"]
splits = ["*"]
weight = 1
"""
    result = build(ws, text, "sel")
    comps = result.mixture.meta["stages"]["s"]["components"]
    # coco train rows (700) go to the first component; all_t2i keeps cc3m t2i and the test split.
    assert comps["coco_first"]["matched"] == 700
    assert comps["all_t2i"]["matched"] == 300 + 50
    table = result.mixture.read_stage("s", columns=["id", "component"])
    assert len(set(table.column("id").to_pylist())) == table.num_rows


# --- filters and dedup --------------------------------------------------------------------------


def test_filters_and_dedup_remove_what_they_should_and_count_it(workspace: Workspace):
    ws = workspace
    images = rows("coco", 40, "t2i")
    images += [row("laion", i, "t2i", text="same alt text") for i in range(10)]  # 9 text dups
    images += [row("laion", i, "i2t", media_hash="h-shared") for i in range(10, 16)]  # 5 media dups
    images += [row("tiny", i, "t2i", width=20, height=400) for i in range(7)]  # low resolution
    images += [{**row("coco", 1, "t2i"), "source": "coco-copy", "id": "copy-of-coco-1"}]
    videos = rows("webvid", 20, "t2v", duration=5.0) + rows(
        "webvid", 6, "t2v", start=20, duration=900.0
    )
    long_text = [row("marco", i, "t2t", text="x" * 600) for i in range(4)] + rows(
        "marco", 30, "t2t", start=4
    )
    clip = [{"id": r["id"], "clip_score": 0.1 if i % 4 == 0 else 0.5, "near_dup_keep": i % 10 != 9}
            for i, r in enumerate(images[:40])]  # fmt: skip
    write_manifest(ws, "images", images, signals={"clip": clip})
    write_manifest(ws, "videos", videos)
    write_manifest(ws, "text", long_text)
    text = """
name = "clean"
[filters]
text_chars = [1, 500]
video_duration = [1.0, 600.0]
min_resolution = 64
signal_min = { clip_score = 0.3 }
where = ["query_words >= 1 OR query_words IS NULL"]
dedup = ["exact", "text", "media", "near_dup"]
[[stages]]
name = "s"
target = "all"
[[stages.components]]
name = "everything"
pairs = ["t2i", "i2t", "t2v", "t2t"]
weight = 1
"""
    result = build(ws, text, "clean")
    applied = {s["step"]: s["removed"] for s in result.mixture.meta["filters"]["applied"]}
    # 40 coco clip scores: every 4th is 0.1 -> 10 removed; rows without a score pass. The
    # near-dup flags (rows 9, 19, 29, 39) are on rows the clip filter keeps.
    assert applied == {
        "text_chars": 4,
        "video_duration": 6,
        "min_resolution": 7,
        "signal_min.clip_score": 10,
        "where[0]": 0,
        "dedup.exact": 1,
        "dedup.text": 9,
        "dedup.media": 5,
        "dedup.near_dup": 4,
    }
    filters = result.mixture.meta["filters"]
    assert filters["candidates"] == filters["kept"] + sum(applied.values())
    assert result.mixture.rows == filters["kept"]
    table = result.mixture.read_stage(
        "s", columns=["source", "target_text", "query_text", "media_hash"]
    )
    assert "tiny" not in table.column("source").to_pylist()
    assert table.column("query_text").to_pylist().count("same alt text") == 1
    assert table.column("media_hash").to_pylist().count("h-shared") == 1


def test_near_dup_without_a_signal_is_skipped_and_noted(ws: Workspace):
    result = build(ws, recipe_text(filters='[filters]\ndedup = ["near_dup"]'))
    step = result.mixture.meta["filters"]["applied"][0]
    assert step["step"] == "dedup.near_dup" and step["note"] == "skipped" and step["removed"] == 0
    assert any("near_dup" in n for n in result.mixture.meta["notes"])


# --- errors and safety --------------------------------------------------------------------------

HOSTILE = [
    ("where = [\"pair = 't2i'; DROP TABLE pool\"]", "';' at position"),
    (
        "where = [\"COPY (SELECT * FROM pool) TO '/tmp/leak.csv'\"]",
        "'COPY' at position 0 is a SQL statement keyword",
    ),
    (
        "where = [\"read_csv('/etc/passwd') IS NOT NULL\"]",
        "function 'read_csv' at position 0 is not allowed",
    ),
    ("where = [\"ATTACH '/tmp/evil.db'\"]", "'ATTACH' at position 0"),
    (
        'where = ["no_such_column > 1"]',
        "names column 'no_such_column', which is neither a manifest column",
    ),
    ('where = ["clip_score > 0.3"]', "`curate score NAME --signals clip` computes it"),
]


@pytest.mark.parametrize(("where", "message"), HOSTILE, ids=[m for _, m in HOSTILE])
def test_hostile_recipes_fail_with_one_line_and_no_side_effect(
    ws: Workspace, where: str, message: str
):
    text = recipe_text("hostile").replace("weight = 21.6", f"weight = 21.6\n{where}")
    path = write_recipe(ws.root / "recipes", "hostile", text)
    before = tree(ws.root)
    with pytest.raises(ConfigError) as caught:
        build_mixture(ws, path)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert tree(ws.root) == before
    assert not Path("/tmp/leak.csv").exists()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("weight = 21.6", "weight = 0", "`weight` must be > 0"),
        ("weight = 21.6", "weight = -1", "`weight` must be > 0"),
        # Every component selects nothing: no t2t row has the test split, no it2i or vt2v rows.
        ('pairs = ["t2t"]', 'pairs = ["t2t"]\nsplits = ["test"]', "selects no rows"),
    ],
)
def test_bad_weights_and_empty_stages_fail_without_side_effects(
    ws: Workspace, old: str, new: str, message: str
):
    text = recipe_text("bad").replace(old, new, 1)
    if "test" in new:
        text = text.replace('pairs = ["t2i", "i2t"]', 'pairs = ["it2i"]').replace(
            'pairs = ["t2v", "v2t"]', 'pairs = ["vt2v"]'
        )
    path = write_recipe(ws.root / "recipes", "bad", text)
    before = tree(ws.root)
    with pytest.raises(ConfigError, match=message):
        build_mixture(ws, path)
    assert tree(ws.root) == before


def test_dry_run_writes_nothing_and_reports_the_version(ws: Workspace):
    path = write_recipe(ws.root / "recipes", "mix", recipe_text())
    before = tree(ws.root)
    planned = build_mixture(ws, path, dry_run=True)
    assert tree(ws.root) == before and planned.mixture is None and not planned.built
    stage = planned.plan.stages[0]
    assert stage.taken == 500 and [c.taken for c in stage.components] == [108, 196, 196]
    built = build_mixture(ws, path)
    assert built.version == planned.version and built.path == planned.path


def test_a_killed_build_leaves_no_version_and_its_leftovers_are_cleaned(ws: Workspace):
    planned = build(ws, recipe_text(), dry_run=True)
    folder = ws.mixtures / "mix"
    leftover = folder / f".tmp-{planned.version}-999999999"
    leftover.mkdir(parents=True)
    (leftover / "retrieval_adaptation.parquet").write_bytes(b"half a file")
    with pytest.raises(Exception, match="no built mixture"):
        load_mixture(ws, "mix")
    result = build_mixture(ws, "mix")
    assert result.built and not leftover.exists()
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == [result.version]


def test_cli_mix_json_and_errors(ws: Workspace):
    write_recipe(ws.mixtures, "mix", recipe_text())
    env = {**os.environ, "CURATE_HOME": str(ws.root)}
    done = subprocess.run(
        [sys.executable, "-m", "curate.cli", "mix", "--recipe", "mix", "--json"],
        capture_output=True, text=True, env=env, cwd=REPO, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["built"] and Path(out["path"]).is_dir() and out["path"].endswith(out["version"])
    bad = subprocess.run(
        [sys.executable, "-m", "curate.cli", "mix", "--recipe", "missing-recipe"],
        capture_output=True, text=True, env=env, cwd=REPO, check=False,
    )  # fmt: skip
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1
    assert bad.stderr.startswith("error: no recipe named 'missing-recipe'")


def test_mix_does_not_import_torch(ws: Workspace):
    write_recipe(ws.mixtures, "mix", recipe_text())
    script = (
        "import sys\n"
        "from curate.cli import app\n"
        f"app(['mix', '--recipe', 'mix', '--workspace', {str(ws.root)!r}, '--json'],"
        " standalone_mode=False)\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'transformers', 'open_clip') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout


def test_duplicate_ids_in_an_input_are_a_clear_error(workspace: Workspace):
    twice = rows("coco", 5, "t2i")
    twice.append({**twice[0], "target_text": "another row with the same id"})
    write_manifest(workspace, "dups", twice)
    text = '[[stages]]\nname = "s"\n[[stages.components]]\nname = "c"\nweight = 1\n'
    with pytest.raises(InputError, match="lists an id more than once"):
        build(workspace, f'name = "d"\n{text}', "d")
    assert not (workspace.mixtures / "d").exists()


# --- the ranking key: SQL equals the Python reference, and selection follows it ------------------


def test_row_keys_in_duckdb_equal_the_python_reference():
    from curate.db import connect
    from curate.mix import ROW_KEY_BASE_SQL, row_key_base, splitmix64, splitmix64_sql

    ids = ["900150983cd24fb0d6963f7d28e17f72", "ABCDEF0123456789ffff", "abc", "", "0x12",
           "1_000", "-1", " 12", "coco-12", "é1", "\u212a1", "f" * 40]  # fmt: skip
    con = connect()
    for row_id in ids:
        got = con.execute(f"SELECT {ROW_KEY_BASE_SQL} FROM (SELECT $id AS id)", {"id": row_id})
        assert got.fetchone()[0] == row_key_base(row_id), row_id
    for value in (0, 1, 2**63, 2**64 - 1, 0x9E3779B97F4A7C15):
        sql = splitmix64_sql(f"{value}::UBIGINT")
        assert con.execute(f"SELECT {sql}").fetchone()[0] == splitmix64(value)
    assert len({splitmix64(i) for i in range(10_000)}) == 10_000  # a bijection: no collisions


def test_selection_takes_the_smallest_keys_and_orders_by_the_position_key(ws: Workspace):
    from curate.mix import row_key, salt, splitmix64

    result = build(ws, recipe_text(target=300, seed=7))
    table = result.mixture.read_stage("retrieval_adaptation")
    chosen = {(r["source"], r["id"]) for r in table.select(["source", "id"]).to_pylist()}
    sources = result.mixture.meta["stages"]["retrieval_adaptation"]["components"]["video_text"][
        "sources"
    ]
    all_rows = pq.read_table(
        ws.manifest_dir("videos") / "rows", columns=["id", "source"]
    ).to_pylist()
    for source, plan in sources.items():
        ids = sorted(
            (r["id"] for r in all_rows if r["source"] == source),
            key=lambda i: (row_key(i, 7, "retrieval_adaptation", "video_text"), i),
        )
        assert {i for i in ids[: plan["taken"]]} == {i for s, i in chosen if s == source}
    order = sorted(
        table.select(["id", "repeat", "position"]).to_pylist(),
        key=lambda r: splitmix64(row_key(r["id"], 7, "retrieval_adaptation") ^ r["repeat"]),
    )
    assert [r["position"] for r in order] == list(range(len(order)))
    assert salt(7, "a") != salt(7, "b")


@pytest.mark.parametrize("bound", ["everything", "too_tight"])
def test_the_ranking_prefilter_never_changes_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bound: str
):
    import curate.mix as mix

    text = recipe_text(target=300, seed=3)
    normal = Workspace.resolve(tmp_path / "normal")
    standard_manifests(normal)
    expected = build(normal, text)
    # Rank every row (no prefilter), or give bounds so tight that the check must fall back.
    replacement = (lambda need, n: mix._MASK64) if bound == "everything" else (lambda need, n: 1)
    monkeypatch.setattr(mix, "rank_threshold", replacement)
    other = Workspace.resolve(tmp_path / "other")
    standard_manifests(other)
    got = build(other, text)
    stage = "retrieval_adaptation"
    assert got.mixture.stages[stage].read_bytes() == expected.mixture.stages[stage].read_bytes()


def test_rank_threshold_bounds():
    from curate.mix import rank_threshold

    assert rank_threshold(5, 5) == 2**64 - 1
    assert rank_threshold(99, 100) == 2**64 - 1  # a small group: rank it all
    bound = rank_threshold(200_000, 10_000_000)
    assert 0.02 * 2**64 < bound < 0.0205 * 2**64


def test_the_recipe_can_restrict_its_input_manifests(ws: Workspace):
    text = recipe_text(target="all").replace(
        'batching = "pair"', 'batching = "pair"\nmanifests = ["text", "videos"]'
    )
    result = build(ws, text)
    lineage = [m["name"] for m in result.mixture.meta["lineage"]["manifests"]]
    assert lineage == ["text", "videos"]  # images and eval are not inputs: not in the version
    assert (
        result.mixture.meta["stages"]["retrieval_adaptation"]["components"]["image_text"]["matched"]
        == 0
    )
    outside = text.replace('pairs = ["t2t"]', 'pairs = ["t2t"]\nmanifests = ["images"]')
    with pytest.raises(ConfigError, match=r"components name manifest\(s\) \['images'\]"):
        build(ws, outside)
    with pytest.raises(NotFoundError, match="no manifest named 'nope'"):
        build(ws, text.replace('"videos"]', '"nope"]'))


def test_video_duration_filter_uses_webvid_durations_of_unprobed_urls(
    shared_data: Path, workspace: Workspace
):
    from curate.ingest import IngestOptions, ingest

    path = shared_data / "annotations/webvid/test_webvid.csv"
    manifest = ingest(path, IngestOptions(name="webvid"), workspace).manifest
    durations = manifest.read_rows(columns=["duration"]).column("duration").to_pylist()
    short = sum(1 for d in durations if d <= 15.0)
    assert 0 < short < len(durations)  # the real file has both kinds
    text = """
name = "short"
[filters]
video_duration = [1.0, 15.0]
[[stages]]
name = "s"
target = "all"
[[stages.components]]
name = "videos"
pairs = ["t2v"]
weight = 1
"""
    result = build(workspace, text, "short")
    applied = {s["step"]: s["removed"] for s in result.mixture.meta["filters"]["applied"]}
    assert applied["video_duration"] == len(durations) - short
    kept = result.mixture.read_stage("s", columns=["duration"]).column("duration").to_pylist()
    assert len(kept) == short and max(kept) <= 15.0


# --- selectors must name what exists; versions depend only on manifests that can contribute ------


def run_cli(ws: Workspace, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CURATE_HOME": str(ws.root)}
    return subprocess.run(
        [sys.executable, "-m", "curate.cli", *args],
        capture_output=True, text=True, env=env, cwd=ws.root, check=False,
    )  # fmt: skip


def test_a_component_naming_a_missing_manifest_is_a_one_line_error(ws: Workspace):
    text = recipe_text("nomani").replace(
        'pairs = ["t2t"]', 'pairs = ["t2t"]\nmanifests = ["coco-scc"]'
    )
    path = write_recipe(ws.root / "bad", "nomani", text)
    before = tree(ws.root)
    with pytest.raises(NotFoundError) as caught:
        build_mixture(ws, path, dry_run=True)
    message = str(caught.value)
    assert "component retrieval_adaptation/text_text" in message
    assert "['coco-scc']" in message and "known: eval, images, text, videos" in message
    assert "\n" not in message
    done = run_cli(ws, "mix", "--recipe", "bad/nomani.toml", "--dry-run")
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr and "'coco-scc'" in done.stderr
    # Every component naming manifests, one of them missing: the same error, naming it.
    only = text.replace('pairs = ["t2i", "i2t"]', 'pairs = ["t2i", "i2t"]\nmanifests = ["images"]')
    only = only.replace('pairs = ["t2v", "v2t"]', 'pairs = ["t2v", "v2t"]\nmanifests = ["videos"]')
    with pytest.raises(
        NotFoundError, match=r"component retrieval_adaptation/text_text: .*coco-scc"
    ):
        build_mixture(ws, write_recipe(ws.root / "bad", "nomani", only))
    assert tree(ws.root) == before


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        (
            'sources = ["coco-scc"]',
            "sources ['coco-scc'] occur in none of the manifests it reads (eval, images, text, "
            "videos); sources there: cc3m, coco, msmarco, msrvtt, nli, webvid",
        ),
        ('sources = ["coco", "Webvid"]', "sources ['Webvid'] occur in none"),
        # A source that exists, but not in the manifests the component reads.
        ('sources = ["webvid"]\nmanifests = ["images"]', "(images); sources there: cc3m, coco"),
        ('splits = ["trian"]', "splits ['trian'] occur in none of the manifests it reads"),
    ],
)
def test_a_source_or_split_no_input_holds_is_an_error_not_a_silent_shortfall(
    ws: Workspace, selector: str, message: str
):
    text = recipe_text("nosrc").replace('pairs = ["t2i", "i2t"]', selector)
    path = write_recipe(ws.root / "bad", "nosrc", text)
    before = tree(ws.root)
    for dry_run in (True, False):
        with pytest.raises(ConfigError) as caught:
            build_mixture(ws, path, dry_run=dry_run)
        assert "component retrieval_adaptation/image_text" in str(caught.value)
        assert message in str(caught.value) and "\n" not in str(caught.value)
    assert tree(ws.root) == before


def test_selectors_that_exist_but_match_few_or_no_rows_stay_shortfalls(ws: Workspace):
    # nli exists (100 rows): too few for its share is a shortfall, not an error.
    text = recipe_text("few", target=2000).replace('pairs = ["t2t"]', 'sources = ["nli"]')
    # i2i is a valid pair code no input has yet: a shortfall saying so (v3 relies on this).
    text = text.replace('pairs = ["t2v", "v2t"]', 'pairs = ["i2i"]')
    result = build(ws, text, "few")
    comps = result.mixture.meta["stages"]["retrieval_adaptation"]["components"]
    assert comps["text_text"]["taken"] == 100 and comps["text_text"]["shortfall"] > 0
    assert comps["video_text"]["shortfall_reason"] == (
        "no rows match its selector (pairs=['i2i'], splits=['train']); the inputs have no pair "
        "i2i (pairs there: i2t, t2i, t2t)"
    )


def lineage(result) -> list[str]:
    return [m["name"] for m in result.mixture.meta["lineage"]["manifests"]]


def unrelated_manifests(ws: Workspace) -> None:
    """An evaluation manifest, one of a pair no component selects, one whose test rows have a
    selected pair and whose train rows do not (only the joint check can tell), and one without
    by_* counters in its stats.json (read with a DISTINCT query instead)."""
    write_manifest(ws, "eval-videos", rows("msrvtt", 40, "t2v", split="test"))
    write_manifest(ws, "vqa", rows("vqav2", 30, "it2t"))
    write_manifest(ws, "mixed", rows("flickr", 20, "t2i", split="test") + rows("flickr", 20, "i2i"))
    write_manifest(ws, "bare", rows("coco", 10, "t2i", split="val"), counters=False)


def test_manifests_no_component_can_read_change_no_version(ws: Workspace, tmp_path: Path):
    first = build(ws, recipe_text())
    assert lineage(first) == ["images", "text", "videos"]  # eval holds only the test split
    stage = first.mixture.stages["retrieval_adaptation"]
    unrelated_manifests(ws)
    again = build(ws, recipe_text())
    assert again.version == first.version and not again.built
    assert sorted(again.plan.skipped) == ["bare", "eval", "eval-videos", "mixed", "vqa"]
    dry = run_cli(ws, "mix", "--recipe", "mix", "--dry-run", "--json")
    assert json.loads(dry.stdout)["version"] == first.version, dry.stderr
    assert json.loads(dry.stdout)["plan"]["skipped_manifests"] == sorted(again.plan.skipped)
    # Built afresh in a workspace that had the unrelated manifests from the start: same bytes.
    other = Workspace.resolve(tmp_path / "other")
    standard_manifests(other)
    unrelated_manifests(other)
    fresh = build(other, recipe_text())
    assert fresh.built and fresh.version == first.version and lineage(fresh) == lineage(first)
    assert fresh.mixture.stages["retrieval_adaptation"].read_bytes() == stage.read_bytes()
    # A manifest that does contribute (train t2i rows, read through the DISTINCT query) does
    # change the version, and sits in the lineage in name order.
    write_manifest(ws, "flickr", rows("flickr", 20, "t2i"), counters=False)
    changed = build(ws, recipe_text())
    assert changed.built and changed.version != first.version
    assert lineage(changed) == ["flickr", "images", "text", "videos"]
    assert "flickr" in changed.mixture.meta["rows_by_source"]


def test_a_manifest_selected_only_by_its_split_enters_the_version(ws: Workspace):
    text = recipe_text("evalmix").replace('pairs = ["t2t"]', 'pairs = ["t2t"]\nsplits = ["*"]')
    # eval's test rows are t2i: only image_text could take them, and it selects "train" only.
    assert lineage(build(ws, text, "evalmix")) == ["images", "text", "videos"]
    wide = text.replace('pairs = ["t2i", "i2t"]', 'pairs = ["t2i", "i2t"]\nsplits = ["test"]')
    result = build(ws, wide.replace('name = "evalmix"', 'name = "evalmix2"'), "evalmix2")
    assert lineage(result) == ["eval", "text", "videos"]


# --- one name, one recipe file --------------------------------------------------------------------


def test_a_copied_recipe_cannot_build_versions_of_the_original_name(ws: Workspace):
    from dataclasses import replace

    from curate.recipe import load_recipe

    original = build(ws, recipe_text("img-text"), "img-text")
    changed = recipe_text("img-text", target=300)  # the copy keeps the name, changes the content
    before = tree(ws.root)
    nosrc = write_recipe(ws.root / "bad", "nosrc", changed)
    with pytest.raises(ConfigError) as caught:
        build_mixture(ws, nosrc)
    assert "is named 'img-text' but its file is nosrc.toml" in str(caught.value)
    assert 'make them match: set name = "nosrc"' in str(caught.value)
    assert "'img-text' is the name of" in str(caught.value) and "\n" not in str(caught.value)
    same_stem = write_recipe(ws.root / "bad", "img-text", changed)
    with pytest.raises(ConfigError, match=r"takes the name 'img-text' of .*mixtures/img-text.toml"):
        build_mixture(ws, same_stem, dry_run=True)
    with pytest.raises(ConfigError, match="takes the name 'img-text'"):
        build_mixture(ws, replace(load_recipe(same_stem), path=None))  # a Recipe made in code
    for path in ("bad/nosrc.toml", "bad/img-text.toml"):
        done = run_cli(ws, "mix", "--recipe", path)
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    shutil.rmtree(ws.root / "bad")
    assert tree(ws.root) == before  # nothing built
    assert load_mixture(ws, "img-text").version == original.version
    # The file `--recipe img-text` finds may be given by its path; a shipped name is taken too.
    by_path = build_mixture(ws, ws.mixtures / "img-text.toml")
    assert by_path.version == original.version and not by_path.built
    with pytest.raises(ConfigError, match="takes the name 'v3' of"):
        build_mixture(ws, write_recipe(ws.root / "bad", "v3", recipe_text("v3")))


def test_a_workspace_recipe_may_be_a_symlink_to_a_dated_file(ws: Workspace):
    dated = write_recipe(ws.root / "team-recipes", "team-2026-11", recipe_text("team"))
    ws.mixtures.mkdir(parents=True, exist_ok=True)
    (ws.mixtures / "team.toml").symlink_to(dated)
    dry = run_cli(ws, "mix", "--recipe", "team", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry run: would write team@" in dry.stdout
    built = build_mixture(ws, "team")
    assert built.built and load_mixture(ws, "team").version == built.version
    assert built.mixture.meta["recipe_path"] == str(ws.mixtures / "team.toml")
    by_target = build_mixture(ws, dated)  # the same file, given by the path it links to
    assert not by_target.built and by_target.version == built.version
