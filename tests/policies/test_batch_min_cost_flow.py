"""min_cost_flow: equals milp without a side row; near milp with one; the flow itself is exact."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import InvalidParameterError, RoutingProblem, check_assignment, solve
from policies.batch import transport
from policies.batch.min_cost_flow import flow_assign
from tests.policies.conftest import brute_force, objective_close, problems, realistic


@settings(max_examples=120, deadline=None)
@given(problems(max_n=7, max_m=4, sides=("none",)))
def test_equals_milp_without_side_row(problem: RoutingProblem) -> None:
    ref = solve(problem, "milp", mip_rel_gap=0.0)
    got = solve(problem, "min_cost_flow")
    assert got.status == ref.status
    if ref.status != "infeasible":
        assert got.status == "optimal"
        assert objective_close(got.objective, ref.objective)
        best, _ = brute_force(problem)
        assert best is not None and objective_close(got.objective, best)


@pytest.mark.parametrize("seed", range(3))
def test_equals_milp_without_side_row_realistic(seed: int) -> None:
    p = realistic(300, 8, "max_quality", seed)
    free = RoutingProblem(quality=p.quality, cost=p.cost, capacity=p.capacity, allow_reject=bool(seed % 2))
    ref = solve(free, "milp", mip_rel_gap=0.0)
    got = solve(free, "min_cost_flow")
    assert got.status == "optimal"
    assert got.objective == pytest.approx(ref.objective, rel=1e-9)


@pytest.mark.parametrize(("form", "seed"), [(f, s) for f in ("max_quality", "min_cost") for s in range(2)])
@pytest.mark.parametrize("warm", [True, False])
def test_side_row_near_milp(form: str, seed: int, warm: bool) -> None:
    p = realistic(200, 8, form, seed)
    ref = solve(p, "milp", mip_rel_gap=1e-7)
    got = solve(p, "min_cost_flow", warm_bracket=warm)
    assert got.status != "infeasible", got.message
    assert check_assignment(p, got.assignment).feasible
    gap = (ref.objective - got.objective) if form == "max_quality" else (got.objective - ref.objective)
    assert gap <= 0.01 * abs(ref.objective)
    assert got.info["flows"] <= 12


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 30), st.integers(1, 5), st.integers(0, 2**32 - 1), st.booleans())
def test_flow_assign_is_exact(n: int, k: int, seed: int, tight: bool) -> None:
    rng = np.random.default_rng(seed)
    w = np.round(rng.normal(size=(n, k)), 2)  # rounded: plenty of ties
    cap = rng.integers(0, n + 1, size=k)
    if tight:
        cap[rng.integers(k)] += max(0, n - int(cap.sum()))
    else:
        cap[0] = n
    if cap.sum() < n:
        return
    flow = flow_assign(w, cap)
    exact = transport.exact(w, cap)
    assert np.all(np.bincount(flow.cols, minlength=k) <= cap)
    assert flow.value == pytest.approx(exact.value, abs=1e-9)
    assert flow.bound >= exact.value - 1e-9


def test_bad_parameters() -> None:
    with pytest.raises(InvalidParameterError):
        solve(realistic(10, 2), "min_cost_flow", max_flows=0)
