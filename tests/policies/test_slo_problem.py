"""The SLO fields of RoutingProblem (issue 12): validation, and check_assignment's SLO verdict.

Also home of :func:`slo_problems`, the strategy the other ``test_slo_*`` files draw from: the random
problems of ``conftest.problems`` with a latency matrix and an SLO added. Latencies live on a 0.25 s
grid and the SLO is often exactly one of them, so pairs sit on the boundary (not a miss) as often as
just over it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import REJECT, InvalidProblemError, RoutingProblem, check_assignment
from policies.problem import SLO_TOL
from tests.policies.conftest import SIDES, all_assignments, problems

LAT_GRID = np.arange(0, 17) * 0.25  # 0 .. 4 s


@st.composite
def slo_problems(draw: st.DrawFn, mode: str = "constraint", penalty: float | None = None, max_n: int = 6,
                 max_m: int = 3, sides: tuple[str, ...] = SIDES, reject: bool | None = None,
                 infeasible: bool = True) -> RoutingProblem:
    """A ``conftest.problems`` problem plus (n, m) latencies and an SLO in ``mode``.

    ``penalty`` fixes μ (penalty mode); by default it is drawn from 0 .. 10.
    """
    p = draw(problems(max_n=max_n, max_m=max_m, sides=sides, reject=reject, infeasible=infeasible))
    idx = draw(st.lists(st.integers(0, LAT_GRID.size - 1), min_size=p.n * p.m, max_size=p.n * p.m))
    latency = LAT_GRID[np.array(idx, dtype=np.int64)].reshape(p.n, p.m)
    slo = draw(st.sampled_from([0.5, 1.0, 2.0, 3.0, 5.0]))
    mu = draw(st.sampled_from([0.0, 0.1, 1.0, 10.0])) if penalty is None else penalty
    return dataclasses.replace(p, latency=latency, slo=slo, slo_mode=mode, slo_penalty=mu)


def slo_brute_force(problem: RoutingProblem) -> tuple[float | None, np.ndarray | None]:
    """Exact optimum over the assignments check_assignment accepts (the SLO included), by enumeration."""
    best: tuple[float | None, np.ndarray | None] = (None, None)
    minimise = problem.min_quality is not None
    for a in all_assignments(problem):
        ev = check_assignment(problem, a)
        if not ev.feasible:
            continue
        obj = ev.total_cost if minimise else ev.total_quality
        if best[0] is None or (obj < best[0] if minimise else obj > best[0]):
            best = (obj, a)
    return best


def _base(**kw: object) -> RoutingProblem:
    q = np.array([[0.5, 0.9], [0.7, 0.2]])
    c = np.array([[1e-3, 3e-3], [2e-3, 1e-3]])
    return RoutingProblem(quality=q, cost=c, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(("kw", "needle"), [
    ({"latency": np.zeros((2, 3)), "slo": 1.0}, "latency has shape"),
    ({"latency": np.zeros(2), "slo": 1.0}, "latency has shape"),
    ({"latency": np.array([[0.1, np.nan], [0.1, 0.2]])}, "latency must be finite"),
    ({"latency": np.array([[0.1, np.inf], [0.1, 0.2]])}, "latency must be finite"),
    ({"latency": np.array([[0.1, -0.5], [0.1, 0.2]])}, "latency must be finite and >= 0"),
    ({"slo": 0.0}, "slo must be a finite number of seconds > 0"),
    ({"slo": -1.0}, "slo must be a finite number of seconds > 0"),
    ({"slo": float("nan")}, "slo must be a finite number"),
    ({"slo": float("inf")}, "slo must be a finite number"),
    ({"slo": True}, "slo must be a number"),
    ({"slo": "2"}, "slo must be a number"),
    ({"slo_mode": "soft"}, "slo_mode must be one of"),
    ({"slo_penalty": -1.0}, "slo_penalty must be a finite number >= 0"),
    ({"slo_penalty": float("nan")}, "slo_penalty must be a finite number"),
    ({"slo_penalty": None}, "slo_penalty must be a number"),
])
def test_bad_slo_fields_are_refused_with_the_field_named(kw: dict, needle: str) -> None:
    with pytest.raises(InvalidProblemError, match=needle):
        _base(**kw)


def test_good_slo_fields_are_accepted_and_converted() -> None:
    p = _base(latency=[[0.5, 1], [2, 0]], slo=1, slo_mode="penalty", slo_penalty=3)
    assert p.latency is not None and p.latency.dtype == np.float64
    assert p.has_slo and p.slo_forbidden() is None  # penalty mode forbids nothing
    assert np.array_equal(p.slo_penalty_matrix(), 3.0 * np.array([[0.0, 0.0], [1.0, 0.0]]))
    # Either field alone is no SLO at all.
    assert not _base(latency=[[0.5, 1], [2, 0]]).has_slo
    assert not _base(slo=1.0).has_slo
    assert _base(slo=1.0).slo_forbidden() is None and _base(slo=1.0).slo_excess() is None


def test_validate_false_skips_the_slo_checks_like_the_others() -> None:
    p = RoutingProblem(quality=np.ones((1, 1)), cost=np.zeros((1, 1)), latency=[[-1.0]], slo=-2.0,
                       validate=False)
    assert p.latency is not None and p.latency[0, 0] == -1.0


# ---------------------------------------------------------------------------------------------- checker
def test_check_assignment_names_each_miss_and_counts_them() -> None:
    lat = np.array([[1.0, 3.0], [2.0, 5.0], [4.0, 0.5], [9.0, 9.0], [7.0, 0.0]])
    p = RoutingProblem(quality=np.full((5, 2), 0.5), cost=np.zeros((5, 2)), latency=lat, slo=2.5,
                       allow_reject=True, model_names=("small", "big"))
    ev = check_assignment(p, np.array([1, 1, 0, REJECT, 0]))
    assert ev.slo_misses == 4  # queries 0, 1, 2 and 4 (3 is rejected: no model, no miss)
    (msg,) = ev.violations
    assert msg.startswith("slo: 4 queries")
    assert "query 0 on big (3 s)" in msg and "query 2 on small (4 s)" in msg and "1 more" in msg
    assert check_assignment(p, np.array([0, 0, 1, REJECT, 1])).feasible


@pytest.mark.parametrize(("over", "miss"), [(0.0, False), (0.5 * SLO_TOL, False), (10 * SLO_TOL, True)])
def test_boundary_tolerance(over: float, miss: bool) -> None:
    p = RoutingProblem(quality=np.ones((2, 1)), cost=np.zeros((2, 1)), latency=[[2.0 + over], [1.0]], slo=2.0)
    assert check_assignment(p, np.array([0, 0])).slo_misses == int(miss)
    one = RoutingProblem(quality=np.ones((1, 1)), cost=np.zeros((1, 1)), latency=[[2.0 + over]], slo=2.0)
    assert check_assignment(one, np.array([0])).slo_misses == int(miss)  # the n = 1 fast path too


def test_penalty_mode_and_missing_fields_are_never_violations() -> None:
    lat = np.array([[10.0, 10.0], [10.0, 10.0]])
    for p in (_base(latency=lat, slo=1.0, slo_mode="penalty", slo_penalty=5.0), _base(latency=lat),
              _base(slo=1.0)):
        ev = check_assignment(p, np.array([0, 1]))
        assert ev.feasible and ev.slo_misses == 0


@settings(max_examples=150, deadline=None)
@given(problem=slo_problems(max_n=5, max_m=3), data=st.data())
def test_check_assignment_agrees_with_a_pairwise_count(problem: RoutingProblem, data: st.DataObject) -> None:
    """slo_misses is the number of routed queries whose model's latency exceeds the SLO (beyond tol),
    and the SLO entry is there exactly when it is positive; the other rows are judged as without SLO."""
    choices = list(range(problem.m)) + [REJECT]
    a = np.array(data.draw(st.lists(st.sampled_from(choices), min_size=problem.n, max_size=problem.n)),
                 dtype=np.int64)
    ev = check_assignment(problem, a)
    assert problem.latency is not None and problem.slo is not None
    expected = sum(1 for i, j in enumerate(a.tolist()) if j >= 0 and problem.latency[i, j] > problem.slo + SLO_TOL)
    assert ev.slo_misses == expected
    assert any(v.startswith("slo:") for v in ev.violations) == (expected > 0)
    plain = check_assignment(dataclasses.replace(problem, latency=None, slo=None), a)
    assert [v for v in ev.violations if not v.startswith("slo:")] == plain.violations


def test_slo_brute_force_helper_respects_the_slo() -> None:
    """The reference used by the other files: with one allowed pair per query it must pick exactly those."""
    lat = np.array([[0.0, 9.0], [9.0, 0.0], [9.0, 9.0]])
    p = RoutingProblem(quality=np.full((3, 2), 0.9), cost=np.full((3, 2), 1e-3), latency=lat, slo=1.0,
                       allow_reject=True)
    obj, a = slo_brute_force(p)
    assert a is not None and a.tolist() == [0, 1, REJECT] and obj == pytest.approx(1.8)
    assert slo_brute_force(dataclasses.replace(p, allow_reject=False)) == (None, None)
