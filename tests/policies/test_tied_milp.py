"""milp and robust on batches with tied quality rows (``task_mean``), where milp uses
:mod:`policies.batch.small_exact` instead of HiGHS's branch-and-bound.

References are independent of that module: enumeration on tiny batches, and on the benchmark's tied
50 × 11 generator a plain MILP written out here (dense x_ij binaries, HiGHS with no gap). The fast path
must reach the same objective (1e-9 relative) with every constraint holding; the assignment may differ
where several are optimal.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import Bounds, LinearConstraint, milp

from policies import REJECT, RoutingProblem, check_assignment, solve
from policies.batch import small_exact
from policies.batch.linear_form import LinearForm
from tests.policies.conftest import _load_benchmark, assert_consistent, brute_force, objective_close
from tests.policies.test_batch_robust import _brute_force_protected

EXACT = {"mip_rel_gap": 0.0}


@st.composite
def tied_problems(draw: st.DrawFn, max_n: int = 7, max_m: int = 3, monge: bool | None = None) -> RoutingProblem:
    """Small problems whose quality rows are tied per task, on value grids (so optima are well separated).

    ``monge``: costs ``prompt_i · price_j + b_task,j`` (True, what the simulator predicts), arbitrary
    per query (False), or either (None).
    """
    n = draw(st.integers(2, max_n))
    m = draw(st.integers(1, max_m))
    tasks = draw(st.integers(1, 3))
    task = np.array(draw(st.lists(st.integers(0, tasks - 1), min_size=n, max_size=n)))
    acc = np.array(draw(st.lists(st.integers(0, 20), min_size=tasks * m, max_size=tasks * m))).reshape(tasks, m) / 20
    quality = acc[task]
    if draw(st.booleans()) if monge is None else monge:
        prompt = np.array(draw(st.lists(st.integers(1, 9), min_size=n, max_size=n)), dtype=np.float64)
        price = np.array(draw(st.lists(st.sampled_from([0.0, 1.0, 2.0, 5.0]), min_size=m, max_size=m))) * 1e-4
        out = np.array(draw(st.lists(st.integers(0, 5), min_size=tasks * m, max_size=tasks * m))).reshape(tasks, m)
        cost = prompt[:, None] * price[None, :] + out[task] * 1e-4
    else:
        cost = np.array(draw(st.lists(st.integers(0, 10), min_size=n * m, max_size=n * m))).reshape(n, m) * 1e-3
    capacity = np.array(draw(st.lists(st.sampled_from([0.0, 1.0, 2.0, 3.0, np.inf]), min_size=m, max_size=m)))
    reject = draw(st.booleans())
    if not reject and np.sum(np.minimum(capacity, n)) < n:
        capacity[-1] = np.inf
    side = draw(st.sampled_from(["budget", "alpha", "both", "none"]))
    budget = alpha = None
    if side in ("budget", "both"):
        cheap, dear = float(cost.min(axis=1).sum()), float(cost.max(axis=1).sum())
        budget = cheap + draw(st.sampled_from([0.0, 0.3, 0.6, 1.0]) | st.floats(0.0, 1.0)) * (dear - cheap)
    if side in ("alpha", "both"):
        worst, best = float(quality.min(axis=1).mean()), float(quality.max(axis=1).mean())
        alpha = float(np.clip(worst + draw(st.floats(0.0, 1.0)) * (best - worst), 0.0, 1.0))
    std = np.sqrt(acc * (1 - acc) / 30)[task]
    return RoutingProblem(quality=quality, cost=cost, capacity=capacity, budget=budget, min_quality=alpha,
                          allow_reject=reject, quality_std=std)


def plain_milp(problem: RoutingProblem) -> float | None:
    """The straightforward MILP (x_ij binaries, dense rows, HiGHS with no gap): its optimal objective."""
    n, m = problem.n, problem.m
    k = m + int(problem.allow_reject)
    q = np.hstack([problem.quality, np.zeros((n, k - m))])
    c = np.hstack([problem.cost, np.zeros((n, k - m))])
    rows, lo, hi = [np.kron(np.eye(n), np.ones(k))], [np.ones(n)], [np.ones(n)]
    cap = np.append(np.minimum(problem.int_capacity(), n), [n] * (k - m)).astype(np.float64)
    rows.append(np.kron(np.ones(n), np.eye(k)))
    lo.append(np.zeros(k))
    hi.append(cap)
    if problem.budget is not None:
        rows.append(c.reshape(1, -1))
        lo.append(np.array([-np.inf]))
        hi.append(np.array([problem.budget]))
    if problem.min_quality is not None:
        rows.append(q.reshape(1, -1))
        lo.append(np.array([problem.min_quality * n]))
        hi.append(np.array([np.inf]))
    obj = c.ravel() if problem.min_quality is not None else -q.ravel()
    res = milp(obj, integrality=np.ones(n * k), bounds=Bounds(0, 1),
               constraints=LinearConstraint(np.vstack(rows), np.concatenate(lo), np.concatenate(hi)),
               options={"mip_rel_gap": 0.0})
    if res.x is None:
        return None
    return float(res.fun) if problem.min_quality is not None else -float(res.fun)


def _assert_same_optimum(problem: RoutingProblem, reference: float | None, policy: str = "milp") -> str:
    """The policy's answer is optimal (objective of ``reference``) and feasible; returns the method used."""
    res = solve(problem, policy, **EXACT)
    if reference is None:
        assert res.status == "infeasible"
        return str(res.info.get("method"))
    assert res.status == "optimal", res.message
    ev = check_assignment(problem, res.assignment)
    assert ev.feasible, ev.violations
    assert objective_close(res.objective, reference, rtol=1e-9, atol=1e-12), (res.objective, reference)
    return str(res.info.get("method"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tied_problems())
def test_milp_on_tied_problems_matches_enumeration(problem: RoutingProblem) -> None:
    _assert_same_optimum(problem, brute_force(problem)[0])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tied_problems(max_n=6, max_m=3))
def test_search_alone_is_exact(problem: RoutingProblem) -> None:
    """The module on its own (no HiGHS fallback): optimal whenever it answers; None only if infeasible."""
    form = LinearForm.from_problem(problem)
    cols = small_exact.solve(form)
    ref, _ = brute_force(problem)
    if cols is None:
        assert ref is None, "the search gave up on a tiny feasible problem"
        return
    a = form.to_assignment(cols)
    ev = check_assignment(problem, a)
    assert ev.feasible, ev.violations
    value = ev.total_cost if problem.min_quality is not None else ev.total_quality
    assert ref is not None and objective_close(value, ref, rtol=1e-9, atol=1e-12), (value, ref)


@pytest.mark.parametrize("form", ["max_quality", "min_cost", "both"])
@pytest.mark.parametrize("seed", range(4))
def test_benchmark_tied_batches_match_the_plain_milp(form: str, seed: int) -> None:
    """The benchmark's RouterBench-like generator, at its size and smaller ones, against the plain MILP."""
    bench = _load_benchmark()
    methods = []
    for n, m, tight in ((12, 4, 0.3), (25, 7, 0.5), (50, 11, 0.4)):
        problem = bench.make_tied_problem(n, m, form, seed, tightness=tight)
        methods.append(_assert_same_optimum(problem, plain_milp(problem)))
    assert methods.count("lp_search") >= 2, methods  # the fast path is what is being tested


@pytest.mark.parametrize("form", ["max_quality", "min_cost", "both"])
def test_robust_box_on_tied_batches_is_the_lower_bound_optimum(form: str) -> None:
    """robust (box) = the exact optimum of the problem on the lower bounds â − κσ (routing.md (R))."""
    problem = _load_benchmark().make_tied_problem(30, 8, form, 3)
    assert problem.quality_std is not None
    lower = dataclasses.replace(problem, quality=np.clip(problem.quality - problem.quality_std, 0.0, 1.0))
    res = solve(problem, "robust", kappa=1.0, **EXACT)
    assert res.info["method"] == "lp_search"
    ev = check_assignment(lower, res.assignment)
    assert ev.feasible, ev.violations  # the floor α holds on the robust (lower-bound) quality
    ref = plain_milp(lower)
    assert ref is not None
    got = ev.total_cost if problem.min_quality is not None else ev.total_quality
    assert objective_close(got, ref, rtol=1e-9, atol=1e-12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tied_problems(max_n=6, max_m=3))
def test_robust_box_on_tied_problems_matches_enumeration(problem: RoutingProblem) -> None:
    assert problem.quality_std is not None
    lower = dataclasses.replace(problem, quality=np.clip(problem.quality - problem.quality_std, 0.0, 1.0))
    ref, _ = brute_force(lower)
    res = solve(problem, "robust", kappa=1.0, **EXACT)
    if ref is None:
        assert res.status == "infeasible"
        return
    ev = check_assignment(lower, res.assignment)
    assert res.status == "optimal" and ev.feasible, (res.message, ev.violations)
    got = ev.total_cost if problem.min_quality is not None else ev.total_quality
    assert objective_close(got, ref, rtol=1e-9, atol=1e-12), (got, ref)


def test_giving_up_falls_back_to_highs(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no search budget, milp still answers exactly, through HiGHS, and says the search gave up."""
    problem = _load_benchmark().make_tied_problem(20, 6, "both", 1)
    monkeypatch.setattr(small_exact, "MAX_NODES", 1)
    res = solve(problem, "milp", **EXACT)
    assert res.info["lp_search"] == "gave up" and res.info["method"] != "lp_search"
    ref = plain_milp(problem)
    assert ref is not None and objective_close(res.objective, ref, rtol=1e-9, atol=1e-12)


def test_untied_and_slo_batches_keep_highs() -> None:
    """The module only takes tied batches without SLO terms (the staircase argument's premises)."""
    rng = np.random.default_rng(0)
    untied = RoutingProblem(quality=rng.random((6, 3)), cost=rng.random((6, 3)), budget=2.0)
    assert not small_exact.applies(LinearForm.from_problem(untied))
    tied = RoutingProblem(quality=np.tile([0.2, 0.5, 0.9], (6, 1)), cost=rng.random((6, 3)), budget=2.0)
    assert small_exact.applies(LinearForm.from_problem(tied))
    slo = dataclasses.replace(tied, latency=rng.random((6, 3)), slo=0.5, slo_mode="penalty", slo_penalty=1.0)
    assert not small_exact.applies(LinearForm.from_problem(slo))


def test_staircase_only_where_the_cost_block_is_monge() -> None:
    """Ranks for a group whose costs are prompt × price + offset; none for a group whose are not."""
    quality = np.array([[0.5, 0.7, 0.9]] * 3 + [[0.1, 0.2, 0.3]] * 3)
    prompt = np.array([3.0, 1.0, 2.0])
    monge = prompt[:, None] * np.array([1.0, 3.0, 2.0])[None, :] + np.array([0.5, 0.0, 0.2])
    crossed = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 2.0], [2.0, 3.0, 1.0]])
    problem = RoutingProblem(quality=quality, cost=np.vstack([monge, crossed]), budget=20.0)
    form = LinearForm.from_problem(problem)
    queue, group, rank = small_exact.staircase(form, [[0, 1, 2]] * 6)
    assert sorted(queue) == list(range(6))
    assert group[0] == group[1] == group[2] != group[3]
    assert all(rank[i] is None for i in (3, 4, 5))
    first = [i for i in queue if i < 3]
    assert first == [1, 2, 0]  # by prompt length
    r = rank[0]
    assert r is not None and list(np.argsort(r)) == [1, 2, 0]  # dearest per prompt token first


def test_rejection_column_is_searched() -> None:
    """A floor no model can meet for every query: rejection (quality 0, cost 0) must be used optimally."""
    quality = np.array([[0.9, 0.4]] * 4)
    cost = np.array([[4.0, 1.0], [3.0, 1.0], [2.0, 1.0], [1.0, 1.0]]) * 1e-3
    problem = RoutingProblem(quality=quality, cost=cost, capacity=np.array([2.0, 1.0]), min_quality=0.5,
                             allow_reject=True)
    res = solve(problem, "milp", **EXACT)
    ref, _ = brute_force(problem)
    assert ref is not None and objective_close(res.objective, ref, rtol=1e-9, atol=1e-12)
    assert res.info["method"] == "lp_search" and np.sum(res.assignment == REJECT) == 1


def test_one_model_many_queries_stays_within_the_recursion_limit() -> None:
    """n × 1 fits MAX_VARS for large n; the query cap keeps the recursive search out of such batches."""
    n = small_exact.MAX_QUERIES + 1
    problem = RoutingProblem(quality=np.full((n, 1), 0.5), cost=np.full((n, 1), 1e-3), budget=1.0,
                             allow_reject=True)
    assert not small_exact.applies(LinearForm.from_problem(problem))
    small = RoutingProblem(quality=np.full((300, 2), 0.5), cost=np.tile([1e-3, 2e-3], (300, 1)), budget=0.4)
    res = solve(small, "milp", **EXACT)
    assert res.info["method"] == "lp_search" and res.status == "optimal"
    assert objective_close(res.objective, 150.0)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tied_problems(max_n=6, max_m=3), st.sampled_from([0.5, 1.0, 2.0, 3.5]))
def test_robust_gamma_on_tied_problems_matches_enumeration(problem: RoutingProblem, gamma: float) -> None:
    """Bertsimas–Sim (Γ < n): the search judges leaves on the protected quality; same optimum as
    enumeration of the protected problem (the reference of tests/policies/test_batch_robust.py)."""
    ref = _brute_force_protected(problem, 1.0, gamma)
    res = solve(problem, "robust", kappa=1.0, gamma=gamma, **EXACT)
    if ref is None:
        assert res.status == "infeasible"
        return
    assert res.status == "optimal", res.message
    ev = check_assignment(dataclasses.replace(problem, min_quality=None), res.assignment)
    assert ev.feasible, ev.violations
    if problem.min_quality is None:
        got = res.info["robust_quality"]
    else:
        got = ev.total_cost
        assert res.info["robust_mean_quality"] >= problem.min_quality - 1e-9
    assert objective_close(got, ref, rtol=1e-9, atol=1e-12), (got, ref)


@pytest.mark.parametrize("form", ["max_quality", "min_cost", "both"])
def test_robust_gamma_on_benchmark_batches_matches_highs(form: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Γ = 3 on the benchmark's tied generator: the search's protected optimum equals HiGHS's (no gap)."""
    problem = _load_benchmark().make_tied_problem(24, 7, form, 2)
    fast = solve(problem, "robust", gamma=3.0, **EXACT)
    assert fast.info["method"] == "lp_search"
    monkeypatch.setattr(small_exact, "MAX_VARS", 0)  # the plain protected MILP
    plain = solve(problem, "robust", gamma=3.0, **EXACT)
    assert plain.info["method"] != "lp_search"
    key = "robust_quality" if form == "max_quality" else "total_cost"
    got = fast.info[key] if key in fast.info else fast.total_cost
    want = plain.info[key] if key in plain.info else plain.total_cost
    assert objective_close(got, want, rtol=1e-9, atol=1e-12), (got, want)
    assert check_assignment(problem, fast.assignment).feasible


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.25, 4.0, 7.0])
def test_leaves_are_judged_on_robusts_protected_quality(gamma: float) -> None:
    """The search's leaf value is robust's own protected quality (Γ largest drops, a fractional share)."""
    from policies.batch.robust import protected_quality

    rng = np.random.default_rng(int(gamma * 4))
    n, m = 6, 3
    quality = np.round(rng.random((n, m)), 2)
    delta = np.round(rng.random((n, m)) * 0.2, 3)
    problem = RoutingProblem(quality=quality, cost=rng.random((n, m)), budget=2.0, allow_reject=True)
    form = LinearForm.from_problem(problem)
    judge = small_exact._Judge(form, small_exact.side_rows(form, protected=True),
                               small_exact._pad(form, quality), small_exact._pad(form, delta), gamma)
    for _ in range(20):
        cols = rng.integers(0, form.k, n)
        want = protected_quality(quality, delta, form.to_assignment(cols), gamma)
        assert judge.protected(cols) == pytest.approx(want, abs=1e-12)


def test_search_respects_the_deadline() -> None:
    """Past its deadline the search gives up (milp then hands HiGHS the time that is left)."""
    import time

    problem = _load_benchmark().make_tied_problem(20, 6, "min_cost", 0)
    form = LinearForm.from_problem(problem)
    assert small_exact.solve(form, deadline=time.perf_counter() - 1.0) is None
    assert small_exact.solve(form) is not None
    res = solve(problem, "milp", time_limit=1e-6)  # everything is late: still a valid answer
    assert res.info.get("lp_search") == "gave up"
    assert_consistent(problem, res)


@pytest.mark.parametrize("form", ["max_quality", "min_cost"])
def test_reported_bound_is_the_answers_own_objective(form: str) -> None:
    """No gap: ``info["bound"]`` is the objective reached (protected quality for robust Γ, max-quality)."""
    problem = _load_benchmark().make_tied_problem(20, 6, form, 0)
    res = solve(problem, "milp", **EXACT)
    assert res.info["method"] == "lp_search" and res.info["mip_gap"] == 0.0
    assert objective_close(res.info["bound"], res.objective, rtol=1e-12)
    rob = solve(problem, "robust", gamma=2.0, **EXACT)
    assert rob.info["method"] == "lp_search"
    want = rob.info["robust_quality"] if form == "max_quality" else rob.objective
    assert objective_close(rob.info["bound"], want, rtol=1e-12)
