"""The scalar one-query path of the per-query rules (:meth:`Policy.route_one`, policies/one_query.py)
gives the model :meth:`Policy.route` gives on the same 1 × m problem, ties and full models included,
and leaves stateful rules (generator, cursor) where route leaves them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import RoutingProblem, make_policy
from policies.one_query import OneQuery
from tests.policies.conftest import one_queries

GRID = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5, 0.7, 0.9, 1.0])  # coarse: many exact ties
COST = st.sampled_from([0.0, 1e-5, 2e-5, 2e-5, 3e-4, 0.01])
CAP = st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.7, math.inf, math.inf])
LOAD = st.sampled_from([0.0, 0.0, 1.0, 3.0, 17.0])

RULES = [
    ("cheapest", {}),
    ("strongest", {}),
    ("threshold_greedy", {}),
    ("threshold_greedy", {"alpha": 0.6}),
    ("utility_greedy", {"lam": 100.0}),
    ("utility_greedy", {"lam": 0.0}),
    ("least_loaded", {}),
    ("round_robin", {}),
    ("random", {"seed": 5}),
]


def one_query_cases() -> st.SearchStrategy[tuple[OneQuery, RoutingProblem]]:
    return one_queries(GRID, COST, CAP, LOAD, floors=[None, 0.5, 0.8], budgets=[None, 1e-5], max_m=5)


@pytest.mark.parametrize(("name", "params"), RULES, ids=lambda x: str(x))
@settings(max_examples=150, deadline=None)
@given(cases=st.lists(one_query_cases(), min_size=1, max_size=6))
def test_route_one_equals_route(name: str, params: dict, cases: list) -> None:  # type: ignore[type-arg]
    """A sequence of one-query batches through both paths, on two policies built alike: the same model
    each time (so the state — random draws, the round-robin cursor — moves alike too)."""
    scalar, general = make_policy(name, **params), make_policy(name, **params)
    for one, problem in cases:
        got = scalar.route_one(one)
        assert got is not None
        assert got == int(general.route(problem).assignment[0])


def test_every_model_full_rejects() -> None:
    one = OneQuery([0.9, 0.2], [1.0, 0.1], [0.0, 0.9], [0.0, 0.0])
    for name, params in RULES:
        assert make_policy(name, **params).route_one(one) == -1


def test_paths_without_a_scalar_form_answer_none() -> None:
    """Budget modes read the batch's budget row and latency-weighted utility needs latencies: general path."""
    one = OneQuery([0.9, 0.2], [1.0, 0.1], [5.0, 5.0])
    assert make_policy("cheapest", on_budget="reject").route_one(one) is None
    assert make_policy("threshold_greedy", on_budget="downgrade").route_one(one) is None
    assert make_policy("utility_greedy", latency_weight=1.0).route_one(one) is None
    assert make_policy("milp").route_one(one) is None  # batch solvers: the base class says no


@settings(max_examples=300, deadline=None)
@given(case=one_query_cases())
def test_lagrangian_route_one_equals_route(case: tuple[OneQuery, RoutingProblem]) -> None:
    """Without a side row: the same model and the status route() reports (optimal); with a budget or a
    floor, or no room without rejection, no scalar answer."""
    one, problem = case
    policy = make_policy("lagrangian")
    got = policy.route_one(one)
    if one.budget is not None or one.min_quality is not None:
        assert got is None
        return
    result = policy.route(problem)
    room = [k for k in range(one.m) if one.capacity[k] >= 1]
    best = max([one.quality[k] for k in room] + ([0.0] if one.allow_reject else []), default=None)
    if got is None:  # no room without rejection, or a price war between full models at the top
        if best is None:
            assert result.status == "infeasible"
        else:
            assert sum(1 for k in range(one.m) if one.capacity[k] < 1 and one.quality[k] >= best) >= 2
        return
    assert got == int(result.assignment[0])
    assert result.status == type(policy).one_query_status == "optimal"


def test_lagrangian_full_models_move_the_choice_down_the_ranking() -> None:
    """The auction's path, by hand: the best model is full (a full model below the best with room does
    not matter), the two tied next ones have room — the first of them is chosen; with a second full model
    above them the auction's price war decides, and route_one leaves it to route()."""
    one = OneQuery([0.9, 0.3, 0.6, 0.7, 0.7], [0.0] * 5, [0.0, 5.0, 0.5, 1.0, 1.0])
    assert make_policy("lagrangian").route_one(one) == 3
    assert make_policy("lagrangian").route(RoutingProblem(
        quality=np.array([one.quality]), cost=np.zeros((1, 5)), capacity=np.array(one.capacity))).assignment[0] == 3
    two_full = OneQuery([0.9, 0.3, 0.8, 0.7, 0.7], [0.0] * 5, [0.0, 5.0, 0.5, 1.0, 1.0])
    assert make_policy("lagrangian").route_one(two_full) is None
