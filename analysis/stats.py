"""Pure statistics on arrays: intervals over seeds, paired and unpaired differences, OLS, optima.

Everything here takes numpy arrays (or sequences) and returns small frozen dataclasses of floats,
so it can be tested against scipy/numpy reference computations. Student-t quantiles are computed
here (regularised incomplete beta + bisection) so that a report does not need scipy at run time.

>>> round(t_ppf(0.975, 4), 6)
2.776445
>>> iv = mean_interval([0.30, 0.32, 0.34])
>>> round(iv.mean, 2), round(iv.low, 4), round(iv.high, 4)
(0.32, 0.2703, 0.3697)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_EPS = 1e-15
_TINY = 1e-300


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz method)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # The continued fraction converges fast only on one side of the mean; use the symmetry.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Cumulative distribution function of Student's t with `df` degrees of freedom."""
    if math.isnan(t) or df <= 0:
        return math.nan
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    t2 = t * t
    if t2 < df:
        # Near the centre, 1 − tail cancels; integrate from 0 outwards instead.
        half = 0.5 * betainc(0.5, df / 2.0, t2 / (df + t2))
        return 0.5 + half if t > 0 else 0.5 - half
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t2))
    return 1.0 - tail if t > 0 else tail


def t_ppf(q: float, df: float) -> float:
    """Quantile of Student's t (the inverse of `t_cdf`), by bisection to double precision."""
    if not 0.0 < q < 1.0 or df <= 0:
        return math.nan
    if q == 0.5:
        return 0.0
    sign = 1.0 if q > 0.5 else -1.0
    p = q if q > 0.5 else 1.0 - q
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
        if hi > 1e12:
            break
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-14 * max(1.0, hi):
            break
    return sign * 0.5 * (lo + hi)


def two_sided_p(t: float, df: float) -> float:
    """Two-sided p-value of a t statistic."""
    if math.isnan(t) or df <= 0:
        return math.nan
    return 2.0 * t_cdf(-abs(t), df)


@dataclass(frozen=True)
class Interval:
    """A mean with a two-sided t-interval; `low`/`high` are NaN when n < 2."""

    mean: float
    low: float
    high: float
    n: int
    sd: float
    confidence: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    return arr[np.isfinite(arr)]


def mean_interval(values: Sequence[float] | np.ndarray, *, confidence: float = 0.95) -> Interval:
    """Mean over seeds with a Student-t interval (NaN values are ignored).

    The interval is mean ± t_{(1+c)/2, n-1} · sd / sqrt(n), with the sample sd (ddof=1).
    """
    arr = _finite(values)
    n = int(arr.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, math.nan, confidence)
    mean = float(arr.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, 1, math.nan, confidence)
    sd = float(arr.std(ddof=1))
    half = t_ppf(0.5 + confidence / 2.0, n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, sd, confidence)


@dataclass(frozen=True)
class Difference:
    """A difference of means (a − b) with its interval and a two-sided t-test."""

    mean: float
    low: float
    high: float
    n: int  # pairs (paired) or total observations (unpaired)
    t: float
    p: float
    df: float
    confidence: float


def paired_difference(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *, confidence: float = 0.95
) -> Difference:
    """Mean of a − b over pairs, with a t-interval and the paired t-test (as scipy's ttest_rel)."""
    a_arr = np.asarray(a, dtype=np.float64).ravel()
    b_arr = np.asarray(b, dtype=np.float64).ravel()
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"paired samples need equal lengths, found {a_arr.size} and {b_arr.size}")
    diff = a_arr - b_arr
    diff = diff[np.isfinite(diff)]
    n = int(diff.size)
    if n == 0:
        return Difference(math.nan, math.nan, math.nan, 0, math.nan, math.nan, math.nan, confidence)
    mean = float(diff.mean())
    if n < 2:
        return Difference(mean, math.nan, math.nan, 1, math.nan, math.nan, math.nan, confidence)
    se = float(diff.std(ddof=1)) / math.sqrt(n)
    df = n - 1
    half = t_ppf(0.5 + confidence / 2.0, df) * se
    t = mean / se if se > 0 else (math.copysign(math.inf, mean) if mean else math.nan)
    return Difference(mean, mean - half, mean + half, n, t, two_sided_p(t, df), df, confidence)


def welch_difference(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *, confidence: float = 0.95
) -> Difference:
    """Mean(a) − mean(b) with Welch's interval (unequal variances), as scipy's ttest_ind."""
    a_arr, b_arr = _finite(a), _finite(b)
    na, nb = int(a_arr.size), int(b_arr.size)
    if na == 0 or nb == 0:
        return Difference(
            math.nan, math.nan, math.nan, na + nb, math.nan, math.nan, math.nan, confidence
        )
    mean = float(a_arr.mean() - b_arr.mean())
    if na < 2 or nb < 2:
        return Difference(
            mean, math.nan, math.nan, na + nb, math.nan, math.nan, math.nan, confidence
        )
    va, vb = float(a_arr.var(ddof=1)) / na, float(b_arr.var(ddof=1)) / nb
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(mean, mean, mean, na + nb, math.nan, math.nan, math.nan, confidence)
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    half = t_ppf(0.5 + confidence / 2.0, df) * se
    t = mean / se
    return Difference(
        mean, mean - half, mean + half, na + nb, t, two_sided_p(t, df), df, confidence
    )


@dataclass(frozen=True)
class OLSFit:
    """Ordinary least squares y ≈ X·coef, with classical (homoscedastic) standard errors."""

    names: tuple[str, ...]
    coef: np.ndarray
    se: np.ndarray
    low: np.ndarray
    high: np.ndarray
    t: np.ndarray
    p: np.ndarray
    cov: np.ndarray
    dof: int
    r2: float
    residual_sd: float
    n: int
    confidence: float

    def predict(self, x: Sequence[float] | np.ndarray) -> Interval:
        """Predicted mean at design row `x`, with a t-interval for that mean (not a new run)."""
        row = np.asarray(x, dtype=np.float64).ravel()
        value = float(row @ self.coef)
        var = float(row @ self.cov @ row)
        if self.dof < 1 or not math.isfinite(var):
            return Interval(value, math.nan, math.nan, self.n, math.nan, self.confidence)
        half = t_ppf(0.5 + self.confidence / 2.0, self.dof) * math.sqrt(max(var, 0.0))
        return Interval(
            value, value - half, value + half, self.n, math.sqrt(max(var, 0.0)), self.confidence
        )


def ols(
    X: np.ndarray,
    y: Sequence[float] | np.ndarray,
    *,
    names: Sequence[str] | None = None,
    confidence: float = 0.95,
    has_intercept: bool = True,
) -> OLSFit:
    """Fit y = X·β by least squares; X must have full column rank.

    Standard errors are sqrt(diag(σ² (XᵀX)⁻¹)) with σ² = RSS / (n − p). `has_intercept` says whether
    the columns of X span a constant (true for an intercept column, and for mixture shares that sum
    to 1), which decides how R² is centred.
    """
    X = np.asarray(X, dtype=np.float64)
    y_arr = np.asarray(y, dtype=np.float64).ravel()
    n, p = X.shape
    if y_arr.size != n:
        raise ValueError(f"X has {n} rows but y has {y_arr.size} values")
    rank = int(np.linalg.matrix_rank(X))
    if rank < p:
        raise ValueError(
            f"design matrix has rank {rank} < {p} columns: coefficients are not identified"
        )
    coef, *_ = np.linalg.lstsq(X, y_arr, rcond=None)
    resid = y_arr - X @ coef
    rss = float(resid @ resid)
    dof = n - p
    xtx_inv = np.linalg.inv(X.T @ X)
    if dof > 0:
        sigma2 = rss / dof
        cov = sigma2 * xtx_inv
        se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        crit = t_ppf(0.5 + confidence / 2.0, dof)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(se > 0, coef / se, np.nan)
        p_values = np.array([two_sided_p(float(v), dof) for v in t])
        low, high = coef - crit * se, coef + crit * se
        residual_sd = math.sqrt(sigma2)
    else:
        nan = np.full(p, np.nan)
        cov = np.full((p, p), np.nan)
        se, t, p_values, low, high = nan, nan, nan, nan, nan
        residual_sd = math.nan
    centre = y_arr.mean() if has_intercept else 0.0
    tss = float(((y_arr - centre) ** 2).sum())
    r2 = 1.0 - rss / tss if tss > 0 else math.nan
    labels = tuple(names) if names is not None else tuple(f"x{i}" for i in range(p))
    if len(labels) != p:
        raise ValueError(f"{len(labels)} names for {p} columns")
    return OLSFit(
        names=labels,
        coef=coef,
        se=se,
        low=low,
        high=high,
        t=t,
        p=p_values,
        cov=cov,
        dof=dof,
        r2=r2,
        residual_sd=residual_sd,
        n=n,
        confidence=confidence,
    )


def linear_contrast(fit: OLSFit, weights: Sequence[float] | np.ndarray) -> Difference:
    """Estimate of c·β with its t-interval and two-sided test of c·β = 0."""
    c = np.asarray(weights, dtype=np.float64).ravel()
    value = float(c @ fit.coef)
    var = float(c @ fit.cov @ c)
    if fit.dof < 1 or not math.isfinite(var):
        return Difference(
            value, math.nan, math.nan, fit.n, math.nan, math.nan, math.nan, fit.confidence
        )
    se = math.sqrt(max(var, 0.0))
    half = t_ppf(0.5 + fit.confidence / 2.0, fit.dof) * se
    t = value / se if se > 0 else math.nan
    return Difference(
        value,
        value - half,
        value + half,
        fit.n,
        t,
        two_sided_p(t, fit.dof),
        fit.dof,
        fit.confidence,
    )


def best_on_simplex(
    weights: Sequence[float] | np.ndarray,
    *,
    low: Sequence[float] | np.ndarray | None = None,
    high: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """The shares x (x ≥ 0, Σx = 1, low ≤ x ≤ high) that maximise weights·x.

    A linear objective over a box-bounded simplex is maximised greedily: start every share at its
    lower bound, then give what is left to the largest weights first, each up to its upper bound.

    >>> best_on_simplex([0.1, 0.5, 0.3], low=[0.2, 0.0, 0.1], high=[1.0, 0.4, 1.0]).round(6).tolist()
    [0.2, 0.4, 0.4]
    """
    w = np.asarray(weights, dtype=np.float64).ravel()
    k = w.size
    lo = np.zeros(k) if low is None else np.clip(np.asarray(low, dtype=np.float64), 0.0, 1.0)
    hi = np.ones(k) if high is None else np.clip(np.asarray(high, dtype=np.float64), 0.0, 1.0)
    if np.any(lo > hi + 1e-12):
        raise ValueError("a lower bound exceeds its upper bound")
    if lo.sum() > 1.0 + 1e-9 or hi.sum() < 1.0 - 1e-9:
        raise ValueError(
            f"no shares summing to 1 fit the bounds (lower bounds sum to {lo.sum():.3f}, "
            f"upper bounds to {hi.sum():.3f})"
        )
    x = lo.copy()
    left = 1.0 - x.sum()
    # Ties broken by position so the answer is deterministic.
    for i in sorted(range(k), key=lambda j: (-w[j], j)):
        if left <= 0:
            break
        take = min(hi[i] - x[i], left)
        x[i] += take
        left -= take
    return x
