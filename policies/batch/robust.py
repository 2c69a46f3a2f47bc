"""``robust``: route on what the quality predictions are worth when they err (``routing.md`` (R)).

The lower confidence bound of â_ij is ``clip(â_ij − κ σ_ij, 0, 1)``; its drop from â is
``δ_ij = â_ij − clip(â_ij − κ σ_ij, 0, 1) = min(κ σ_ij, â_ij)`` (quality cannot fall below 0).

* ``gamma=None`` — box uncertainty: every prediction may fall to its bound at once, so the problem is
  the nominal one on the lower bounds, solved by ``milp`` or ``lagrangian`` (``solver``);
* ``gamma=Γ`` — Bertsimas–Sim: at most Γ of the chosen predictions fall. Solved exactly through the
  protected MILP of :mod:`policies.batch.milp`. Γ = 0 is the nominal problem and Γ ≥ n the box;
  those two ends are solved as such (same optimum, much easier for HiGHS at scale); the protected
  MILP itself is tested against them and against enumeration.

The quality row (α, in the min-cost form) applies to the robust quality. The result is evaluated
on the nominal prediction like every policy (a robust-feasible assignment is nominally feasible);
``info`` carries both the nominal and the robust total and mean quality.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from policies.batch.base import BatchPolicy, positive
from policies.batch.lagrangian import solve_form
from policies.batch.linear_form import LinearForm
from policies.batch.milp import solve_exact
from policies.errors import InvalidParameterError
from policies.problem import REJECT, FloatArray, IntArray, RoutingProblem
from policies.registry import register
from policies.result import RoutingResult

_SOLVERS = ("milp", "lagrangian")


def protected_quality(quality: FloatArray, delta: FloatArray, assignment: IntArray, gamma: float | None) -> float:
    """Σ quality of ``assignment`` minus the worst drop of at most Γ of its predictions (box: all)."""
    routed = np.nonzero(assignment != REJECT)[0]
    cols = assignment[routed]
    nominal = float(quality[routed, cols].sum())
    drops = np.sort(delta[routed, cols])[::-1]
    if gamma is None or gamma >= drops.size:
        return nominal - float(drops.sum())
    whole = int(np.floor(gamma))
    loss = float(drops[:whole].sum()) + (gamma - whole) * (float(drops[whole]) if whole < drops.size else 0.0)
    return nominal - loss


@register("robust")
class Robust(BatchPolicy):
    """Robust batch routing against prediction error.

    Args:
        kappa: width of the lower bound in standard deviations (``â − κσ``).
        gamma: ``None`` for box uncertainty, or Γ ≥ 0, how many chosen predictions may fall at once.
        solver: ``"milp"`` or ``"lagrangian"`` for the box case (Γ always uses the MILP).
        time_limit, mip_rel_gap: passed to HiGHS (see ``milp``).
        best_effort: see :class:`~policies.batch.base.BatchPolicy`.
    """

    def __init__(self, kappa: float = 1.0, gamma: float | None = None, solver: str = "milp",
                 time_limit: float = 60.0, mip_rel_gap: float = 1e-4, best_effort: bool = True) -> None:
        super().__init__(best_effort)
        self.kappa = positive("kappa", kappa, allow_zero=True)
        self.gamma = positive("gamma", gamma, allow_zero=True, allow_none=True)
        if solver not in _SOLVERS:
            raise InvalidParameterError(f"solver must be one of {_SOLVERS}, got {solver!r}")
        self.solver = solver
        self.time_limit = positive("time_limit", time_limit)
        self.mip_rel_gap = positive("mip_rel_gap", mip_rel_gap, allow_zero=True)

    def empty_info(self, problem: RoutingProblem) -> dict[str, Any]:
        return {"kappa": self.kappa, "gamma": self.gamma, "nominal_quality": 0.0, "robust_quality": 0.0,
                "nominal_mean_quality": 1.0, "robust_mean_quality": 1.0}

    def _solve(self, problem: RoutingProblem) -> RoutingResult:
        info: dict[str, Any] = {"kappa": self.kappa, "gamma": self.gamma}
        std = problem.quality_std
        if std is None:
            std = np.zeros_like(problem.quality)
            info["note"] = "quality_std is None: treated as 0, so the robust problem is the nominal one"
        lower = np.clip(problem.quality - self.kappa * std, 0.0, 1.0)
        delta = problem.quality - lower
        gamma = None if self.gamma is None else min(self.gamma, float(problem.n))
        if gamma is None or gamma >= problem.n or not np.any(delta > 0):
            # Box: every chosen prediction may fall (Γ ≥ n is the same problem, solved this way
            # because the lower-bound problem keeps the nominal structure: LP rounding, lagrangian).
            info["uncertainty"] = "box" if gamma is None else "budgeted (Γ ≥ n: box)"
            robust_problem = dataclasses.replace(problem, quality=lower)
            form = LinearForm.from_problem(robust_problem)
            if self.solver == "milp" or gamma is not None:
                res = solve_exact(self, robust_problem, form, time_limit=self.time_limit,
                                  mip_rel_gap=self.mip_rel_gap)
            else:
                res = solve_form(self, robust_problem, form)
            message = f"on the lower-bound quality: {res.message}" if res.message else ""
            out = RoutingResult.build(problem, res.assignment, res.status, message=message,
                                      info=res.info | info)
        elif gamma == 0:
            info["uncertainty"] = "budgeted (Γ = 0: nominal)"
            out = solve_exact(self, problem, LinearForm.from_problem(problem), time_limit=self.time_limit,
                              mip_rel_gap=self.mip_rel_gap)
            out.info.update(info)
        else:
            info.update(uncertainty="budgeted", gamma_used=gamma)
            out = solve_exact(self, problem, LinearForm.from_problem(problem), protect=(delta, gamma),
                              time_limit=self.time_limit, mip_rel_gap=self.mip_rel_gap)
            out.info.update(info)
        a = out.assignment
        robust_total = protected_quality(problem.quality, delta, a, self.gamma)
        nominal_total = protected_quality(problem.quality, delta, a, 0.0)
        out.info.update(nominal_quality=nominal_total, robust_quality=robust_total,
                        nominal_mean_quality=nominal_total / problem.n,
                        robust_mean_quality=robust_total / problem.n)
        return out
