"""Arrival processes: statistics against their sampling distributions, exact batches, determinism.

Tolerances are Z standard errors of the statistic under test (Z = 4: a two-sided miss rate of 6e-5
per check for a correct generator), and KS tests reject at p < 1e-3. Seeds are fixed, so the outcomes
are deterministic; the tolerances say how far a correct generator could legitimately land.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats

from sim.rng import stream
from sim.workload import arrivals as A

Z = 4.0
KS_ALPHA = 1e-3


def _rng(name: str = "arrivals", seed: int = 1234) -> np.random.Generator:
    return stream(seed, name)


def _gamma_cv_se(cv: float, n: int) -> float:
    """Delta-method standard error of the sample CV of n Gamma(k = 1/cv²) draws.

    With central moments μ2, μ3, μ4 and mean μ, Var(ĉ²) ≈ [(μ4 − μ2²)/μ⁴ + 4μ2³/μ⁶ − 4μ2μ3/μ⁵] / n and
    Var(ĉ) = Var(ĉ²) / (4c²). For the exponential (cv = 1) this is 1/n.
    """
    k = 1.0 / cv**2
    mu, m2, m3, m4 = k, k, 2 * k, 3 * k * k + 6 * k
    var_c2 = ((m4 - m2**2) / mu**4 + 4 * m2**3 / mu**6 - 4 * m2 * m3 / mu**5) / n
    return math.sqrt(var_c2 / (4 * cv**2))


def _cv(x: np.ndarray) -> float:
    return float(np.std(x, ddof=1) / np.mean(x))


def _check_valid(a: A.Arrivals) -> None:
    assert a.times.dtype == np.float64 and a.group.dtype == np.int64
    assert np.all(np.diff(a.times) >= 0)
    assert a.n == 0 or a.times[0] >= 0


# --- Poisson --------------------------------------------------------------------------------------


def test_poisson_count_matches_rate_within_poisson_error() -> None:
    rate, duration = 50.0, 2_000.0
    a = A.poisson(rate, _rng(), duration_s=duration)
    _check_valid(a)
    expected = rate * duration
    assert abs(a.n - expected) <= Z * math.sqrt(expected)
    assert np.array_equal(a.group, np.arange(a.n))
    assert a.times[-1] < duration


def test_poisson_gaps_are_exponential_with_cv_one() -> None:
    rate = 20.0
    a = A.poisson(rate, _rng(), num_queries=50_000)
    gaps = np.diff(np.concatenate([[0.0], a.times]))
    assert stats.kstest(gaps, "expon", args=(0, 1 / rate)).pvalue > KS_ALPHA
    assert abs(_cv(gaps) - 1.0) <= Z / math.sqrt(len(gaps))
    assert abs(gaps.mean() * rate - 1.0) <= Z / math.sqrt(len(gaps))  # exponential: sd = mean


def test_num_queries_is_exact_and_a_prefix_of_the_duration_run() -> None:
    a = A.poisson(5.0, _rng(), num_queries=1_000)
    b = A.poisson(5.0, _rng(), duration_s=1_000.0)
    assert a.n == 1_000
    assert np.array_equal(a.times, b.times[:1_000])  # chunked draws continue one stream


def test_zero_length_requests_give_empty_arrivals() -> None:
    for a in (A.poisson(1.0, _rng(), num_queries=0), A.gamma(1.0, 2.0, _rng(), duration_s=0.0)):
        assert a.n == 0 and a.num_groups == 0


# --- Gamma ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cv", [0.5, 2.0, 3.0])
def test_gamma_gaps_have_requested_mean_and_cv(cv: float) -> None:
    rate, n = 10.0, 200_000
    a = A.gamma(rate, cv, _rng(f"gamma{cv}"), num_queries=n)
    gaps = np.diff(np.concatenate([[0.0], a.times]))
    assert abs(gaps.mean() * rate - 1.0) <= Z * cv / math.sqrt(n)
    assert abs(_cv(gaps) - cv) <= Z * _gamma_cv_se(cv, n)
    # With cv = 3 about 5 % of gaps are below the float resolution of t (~1e-12 s at t ~ 1e4 s) and
    # come back from diff(times) as 0, so the KS test compares gaps above 1e-6 s with the Gamma
    # distribution conditioned on X > 1e-6 s.
    dist = stats.gamma(1 / cv**2, 0, cv**2 / rate)
    floor = 1e-6
    big = gaps[gaps > floor]
    assert stats.kstest(big, lambda x: (dist.cdf(x) - dist.cdf(floor)) / dist.sf(floor)).pvalue > KS_ALPHA


def test_gamma_cv_one_is_poisson_bit_for_bit() -> None:
    assert np.array_equal(
        A.gamma(3.0, 1.0, _rng(), duration_s=500).times, A.poisson(3.0, _rng(), duration_s=500).times
    )


def test_gamma_cv_zero_is_a_clock() -> None:
    a = A.gamma(4.0, 0.0, _rng(), duration_s=10.0)
    assert np.allclose(a.times, np.arange(1, 40) * 0.25)


# --- Batch ----------------------------------------------------------------------------------------


def test_batch_sizes_and_intervals_are_exact() -> None:
    a = A.batch(8, 2.5, duration_s=100.0)
    assert a.n == 40 * 8 and a.num_groups == 40
    assert np.array_equal(np.bincount(a.group), np.full(40, 8))
    assert np.array_equal(a.times[::8], np.arange(40) * 2.5)
    assert np.all(a.times == a.times[a.group * 8])  # one time per batch


def test_batch_num_queries_cuts_the_last_batch_and_offset_shifts() -> None:
    a = A.batch(4, 1.0, num_queries=10, offset_s=3.0)
    assert np.array_equal(a.group, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    assert np.array_equal(a.times, [3, 3, 3, 3, 4, 4, 4, 4, 5, 5])
    assert A.batch(4, 1.0, duration_s=5.5, offset_s=3.0).num_groups == 3  # batches at 3, 4, 5


def test_batch_window_is_half_open() -> None:
    assert A.batch(2, 1.0, duration_s=3.0).num_groups == 3  # 0, 1, 2 — not 3
    assert A.batch(2, 1.0, duration_s=3.0000001).num_groups == 4


# --- Modulated ------------------------------------------------------------------------------------


def test_piecewise_modulation_tracks_each_step() -> None:
    rate = 200.0
    steps = [(0.0, 1.0), (100.0, 3.0), (200.0, 0.0), (300.0, 0.5)]
    a = A.modulated(rate, A.piecewise(steps), _rng(), duration_s=400.0)
    _check_valid(a)
    edges = [0.0, 100.0, 200.0, 300.0, 400.0]
    counts = np.histogram(a.times, bins=edges)[0]
    for count, (_, mult) in zip(counts, steps, strict=True):
        expected = rate * mult * 100.0
        assert abs(count - expected) <= Z * math.sqrt(expected)
    assert counts[2] == 0


def test_diurnal_modulation_tracks_the_sinusoid_per_phase_bin() -> None:
    rate, period, periods = 100.0, 50.0, 100
    profile = A.DiurnalProfile(amplitude=0.8, period_s=period, phase=0.7)
    a = A.modulated(rate, profile, _rng(), duration_s=period * periods)
    edges = np.linspace(0.0, period, 11)
    counts = np.histogram(np.mod(a.times, period), bins=edges)[0]
    expected = rate * periods * np.diff(profile.cumulative(edges))
    assert np.all(np.abs(counts - expected) <= Z * np.sqrt(expected))
    assert counts.max() > 2 * counts.min()  # the modulation is really there


@pytest.mark.parametrize(
    "profile",
    [A.DiurnalProfile(amplitude=1.0, period_s=30.0, phase=-1.0), A.piecewise([(0, 2.0), (7, 0.2), (20, 1)])],
    ids=["diurnal", "piecewise"],
)
def test_time_rescaled_gaps_are_exponential(profile: A.Profile) -> None:
    """Time-rescaling theorem: gaps of rate·Λ(t) are Exp(1) exactly when the intensity is rate·f(t)."""
    rate = 10.0
    a = A.modulated(rate, profile, _rng(), num_queries=30_000)
    rescaled = np.diff(np.concatenate([[0.0], rate * profile.cumulative(a.times)]))
    assert stats.kstest(rescaled, "expon").pvalue > KS_ALPHA


def test_modulated_gamma_keeps_its_cv_in_operational_time() -> None:
    rate, cv, n = 10.0, 2.0, 100_000
    profile = A.DiurnalProfile(amplitude=0.6, period_s=60.0)
    a = A.modulated(rate, profile, _rng(), cv=cv, num_queries=n)
    rescaled = np.diff(np.concatenate([[0.0], rate * profile.cumulative(a.times)]))
    assert abs(_cv(rescaled) - cv) <= Z * _gamma_cv_se(cv, n)
    assert stats.kstest(rescaled, "gamma", args=(1 / cv**2, 0, cv**2)).pvalue > KS_ALPHA


def test_profile_inverse_round_trips() -> None:
    u = np.sort(_rng("u").uniform(0, 1_000, 10_000))
    diurnal = A.DiurnalProfile(amplitude=1.0, period_s=86_400.0, phase=0.3)
    assert np.allclose(diurnal.cumulative(diurnal.inverse(u * 100)), u * 100, rtol=0, atol=1e-8)
    steps = A.piecewise([(0, 0.0), (5, 2.0), (50, 0.0), (60, 1.0)])
    t = steps.inverse(u)
    assert np.allclose(steps.cumulative(t), u, rtol=0, atol=1e-9)
    assert not np.any((t > 50) & (t < 60)) and not np.any(t < 5)  # off steps get no arrivals


def test_profile_ending_off_cannot_supply_num_queries() -> None:
    profile = A.piecewise([(0, 1.0), (10, 0.0)])
    assert A.modulated(5.0, profile, _rng(), duration_s=100.0).times.max() < 10.0
    with pytest.raises(ValueError, match="switches arrivals off"):
        A.modulated(5.0, profile, _rng(), num_queries=10_000)


# --- Determinism, validation, speed ---------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda r: A.poisson(7.0, r, duration_s=100),
        lambda r: A.gamma(7.0, 2.5, r, duration_s=100),
        lambda r: A.modulated(7.0, A.DiurnalProfile(0.5, 20.0), r, cv=1.5, duration_s=100),
    ],
    ids=["poisson", "gamma", "modulated"],
)
def test_same_seed_same_arrays_other_seed_other_arrays(
    make: Callable[[np.random.Generator], A.Arrivals],
) -> None:
    a, b, c = make(_rng(seed=7)), make(_rng(seed=7)), make(_rng(seed=8))
    assert np.array_equal(a.times, b.times) and np.array_equal(a.group, b.group)
    assert not (a.n == c.n and np.array_equal(a.times, c.times))


@pytest.mark.parametrize(
    "call",
    [
        lambda: A.poisson(1.0, _rng()),
        lambda: A.poisson(1.0, _rng(), duration_s=1, num_queries=1),
        lambda: A.poisson(0.0, _rng(), duration_s=1),
        lambda: A.poisson(1.0, _rng(), duration_s=-1),
        lambda: A.poisson(1.0, _rng(), num_queries=2.5),  # type: ignore[arg-type]
        lambda: A.gamma(1.0, -1.0, _rng(), duration_s=1),
        lambda: A.batch(0, 1.0, duration_s=1),
        lambda: A.batch(2, 0.0, duration_s=1),
        lambda: A.DiurnalProfile(amplitude=1.5),
        lambda: A.piecewise([(1, 1.0)]),
        lambda: A.piecewise([(0, 1.0), (0, 2.0)]),
        lambda: A.piecewise([(0, -1.0)]),
    ],
)
def test_invalid_arguments_raise_value_error(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        call()


def test_arrivals_rejects_decreasing_times_and_split_groups() -> None:
    with pytest.raises(ValueError):
        A.Arrivals(times=np.array([1.0, 0.5]), group=np.array([0, 1]))
    with pytest.raises(ValueError):
        A.Arrivals(times=np.array([0.0, 1.0]), group=np.array([0, 0]))


def test_one_million_arrivals_is_fast() -> None:
    start = time.perf_counter()
    a = A.poisson(1_000.0, _rng(), duration_s=1_000.0)
    b = A.modulated(1_000.0, A.DiurnalProfile(0.9, 100.0), _rng(), num_queries=1_000_000)
    elapsed = time.perf_counter() - start
    assert a.n > 990_000 and b.n == 1_000_000
    assert elapsed < 5.0  # ~0.5 s on a 2-core machine; the bound only catches a non-vectorised path
