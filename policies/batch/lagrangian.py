"""``lagrangian``: OmniRouter-style dual decomposition, fast enough for 10 000-query batches.

The side row (budget, or the quality floor α) is relaxed with a multiplier ν and the capacity rows
with prices μ_j, so each query independently takes ``argmax_j score_ij − ν·row_ij − μ_j`` — one
vectorised argmax over the batch, no loop over queries. Rather than moving μ by subgradient steps
(which converge slowly and leave capacity to the repair), μ is set exactly by an auction for each ν
(:mod:`policies.batch.transport`); ν then moves by the one-dimensional projected subgradient step
with doubling and halving described in :mod:`policies.batch.multiplier`. The primal is recovered from
both ends of the final ν bracket (the infeasible end by repair) and improved with leftover slack;
the dual bound ``L(ν) + ν·rhs`` is reported in ``info`` as a certificate of the gap.
"""

from __future__ import annotations

from policies.batch import relaxation, safety, transport
from policies.batch.base import BatchPolicy, check_gap, positive
from policies.batch.linear_form import LinearForm
from policies.batch.transport import Transport
from policies.errors import InvalidParameterError
from policies.problem import FloatArray, RoutingProblem
from policies.registry import register
from policies.result import RoutingResult


@register("lagrangian")
class Lagrangian(BatchPolicy):
    """Dual decomposition on the side row and capacities, with repair and improvement.

    Args:
        max_evals: largest number of ν values tried (each is one capacity-aware inner solve).
        max_rounds: auction rounds per inner solve before falling back to HiGHS (price wars).
        max_gap: certified relative gap above which the exact MILP is consulted (None: never);
            see :mod:`policies.batch.safety`.
        exact_time_limit: time limit (s) of that MILP.
        best_effort: see :class:`~policies.batch.base.BatchPolicy`.
    """

    def __init__(self, max_evals: int = 60, max_rounds: int = transport.DEFAULT_MAX_ROUNDS,
                 max_gap: float | None = safety.DEFAULT_MAX_GAP, exact_time_limit: float = 10.0,
                 best_effort: bool = True) -> None:
        super().__init__(best_effort)
        self.max_gap = check_gap(max_gap)
        self.exact_time_limit = positive("exact_time_limit", exact_time_limit)
        for name, v in (("max_evals", max_evals), ("max_rounds", max_rounds)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise InvalidParameterError(f"{name} must be an int >= 1, got {v!r}")
        self.max_evals = max_evals
        self.max_rounds = max_rounds

    def _solve(self, problem: RoutingProblem) -> RoutingResult:
        result = solve_form(self, problem, LinearForm.from_problem(problem), self.max_evals, self.max_rounds)
        return safety.exact_if_loose(problem, result, self.max_gap, self.exact_time_limit)


def solve_form(policy: BatchPolicy, problem: RoutingProblem, form: LinearForm, max_evals: int = 60,
               max_rounds: int = transport.DEFAULT_MAX_ROUNDS) -> RoutingResult:
    """The lagrangian route on an arbitrary normal form (also used by ``robust``'s box case)."""
    fallbacks = 0

    def inner(w: FloatArray) -> Transport:
        nonlocal fallbacks
        res = transport.auction(w, form.cap, max_rounds=max_rounds)
        if res is None:
            fallbacks += 1
            return transport.exact(w, form.cap)
        return res

    result = relaxation.route(policy, problem, form, inner, max_evals=max_evals)
    result.info["highs_fallbacks"] = fallbacks
    return result
