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
    from policies.batch.milp import Milp  # here: milp imports the relaxation machinery too

    exact = Milp(time_limit=time_limit)._route(problem)
    better = (
        exact.objective < result.objective
        if problem.form is ProblemForm.MIN_COST
        else exact.objective > result.objective
    )
    if exact.status == STATUS_INFEASIBLE or not better:
        result.info["exact_fallback"] = "no better answer"
        return result
    exact.info = {**result.info, "exact_fallback": "milp", "relaxation_gap": gap,
                  "milp_status": exact.status, "gap": exact.info.get("gap")}
    return exact
