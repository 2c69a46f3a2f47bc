"""The latency-aware per-query rules (issue 12): ``latency_aware`` and ``utility_greedy``'s latency weight.

Each is checked against a plain-Python reference written from its docstring, one query at a time,
on random problems with free capacity (so the rule's choice is not hidden by a full model); then
capacity, budgets and the constraint-mode SLO are checked as invariants.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import (
    REJECT,
    InvalidParameterError,
    RoutingProblem,
    available_policies,
    check_assignment,
    make_policy,
    policy_parameters,
    solve,
)
from policies.problem import SLO_TOL
from policies.result import TOL
from tests.policies.conftest import assert_consistent
from tests.policies.test_slo_problem import slo_problems


def _free(problem: RoutingProblem) -> RoutingProblem:
    return dataclasses.replace(problem, capacity=np.full(problem.m, np.inf))


def latency_aware_reference(problem: RoutingProblem, alpha: float | None = None,
                            max_cost: float | None = None) -> list[int]:
    """One query at a time, from the docstring: fastest eligible (ties cheaper, then lower index), else
    the most accurate (ties cheaper, then lower index); constraint-mode SLO pairs excluded (rejected
    when nothing is left and rejection is allowed)."""
    a = alpha if alpha is not None else problem.min_quality
    floor = 0.5 if a is None else a
    cap = max_cost
    if cap is None and problem.budget is not None and problem.n:
        cap = problem.budget / problem.n
    out = []
    for i in range(problem.n):
        models = list(range(problem.m))
        lat = [0.0] * problem.m if problem.latency is None else problem.latency[i].tolist()
        if problem.slo_mode == "constraint" and problem.latency is not None and problem.slo is not None:
            within = [j for j in models if lat[j] <= problem.slo + SLO_TOL]
            if within or problem.allow_reject:
                models = within  # without rejection, a query with nothing within the SLO keeps all
        if not models:
            out.append(REJECT)
            continue
        eligible = [j for j in models if problem.quality[i, j] >= floor
                    and (cap is None or problem.cost[i, j] <= cap + TOL)]
        if eligible:
            out.append(min(eligible, key=lambda j: (lat[j], problem.cost[i, j], j)))
        else:
            out.append(min(models, key=lambda j: (-problem.quality[i, j], problem.cost[i, j], j)))
    return out


@settings(max_examples=200, deadline=None)
@given(problem=slo_problems("constraint", max_n=8, max_m=4, sides=("none", "budget", "alpha")),
       alpha=st.none() | st.sampled_from([0.0, 0.3, 0.7, 1.0]),
       max_cost=st.none() | st.sampled_from([0.0, 2e-3, 5e-3, 1.0]),
       drop=st.sampled_from(["none", "slo", "latency"]))
def test_latency_aware_matches_the_brute_force_reference(problem: RoutingProblem, alpha: float | None,
                                                        max_cost: float | None, drop: str) -> None:
    problem = _free(problem)
    if drop == "slo":
        problem = dataclasses.replace(problem, slo=None)
    elif drop == "latency":
        problem = dataclasses.replace(problem, latency=None)
    res = solve(problem, "latency_aware", alpha=alpha, max_cost=max_cost)
    assert res.assignment.tolist() == latency_aware_reference(problem, alpha, max_cost)


def test_latency_aware_picks_the_fastest_eligible_and_falls_back_to_the_cheapest() -> None:
    q = np.array([[0.9, 0.8, 0.95, 0.3]])
    c = np.array([[2e-3, 1e-3, 9e-3, 1e-4]])
    lat = np.array([[3.0, 1.0, 0.5, 0.1]])
    p = RoutingProblem(quality=q, cost=c, latency=lat, budget=5e-3)
    # Model 3 is fastest but below α = 0.5; model 2 is fast but over the 5e-3 per-query budget.
    assert solve(p, "latency_aware").assignment.tolist() == [1]
    assert solve(dataclasses.replace(p, budget=None), "latency_aware").assignment.tolist() == [2]
    assert solve(dataclasses.replace(p, latency=None), "latency_aware").assignment.tolist() == [1]  # cheapest
    assert solve(p, "latency_aware", alpha=0.85).assignment.tolist() == [0]
    assert solve(p, "latency_aware", alpha=0.99).assignment.tolist() == [2]  # none eligible: most accurate
    tie = RoutingProblem(quality=np.full((1, 3), 0.9), cost=np.array([[2e-3, 1e-3, 1e-3]]),
                         latency=np.full((1, 3), 1.0))
    assert solve(tie, "latency_aware").assignment.tolist() == [1]  # equal latency: cheaper, then index


def test_latency_aware_is_registered_with_documented_parameters() -> None:
    assert "latency_aware" in available_policies()
    assert policy_parameters("latency_aware") == ["alpha", "max_cost", "on_budget"]
    doc = make_policy("latency_aware").__doc__ or ""
    for name in ("alpha", "max_cost", "on_budget"):
        assert f"{name}:" in doc
    for bad in ({"alpha": 1.5}, {"max_cost": -1.0}, {"max_cost": float("nan")}, {"on_budget": "x"}):
        with pytest.raises(InvalidParameterError):
            make_policy("latency_aware", **bad)


@settings(max_examples=100, deadline=None)
@given(problem=slo_problems("penalty", penalty=0.0, max_n=8, max_m=4, sides=("none",)),
       lam=st.sampled_from([0.0, 10.0, 100.0, 1000.0]), w=st.sampled_from([0.0, 0.01, 0.1, 1.0]))
def test_utility_greedy_latency_weight_matches_its_formula(problem: RoutingProblem, lam: float, w: float) -> None:
    """argmax quality − λ·cost − w·latency, ties to the cheaper model then the lower index."""
    problem = _free(problem)
    assert problem.latency is not None
    res = solve(problem, "utility_greedy", lam=lam, latency_weight=w)
    for i, j in enumerate(res.assignment.tolist()):
        u = problem.quality[i] - lam * problem.cost[i] - w * problem.latency[i]
        best = max(range(problem.m), key=lambda k: (u[k], -problem.cost[i, k], -k))
        assert u[j] == u[best] and problem.cost[i, j] == problem.cost[i, best]


@settings(max_examples=60, deadline=None)
@given(problem=slo_problems("constraint", max_n=8, max_m=4))
def test_utility_greedy_zero_weight_is_todays_rule(problem: RoutingProblem) -> None:
    plain = dataclasses.replace(problem, latency=None, slo=None)
    a = solve(dataclasses.replace(problem, slo=None), "utility_greedy", latency_weight=0.0)
    assert np.array_equal(a.assignment, solve(plain, "utility_greedy").assignment)


def test_utility_greedy_weight_is_refused_when_negative() -> None:
    for bad in (-0.1, float("inf"), float("nan")):
        with pytest.raises(InvalidParameterError):
            make_policy("utility_greedy", latency_weight=bad)


@pytest.mark.parametrize("name", ["latency_aware", "cheapest", "utility_greedy", "least_loaded", "round_robin"])
@settings(max_examples=60, deadline=None)
@given(problem=slo_problems("constraint", max_n=10, max_m=4, reject=True))
def test_constraint_mode_rejects_only_queries_with_nothing_usable(name: str, problem: RoutingProblem) -> None:
    """With rejection allowed: no miss, and a query is rejected only when each of its models is over
    the SLO or full (per-query rules reject on capacity as they always did)."""
    res = solve(problem, name)
    assert_consistent(problem, res)
    ev = check_assignment(problem, res.assignment)
    assert ev.slo_misses == 0
    forbidden = problem.slo_forbidden()
    assert forbidden is not None
    full = ev.loads >= problem.int_capacity()
    for i in np.nonzero(res.assignment == REJECT)[0]:
        if problem.budget is None:
            assert np.all(forbidden[i] | full), (i, forbidden[i], full)


@pytest.mark.parametrize("name", ["latency_aware", "threshold_greedy"])
@pytest.mark.parametrize("mode", ["reject", "downgrade"])
@settings(max_examples=40, deadline=None)
@given(problem=slo_problems("constraint", max_n=10, max_m=4, sides=("budget",), reject=True))
def test_budget_modes_and_slo_together(name: str, mode: str, problem: RoutingProblem) -> None:
    res = solve(problem, name, on_budget=mode)
    ev = check_assignment(problem, res.assignment)
    assert problem.budget is not None
    assert ev.total_cost <= problem.budget + 1e-9 * max(1.0, problem.budget)
    assert ev.slo_misses == 0 and np.all(ev.loads <= problem.capacity)


def test_threshold_greedy_penalty_prices_seconds_in_usd_among_models_above_alpha() -> None:
    """Penalty mode, cost-led rule: among models meeting α the least cost + μ·(latency − slo)+ wins; a
    model below α stays out however fast it is."""
    q = np.array([[0.9, 0.8, 0.3]])
    c = np.array([[3e-3, 1e-3, 1e-4]])
    lat = np.array([[1.0, 6.0, 0.1]])  # model 1 is 4 s over a 2 s SLO
    for mu, want in ((1e-4, 1), (1e-3, 0)):  # 1e-3 + 4μ vs 3e-3: the switch is at μ = 5e-4 USD/s
        p = RoutingProblem(quality=q, cost=c, latency=lat, slo=2.0, slo_mode="penalty", slo_penalty=mu)
        assert solve(p, "threshold_greedy", alpha=0.7).assignment.tolist() == [want]
