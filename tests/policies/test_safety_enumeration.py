"""The exact fallback of lagrangian / min_cost_flow (:func:`policies.batch.safety.exact_if_loose`) skips
building a MILP on a tiny batch whose answer enumeration proves optimal (issue 14: at window 0 the
fallback ran on ~45 % of one-query batches). The shortcut must change nothing: every result equals the
one of the plain path (the MILP consulted), assignment, objective and status."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from policies import make_policy
from policies.batch import safety
from policies.problem import RoutingProblem
from tests.policies.conftest import problems, realistic


def _both(problem: RoutingProblem, name: str) -> tuple:  # type: ignore[type-arg]
    fast = make_policy(name).route(problem)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(safety, "MAX_ENUMERATED", 0)  # the plain path: always the MILP
        slow = make_policy(name).route(problem)
    return fast, slow


@pytest.mark.parametrize("name", ["lagrangian", "min_cost_flow"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems(max_n=2, max_m=5))
def test_the_shortcut_changes_no_answer(name: str, problem: RoutingProblem) -> None:
    fast, slow = _both(problem, name)
    assert np.array_equal(fast.assignment, slow.assignment)
    assert fast.objective == slow.objective and fast.status == slow.status


@pytest.mark.parametrize("form", ["max_quality", "min_cost"])
def test_one_query_batches(form: str) -> None:
    """Realistic one-query batches over 11 models: identical answers, and the shortcut is taken."""
    used = 0
    for seed in range(60):
        p = realistic(1, 11, form, seed=seed)
        fast, slow = _both(p, "lagrangian")
        assert np.array_equal(fast.assignment, slow.assignment) and fast.objective == slow.objective
        assert fast.status == slow.status
        used += fast.info.get("exact_fallback") == "no better answer (enumerated)"
    assert used > 0
