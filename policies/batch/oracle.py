"""``oracle``: the exact batch problem on the *true* quality — the reference row of every report.

No router can do better on realised quality under the same budget and capacity, so the oracle bounds
what better predictions could buy. It solves ``milp`` on ``problem.true_quality``; the returned
result is then evaluated like every other policy's, on the *predicted* quality, so the true-quality
numbers are in ``info`` (``true_objective``, ``true_mean_quality``, ``true_status``). In the min-cost
form the floor α is imposed on the true quality; if the predicted mean misses α the checker labels
the result ``infeasible`` and the message says so. The simulator judges the oracle on the quality it
routes on: it passes the true quality as ``quality`` too (see ``sim.dispatcher``), so a floor met on the
truth is not reported as missed on predictions the oracle never used.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from policies.batch.base import BatchPolicy, positive
from policies.batch.linear_form import LinearForm
from policies.batch.milp import solve_exact
from policies.errors import InvalidProblemError
from policies.problem import RoutingProblem
from policies.registry import register
from policies.result import RoutingResult


@register("oracle")
class Oracle(BatchPolicy):
    """``milp`` on the true quality (needs ``problem.true_quality``).

    Args:
        time_limit, mip_rel_gap: passed to HiGHS (see ``milp``).
        best_effort: see :class:`~policies.batch.base.BatchPolicy`.
    """

    needs_true_quality = True

    def __init__(self, time_limit: float = 60.0, mip_rel_gap: float = 1e-4, best_effort: bool = True) -> None:
        super().__init__(best_effort)
        self.time_limit = positive("time_limit", time_limit)
        self.mip_rel_gap = positive("mip_rel_gap", mip_rel_gap, allow_zero=True)

    def _route(self, problem: RoutingProblem) -> RoutingResult:
        if problem.true_quality is None:
            raise InvalidProblemError(
                "the oracle policy needs problem.true_quality (the realised quality); it is None")
        return super()._route(problem)

    def empty_info(self, problem: RoutingProblem) -> dict[str, Any]:
        return {"true_objective": 0.0, "true_mean_quality": 1.0, "true_status": "optimal"}

    def _solve(self, problem: RoutingProblem) -> RoutingResult:
        assert problem.true_quality is not None
        truth = dataclasses.replace(problem, quality=problem.true_quality, quality_std=None, true_quality=None)
        res = solve_exact(self, truth, LinearForm.from_problem(truth), time_limit=self.time_limit,
                          mip_rel_gap=self.mip_rel_gap)
        out = RoutingResult.build(problem, res.assignment, res.status, message=res.message, info=res.info)
        out.info.update(true_objective=res.objective, true_mean_quality=res.mean_quality,
                        true_status=res.status)
        if out.status != res.status:
            out.message = (f"feasible on the true quality ({res.status}), but on the predicted quality: "
                           + "; ".join(out.violations))
        return out
