"""oracle: optimal on the true quality, so no policy beats it there; needs true_quality."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings

from policies import InvalidProblemError, PolicyError, RoutingProblem, check_assignment, policy_class, solve
from tests.policies.conftest import brute_force, objective_close, problems, realistic

OTHERS = ["milp", "lagrangian", "min_cost_flow", "robust", "threshold_greedy", "utility_greedy", "cheapest",
          "strongest", "random", "round_robin", "least_loaded"]


def _true(problem: RoutingProblem) -> RoutingProblem:
    assert problem.true_quality is not None
    return dataclasses.replace(problem, quality=problem.true_quality, true_quality=None)


@settings(max_examples=60, deadline=None)
@given(problems(max_n=6, max_m=3))
def test_oracle_beats_every_policy_on_true_quality(problem: RoutingProblem) -> None:
    oracle = solve(problem, "oracle", mip_rel_gap=0.0)
    truth = _true(problem)
    best, _ = brute_force(problem, quality=problem.true_quality)
    if best is None:
        assert oracle.info.get("true_status", oracle.status) == "infeasible"
        return
    assert objective_close(oracle.info["true_objective"], best)
    for name in OTHERS:
        res = solve(problem, name)
        ev = check_assignment(truth, res.assignment)  # constraints judged on the true quality
        if not ev.feasible:
            continue
        if problem.min_quality is None:
            assert ev.total_quality <= oracle.info["true_objective"] + 1e-9, name
        else:
            assert ev.total_cost >= oracle.info["true_objective"] - 1e-12, name


def test_oracle_on_realistic_batch() -> None:
    p = realistic(150, 6, "max_quality", seed=7)
    oracle = solve(p, "oracle")
    assert oracle.status == "optimal"
    for name in ("milp", "lagrangian", "robust", "utility_greedy"):
        res = solve(p, name)
        assert p.true_quality is not None
        mine = p.true_quality[np.arange(p.n), res.assignment].sum()
        assert mine <= oracle.info["true_objective"] + 1e-9
    # The result itself is evaluated on the predicted quality, like every policy's.
    assert oracle.objective == pytest.approx(p.quality[np.arange(p.n), oracle.assignment].sum())


def test_oracle_floor_on_true_quality_but_checked_on_predictions() -> None:
    q_pred = np.array([[0.9, 0.2], [0.9, 0.2]])
    q_true = np.array([[0.0, 1.0], [0.0, 1.0]])
    p = RoutingProblem(quality=q_pred, cost=np.array([[2e-3, 1e-3]] * 2), min_quality=0.8, true_quality=q_true)
    res = solve(p, "oracle")
    assert res.assignment.tolist() == [1, 1]  # cheapest and truly right
    assert res.info["true_status"] == "optimal" and res.info["true_mean_quality"] == 1.0
    assert res.status == "infeasible" and res.message.startswith("feasible on the true quality")


def test_oracle_needs_true_quality() -> None:
    p = dataclasses.replace(realistic(5, 2), true_quality=None)
    with pytest.raises(InvalidProblemError, match="true_quality"):
        solve(p, "oracle")
    assert issubclass(InvalidProblemError, PolicyError)
    assert policy_class("oracle").needs_true_quality is True
    assert policy_class("milp").needs_true_quality is False
