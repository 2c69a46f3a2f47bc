"""Review of the scalar one-query path (issue 14): :meth:`Policy.route_one` against :meth:`Policy.route` on
the equivalent 1 × m problem, on inputs the first tests do not draw — continuous and one-ulp-apart
floats, ``-0.0``, capacities just under / at / over 1 and fractional, up to 8 models — and the
lagrangian's parameters that change which solver answers a one-query batch.

``tests/policies/test_one_query.py`` holds the first tests; this file adds adversarial cases only.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies import RoutingProblem, check_assignment, make_policy
from policies.one_query import OneQuery
from tests.policies.conftest import one_queries


def _near(values: list[float], top: float = math.inf) -> st.SearchStrategy[float]:
    """``values`` and their neighbours one ulp away (kept within [0, top]): exact ties and near-ties."""
    base = st.sampled_from(values)
    return st.one_of(
        base,
        base.map(lambda v: min(math.nextafter(v, math.inf), top)),
        base.map(lambda v: max(math.nextafter(v, -math.inf), 0.0)),
    )


def _normal(v: float) -> bool:
    """Not subnormal (the smallest subnormal crashed lagrangian's general path until the row minimiser's
    weight was bounded: tests/policies/test_batch_lagrangian.py keeps that case)."""
    return v == 0.0 or abs(v) >= sys.float_info.min


QUALITY = st.one_of(_near([0.0, 0.3, 0.5, 0.7, 1.0], top=1.0), st.just(-0.0), st.floats(0.0, 1.0)).filter(_normal)
COST = st.one_of(_near([0.0, 1e-6, 1e-5, 3e-4, 1.0]), st.just(-0.0), st.floats(0.0, 2.0)).filter(_normal)
CAPACITY = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, math.inf, math.inf]), _near([1.0]),
                     st.floats(0.0, 3.0))
LOAD = st.sampled_from([0.0, 1.0, 2.0, 3.0, 5.0, 100.0])


def one_query_cases() -> st.SearchStrategy[tuple[OneQuery, RoutingProblem]]:
    return one_queries(QUALITY, COST, CAPACITY, LOAD, floors=[None, 0.0, 0.5, 0.7, 1.0],
                       budgets=[None, 0.0, 1e-5, 1.0], max_m=8)


RULES: list[tuple[str, dict[str, Any]]] = [
    ("cheapest", {}),
    ("strongest", {}),
    ("threshold_greedy", {}),
    ("threshold_greedy", {"alpha": 0.0}),
    ("threshold_greedy", {"alpha": 1.0}),
    ("utility_greedy", {"lam": 0.0}),
    ("utility_greedy", {"lam": 0.3}),
    ("utility_greedy", {"lam": 1e7}),  # the spend knob's top: products far above the qualities
    ("least_loaded", {}),
    ("round_robin", {}),
    ("random", {"seed": 1}),
    ("lagrangian", {}),
    ("lagrangian", {"max_evals": 1}),
]


@pytest.mark.parametrize(("name", "params"), RULES, ids=lambda x: str(x))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases=st.lists(one_query_cases(), min_size=1, max_size=5))
def test_route_one_equals_route_on_adversarial_floats(name: str, params: dict[str, Any],
                                                      cases: list[tuple[OneQuery, RoutingProblem]]) -> None:
    """Per query of a sequence: the same model from both paths, and where route_one declines (None) the
    dispatcher's fallback route() keeps the two policies' state in step; for the lagrangian also the
    status route() reports (its claimed ``one_query_status`` unless the checker finds a violation)."""
    scalar, general = make_policy(name, **params), make_policy(name, **params)
    for one, problem in cases:
        got = scalar.route_one(one)
        result = general.route(problem)
        if got is None:
            scalar.route(problem)  # what the dispatcher does next
            continue
        assert got == int(result.assignment[0])
        if name == "lagrangian":
            violated = bool(check_assignment(problem, result.assignment).violations)
            assert result.status == ("infeasible" if violated else type(scalar).one_query_status)


@pytest.mark.parametrize("name", ["random", "round_robin"])
def test_declining_route_one_leaves_state_alone(name: str) -> None:
    """A budget mode declines the scalar path before drawing or moving the cursor: the fallback route()
    then draws exactly what a policy that never tried route_one draws."""
    tried, plain = make_policy(name, on_budget="reject"), make_policy(name, on_budget="reject")
    problem = RoutingProblem(quality=np.array([[0.2, 0.9, 0.5]]), cost=np.array([[1e-5, 2e-5, 3e-5]]),
                             capacity=np.array([5.0, 5.0, 5.0]), budget=1.0)
    one = OneQuery([0.2, 0.9, 0.5], [1e-5, 2e-5, 3e-5], [5.0, 5.0, 5.0], budget=1.0)
    picks = []
    for _ in range(7):
        assert tried.route_one(one) is None
        a, b = tried.route(problem), plain.route(problem)
        picks.append(int(a.assignment[0]))
        assert picks[-1] == int(b.assignment[0])
    assert len(set(picks)) > 1  # the state really moves between calls


def test_least_loaded_prefers_the_first_of_equal_fractions_across_unlimited_and_finite() -> None:
    """Load fractions of finite models and raw loads of unlimited ones compared on one scale, ties first:
    0 / (0 + 1) = 0 on model 1 ties the raw 0 of unlimited model 2; model 0 is full (0.999… < 1)."""
    one = OneQuery([0.5, 0.5, 0.5], [0.0, 0.0, 0.0], [math.nextafter(1.0, 0.0), 1.0, math.inf],
                   [0.0, 0.0, 0.0])
    problem = RoutingProblem(quality=np.array([one.quality]), cost=np.zeros((1, 3)),
                             capacity=np.array(one.capacity), load=np.zeros(3))
    policy = make_policy("least_loaded")
    assert policy.route_one(one) == int(policy.route(problem).assignment[0]) == 1


# Model 0..2 tied and with room, the two best (3, 4) full: the auction needs two rounds to move the query
# down past both; with max_rounds=1 route() falls back to HiGHS (transport.exact), which picks another of
# the tied models.
_TIED_BELOW_FULL = ([0.0, 0.0, 0.0, 0.5, 0.5], [1.0, 1.0, 1.0, 0.0, 0.0])


def test_lagrangian_tied_below_full_models_default_rounds() -> None:
    q, cap = _TIED_BELOW_FULL
    policy = make_policy("lagrangian")
    result = policy.route(RoutingProblem(quality=np.array([q]), cost=np.zeros((1, 5)), capacity=np.array(cap)))
    assert int(result.assignment[0]) == 0 and result.info["highs_fallbacks"] == 0
    assert policy.route_one(OneQuery(q, [0.0] * 5, cap)) in (None, 0)  # declining is always allowed


def test_lagrangian_route_one_with_few_auction_rounds() -> None:
    """Found in review (route_one ignored max_rounds; fixed in 77f2574): with max_rounds=1 route() falls
    back to HiGHS here, which picks another of the tied models; route_one must decline or agree."""
    q, cap = _TIED_BELOW_FULL
    policy = make_policy("lagrangian", max_rounds=1)
    result = policy.route(RoutingProblem(quality=np.array([q]), cost=np.zeros((1, 5)), capacity=np.array(cap)))
    assert result.info["highs_fallbacks"] == 1  # the path that differs
    assert policy.route_one(OneQuery(q, [0.0] * 5, cap)) in (None, int(result.assignment[0]))


def test_lagrangian_sub_epsilon_quality_near_zero() -> None:
    """Found in review (fixed in 77f2574): the auction is ε-optimal, route_one exact. With the two best
    models full, the best with room beats a tied one by less than the prices' rounding (1e-17 above 0):
    route() gave the first of the near-ties (0), route_one the strictly best (2)."""
    q, cap = [0.0, 0.0, 1e-17, 0.3, 0.0, 0.3], [1.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    policy = make_policy("lagrangian")
    result = policy.route(RoutingProblem(quality=np.array([q]), cost=np.zeros((1, 6)), capacity=np.array(cap)))
    assert policy.route_one(OneQuery(q, [0.0] * 6, cap)) in (None, int(result.assignment[0]))
