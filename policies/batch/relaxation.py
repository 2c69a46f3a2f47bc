"""The route shared by the relaxation-based policies (``lagrangian``, ``min_cost_flow``, robust box).

1. cheap infeasibility checks (capacity, side row ignoring capacity);
2. with no side row: one capacity-constrained inner solve (exact up to the inner solver);
3. with a side row: the multiplier search (:mod:`policies.batch.multiplier`); the feasible end of the
   bracket is the primal, and the infeasible end is repaired (capacity, then the side row) as a
   second candidate; if no feasible point turned up, the exact row minimiser decides feasibility;
4. an improvement pass spends what slack is left;
5. the Lagrangian bound certifies the result: ``optimal`` when the value meets it.

Only :mod:`policies.batch.milp` models a budget and a floor at once; here the floor is the side row
and a budget, if also set, is checked (and reported when violated) but not optimised.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from policies.batch import feasibility, multiplier
from policies.batch.base import BatchPolicy
from policies.batch.linear_form import LinearForm
from policies.batch.multiplier import Inner
from policies.batch.repair import improve, repair_capacity, repair_side
from policies.problem import IntArray, RoutingProblem
from policies.result import STATUS_FEASIBLE, STATUS_OPTIMAL, RoutingResult, check_assignment

CERTIFY_RTOL = 1e-9


def recover(form: LinearForm, search: multiplier.Search) -> IntArray | None:
    """Best feasible assignment from the search: its feasible end, or the infeasible end repaired."""
    candidates: list[IntArray] = []
    if search.best is not None:
        candidates.append(improve(form, search.best.cols))
    if search.lo is not None:
        fixed = repair_side(form, repair_capacity(form, search.lo.cols))
        if form.feasible(fixed):
            candidates.append(improve(form, fixed))
    if not candidates:
        return None
    return max(candidates, key=form.value)


def certify(form: LinearForm, cols: IntArray, bound: float) -> tuple[str, dict[str, Any]]:
    """Status from the bound, and the numbers for ``info`` in the problem's own units."""
    value = form.value(cols)
    tol = CERTIFY_RTOL * max(1.0, abs(bound))
    status = STATUS_OPTIMAL if np.isfinite(bound) and value >= bound - tol else STATUS_FEASIBLE
    obj_bound = form.to_objective(bound) if np.isfinite(bound) else None
    obj = form.objective(cols)
    info: dict[str, Any] = {"bound": obj_bound}
    if obj_bound is not None:
        info["gap"] = abs(obj_bound - obj) / max(abs(obj_bound), 1e-12)
    return status, info


def budget_note(problem: RoutingProblem, assignment: IntArray, policy: str) -> str:
    """Message when a min-cost solver also faced a budget it does not model, and broke it."""
    if problem.budget is None or problem.min_quality is None:
        return ""
    ev = check_assignment(problem, assignment)
    if ev.feasible or not any(v.startswith("budget") for v in ev.violations):
        return ""
    return (f"budget: {policy} optimises cost subject to min_quality only; the assignment it found "
            f"costs {ev.total_cost:.6g} > budget {problem.budget:.6g} (milp models both rows)")


def route(policy: BatchPolicy, problem: RoutingProblem, form: LinearForm, inner: Inner, *,
          max_evals: int = 60, info: dict[str, Any] | None = None,
          bracket: tuple[float, float] | None = None) -> RoutingResult:
    """Steps 1–5 of the module docstring; ``inner`` solves ``max Σ w x`` within capacity."""
    info = dict(info or {})
    bad = feasibility.quick(form)
    if bad is not None:
        return policy.infeasible(problem, bad, info=info)
    cols: IntArray | None
    if form.row is None:
        t = inner(form.score)
        cols = improve(form, repair_capacity(form, t.cols))
        bound = t.bound
        info["nu"] = 0.0
    else:
        s = multiplier.search(form, inner, max_evals=max_evals, bracket=bracket)
        bound = s.bound
        info.update(nu=None if s.hi is None else s.hi.nu, evaluations=s.evaluations)
        cols = recover(form, s)
        if cols is None:
            bad = feasibility.exact_side(form)
            if bad is not None:
                return policy.infeasible(problem, bad, info=info)
            least, _ = feasibility.row_minimiser(form)
            cols = improve(form, least)
            info["recovered_from"] = "row minimiser"
    status, extra = certify(form, cols, bound)
    info.update(extra)
    assignment = form.to_assignment(cols)
    return RoutingResult.build(problem, assignment, status, info=info,
                               message=budget_note(problem, assignment, policy.name))
