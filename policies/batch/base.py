"""Common shell of the batch-level policies: parameters, the empty batch, infeasible answers."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from policies.batch.feasibility import Infeasible
from policies.errors import InvalidParameterError
from policies.problem import REJECT, IntArray, RoutingProblem
from policies.registry import Policy, SpendKnob
from policies.result import STATUS_INFEASIBLE, STATUS_OPTIMAL, RoutingResult


def positive(name: str, value: Any, *, allow_zero: bool = False, allow_none: bool = False) -> Any:
    """Validate a numeric parameter (raises InvalidParameterError, which make_policy passes on)."""
    if value is None and allow_none:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidParameterError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


def check_gap(value: Any) -> float | None:
    """A ``max_gap`` parameter: None (never fall back) or a number >= 0."""
    return None if value is None else float(positive("max_gap", value, allow_zero=True))


class BatchPolicy(Policy):
    """Routes a whole batch jointly.

    Args:
        best_effort: when the problem is infeasible, return the best-effort assignment the solver
            found (``True``, default) or reject every query (``False``). Either way the status is
            ``infeasible`` and ``message`` names the constraint that cannot hold.

    A latency SLO on the problem is honoured as :mod:`policies.batch` describes (constraint or penalty).
    """

    batch_level: ClassVar[bool] = True
    # Batch policies trade spend for quality through the batch budget (their max-quality form).
    spend_knob: ClassVar[SpendKnob | None] = SpendKnob("router.budget_per_query", increasing=True, lo=0.0, hi=None)

    def __init__(self, best_effort: bool = True) -> None:
        if not isinstance(best_effort, bool | np.bool_):
            raise InvalidParameterError(f"best_effort must be a bool, got {best_effort!r}")
        self.best_effort = bool(best_effort)

    def _route(self, problem: RoutingProblem) -> RoutingResult:
        if problem.n == 0:
            return RoutingResult.build(problem, np.empty(0, dtype=np.int64), STATUS_OPTIMAL,
                                       message="empty batch", info=self.empty_info(problem))
        result = self._solve(problem)
        if result.status == STATUS_INFEASIBLE and not self.best_effort and np.any(result.assignment != REJECT):
            # e.g. a min-cost answer that overspends a budget it does not model, or the oracle's
            # answer judged on predicted quality: without best effort, nothing is routed.
            result = RoutingResult.build(problem, np.full(problem.n, REJECT, dtype=np.int64), STATUS_INFEASIBLE,
                                         message=result.message, info=result.info)
        return result

    def empty_info(self, problem: RoutingProblem) -> dict[str, Any]:
        """``info`` of the (trivially optimal) empty batch; subclasses add their own keys."""
        return {}

    def _solve(self, problem: RoutingProblem) -> RoutingResult:  # pragma: no cover - abstract
        raise NotImplementedError

    def infeasible(self, problem: RoutingProblem, why: Infeasible | str, assignment: IntArray | None = None,
                   info: dict[str, Any] | None = None) -> RoutingResult:
        """An ``infeasible`` result carrying the reason and (if asked) the best-effort assignment."""
        if isinstance(why, Infeasible):
            message, assignment, constraint = why.message, why.assignment, why.constraint
        else:
            message, constraint = why, None
        info = dict(info or {})
        if constraint is not None:
            info.setdefault("infeasible_constraint", constraint)
        if assignment is None or not self.best_effort:
            assignment = np.full(problem.n, REJECT, dtype=np.int64)
        return RoutingResult.build(problem, assignment, STATUS_INFEASIBLE, message=message, info=info)
