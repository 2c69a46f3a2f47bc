"""Properties every batch-level policy must have, on random (often degenerate) small problems.

A returned assignment satisfies every constraint unless the status is ``infeasible``; an
``infeasible`` status is only claimed when enumeration agrees the problem has no feasible
assignment (exception: the relaxation policies do not model a budget next to a floor, and may report
that pair as infeasible, naming the budget); capacity is never exceeded, even by best-effort answers.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings

from policies import RoutingProblem, policy_class, solve
from tests.policies.conftest import (
    assert_consistent,
    brute_force,
    objective_close,
    on_tolerance_edge,
    problems,
)

BATCH = [
    ("milp", {}),
    ("lagrangian", {}),
    ("min_cost_flow", {}),
    ("robust", {}),
    ("robust", {"gamma": 1.0}),
    ("robust", {"solver": "lagrangian", "kappa": 0.5}),
    ("oracle", {}),
]


@pytest.mark.parametrize(("name", "params"), BATCH, ids=[f"{n}{p or ''}" for n, p in BATCH])
@settings(max_examples=60, deadline=None)
@given(problem=problems(max_n=6, max_m=3))
def test_feasible_or_infeasible_for_a_reason(name: str, params: dict, problem: RoutingProblem) -> None:
    res = solve(problem, name, **params)
    assert_consistent(problem, res)
    if name in ("robust", "oracle"):
        return  # they solve a different problem (lower bounds / true quality); see their own tests
    best, _ = brute_force(problem)
    if res.status == "infeasible" and best is not None:
        # Only acceptable for relaxation policies facing a budget *and* a floor, and then they say so.
        assert name != "milp"
        assert problem.budget is not None and problem.min_quality is not None
        assert res.message.startswith("budget"), res.message
    if best is None:
        assert res.status == "infeasible"


@pytest.mark.parametrize("name", ["lagrangian", "min_cost_flow"])
@settings(max_examples=80, deadline=None)
@given(problem=problems(max_n=6, max_m=3, sides=("none", "budget", "alpha")))
def test_relaxations_find_a_feasible_answer_whenever_one_exists(name: str, problem: RoutingProblem) -> None:
    res = solve(problem, name)
    best, _ = brute_force(problem)
    assume(not on_tolerance_edge(problem, best))
    assert (res.status == "infeasible") == (best is None), (res.status, res.message, best)
    if best is not None and res.status == "optimal":
        assert objective_close(res.objective, best), "a certified optimum must be the optimum"


@pytest.mark.parametrize(("name", "params"), BATCH, ids=[f"{n}{p or ''}" for n, p in BATCH])
@settings(max_examples=25, deadline=None)
@given(problem=problems(max_n=5, max_m=3))
def test_best_effort_false_rejects_everything_when_infeasible(name: str, params: dict,
                                                             problem: RoutingProblem) -> None:
    res = solve(problem, name, best_effort=False, **params)
    if res.status == "infeasible":
        assert np.all(res.assignment == -1)
        assert res.message
    else:
        assert np.array_equal(res.assignment, solve(problem, name, **params).assignment)


@pytest.mark.parametrize("name", ["milp", "lagrangian", "min_cost_flow", "robust", "oracle"])
def test_marked_batch_level(name: str) -> None:
    assert policy_class(name).batch_level is True


@pytest.mark.parametrize("name", ["milp", "lagrangian", "min_cost_flow", "robust", "oracle"])
def test_empty_batch(name: str) -> None:
    p = RoutingProblem(quality=np.zeros((0, 2)), cost=np.zeros((0, 2)), min_quality=0.5,
                       true_quality=np.zeros((0, 2)))
    res = solve(p, name)
    assert res.status == "optimal" and res.assignment.shape == (0,)


def test_one_model_capacity_exactly_n() -> None:
    q = np.array([[0.3], [0.6], [0.9]])
    p = RoutingProblem(quality=q, cost=np.full((3, 1), 1e-3), capacity=np.array([3.0]), budget=3e-3,
                       true_quality=q)
    for name in ("milp", "lagrangian", "min_cost_flow", "robust", "oracle"):
        res = solve(p, name)
        assert res.status != "infeasible", (name, res.message)
        assert res.assignment.tolist() == [0, 0, 0]
