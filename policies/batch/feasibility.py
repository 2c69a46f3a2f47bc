"""Why a batch problem is infeasible, and the best-effort assignment to return anyway.

Checks go from cheap to exact so that solvers can fail fast with a precise reason:

1. capacity: Σ capacity < n without rejection (O(m));
2. the side row ignoring capacity: every query on its cheapest (best) model already misses the budget
   (floor α) — O(n·m);
3. the side row with capacity: the assignment that uses the least of the row within capacity
   (a transportation problem, solved exactly by HiGHS) still misses it.

Each failure comes with the assignment that is "closest" for that constraint: the most queries the
capacity can take (the rest rejected), or the assignment using the least of the side row. The
result's checker then names every violated constraint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies.batch import transport
from policies.batch.linear_form import LinearForm
from policies.batch.repair import improve
from policies.problem import REJECT, IntArray, RoutingProblem


@dataclass
class Infeasible:
    constraint: str  # "capacity", "budget", "min_quality" or "budget and min_quality"
    message: str
    assignment: IntArray  # best effort, public encoding (REJECT = -1)


def capacity_shortfall(problem: RoutingProblem) -> str | None:
    """Reason when the models cannot take every query and rejection is not allowed."""
    if problem.allow_reject:
        return None
    total = int(problem.int_capacity().sum())
    if total < problem.n:
        return (f"capacity: total capacity {total} < {problem.n} queries and allow_reject is False "
                f"(best effort rejects {problem.n - total})")
    return None


def capacity_best_effort(form: LinearForm) -> IntArray:
    """Route as many queries as capacity allows, the best ones by score; reject the rest."""
    n = form.n
    big = 1.0 + 2.0 * float(np.abs(form.score).max(initial=0.0)) * max(n, 1)
    w = np.hstack([form.score, np.full((n, 1), -big)])
    cap = np.append(form.cap, n)
    cols = transport.solve(w, cap).cols
    a = form.to_assignment(np.where(cols == form.k, 0, cols))
    a[cols == form.k] = REJECT
    return a


def row_reason_ignoring_capacity(form: LinearForm) -> str | None:
    """O(n·m) bound: the side row cannot hold even when every query takes its own best column."""
    if form.row is None or form.rhs is None:
        return None
    least = float(form.row.min(axis=1).sum())
    if least - form.rhs <= form.row_tol:
        return None
    return _row_message(form, least, "even ignoring capacity, ")


def row_minimiser(form: LinearForm) -> tuple[IntArray, float]:
    """Exact assignment using the least of the side row within capacity (ties: more score).

    Returns the columns and the least row value. The tie-break weight is far below the row's
    precision, so the least value is exact up to HiGHS's tolerances.
    """
    assert form.row is not None
    # at least 1e-12: scores near the smallest subnormal would make tau overflow to inf (and the
    # transportation costs inf - inf); such scores are zero to every solver anyway
    scale = max(float(np.abs(form.score).max(initial=0.0)) or 1.0, 1e-12)
    tau = 1e-9 / (scale * max(form.n, 1))
    t = transport.exact(-form.row + tau * form.score, form.cap)
    least = form.side(t.cols)
    cols = improve(form, t.cols)  # only moves that gain score without using more of the row
    return cols, min(least, form.side(cols))


def _row_message(form: LinearForm, least: float, prefix: str) -> str:
    p = form.problem
    if form.row_name == "budget":
        cost = least * form.cost_scale
        return f"budget: {prefix}the cheapest assignment within capacity costs {cost:.6g} > budget {p.budget:.6g}"
    best_mean = -least / max(form.n, 1)
    return (f"min_quality: {prefix}the best mean quality within capacity is {best_mean:.6g} "
            f"< min_quality {p.min_quality:.6g}")


def quick(form: LinearForm) -> Infeasible | None:
    """Checks 1 and 2 (no solver call unless infeasible, to build the best-effort answer)."""
    reason = capacity_shortfall(form.problem)
    if reason is not None:
        return Infeasible("capacity", reason, capacity_best_effort(form))
    cheap = row_reason_ignoring_capacity(form)
    if cheap is not None:
        assert form.row_name is not None
        cols, _ = row_minimiser(form)
        return Infeasible(form.row_name, cheap, form.to_assignment(cols))
    return None


def exact_side(form: LinearForm) -> Infeasible | None:
    """Check 3: the side row under capacity, exactly (one HiGHS transportation solve)."""
    if form.row is None or form.rhs is None:
        return None
    cols, least = row_minimiser(form)
    if least - form.rhs <= form.row_tol:
        return None
    assert form.row_name is not None
    return Infeasible(form.row_name, _row_message(form, least, ""), form.to_assignment(cols))


def check(form: LinearForm) -> Infeasible | None:
    """All three checks; ``None`` when capacity and the side row can each hold."""
    return quick(form) or exact_side(form)
