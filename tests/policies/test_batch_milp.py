"""milp: exact against enumeration, precise infeasibility reasons, parameters, time limit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from policies import InvalidParameterError, RoutingProblem, check_assignment, solve
from tests.policies.conftest import assert_consistent, brute_force, objective_close, problems, realistic

EXACT = {"mip_rel_gap": 0.0}


@settings(max_examples=150, deadline=None)
@given(problems(max_n=6, max_m=3))
def test_milp_matches_enumeration(problem: RoutingProblem) -> None:
    res = solve(problem, "milp", **EXACT)
    assert_consistent(problem, res)
    best, _ = brute_force(problem)
    if best is None:
        assert res.status == "infeasible"
    else:
        assert res.status == "optimal", res.message
        assert objective_close(res.objective, best), (res.objective, best)


def _ulp_tie() -> RoutingProblem:
    """Found by hypothesis: LP rounding and branch-and-bound reach the same assignment, whose
    objective HiGHS sums to 0.5 and numpy to 0.5000000000000001; the "better" incumbent used to
    replace HiGHS's proven optimum as ``feasible``. The grid floats matter (0.35 is
    ``linspace(0, 1, 21)[7]`` = 0.35000000000000003; a literal 0.35 does not reproduce it)."""
    grid = np.linspace(0.0, 1.0, 21)
    quality, cost = np.zeros((6, 3)), np.zeros((6, 3))
    quality[2, 2], quality[3, 0], quality[4, 2], quality[5, 0] = grid[2], grid[7], grid[1], grid[1]
    cost[5, 0] = 1e-3
    return RoutingProblem(quality=quality, cost=cost, capacity=np.full(3, np.inf), budget=0.5 * 1e-3)


def _floor_within_highs_tolerance() -> RoutingProblem:
    """Found by hypothesis in CI: a floor (α·n ≈ 3e-9) HiGHS meets only within its 1e-7 tolerance, with
    every model full, so no single move restores it; exchanging the two queries does (at equal cost)."""
    return RoutingProblem(quality=np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.05]]), cost=np.zeros((2, 3)),
                          capacity=np.array([0.0, 1.0, 1.0]), min_quality=1.4901161193847657e-09)


@settings(max_examples=60, deadline=None)
@given(problems(max_n=6, max_m=3))
@example(problem=_ulp_tie())
@example(problem=_floor_within_highs_tolerance())
def test_lp_first_matches_enumeration(problem: RoutingProblem) -> None:
    res = solve(problem, "milp", lp_first=True, **EXACT)
    assert_consistent(problem, res)
    best, _ = brute_force(problem)
    if best is None:
        assert res.status == "infeasible"
    else:
        assert res.status == "optimal", res.message
        assert objective_close(res.objective, best), (res.objective, best, res.info)


@pytest.mark.parametrize("form", ["max_quality", "min_cost"])
def test_big_batches_are_proven_by_the_lp_bound(form: str) -> None:
    p = realistic(2500, 8, form, seed=1)
    res = solve(p, "milp")
    assert res.status == "optimal"
    assert res.info["method"] == "lp_rounding"
    assert res.info["lp_fractional_queries"] <= 3
    # Proven within mip_rel_gap of the LP bound, which no assignment can beat.
    lag = solve(p, "lagrangian")
    if form == "max_quality":
        assert res.info["bound"] >= lag.objective - 1e-9
        assert res.objective >= (1 - 1e-4) * res.info["bound"] - 1e-9
    else:
        assert res.info["bound"] <= lag.objective + 1e-12
        assert res.objective <= (1 + 1e-4) * res.info["bound"] + 1e-12


@settings(max_examples=40, deadline=None)
@given(problems(max_n=6, max_m=3))
def test_pruning_does_not_change_the_optimum(problem: RoutingProblem) -> None:
    a = solve(problem, "milp", prune=True, **EXACT)
    b = solve(problem, "milp", prune=False, **EXACT)
    assert a.status == b.status
    assert objective_close(a.objective, b.objective) or a.status == "infeasible"


def _p(**kw: object) -> RoutingProblem:
    base: dict[str, object] = dict(quality=np.array([[0.2, 0.9], [0.4, 0.8], [0.1, 0.7]]),
                                   cost=np.array([[1.0, 5.0], [1.0, 4.0], [2.0, 6.0]]) * 1e-3)
    base.update(kw)
    return RoutingProblem(**base)  # type: ignore[arg-type]


def test_capacity_shortfall_is_reported_with_best_effort() -> None:
    p = _p(capacity=np.array([1.0, 1.0]))
    res = solve(p, "milp")
    assert res.status == "infeasible"
    assert res.message.startswith("capacity") and "2 < 3" in res.message
    assert (res.assignment == -1).sum() == 1  # best effort routes as many as capacity allows
    assert np.all(check_assignment(p, res.assignment).loads <= 1)
    none = solve(p, "milp", best_effort=False)
    assert np.all(none.assignment == -1) and none.status == "infeasible"


def test_budget_below_cheapest_is_reported() -> None:
    p = _p(budget=3.9e-3)  # cheapest is 4e-3
    res = solve(p, "milp")
    assert res.status == "infeasible" and res.message.startswith("budget")
    assert res.info["infeasible_constraint"] == "budget"
    assert res.total_cost == pytest.approx(4e-3)  # best effort is the cheapest assignment


def test_budget_unreachable_only_because_of_capacity() -> None:
    # Ignoring capacity the cheapest costs 4e-3; model 0 can take only one query.
    p = _p(budget=8e-3, capacity=np.array([1.0, np.inf]))
    res = solve(p, "milp")
    assert res.status == "infeasible" and res.message.startswith("budget")
    assert "within capacity" in res.message


def test_alpha_unreachable_is_reported() -> None:
    p = _p(min_quality=0.85)  # best mean is 0.8
    res = solve(p, "milp")
    assert res.status == "infeasible" and res.message.startswith("min_quality")
    assert res.mean_quality == pytest.approx(0.8)


def test_budget_and_alpha_jointly_infeasible() -> None:
    # α = 0.6 needs two strong answers (cost ≥ 11e-3 with the cheapest pair); each row alone holds.
    p = _p(min_quality=0.6, budget=9e-3)
    res = solve(p, "milp")
    assert res.status == "infeasible"
    assert res.message.startswith("budget and min_quality"), res.message
    assert res.mean_quality >= 0.6 - 1e-9  # best effort: cheapest assignment meeting α


def test_budget_and_alpha_both_hold() -> None:
    p = _p(min_quality=0.5, budget=12e-3)
    res = solve(p, "milp", **EXACT)
    best, _ = brute_force(p)
    assert res.status == "optimal" and objective_close(res.objective, best)  # type: ignore[arg-type]


def test_allow_reject_rejects_instead_of_overspending() -> None:
    p = _p(budget=2.5e-3, allow_reject=True)
    res = solve(p, "milp", **EXACT)
    assert res.status == "optimal"
    assert (res.assignment == -1).sum() >= 1 and res.total_cost <= 2.5e-3


@pytest.mark.parametrize("bad", [{"time_limit": 0}, {"time_limit": -1.0}, {"mip_rel_gap": -0.1},
                                 {"best_effort": "yes"}, {"lp_first": "auto"}, {"nope": 1}])
def test_bad_parameters(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidParameterError):
        solve(_p(), "milp", **bad)


def test_time_limit_returns_feasible_answer() -> None:
    p = realistic(400, 8, "max_quality", seed=3)
    res = solve(p, "milp", time_limit=1e-4)
    assert res.status == "feasible", (res.status, res.message)
    assert check_assignment(p, res.assignment).feasible
    assert res.info["highs_status"] == "limit"


@given(st.integers(0, 3))
@settings(max_examples=4, deadline=None)
def test_empty_batch(m: int) -> None:
    p = RoutingProblem(quality=np.zeros((0, m + 1)), cost=np.zeros((0, m + 1)), budget=1.0)
    res = solve(p, "milp")
    assert res.status == "optimal" and res.assignment.shape == (0,)


def test_polish_exchanges_queries_when_every_model_is_full() -> None:
    """The side row missed by HiGHS's tolerance with no room anywhere: polish swaps two queries (loads
    unchanged) and the answer, scoring the proven bound, stays optimal."""
    problem = _floor_within_highs_tolerance()
    for lp_first in (True, False):
        res = solve(problem, "milp", lp_first=lp_first, **EXACT)
        assert res.status == "optimal"
        assert res.assignment.tolist() == [1, 2]
        assert check_assignment(problem, res.assignment).feasible
