"""``milp``: the exact batch problem through HiGHS (:func:`scipy.optimize.milp`), sparse throughout.

The only policy that models a budget and a quality floor at the same time. The model (see
:class:`~policies.batch.milp_model.MilpModel`) has x_ij binaries, one equality row per query, capacity
rows for the models whose capacity can bind, the budget and/or α row, and optionally the
Bertsimas–Sim protection of ``robust`` (``routing.md`` (R)):

    quality(x) = Σ â_ij x_ij − Γ z − Σ_i p_i,     z + p_i ≥ Σ_j δ_ij x_ij,   z, p ≥ 0,

which is the nominal quality minus the worst loss when at most Γ chosen predictions fall by δ.
(The per-query p_i is equivalent to routing.md's p_ij because each query takes one model.)

Infeasibility is detected cheaply before HiGHS runs (capacity sum, the side row ignoring capacity)
and diagnosed exactly when HiGHS reports it, so the message names the constraint and its numbers.
``optimal`` means optimality is proven within ``mip_rel_gap`` — by HiGHS's branch-and-bound, or, on
big batches, by the LP bound (:func:`_lp_round`); on the time limit the incumbent is returned as
``feasible`` (or, with no incumbent, the ``lagrangian`` answer).

Small batches with tied quality rows (the ``task_mean`` predictor) skip HiGHS's branch-and-bound: see
:mod:`policies.batch.small_exact` (``method = "lp_search"`` in ``info``). Its answer is optimal with no
gap (HiGHS's is within ``mip_rel_gap``); where several assignments are optimal it may pick another one,
with the same objective within 1e-9 relative and every constraint holding (tested against the plain MILP).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from policies.batch import feasibility, small_exact
from policies.batch.base import BatchPolicy, positive
from policies.batch.dominance import dominated
from policies.batch.lagrangian import solve_form
from policies.batch.linear_form import LinearForm
from policies.batch.milp_model import MilpModel, MilpSolution
from policies.batch.relaxation import CERTIFY_RTOL
from policies.batch.repair import improve, repair_capacity, repair_side, repair_side_swaps
from policies.errors import InvalidParameterError
from policies.problem import FloatArray, IntArray, ProblemForm, RoutingProblem
from policies.registry import register
from policies.result import (
    STATUS_FEASIBLE,
    STATUS_INFEASIBLE,
    STATUS_OPTIMAL,
    RoutingResult,
    check_assignment,
)

Protection = tuple[FloatArray, float]  # (δ (n, m) deviations, Γ)

LP_FIRST_VARS = 20_000  # x variables from which the LP-rounding shortcut is tried first
INTEGRAL_TOL = 1e-7
# Relative slack on "incumbent within mip_rel_gap of the LP bound": float error of summing the same
# objective in another order (HiGHS vs numpy), far below HiGHS's own tolerances (~1e-7 absolute).
ROUNDING_RTOL = 1e-12


def _pad(form: LinearForm, a: FloatArray) -> FloatArray:
    """Append the reject column (all zeros) when the form has one."""
    return np.hstack([a, np.zeros((form.n, 1))]) if form.reject_col is not None else a


def build_model(form: LinearForm, *, protect: Protection | None = None, prune: bool = True,
                with_side: bool = True, with_budget: bool = True,
                maximise_quality: bool = False) -> MilpModel:
    """The MILP of ``form`` (see the module docstring).

    ``with_side``/``with_budget`` drop rows (used to diagnose infeasibility); ``maximise_quality``
    replaces the objective by the (protected) quality, for best-effort answers.
    """
    problem = form.problem
    n = form.n
    quality = _pad(form, form.quality)
    min_cost = problem.form is ProblemForm.MIN_COST
    budget_row = None
    if with_budget and min_cost and problem.budget is not None:
        budget_row = _pad(form, problem.cost / form.cost_scale)
    delta = None if protect is None else _pad(form, np.asarray(protect[0], dtype=np.float64))
    objective = quality if maximise_quality else form.score
    better = [objective, quality, -_pad(form, problem.cost)]
    if delta is not None:
        better.append(-delta)
    fixed = dominated(form.cap, better) if prune else None
    if form.forbidden is not None and form.reject_col is not None:
        # SLO constraint with rejection allowed: a pair over the SLO is never used (see linear_form).
        fixed = form.forbidden if fixed is None else fixed | form.forbidden
    model = MilpModel(objective, form.cap, fixed)
    quality_is_objective = maximise_quality or not min_cost
    prot_cols: slice | None = None
    if delta is not None and protect is not None:
        gamma = float(protect[1])
        z = model.add_vars(1, -gamma if quality_is_objective else 0.0)
        p = model.add_vars(n, -1.0 if quality_is_objective else 0.0)
        nx_, nv = model.nx, p.stop
        flat = delta.ravel()
        rows_x = np.repeat(np.arange(n), form.k)
        a = sp.coo_matrix(
            (np.concatenate([-flat, np.ones(n), np.ones(n)]),
             (np.concatenate([rows_x, np.arange(n), np.arange(n)]),
              np.concatenate([np.arange(nx_), np.full(n, z.start), np.arange(p.start, p.stop)]))),
            shape=(n, nv))
        model.add_rows(a, np.zeros(n), np.full(n, np.inf))
        prot_cols = slice(z.start, p.stop)
    if with_side and form.row is not None and form.rhs is not None and not maximise_quality:
        if form.row_name == "budget":
            model.add_x_row(form.row, ub=form.rhs)
        elif prot_cols is None:
            model.add_x_row(quality, lb=-form.rhs)
        else:
            gamma = float(protect[1]) if protect is not None else 0.0
            nv = prot_cols.stop
            coef = np.concatenate([quality.ravel(), [-gamma], -np.ones(n)])
            nz = np.nonzero(coef)[0]
            a = sp.coo_matrix((coef[nz], (np.zeros(nz.size, dtype=np.int64), nz)), shape=(1, nv))
            model.add_rows(a, np.array([-form.rhs]), np.array([np.inf]))
    if maximise_quality and with_budget and problem.budget is not None:
        model.add_x_row(_pad(form, problem.cost / form.cost_scale), ub=problem.budget / form.cost_scale)
    elif budget_row is not None and problem.budget is not None:
        model.add_x_row(budget_row, ub=problem.budget / form.cost_scale)
    return model


def polish(form: LinearForm, cols: IntArray) -> IntArray:
    """Undo HiGHS's tolerance-level violations (~1e-7) of capacity or the side row, if any."""
    if form.feasible(cols):
        return cols
    return improve(form, repair_side_swaps(form, repair_side(form, repair_capacity(form, cols))))


def diagnose(policy: BatchPolicy, problem: RoutingProblem, form: LinearForm, protect: Protection | None,
             sol: MilpSolution, info: dict[str, Any], time_limit: float) -> RoutingResult:
    """HiGHS said infeasible: find which constraint (or pair) cannot hold, with a best effort."""
    bad = feasibility.exact_side(form)
    if bad is not None:
        return policy.infeasible(problem, bad, info=info)
    if form.row_name == "min_quality" and problem.budget is not None:
        budget_only = LinearForm.from_problem(dataclasses.replace(problem, min_quality=None), form.quality)
        bad = feasibility.quick(budget_only) or feasibility.exact_side(budget_only)
        if bad is not None:
            return policy.infeasible(problem, bad, info=info)
    if protect is not None:
        best = build_model(form, protect=protect, maximise_quality=True).solve(time_limit=time_limit)
        msg = (f"min_quality: no assignment within capacity and budget keeps the protected mean quality "
               f"(Γ = {protect[1]:g}) ≥ {problem.min_quality:.6g}")
        if best.cols is not None and best.objective is not None:
            msg += f"; the best reaches {best.objective / problem.n:.6g}"
        return policy.infeasible(problem, msg, None if best.cols is None else form.to_assignment(best.cols),
                                 info=info | {"infeasible_constraint": "min_quality"})
    if form.row_name == "min_quality" and problem.budget is not None:
        cheapest = build_model(form, with_budget=False).solve(time_limit=time_limit)
        msg = "budget and min_quality: no assignment within capacity meets both"
        a = None
        if cheapest.cols is not None:
            a = form.to_assignment(cheapest.cols)
            cost = check_assignment(problem, a).total_cost
            msg = (f"budget and min_quality: the cheapest assignment within capacity with mean quality "
                   f"≥ {problem.min_quality:.6g} costs {cost:.6g} > budget {problem.budget:.6g}")
        return policy.infeasible(problem, msg, a, info=info | {"infeasible_constraint": "budget and min_quality"})
    return policy.infeasible(problem, f"HiGHS reports the problem infeasible: {sol.message}", info=info)


def _lp_round(model: MilpModel, time_limit: float, mip_rel_gap: float,
              info: dict[str, Any]) -> tuple[MilpSolution | None, MilpSolution | None]:
    """LP relaxation, then the MILP with every integral query of the LP fixed.

    With one side row the LP optimum has at most a couple of fractional queries (``routing.md``), so
    the fixed MILP is tiny; if its value is within ``mip_rel_gap`` of the LP bound it is optimal in
    exactly HiGHS's sense. Big batches are solved this way because HiGHS's branch-and-bound spends
    minutes in root processing at 10 000 × 16 although the LP takes about a second. Returns the LP
    and the fixed-MILP solutions (either may be ``None``).
    """
    t0 = time.perf_counter()
    lp = model.solve(time_limit=time_limit, relax=True)
    info["lp_time_s"] = time.perf_counter() - t0
    if lp.status != "optimal" or lp.x is None:
        return lp, None
    integral = lp.x.max(axis=1) >= 1.0 - INTEGRAL_TOL
    info["lp_fractional_queries"] = int((~integral).sum())
    fix = np.where(integral, np.argmax(lp.x, axis=1), -1)
    left = time_limit - (time.perf_counter() - t0)
    fixed = model.solve(time_limit=left, mip_rel_gap=mip_rel_gap, fix=fix)
    if fixed.cols is None:
        return lp, None
    # HiGHS's bound and gap for the fixed model say nothing about the full one; the LP bound does.
    return lp, dataclasses.replace(fixed, dual_bound=lp.objective, mip_gap=None)


def solve_exact(policy: BatchPolicy, problem: RoutingProblem, form: LinearForm, *,
                protect: Protection | None = None, time_limit: float = 60.0,
                mip_rel_gap: float = 1e-4, prune: bool = True, lp_first: bool | None = None) -> RoutingResult:
    """Checks, model, HiGHS, and the mapping of its answer to a :class:`RoutingResult`.

    ``lp_first`` (default: for models with at least ``LP_FIRST_VARS`` binaries) tries
    :func:`_lp_round` before branch-and-bound and stops there when that is provably within
    ``mip_rel_gap``.
    """
    info: dict[str, Any] = {}
    bad = feasibility.quick(form)
    if bad is None and form.row_name == "min_quality" and problem.budget is not None:
        budget_only = LinearForm.from_problem(dataclasses.replace(problem, min_quality=None), form.quality)
        bad = feasibility.quick(budget_only)
    if bad is not None:
        return policy.infeasible(problem, bad, info=info)
    start = time.perf_counter()
    if lp_first is not True:
        found = _small_exact(problem, form, protect, start + time_limit, info)
        if found is not None:
            return found
    model = build_model(form, protect=protect, prune=prune)
    if lp_first is None:
        lp_first = model.nx >= LP_FIRST_VARS
    incumbent: MilpSolution | None = None
    sol: MilpSolution | None = None
    form_holds_all_rows = protect is None and not (form.row_name == "min_quality" and problem.budget is not None)
    if lp_first:
        lp, incumbent = _lp_round(model, time_limit, mip_rel_gap, info)
        if lp is not None and lp.status == "infeasible":
            return diagnose(policy, problem, form, protect, lp, info, time_limit)
        if incumbent is not None and incumbent.cols is not None and form_holds_all_rows:
            better = improve(form, polish(form, incumbent.cols))
            if form.feasible(better) and form.value(better) > _or_minus_inf(incumbent.objective):
                incumbent = dataclasses.replace(incumbent, cols=better, objective=form.value(better))
        if incumbent is not None and lp is not None and lp.objective is not None:
            assert incumbent.objective is not None
            gap = (lp.objective - incumbent.objective) / max(abs(lp.objective), 1e-12)
            info.update(method="lp_rounding", mip_gap=max(gap, 0.0))
            if gap <= mip_rel_gap + ROUNDING_RTOL:
                sol = dataclasses.replace(incumbent, status="optimal", dual_bound=lp.objective,
                                          mip_gap=max(gap, 0.0))
    if sol is None:
        left = time_limit - (time.perf_counter() - start)
        sol = model.solve(time_limit=left, mip_rel_gap=mip_rel_gap)
        info.update(method="branch_and_bound", mip_gap=sol.mip_gap)
        if sol.status == "infeasible" and incumbent is None:
            info.update(highs_status=sol.status, highs_message=sol.message)
            return diagnose(policy, problem, form, protect, sol, info, time_limit)
        if incumbent is not None and (
            sol.cols is None or _or_minus_inf(sol.objective) < _or_minus_inf(incumbent.objective)
        ):
            sol = _keep_incumbent(incumbent, sol)
            info["method"] = "lp_rounding"
    info.update(highs_status=sol.status, highs_message=sol.message)
    if sol.dual_bound is not None:
        info["bound"] = form.to_objective(sol.dual_bound)
    if sol.cols is None:
        res = solve_form(policy, problem, form)
        res.info.update(info, fallback="lagrangian")
        note = f"HiGHS stopped without an incumbent ({sol.message}); lagrangian answer returned"
        if protect is not None:
            note += " (nominal quality: the protection is not modelled by the fallback)"
            if problem.min_quality is not None:
                # The floor applies to protected quality, which the nominal answer does not guarantee.
                res.status = STATUS_INFEASIBLE
                note += "; min_quality: the protected floor is not certified"
        res.message = f"{res.message}; {note}" if res.message else note
        return res
    cols = sol.cols
    status = STATUS_OPTIMAL if sol.status == "optimal" else STATUS_FEASIBLE
    fixed = polish(form, cols)
    if not np.array_equal(fixed, cols):
        info["polished"] = int(np.count_nonzero(fixed != cols))
        bound = sol.dual_bound
        # still proven if the polished answer scores the bound HiGHS proved (e.g. a swap of equal-cost
        # queries that restores a floor HiGHS met only within its tolerance)
        if bound is None or form.value(fixed) < bound - CERTIFY_RTOL * max(1.0, abs(bound)):
            status = STATUS_FEASIBLE
    if form_holds_all_rows:
        # The form holds every row, so single-query moves may close (part of) the allowed gap.
        better = improve(form, fixed)
        if form.value(better) > form.value(fixed):
            info["improved"] = int(np.count_nonzero(better != fixed))
            fixed = better
    return RoutingResult.build(problem, form.to_assignment(fixed), status, info=info)


def _small_exact(problem: RoutingProblem, form: LinearForm, protect: Protection | None, deadline: float,
                 info: dict[str, Any]) -> RoutingResult | None:
    """The exact LP-bounded search of :mod:`small_exact` where it applies (small tied batches, no SLO);
    None when it does not apply or gives up (noted in ``info``; HiGHS then runs as before)."""
    if not small_exact.applies(form, None if protect is None else protect[0]):
        return None
    cols = small_exact.solve(form, protect=protect, deadline=deadline)
    if cols is None:
        info["lp_search"] = "gave up"
        return None
    info.update(method="lp_search", mip_gap=0.0, bound=form.to_objective(small_exact.model_value(form, cols, protect)))
    return RoutingResult.build(problem, form.to_assignment(cols), STATUS_OPTIMAL, info=info)


def _keep_incumbent(incumbent: MilpSolution, bnb: MilpSolution) -> MilpSolution:
    """The LP-rounding incumbent, which scores at least branch-and-bound's answer ``bnb``.

    If HiGHS proved ``bnb`` optimal, its dual bound proves every assignment scoring as much optimal
    too (the two often are the same assignment, summed in another order: 1 ulp apart). Otherwise the
    incumbent is only ``limit``. The bound is the tighter of the LP bound and HiGHS's.
    """
    bounds = [b for b in (incumbent.dual_bound, bnb.dual_bound) if b is not None]
    proven = bnb.status == "optimal"
    return dataclasses.replace(incumbent, status="optimal" if proven else "limit",
                               dual_bound=min(bounds) if bounds else None,
                               mip_gap=bnb.mip_gap if proven else None)


def _or_minus_inf(x: float | None) -> float:
    """An objective, with "none found" as -inf (0.0 is a real objective, not a missing one)."""
    return -np.inf if x is None else float(x)


@register("milp")
class Milp(BatchPolicy):
    """Exact MILP through HiGHS.

    Args:
        time_limit: seconds HiGHS may run (default 60); past it the incumbent is returned.
        mip_rel_gap: relative optimality gap at which HiGHS stops (``optimal`` is within it).
        prune: leave out x_ij dominated by an unlimited model (exact; smaller models).
        lp_first: try LP relaxation + fixing its integral queries before branch-and-bound
            (``None``: for models of at least ``LP_FIRST_VARS`` binaries).
        best_effort: see :class:`~policies.batch.base.BatchPolicy`.
    """

    def __init__(self, time_limit: float = 60.0, mip_rel_gap: float = 1e-4, prune: bool = True,
                 lp_first: bool | None = None, best_effort: bool = True) -> None:
        super().__init__(best_effort)
        self.time_limit = positive("time_limit", time_limit)
        self.mip_rel_gap = positive("mip_rel_gap", mip_rel_gap, allow_zero=True)
        self.prune = bool(prune)
        if lp_first is not None and not isinstance(lp_first, bool):
            raise InvalidParameterError(f"lp_first must be None or a bool, got {lp_first!r}")
        self.lp_first = lp_first

    def _solve(self, problem: RoutingProblem) -> RoutingResult:
        return solve_exact(self, problem, LinearForm.from_problem(problem), time_limit=self.time_limit,
                           mip_rel_gap=self.mip_rel_gap, prune=self.prune, lp_first=self.lp_first)
