"""Statistics for comparing routing policies fairly: confidence intervals over seeds, paired differences
(common random numbers), RouterBench's AIQ, accuracy at a given spend, and a bisection that finds the
knob value reaching a target spend. numpy and scipy only, so it is usable on any results table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import pandas as pd
from scipy import stats
from scipy.integrate import trapezoid

ArrayLike: TypeAlias = Sequence[float] | np.ndarray | pd.Series


def _finite(x: ArrayLike) -> np.ndarray:
    a = np.asarray(x, dtype=float).ravel()
    return a[np.isfinite(a)]


def mean_ci(x: ArrayLike, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi): Student-t interval for the mean of ``x`` (non-finite values dropped).

    With one value there is no spread to estimate, so the interval is (nan, nan): the report says
    "n = 1, no interval" rather than showing a zero-width interval that looks certain. Empty input
    gives all-nan. Identical values give a zero-width interval (that is what the data says).
    """
    a = _finite(x)
    if a.size == 0:
        return (float("nan"),) * 3
    mean = float(a.mean())
    if a.size == 1:
        return mean, float("nan"), float("nan")
    sem = float(a.std(ddof=1)) / np.sqrt(a.size)
    half = float(stats.t.ppf(0.5 + level / 2, df=a.size - 1)) * sem
    return mean, mean - half, mean + half


def paired_diff_ci(
    x: ArrayLike | pd.Series, y: ArrayLike | pd.Series, level: float = 0.95
) -> tuple[float, float, float, int]:
    """(mean of x − y, lo, hi, pairs): Student-t interval on per-seed differences.

    Runs with the same seed see the same arrivals and queries (common random numbers), so the
    workload's noise cancels in x − y and the interval is much tighter than comparing two independent
    means. Series indexed by seed are aligned on the seed (seeds present in only one are dropped);
    plain arrays must already be in matching seed order. Pairs with a non-finite side are dropped.
    """
    if isinstance(x, pd.Series) and isinstance(y, pd.Series):
        x, y = x.align(y, join="inner")
    a, b = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples need equal lengths, got {a.size} and {b.size}")
    d = a - b
    d = d[np.isfinite(d)]
    mean, lo, hi = mean_ci(d, level)
    return mean, lo, hi, int(d.size)


def _by_seed(results: pd.DataFrame, group: str, label: str, metric: str) -> pd.Series:
    rows = results[results[group] == label]
    dup = rows["seed"].duplicated()
    if dup.any():
        raise ValueError(f"{group} {label!r} has several runs for seed {int(rows['seed'][dup].iloc[0])}; "
                         "pairing by seed needs one run per seed")
    return pd.Series(pd.to_numeric(rows[metric], errors="coerce").to_numpy(), index=rows["seed"].to_numpy())


def compare_table(
    results: pd.DataFrame,
    metrics: list[str],
    baseline: str | None,
    *,
    group: str = "policy",
    level: float = 0.95,
) -> pd.DataFrame:
    """One row per (``group`` value, metric): n, mean, CI, and the paired difference to ``baseline``.

    The difference pairs runs by seed (see :func:`paired_diff_ci`); it is NaN for the baseline itself,
    when there is no baseline, or when fewer than one common seed exists. Metrics missing from the
    table are skipped. Raises ValueError when a group has two runs with one seed (pairing is ambiguous).
    """
    rows = []
    labels = list(dict.fromkeys(results[group]))
    for metric in (m for m in metrics if m in results.columns):
        base = _by_seed(results, group, baseline, metric) if baseline is not None and baseline in labels else None
        for label in labels:
            values = _by_seed(results, group, label, metric)
            mean, lo, hi = mean_ci(values.to_numpy(), level)
            diff = (float("nan"),) * 3 + (0,)
            if base is not None and label != baseline:
                diff = paired_diff_ci(values, base, level)
            rows.append({group: label, "metric": metric, "n": int(np.isfinite(values).sum()), "mean": mean,
                         "ci_lo": lo, "ci_hi": hi, "diff_vs_baseline": diff[0], "diff_ci_lo": diff[1],
                         "diff_ci_hi": diff[2], "pairs": diff[3]})
    return pd.DataFrame(rows, columns=[group, "metric", "n", "mean", "ci_lo", "ci_hi", "diff_vs_baseline",
                                       "diff_ci_lo", "diff_ci_hi", "pairs"])


def _frontier(cost: ArrayLike, accuracy: ArrayLike) -> np.ndarray:
    """Points (k × 2, increasing cost) of the non-decreasing upper convex hull of (cost, accuracy).

    Steps: drop non-finite points; at equal cost keep the best accuracy; drop every point that is not
    strictly more accurate than all cheaper ones (paying more for less is never chosen); then keep the
    upper convex hull (mixing two configurations query by query reaches any point on the segment
    between them, so points below a segment are dominated). The hull of a non-decreasing point set
    ending at its maximum is itself non-decreasing.
    """
    c, a = np.asarray(cost, dtype=float).ravel(), np.asarray(accuracy, dtype=float).ravel()
    ok = np.isfinite(c) & np.isfinite(a)
    pts = sorted(zip(c[ok], a[ok], strict=True), key=lambda p: (p[0], -p[1]))
    pareto: list[tuple[float, float]] = []
    for p in pts:
        if not pareto or p[1] > pareto[-1][1]:
            pareto.append(p)
    hull: list[tuple[float, float]] = []
    for p in pareto:  # Andrew's monotone chain, upper half
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], p) >= 0:
            hull.pop()
        hull.append(p)
    return np.array(hull, dtype=float).reshape(-1, 2)


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def aiq(cost: ArrayLike, accuracy: ArrayLike, cost_range: tuple[float, float] | None = None) -> float:
    """RouterBench's AIQ (average improvement in quality): the mean height of the router's
    non-decreasing convex hull of (cost, accuracy) over a cost range, i.e. the area under it divided
    by the range's width.

    Construction (see :func:`_frontier`): the hull's vertices joined by straight lines. Over
    ``cost_range`` (default: the points' own min..max cost) the curve is 0 below the cheapest point
    (the router cannot operate for less) and flat at the best accuracy beyond the dearest point
    (spending more is allowed, not useful). Pass one common range to compare routers fairly.
    Edge cases: no finite point -> nan; one point, or all points at one cost, with the default range
    (zero width) -> the best accuracy (the curve's only height); a zero-width given range -> the
    curve's height at that cost.
    """
    hull = _frontier(cost, accuracy)
    if hull.shape[0] == 0:
        return float("nan")
    lo, hi = cost_range if cost_range is not None else (hull[0, 0], hull[-1, 0])
    if hi < lo:
        raise ValueError(f"cost_range must be (low, high), got ({lo}, {hi})")
    if hi == lo:
        return float(_height(hull, lo))
    grid = np.unique(np.concatenate([[lo, hi], hull[:, 0], np.nextafter(hull[:1, 0], -np.inf)]))
    grid = grid[(grid >= lo) & (grid <= hi)]
    return float(trapezoid(_height(hull, grid), grid) / (hi - lo))


def _height(hull: np.ndarray, c: float | np.ndarray) -> np.ndarray:
    """The hull curve at cost ``c``: 0 below the cheapest vertex, flat after the dearest."""
    y = np.interp(c, hull[:, 0], hull[:, 1], left=0.0, right=hull[-1, 1])
    return np.where(np.asarray(c) < hull[0, 0], 0.0, y)


def accuracy_at_spend(cost: ArrayLike, accuracy: ArrayLike, spend: float) -> float | None:
    """Accuracy a policy reaches at ``spend``, interpolated linearly between its measured sweep points.

    Points are sorted by cost (points at one cost are averaged). This follows the configurations the
    simulator actually ran, not the convex hull (which assumes mixing configurations). None when
    ``spend`` lies outside the measured cost range: extrapolating a policy's curve would invent data.
    """
    c, a = np.asarray(cost, dtype=float).ravel(), np.asarray(accuracy, dtype=float).ravel()
    ok = np.isfinite(c) & np.isfinite(a)
    if not ok.any() or not np.isfinite(spend):
        return None
    df = pd.DataFrame({"c": c[ok], "a": a[ok]}).groupby("c", as_index=False)["a"].mean()
    if spend < df["c"].iloc[0] or spend > df["c"].iloc[-1]:
        return None
    return float(np.interp(spend, df["c"].to_numpy(), df["a"].to_numpy()))


@dataclass(frozen=True)
class BisectResult:
    """``value``: the knob setting found (or the closest end when unreachable); ``achieved``: its
    spend; ``reached``: whether ``achieved`` is within rtol of the target; ``iterations``: calls of f."""

    value: float
    achieved: float
    reached: bool
    iterations: int


def bisect_knob(
    f: Callable[[float], float],
    lo: float,
    hi: float,
    target: float,
    *,
    rtol: float = 0.01,
    increasing: bool = True,
    max_iter: int = 30,
) -> BisectResult:
    """Find a knob value whose spend ``f(knob)`` is within ``rtol`` of ``target``, for f monotone on
    [lo, hi] (``increasing`` says which way). Each call of f is a simulation, so this evaluates the ends
    once, reports a target outside [f(lo), f(hi)] as unreachable (with the nearest end) instead of
    searching, and otherwise halves the bracket until close enough or ``max_iter`` calls are spent
    (then returns the closest value seen, reached=False). Simulated spend is a step function of the
    knob, so an exact match is not always possible; hence the tolerance.
    """
    tol = rtol * abs(target)
    sign = 1.0 if increasing else -1.0
    seen: list[tuple[float, float]] = [(lo, f(lo)), (hi, f(hi))]

    def result(reached: bool) -> BisectResult:
        value, achieved = min(seen, key=lambda p: abs(p[1] - target))
        return BisectResult(value, achieved, reached, len(seen))

    (_, s_lo), (_, s_hi) = seen
    if any(abs(s - target) <= tol for s in (s_lo, s_hi)):
        return result(True)
    if sign * (target - s_lo) < 0 or sign * (s_hi - target) < 0:
        return result(False)
    a, b = lo, hi
    while len(seen) < max_iter:
        mid = 0.5 * (a + b)
        s = f(mid)
        seen.append((mid, s))
        if abs(s - target) <= tol:
            return result(True)
        if sign * (s - target) < 0:
            a = mid
        else:
            b = mid
    return result(False)
