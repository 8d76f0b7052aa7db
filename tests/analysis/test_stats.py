"""The pure statistics against scipy/numpy reference computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize
from scipy import stats as ss

from analysis.stats import (
    best_on_simplex,
    betainc,
    linear_contrast,
    mean_interval,
    ols,
    paired_difference,
    t_cdf,
    t_ppf,
    welch_difference,
)


@pytest.mark.parametrize("df", [1, 2, 3, 4.5, 7, 11, 30, 120, 1e4])
def test_t_distribution_matches_scipy(df: float) -> None:
    for q in (0.0005, 0.025, 0.1, 0.4, 0.6, 0.9, 0.95, 0.975, 0.995, 0.9995):
        assert t_ppf(q, df) == pytest.approx(ss.t.ppf(q, df), rel=1e-9, abs=1e-12)
    for t in (-40.0, -3.0, -1.0, -1e-3, 0.0, 0.25, 2.0, 8.0):
        assert t_cdf(t, df) == pytest.approx(ss.t.cdf(t, df), abs=1e-10)


def test_betainc_matches_scipy() -> None:
    from scipy.special import betainc as ref

    for a, b in ((0.5, 0.5), (2.0, 3.5), (10.0, 0.5), (0.5, 60.0)):
        for x in (1e-6, 0.1, 0.5, 0.77, 0.999):
            assert betainc(a, b, x) == pytest.approx(ref(a, b, x), rel=1e-10, abs=1e-14)


@pytest.mark.parametrize("n", [2, 3, 5, 12])
def test_mean_interval_matches_scipy_t_interval(n: int) -> None:
    rng = np.random.default_rng(n)
    values = rng.normal(0.4, 0.05, n)
    iv = mean_interval(values, confidence=0.9)
    low, high = ss.t.interval(0.9, n - 1, loc=values.mean(), scale=ss.sem(values))
    assert (iv.mean, iv.low, iv.high, iv.n) == (
        pytest.approx(values.mean()),
        pytest.approx(low),
        pytest.approx(high),
        n,
    )


def test_mean_interval_small_and_missing_samples() -> None:
    one = mean_interval([0.3])
    assert one.mean == 0.3 and one.n == 1 and math.isnan(one.low) and math.isnan(one.high)
    assert mean_interval([]).n == 0
    with_nan = mean_interval([0.1, float("nan"), 0.3])
    assert with_nan.n == 2 and with_nan.mean == pytest.approx(0.2)


def test_paired_difference_matches_ttest_rel() -> None:
    rng = np.random.default_rng(3)
    b = rng.normal(0.3, 0.1, 9)
    a = b + rng.normal(0.02, 0.01, 9)
    d = paired_difference(a, b, confidence=0.95)
    ref = ss.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    assert d.mean == pytest.approx(np.mean(a - b))
    assert d.t == pytest.approx(ref.statistic)
    assert d.p == pytest.approx(ref.pvalue, rel=1e-8)
    assert (d.low, d.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert d.n == 9 and d.df == 8


def test_paired_difference_needs_equal_lengths() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([1.0, 2.0], [1.0])


def test_welch_difference_matches_ttest_ind() -> None:
    rng = np.random.default_rng(4)
    a = rng.normal(0.5, 0.02, 4)
    b = rng.normal(0.45, 0.06, 6)
    d = welch_difference(a, b, confidence=0.9)
    ref = ss.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.9)
    assert d.mean == pytest.approx(a.mean() - b.mean())
    assert d.t == pytest.approx(ref.statistic)
    assert d.p == pytest.approx(ref.pvalue, rel=1e-8)
    assert d.df == pytest.approx(ref.df)
    assert (d.low, d.high) == (pytest.approx(ci.low), pytest.approx(ci.high))


def test_ols_matches_numpy_reference() -> None:
    rng = np.random.default_rng(5)
    n = 30
    shares = rng.dirichlet([1.0, 1.0, 1.0], n)
    y = shares @ np.array([0.2, 0.5, 0.35]) + rng.normal(0, 0.02, n)
    fit = ols(shares, y, names=["a", "b", "c"], confidence=0.95)

    coef, rss, *_ = np.linalg.lstsq(shares, y, rcond=None)
    sigma2 = float(rss[0]) / (n - 3)
    cov = sigma2 * np.linalg.inv(shares.T @ shares)
    se = np.sqrt(np.diag(cov))
    crit = ss.t.ppf(0.975, n - 3)
    np.testing.assert_allclose(fit.coef, coef, rtol=1e-10)
    np.testing.assert_allclose(fit.se, se, rtol=1e-10)
    np.testing.assert_allclose(fit.low, coef - crit * se, rtol=1e-9)
    np.testing.assert_allclose(fit.p, 2 * ss.t.sf(np.abs(coef / se), n - 3), rtol=1e-7)
    assert fit.r2 == pytest.approx(1 - rss[0] / np.sum((y - y.mean()) ** 2))
    assert fit.dof == n - 3 and fit.names == ("a", "b", "c")

    x = np.array([0.2, 0.3, 0.5])
    pred = fit.predict(x)
    half = crit * math.sqrt(x @ cov @ x)
    assert (pred.mean, pred.low, pred.high) == (
        pytest.approx(x @ coef),
        pytest.approx(x @ coef - half),
        pytest.approx(x @ coef + half),
    )


def test_ols_with_intercept_matches_linregress() -> None:
    rng = np.random.default_rng(6)
    x = rng.uniform(0, 0.6, 15)
    y = 0.1 + 0.4 * x + rng.normal(0, 0.03, 15)
    fit = ols(np.column_stack([np.ones_like(x), x]), y)
    ref = ss.linregress(x, y)
    assert fit.coef[1] == pytest.approx(ref.slope)
    assert fit.coef[0] == pytest.approx(ref.intercept)
    assert fit.se[1] == pytest.approx(ref.stderr)
    assert fit.se[0] == pytest.approx(ref.intercept_stderr)
    assert fit.p[1] == pytest.approx(ref.pvalue, rel=1e-7)
    assert fit.r2 == pytest.approx(ref.rvalue**2)


def test_ols_rejects_unidentified_design() -> None:
    X = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match="rank"):
        ols(X, [0.1, 0.2, 0.3])


def test_linear_contrast_matches_manual_computation() -> None:
    rng = np.random.default_rng(7)
    X = rng.dirichlet([2.0, 2.0, 2.0, 2.0], 25)
    y = X @ np.array([0.1, 0.3, 0.2, 0.6]) + rng.normal(0, 0.01, 25)
    fit = ols(X, y)
    c = np.array([1.0, -0.5, -0.25, -0.25])
    d = linear_contrast(fit, c)
    se = math.sqrt(c @ fit.cov @ c)
    assert d.mean == pytest.approx(c @ fit.coef)
    assert d.t == pytest.approx((c @ fit.coef) / se)
    assert d.p == pytest.approx(2 * ss.t.sf(abs(d.t), fit.dof), rel=1e-7)
    assert d.high - d.low == pytest.approx(2 * ss.t.ppf(0.975, fit.dof) * se)


def test_best_on_simplex_matches_linprog() -> None:
    rng = np.random.default_rng(8)
    for _ in range(40):
        k = int(rng.integers(2, 7))
        w = rng.normal(size=k)
        low = rng.uniform(0, 1.0 / k, k) * rng.integers(0, 2, k)
        high = np.minimum(1.0, low + rng.uniform(0.05, 0.8, k))
        if high.sum() < 1:
            high[np.argmin(high)] += 1 - high.sum()
        x = best_on_simplex(w, low=low, high=high)
        ref = optimize.linprog(
            -w, A_eq=np.ones((1, k)), b_eq=[1.0], bounds=list(zip(low, high, strict=True))
        )
        assert ref.status == 0
        assert x.sum() == pytest.approx(1.0)
        assert np.all(x >= low - 1e-12) and np.all(x <= high + 1e-12)
        assert w @ x == pytest.approx(-ref.fun, abs=1e-9)


def test_best_on_simplex_rejects_impossible_bounds() -> None:
    with pytest.raises(ValueError, match="no shares summing to 1"):
        best_on_simplex([1.0, 2.0], low=[0.6, 0.6])
    with pytest.raises(ValueError, match="no shares summing to 1"):
        best_on_simplex([1.0, 2.0], high=[0.3, 0.3])
