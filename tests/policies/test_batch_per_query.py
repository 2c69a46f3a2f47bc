"""The per-query baselines accept every problem shape the batch policies do and never exceed capacity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import RoutingProblem, check_assignment, make_policy, solve
from tests.policies.conftest import assert_consistent, problems

PER_QUERY = ["cheapest", "strongest", "threshold_greedy", "utility_greedy", "random", "round_robin",
             "least_loaded"]


@pytest.mark.parametrize("name", PER_QUERY)
@settings(max_examples=60, deadline=None)
@given(problem=problems(max_n=12, max_m=5))
def test_any_shape_never_over_capacity(name: str, problem: RoutingProblem) -> None:
    res = solve(problem, name)
    assert_consistent(problem, res)
    ev = check_assignment(problem, res.assignment)
    assert np.all(ev.loads <= problem.capacity)
    # With enough capacity and no rows, nothing is rejected.
    if problem.budget is None and problem.min_quality is None and problem.int_capacity().sum() >= problem.n:
        assert np.all(res.assignment >= 0) or name == "least_loaded"


@pytest.mark.parametrize("name", [n for n in PER_QUERY if n != "least_loaded"])
@pytest.mark.parametrize("mode", ["reject", "downgrade"])
@settings(max_examples=40, deadline=None)
@given(problem=problems(max_n=10, max_m=4, sides=("budget",)))
def test_budget_modes_never_overspend(name: str, mode: str, problem: RoutingProblem) -> None:
    res = solve(problem, name, on_budget=mode)
    ev = check_assignment(problem, res.assignment)
    assert problem.budget is not None
    assert ev.total_cost <= problem.budget + 1e-9 * max(1.0, problem.budget)
    assert np.all(ev.loads <= problem.capacity)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 20))
def test_round_robin_cursor_spreads_load(m: int, n: int) -> None:
    p = RoutingProblem(quality=np.full((n, m), 0.5), cost=np.full((n, m), 1e-3))
    pol = make_policy("round_robin")
    a = pol.route(p).assignment
    b = pol.route(p).assignment
    loads = np.bincount(np.concatenate([a, b]), minlength=m)
    assert loads.max() - loads.min() <= 1
