"""Safety net of the relaxation-based solvers: fall back to the exact MILP when the Lagrangian bound
cannot certify the answer.

With one side row the relaxation is usually within a query of optimal, but when capacity is tight
(Σ capacity ≈ n) repair has no room to move queries and the answer can be several percent off. The
dual bound tells us when that happened, so the fallback costs nothing on the common, well-certified
case and guarantees the promised closeness on the rest.
"""

from __future__ import annotations

from policies.problem import ProblemForm, RoutingProblem
from policies.result import STATUS_INFEASIBLE, RoutingResult

DEFAULT_MAX_GAP = 0.005
"""Certified relative gap above which the exact solver is consulted (0.5 %)."""


def exact_if_loose(problem: RoutingProblem, result: RoutingResult, max_gap: float | None,
                   time_limit: float) -> RoutingResult:
    """``result``, or the exact MILP's answer when ``result``'s certified gap exceeds ``max_gap`` and the
    MILP finds something better."""
    gap = result.info.get("gap")
    if max_gap is None or gap is None or gap <= max_gap or result.status == STATUS_INFEASIBLE:
        return result
    if _optimal_by_enumeration(problem, result):
        # nothing beats it, so the MILP below could only say "no better answer": skip building it
        result.info["exact_fallback"] = "no better answer (enumerated)"
        return result
    from policies.batch.milp import Milp  # here: milp imports the relaxation machinery too

    exact = Milp(time_limit=time_limit)._route(problem)
    minimise = problem.form is ProblemForm.MIN_COST
    ours, theirs = _penalised(problem, result, minimise), _penalised(problem, exact, minimise)
    better = theirs < ours if minimise else theirs > ours
    if exact.status == STATUS_INFEASIBLE or not better:
        result.info["exact_fallback"] = "no better answer"
        return result
    exact.info = {**result.info, "exact_fallback": "milp", "relaxation_gap": gap,
                  "milp_status": exact.status, "gap": exact.info.get("gap")}
    return exact


def _penalised(problem: RoutingProblem, result: RoutingResult, minimise: bool) -> float:
    """The objective both solvers optimise: a result's objective plus, with an SLO in penalty mode,
    μ per second over the SLO (added to a cost, taken off a quality) — the penalty is not part of
    :attr:`RoutingResult.objective`, so comparing those alone would keep a late answer."""
    excess = problem.slo_excess() if problem.slo_mode == "penalty" and problem.slo_penalty > 0 else None
    if excess is None:
        return result.objective
    import numpy as np

    a = np.asarray(result.assignment, dtype=np.int64)
    rows = np.flatnonzero(a >= 0)
    charge = problem.slo_penalty * float(excess[rows, a[rows]].sum())
    return result.objective + charge if minimise else result.objective - charge


MAX_ENUMERATED = 64
"""Most assignments (``(m + 1) ** n``, rejection included) :func:`_optimal_by_enumeration` tries: a
one-query batch over up to 63 models (the per-query window-0 case), or two queries over a handful."""


def _optimal_by_enumeration(problem: RoutingProblem, result: RoutingResult) -> bool:
    """Whether no assignment of a tiny batch is strictly better than ``result`` (same objective and
    feasibility as the MILP fallback's ``better`` test: :func:`check_assignment` on every assignment).
    Only without SLO latency terms, whose penalty the MILP adds to its own objective."""
    import itertools

    import numpy as np

    from policies.problem import REJECT
    from policies.result import check_assignment

    n, m = problem.n, problem.m
    choices = [REJECT, *range(m)] if problem.allow_reject else list(range(m))
    if problem.latency is not None or len(choices) ** n > MAX_ENUMERATED:
        return False
    minimise = problem.form is ProblemForm.MIN_COST
    for combo in itertools.product(choices, repeat=n):
        ev = check_assignment(problem, np.array(combo, dtype=np.int64))
        if ev.violations:
            continue
        value = ev.total_cost if minimise else ev.total_quality
        if (value < result.objective) if minimise else (value > result.objective):
            return False
    return True
