"""Statistics used by the comparison report: interval coverage, paired differences, AIQ, accuracy at a
spend, and the spend-matching bisection."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from reports.stats import accuracy_at_spend, aiq, bisect_knob, compare_table, mean_ci, paired_diff_ci


def test_mean_ci_covers_the_true_mean_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(12345)
    draws, n, mu = 2000, 5, 3.0
    hits = 0
    for _ in range(draws):
        _, lo, hi = mean_ci(rng.normal(mu, 2.0, size=n))
        hits += lo <= mu <= hi
    # 99.9 % binomial band around 0.95 for 2000 draws: a wrong quantile (e.g. normal z instead of t,
    # coverage ~0.88 at n = 5) falls far outside it.
    lo_ok, hi_ok = stats.binom.ppf([0.0005, 0.9995], draws, 0.95)
    assert lo_ok <= hits <= hi_ok


def test_mean_ci_hand_example_and_edge_cases() -> None:
    mean, lo, hi = mean_ci([1.0, 2.0, 3.0])
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert mean == pytest.approx(2.0) and lo == pytest.approx(2 - half) and hi == pytest.approx(2 + half)
    m1, lo1, hi1 = mean_ci([4.0])
    assert m1 == 4.0 and math.isnan(lo1) and math.isnan(hi1)
    assert all(math.isnan(v) for v in mean_ci([]))
    assert mean_ci([2.0, float("nan"), 2.0]) == (2.0, 2.0, 2.0)


def test_paired_difference_hand_example() -> None:
    x = pd.Series([10.0, 12.0, 14.0], index=[3, 1, 2])
    y = pd.Series([9.0, 11.0, 12.0, 99.0], index=[1, 2, 3, 4])  # seed 4 has no partner: dropped
    mean, lo, hi, pairs = paired_diff_ci(x, y)
    # pairs by seed: 1: 12-9=3, 2: 14-11=3, 3: 10-12=-2
    d = np.array([3.0, 3.0, -2.0])
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert pairs == 3
    assert mean == pytest.approx(4 / 3) and lo == pytest.approx(4 / 3 - half) and hi == pytest.approx(4 / 3 + half)


def test_paired_interval_is_tighter_than_unpaired_on_correlated_runs() -> None:
    rng = np.random.default_rng(7)
    workload = rng.normal(0.0, 5.0, size=20)  # shared noise: same seed, same queries
    x = 1.0 + workload + rng.normal(0, 0.2, 20)
    y = workload + rng.normal(0, 0.2, 20)
    pmean, plo, phi, _ = paired_diff_ci(x, y)
    _, xlo, xhi = mean_ci(x)
    _, ylo, yhi = mean_ci(y)
    unpaired_half = math.hypot((xhi - xlo) / 2, (yhi - ylo) / 2)
    assert (phi - plo) / 2 < unpaired_half / 5
    assert pmean == pytest.approx(1.0, abs=0.2)


def test_compare_table_pairs_by_seed_and_flags_the_baseline() -> None:
    results = pd.DataFrame({
        "policy": ["a", "a", "a", "b", "b", "b"],
        "seed": [1, 2, 3, 3, 2, 1],
        "accuracy": [0.5, 0.6, 0.7, 0.75, 0.65, 0.55],
    })
    table = compare_table(results, ["accuracy", "not_a_metric"], baseline="a")
    assert list(table["policy"]) == ["a", "b"] and set(table["metric"]) == {"accuracy"}
    b = table.set_index("policy").loc["b"]
    assert b["n"] == 3 and b["pairs"] == 3
    assert b["diff_vs_baseline"] == pytest.approx(0.05)
    assert b["diff_ci_hi"] - b["diff_ci_lo"] == pytest.approx(0.0, abs=1e-12)  # constant per-seed gap
    assert math.isnan(table.set_index("policy").loc["a", "diff_vs_baseline"])
    no_base = compare_table(results, ["accuracy"], baseline=None)
    assert no_base["diff_vs_baseline"].isna().all()
    with pytest.raises(ValueError, match="several runs for seed"):
        compare_table(pd.concat([results, results.iloc[:1]]), ["accuracy"], baseline="a")


def test_aiq_on_a_hand_computed_frontier() -> None:
    # points: (0, .2) (1, .5) (2, .6) (3, .9) (2.5, .4 dominated) (4, .85 more cost, less accuracy)
    cost = [0, 1, 2, 3, 2.5, 4]
    acc = [0.2, 0.5, 0.6, 0.9, 0.4, 0.85]
    # non-decreasing hull over [0, 3]: (0,.2) (1,.5) (3,.9) — (2,.6) lies below the (1,.5)-(3,.9) chord
    area = (0.2 + 0.5) / 2 * 1 + (0.5 + 0.9) / 2 * 2
    assert aiq(cost, acc) == pytest.approx(area / 3)
    # over a common range [-1, 5]: zero below the cheapest point, flat at .9 beyond 3
    assert aiq(cost, acc, cost_range=(-1, 5)) == pytest.approx((area + 0.9 * 2) / 6)


def test_aiq_edge_cases() -> None:
    assert aiq([2.0], [0.7]) == pytest.approx(0.7)
    assert aiq([1.0, 1.0, 1.0], [0.3, 0.8, 0.5]) == pytest.approx(0.8)
    assert math.isnan(aiq([], []))
    assert aiq([1.0], [0.6], cost_range=(0.0, 2.0)) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        aiq([1.0], [0.5], cost_range=(2.0, 1.0))


def test_accuracy_at_spend_interpolates_measured_points() -> None:
    cost, acc = [3.0, 1.0, 2.0, 2.0], [0.9, 0.5, 0.6, 0.8]  # two runs at cost 2 average to .7
    assert accuracy_at_spend(cost, acc, 1.5) == pytest.approx(0.6)
    assert accuracy_at_spend(cost, acc, 2.5) == pytest.approx(0.8)
    assert accuracy_at_spend(cost, acc, 1.0) == pytest.approx(0.5)
    assert accuracy_at_spend(cost, acc, 0.99) is None
    assert accuracy_at_spend(cost, acc, 3.01) is None
    assert accuracy_at_spend([], [], 1.0) is None


def test_bisect_finds_the_knob_on_a_monotone_curve() -> None:
    calls: list[float] = []

    def spend(knob: float) -> float:
        calls.append(knob)
        return 10.0 * knob**2

    res = bisect_knob(spend, 0.0, 2.0, target=12.0, rtol=0.01)
    assert res.reached and abs(res.achieved - 12.0) <= 0.12
    assert res.value == pytest.approx(math.sqrt(1.2), rel=0.01)
    assert res.iterations == len(calls) < 30


def test_bisect_decreasing_curve_and_unreachable_targets() -> None:
    def spend(lam: float) -> float:
        return 100.0 / (1.0 + lam)

    res = bisect_knob(spend, 0.0, 9.0, target=20.0, increasing=False)
    assert res.reached and res.value == pytest.approx(4.0, rel=0.02)
    high = bisect_knob(spend, 0.0, 9.0, target=500.0, increasing=False)
    assert not high.reached and high.value == 0.0 and high.achieved == 100.0 and high.iterations == 2
    low = bisect_knob(spend, 0.0, 9.0, target=1.0, increasing=False)
    assert not low.reached and low.value == 9.0


def test_bisect_gives_up_on_a_step_curve_after_max_iter() -> None:
    def step(knob: float) -> float:
        return 0.0 if knob < 0.5 else 10.0  # no knob spends 5

    res = bisect_knob(step, 0.0, 1.0, target=5.0, max_iter=8)
    assert not res.reached and res.iterations == 8 and res.achieved in (0.0, 10.0)
