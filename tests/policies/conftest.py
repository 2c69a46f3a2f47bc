"""Shared strategies and helpers for the policy tests.

* :func:`problems` — hypothesis strategy over small RoutingProblems, degenerate ones included
  (ties, zero costs, one model, zero/exact/short capacity, infeasible budgets and floors);
* :func:`brute_force` — the exact optimum by enumeration, the reference for the exact solvers;
* :func:`realistic` — the benchmark's realistic generator (``benchmarks/solvers.py``).

Values are drawn on coarse grids so that distinct sums of costs and qualities differ by far more
than HiGHS's tolerances (~1e-7): the exact solvers can then be compared to enumeration exactly.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import sys
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

from policies import REJECT, RoutingProblem, RoutingResult, check_assignment

ROOT = Path(__file__).resolve().parents[2]
SIDES = ("none", "budget", "alpha", "both")


def _load_benchmark() -> Any:
    name = "_llmsim_benchmark_solvers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "solvers.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def realistic(n: int, m: int, form: str = "max_quality", seed: int = 0, **kw: Any) -> RoutingProblem:
    """The benchmark's realistic batch (logistic quality, 1e-5..1e-2 USD costs, 30 % strong slots)."""
    return _load_benchmark().make_problem(n, m, form, seed, **kw)


@st.composite
def problems(draw: st.DrawFn, max_n: int = 7, max_m: int = 3, sides: tuple[str, ...] = SIDES,
             min_n: int = 0, reject: bool | None = None, infeasible: bool = True) -> RoutingProblem:
    """Small problems on value grids; ``sides`` picks which rows may be set."""
    n = draw(st.integers(min_n, max_n))
    m = draw(st.integers(1, max_m))
    style = draw(st.sampled_from(["grid", "ties", "identical_rows", "zero_cost"]))
    q_grid = np.linspace(0.0, 1.0, 21)
    c_grid = np.arange(0, 11) * 1e-3
    if style == "ties":
        q_grid, c_grid = np.array([0.0, 0.5, 1.0]), np.array([0.0, 1e-3, 2e-3])
    qi = draw(st.lists(st.integers(0, q_grid.size - 1), min_size=n * m, max_size=n * m))
    ci = draw(st.lists(st.integers(0, c_grid.size - 1), min_size=n * m, max_size=n * m))
    quality = q_grid[np.array(qi, dtype=np.int64)].reshape(n, m)
    cost = c_grid[np.array(ci, dtype=np.int64)].reshape(n, m)
    if style == "identical_rows" and n:
        quality, cost = np.repeat(quality[:1], n, axis=0), np.repeat(cost[:1], n, axis=0)
    if style == "zero_cost":
        cost = np.zeros((n, m))
    cap_kind = draw(st.sampled_from(["inf", "random", "exact", "short"] if infeasible else ["inf", "random", "exact"]))
    if cap_kind == "inf":
        capacity = np.full(m, np.inf)
    elif cap_kind == "random":
        capacity = np.array(draw(st.lists(st.sampled_from([0.0, 1.0, 2.0, 2.5, float(n), np.inf]),
                                          min_size=m, max_size=m)))
        if not infeasible and np.sum(np.minimum(np.floor(capacity), n)) < n:  # 2.5 slots hold 2
            capacity[-1] = np.inf
    else:  # capacity summing to exactly n (or n - 1: short)
        total = n if cap_kind == "exact" else max(n - 1, 0)
        cuts = np.sort(np.array(draw(st.lists(st.integers(0, total), min_size=m - 1, max_size=m - 1)), dtype=np.int64))
        capacity = np.diff(np.concatenate([[0], cuts, [total]])).astype(np.float64)
    allow_reject = draw(st.booleans()) if reject is None else reject
    side = draw(st.sampled_from(sides))
    lo_frac = -0.2 if infeasible else 0.0
    budget = alpha = None
    if side in ("budget", "both"):
        cheap, dear = float(cost.min(axis=1).sum()), float(cost.max(axis=1).sum())
        fracs = [0.0, 0.5, 1.0] + ([-0.1] if infeasible else [])
        frac = draw(st.sampled_from(fracs) | st.floats(lo_frac, 1.2))
        budget = cheap + frac * max(dear - cheap, 1e-3)
        budget = max(budget, 0.0)
    if side in ("alpha", "both"):
        worst = float(quality.min(axis=1).mean()) if n else 0.0
        best = float(quality.max(axis=1).mean()) if n else 0.0
        fracs = [0.0, 0.5, 1.0] + ([1.1] if infeasible else [])
        frac = draw(st.sampled_from(fracs) | st.floats(0.0, 1.2 if infeasible else 1.0))
        alpha = float(np.clip(worst + frac * (best - worst), 0.0, 1.0))
    std = np.array(draw(st.lists(st.sampled_from([0.0, 0.05, 0.1, 0.3]), min_size=n * m, max_size=n * m)))
    truth = np.array(draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=n * m, max_size=n * m)))
    return RoutingProblem(quality=quality, cost=cost, capacity=capacity, budget=budget, min_quality=alpha,
                          allow_reject=allow_reject, quality_std=std.reshape(n, m),
                          true_quality=truth.reshape(n, m))


def all_assignments(problem: RoutingProblem) -> np.ndarray:
    """Every assignment of a tiny problem, shape (K^n, n)."""
    choices = list(range(problem.m)) + ([REJECT] if problem.allow_reject else [])
    if problem.n == 0:
        return np.zeros((1, 0), dtype=np.int64)
    return np.array(list(itertools.product(choices, repeat=problem.n)), dtype=np.int64)


def brute_force(problem: RoutingProblem, quality: np.ndarray | None = None) -> tuple[float | None, np.ndarray | None]:
    """Optimal objective and an optimal assignment by enumeration (``(None, None)`` if infeasible).

    Feasibility uses :func:`policies.check_assignment` semantics (same tolerances); ``quality``
    overrides the quality used for both the objective and the α row (oracle).
    """
    q = problem.quality if quality is None else quality
    a = all_assignments(problem)
    n, m = problem.n, problem.m
    if n == 0:
        return 0.0, a[0]
    routed = a >= 0
    rows = np.broadcast_to(np.arange(n), a.shape)
    safe = np.where(routed, a, 0)
    total_q = np.where(routed, q[rows, safe], 0.0).sum(axis=1)
    total_c = np.where(routed, problem.cost[rows, safe], 0.0).sum(axis=1)
    ok = np.ones(a.shape[0], dtype=bool)
    cap = problem.capacity
    assert cap is not None
    for j in range(m):
        ok &= (a == j).sum(axis=1) <= cap[j] + 1e-9
    if problem.budget is not None:
        ok &= total_c <= problem.budget + 1e-9 * max(1.0, problem.budget)
    if problem.min_quality is not None:
        ok &= total_q / n >= problem.min_quality - 1e-9
    if not ok.any():
        return None, None
    if problem.min_quality is not None:
        obj = np.where(ok, total_c, np.inf)
        i = int(np.argmin(obj))
    else:
        obj = np.where(ok, total_q, -np.inf)
        i = int(np.argmax(obj))
    return float(obj[i]), a[i]


def assert_consistent(problem: RoutingProblem, result: RoutingResult) -> None:
    """The invariants every result must satisfy, whatever the policy."""
    assert result.assignment.shape == (problem.n,)
    assert result.status in ("optimal", "feasible", "infeasible")
    ev = check_assignment(problem, result.assignment)
    if result.status != "infeasible":
        assert ev.feasible, (result.status, ev.violations, result.message)
    else:
        assert result.message, "an infeasible result must say why"
    assert np.all(ev.loads <= problem.capacity + 1e-9), "capacity is never exceeded, even best effort"


def objective_close(a: float, b: float, rtol: float = 1e-7, atol: float = 1e-9) -> bool:
    return abs(a - b) <= atol + rtol * max(abs(a), abs(b))


def on_tolerance_edge(problem: RoutingProblem, best: float | None, brute: Any = None) -> bool:
    """Feasible only thanks to the checker's 1e-9 slack on the side row: policies keep half of it as a
    rounding margin, so whether they call such a problem feasible is not defined."""
    if best is None:
        return False
    tightened = {}
    if problem.budget is not None:
        tightened["budget"] = max(0.0, problem.budget - 1e-9 * max(1.0, problem.budget))
    if problem.min_quality is not None:
        tightened["min_quality"] = min(1.0, problem.min_quality + 1e-9)  # a floor of 1 cannot be raised
    exact = brute_force if brute is None else brute  # the enumeration ``best`` came from
    return bool(tightened) and exact(dataclasses.replace(problem, **tightened))[0] is None


def as_problem(one: Any) -> RoutingProblem:
    """The 1 × m RoutingProblem equivalent to a :class:`policies.one_query.OneQuery`."""
    return RoutingProblem(quality=np.array([list(one.quality)]), cost=np.array([list(one.cost)]),
                          capacity=np.array(list(one.capacity)),
                          load=None if one.load is None else np.array(list(one.load)), budget=one.budget,
                          min_quality=one.min_quality, allow_reject=one.allow_reject)


def one_queries(quality: Any, cost: Any, capacity: Any, load: Any, floors: list[float | None],
                budgets: list[float | None], max_m: int) -> Any:
    """Strategy over (OneQuery, its RoutingProblem) pairs of 1..max_m models, values drawn per model."""
    from policies.one_query import OneQuery

    @st.composite
    def draw_one(draw: st.DrawFn) -> tuple[Any, RoutingProblem]:
        m = draw(st.integers(1, max_m))
        one = OneQuery([draw(quality) for _ in range(m)], [draw(cost) for _ in range(m)],
                       [draw(capacity) for _ in range(m)], [draw(load) for _ in range(m)],
                       draw(st.sampled_from(budgets)), draw(st.sampled_from(floors)), draw(st.booleans()))
        return one, as_problem(one)

    return draw_one()
