"""Table-level analysis: primary metrics, pairing, deltas, regression, and the planted effect."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from scipy import stats as ss

from analysis import effects
from analysis.effects import OVERALL
from analysis.load import runs_from_results
from curate.errors import ConfigError
from curate.schema import RESULTS_SCHEMA
from tests.analysis import synthetic as syn


def _scores(rows: list[dict], **kw) -> tuple[effects.Scores, dict[str, dict[str, float]]]:
    table = pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA)
    frame = pl.from_arrow(table.drop_columns(["pair_shares", "source_shares"]))
    shares = {r: dict(info.pair_shares) for r, info in runs_from_results(table).items()}
    return effects.build_scores(frame, **kw), shares


@pytest.fixture(scope="module")
def planted() -> tuple[effects.Scores, dict[str, dict[str, float]]]:
    return _scores(syn.result_rows())


def test_primary_metric_prefers_r_at_1_and_never_a_rank(planted) -> None:
    scores, _ = planted
    assert {t.metric for t in scores.tasks} == {"R@1"}
    rows = [r for r in syn.result_rows(seeds=(1,)) if r["metric"] != "R@1"]
    only_rank_and_r5, _ = _scores(rows)
    assert {t.metric for t in only_rank_and_r5.tasks} == {"R@5"}
    medr_only, _ = _scores([r for r in rows if r["metric"] == "MedR"])
    assert medr_only.tasks == ()
    with pytest.raises(ConfigError, match="no task reports metric"):
        _scores(rows, metric="nDCG@10")


def test_group_values_are_means_of_task_values(planted) -> None:
    scores, _ = planted
    run = scores.runs.row(0, named=True)["run_id"]
    tasks = scores.per_task.filter(pl.col("run_id") == run)
    groups = scores.per_group.filter(pl.col("run_id") == run)
    t2v = tasks.filter(pl.col("group") == "t2v").get_column("value").mean()
    assert groups.filter(pl.col("group") == "t2v").get_column("value").item() == pytest.approx(t2v)
    non_overall = groups.filter(pl.col("group") != OVERALL).get_column("value").mean()
    assert groups.filter(pl.col("group") == OVERALL).get_column("value").item() == pytest.approx(
        non_overall
    )


def test_paired_differences_pair_by_mixture_seed_and_task() -> None:
    rows = syn.result_rows()
    # Shuffling rows must not change the pairing.
    order = np.random.default_rng(0).permutation(len(rows))
    scores, _ = _scores([rows[i] for i in order])
    paired = {
        (r.column, r.is_group): r
        for r in effects.paired_loss_differences(scores, "mamcl", "infonce")
    }
    row = paired[("msrvtt_t2v", False)]

    def value(mixture: str, loss: str, seed: int) -> float:
        return next(
            r["value"]
            for r in rows
            if (r["mixture"], r["loss"], r["seed"], r["task"], r["metric"])
            == (mixture, loss, seed, "msrvtt_t2v", "R@1")
        )

    a = [value(m, "mamcl", s) for m in syn.MIXTURES for s in (1, 2, 3)]
    b = [value(m, "infonce", s) for m in syn.MIXTURES for s in (1, 2, 3)]
    ref = ss.ttest_rel(a, b)
    assert row.difference.n == 15
    assert row.difference.mean == pytest.approx(np.mean(np.subtract(a, b)))
    assert row.difference.p == pytest.approx(ref.pvalue, rel=1e-7)
    # The planted bonus of MAMCL is recovered everywhere.
    assert row.difference.low < syn.LOSS_BONUS["mamcl"] < row.difference.high
    overall = paired[(OVERALL, True)]
    assert overall.difference.low > 0


def test_default_loss_pair() -> None:
    assert effects.default_loss_pair(["infonce", "mamcl"]) == ("mamcl", "infonce")
    assert effects.default_loss_pair(["symmetric_infonce", "mamcl"]) == (
        "mamcl",
        "symmetric_infonce",
    )
    assert effects.default_loss_pair(["a", "b", "c"]) == ("a", "b")
    assert effects.default_loss_pair(["mamcl"]) is None


def test_deltas_against_baseline_match_welch(planted) -> None:
    scores, _ = planted
    deltas = effects.deltas_vs_baseline(scores, baseline="images", loss="mamcl")
    assert ("images", "t2v") not in deltas
    part = scores.per_group.filter((pl.col("loss") == "mamcl") & (pl.col("group") == "t2v"))
    a = part.filter(pl.col("arm") == "vid-heavy").get_column("value").to_numpy()
    b = part.filter(pl.col("arm") == "images").get_column("value").to_numpy()
    d = deltas[("vid-heavy", "t2v")]
    ref = ss.ttest_ind(a, b, equal_var=False)
    assert d.mean == pytest.approx(a.mean() - b.mean())
    assert (d.low, d.high) == (
        pytest.approx(ref.confidence_interval().low),
        pytest.approx(ref.confidence_interval().high),
    )
    with pytest.raises(ConfigError, match="baseline 'nope'"):
        effects.deltas_vs_baseline(scores, baseline="nope", loss="mamcl")


def test_share_design_merges_pairs_that_always_move_together() -> None:
    runs = [
        ("r1", {"t2i": 0.3, "i2t": 0.3, "t2v": 0.4}),
        ("r2", {"t2i": 0.1, "i2t": 0.1, "t2v": 0.8}),
        ("r3", {"t2i": 0.5, "i2t": 0.5}),
        ("r4", {"t2i": 2.0, "i2t": 2.0, "t2v": 1.0}),  # counts, not shares: renormalised
    ]
    design = effects.share_design(runs)
    assert design.columns == ("i2t+t2i", "t2v")
    assert design.members == (("i2t", "t2i"), ("t2v",))
    np.testing.assert_allclose(design.matrix[:, 0], [0.6, 0.2, 1.0, 0.8])
    np.testing.assert_allclose(design.matrix.sum(axis=1), 1.0)
    assert "i2t+t2i" in design.merged_note


def test_too_few_mixtures_for_pairs_falls_back_to_media() -> None:
    # The demo's three arms: 4 pairs but only 3 compositions; by medium they are separable.
    runs = [
        ("image", {"t2i": 0.5, "i2t": 0.5}),
        ("video", {"t2v": 1.0}),
        ("mixed", {"t2t": 0.2, "t2i": 0.15, "i2t": 0.25, "t2v": 0.4}),
    ]
    assert effects.distinct_compositions(effects.share_design(runs)) < 4
    design = effects.choose_design(runs)
    assert design.columns == ("image pairs", "text pairs", "video pairs")
    assert design.members == (("i2t", "t2i"), ("t2t",), ("t2v",))
    np.testing.assert_allclose(design.matrix[2], [0.4, 0.2, 0.4])
    assert "summed by medium" in design.merged_note


def test_regression_explains_why_it_cannot_fit() -> None:
    mixtures = {
        "a": {"t2i": 0.5, "t2v": 0.3, "t2t": 0.2},
        "b": {"t2i": 0.2, "t2v": 0.3, "t2t": 0.5},
    }
    scores, shares = _scores(syn.result_rows(mixtures=mixtures, losses=("mamcl",)))
    _, regressions = effects.composition_regressions(scores, shares, loss="mamcl")
    assert all(r.fit is None for r in regressions)
    assert "at least 3 mixtures" in regressions[0].reason
    assert regressions[0].best_observed in {"a", "b"}


def test_runs_without_a_composition_stay_out_of_the_regression(planted) -> None:
    scores, shares = planted
    unknown = {r for r, s in shares.items() if s == syn.MIXTURES["balanced"]}
    partial = {r: ({} if r in unknown else s) for r, s in shares.items()}
    design, regressions = effects.composition_regressions(scores, partial, loss="mamcl")
    assert not unknown & set(design.run_ids)
    assert len(design.run_ids) == 12
    assert all(r.fit is not None and r.fit.n == 12 for r in regressions)


def test_planted_effect_sign_and_ranking_are_recovered(planted) -> None:
    """Video-text rows teach the t2v tasks and text-text rows the t2t task: the analysis must say
    so, and rank the mixtures as the planted truth does."""
    scores, shares = planted
    design, regressions = effects.composition_regressions(scores, shares, loss="mamcl")
    by_group = {r.group: r for r in regressions}
    assert set(design.columns) == {"t2t", "t2i", "i2t", "t2v"}
    t2v = by_group["t2v"]
    effect = dict(zip(t2v.fit.names, t2v.effects, strict=True))
    assert effect["t2v"].low > 0  # more video-text helps video retrieval, clearly
    assert effect["t2t"].high < 0  # and text-text rows in its place hurt it
    t2t_effects = dict(zip(by_group["t2t"].fit.names, by_group["t2t"].effects, strict=True))
    assert t2t_effects["t2t"].low > 0

    # Ranking of mixtures on the t2v group: observed means and model predictions vs the truth.
    truth = {m: syn.true_group_value(m, "mamcl", "t2v") for m in syn.MIXTURES}
    summary = effects.summarise(scores.per_group, column="group")
    observed = {m: summary[(m, "mamcl", "t2v")].mean for m in syn.MIXTURES}
    index = {c: i for i, c in enumerate(design.columns)}
    predicted = {}
    for m, mix in syn.MIXTURES.items():
        x = np.zeros(len(design.columns))
        for pair, share in mix.items():
            x[index[pair]] = share
        predicted[m] = t2v.fit.predict(x).mean
    want = sorted(truth, key=truth.get)
    assert sorted(observed, key=observed.get) == want
    assert sorted(predicted, key=predicted.get) == want
    assert t2v.best_observed == max(truth, key=truth.get) == "vid-heavy"
    # The predicted best t2v mixture maxes out the video share within the range tried.
    best = dict(zip(t2v.fit.names, t2v.best_shares, strict=True))
    assert best["t2v"] == pytest.approx(max(m.get("t2v", 0.0) for m in syn.MIXTURES.values()))


def test_share_slopes_have_the_planted_sign(planted) -> None:
    scores, shares = planted
    design, _ = effects.composition_regressions(scores, shares, loss="mamcl")
    points = effects.share_points(scores, design, ["t2v", "t2t"])
    slopes = effects.share_slopes(points)
    assert slopes[("t2v", "t2v")].slope_low > 0
    assert slopes[("t2t", "t2t")].slope_low > 0
    x, y = points[("t2v", "t2v")]
    assert len(x) == 15  # the mamcl runs
    assert slopes[("t2v", "t2v")].slope == pytest.approx(ss.linregress(x, y).slope)
