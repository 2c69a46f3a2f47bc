"""The shared machinery: auction vs HiGHS, dominance, repair, the multiplier search, the normal form."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import RoutingProblem
from policies.batch import multiplier, transport
from policies.batch.dominance import dominated
from policies.batch.linear_form import LinearForm
from policies.batch.repair import improve, repair_capacity, repair_side
from tests.policies.conftest import problems, realistic


def _instance(n: int, k: int, seed: int, style: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if style == "ties":
        w = rng.integers(0, 3, size=(n, k)).astype(np.float64)
    elif style == "identical":  # the auction's worst case: every query wants the same column
        w = np.tile(rng.random(k), (n, 1)) + rng.random((n, k)) * 1e-6
    else:
        w = rng.normal(size=(n, k))
    cap = rng.integers(0, n + 1, size=k)
    short = n - int(cap.sum())
    if short > 0:
        cap[rng.integers(k)] += short
    return w, cap


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 60), st.integers(1, 6), st.integers(0, 2**32 - 1),
       st.sampled_from(["normal", "ties", "identical"]))
def test_auction_matches_highs(n: int, k: int, seed: int, style: str) -> None:
    w, cap = _instance(n, k, seed, style)
    res = transport.solve(w, cap)
    ref = transport.exact(w, cap)
    assert np.all(np.bincount(res.cols, minlength=k) <= cap)
    assert res.value == pytest.approx(ref.value, abs=1e-6 * max(1.0, abs(ref.value)))
    assert res.bound >= ref.value - 1e-9  # the certificate is a true upper bound


def test_auction_price_war_is_finished_by_augmenting_paths() -> None:
    w, cap = _instance(1500, 5, 1, "identical")
    cap = np.full(5, 300)
    res = transport.auction(w, cap)
    assert res is not None, "should not need HiGHS"
    assert res.rounds > transport.SSP_AFTER
    # HiGHS stops within its own tolerances (~1e-7 per query here), so it is the auction's equal or worse.
    assert res.value >= transport.exact(w, cap).value - 1e-9
    assert res.bound - res.value <= 1e-6


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 20), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_dominance_keeps_a_column_and_the_optimum(n: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    w = rng.integers(0, 3, size=(n, k)).astype(np.float64)  # many ties between columns
    r = rng.integers(0, 3, size=(n, k)).astype(np.float64)
    cap = np.where(rng.random(k) < 0.5, n, rng.integers(0, n + 1, size=k))
    cap[0] = n
    mask = dominated(cap, [w, -r])
    assert not mask.all(axis=1).any()
    # Dropped pairs are never needed: the capacity-only optimum is the same without them.
    ref = transport.exact(w, cap)
    pruned = transport.exact(w, cap, fixed_zero=mask)
    assert pruned.value == pytest.approx(ref.value, abs=1e-9)
    assert not mask[np.arange(n), pruned.cols].any()


@settings(max_examples=60, deadline=None)
@given(problems(max_n=8, max_m=4, sides=("budget", "alpha"), reject=False, infeasible=False))
def test_repair_then_improve_never_breaks_what_holds(problem: RoutingProblem) -> None:
    form = LinearForm.from_problem(problem)
    start = np.argmax(form.score, axis=1)  # greedy: may overfill and break the side row
    fixed = repair_capacity(form, start)
    assert form.cap_ok(fixed)
    fixed = repair_side(form, fixed)
    assert form.cap_ok(fixed)
    better = improve(form, fixed)
    assert form.cap_ok(better)
    assert form.value(better) >= form.value(fixed) - 1e-12
    if form.side_ok(fixed):
        assert form.side_ok(better)


def test_multiplier_search_brackets_the_budget() -> None:
    p = realistic(400, 6, "max_quality", seed=2)
    form = LinearForm.from_problem(p)
    s = multiplier.search(form, lambda w: transport.solve(w, form.cap))
    assert s.best is not None and s.hi is not None and s.lo is not None
    assert s.lo.nu < s.hi.nu
    assert s.lo.violation > form.row_tol >= s.hi.violation  # infeasible below, feasible above
    assert s.bound >= s.best.value
    assert s.evaluations <= 60


def test_multiplier_search_stops_at_zero_when_the_row_is_slack() -> None:
    p = realistic(100, 4, "max_quality", seed=0, tightness=5.0)  # budget above any spend
    form = LinearForm.from_problem(p)
    s = multiplier.search(form, lambda w: transport.solve(w, form.cap))
    assert s.best is not None and s.best.nu == 0.0 and s.lo is None
    assert s.evaluations == 2  # the first guess, then ν = 0


def test_linear_form_round_trip_and_units() -> None:
    p = RoutingProblem(quality=np.array([[0.5, 0.9], [0.4, 0.7]]), cost=np.array([[1e-3, 4e-3], [2e-3, 8e-3]]),
                       min_quality=0.6, allow_reject=True, capacity=np.array([1.0, np.inf]))
    form = LinearForm.from_problem(p)
    assert form.k == 3 and form.reject_col == 2
    a = np.array([1, -1])
    cols = form.from_assignment(a)
    assert cols.tolist() == [1, 2]
    assert form.to_assignment(cols).tolist() == [1, -1]
    assert form.objective(cols) == pytest.approx(4e-3)  # min-cost: Σ cost in USD
    assert form.slack(cols) == pytest.approx(0.9 - 1.2)  # Σ quality − α n
    assert not form.side_ok(cols)
    assert form.cap.tolist() == [1, 2, 2]
