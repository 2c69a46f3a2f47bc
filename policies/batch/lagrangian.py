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

from typing import ClassVar

from policies.batch import relaxation, safety, transport
from policies.batch.base import BatchPolicy, check_gap, positive
from policies.batch.linear_form import LinearForm
from policies.batch.transport import Transport
from policies.errors import InvalidParameterError
from policies.one_query import OneQuery, best_with_room
from policies.problem import FloatArray, RoutingProblem
from policies.registry import register
from policies.result import STATUS_OPTIMAL, RoutingResult


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

    # Without a side row a one-query batch is a transportation problem the auction solves exactly: the
    # bound equals the value, so route() certifies it optimal.
    one_query_status: ClassVar[str] = STATUS_OPTIMAL

    def _solve(self, problem: RoutingProblem) -> RoutingResult:
        result = solve_form(self, problem, LinearForm.from_problem(problem), self.max_evals, self.max_rounds)
        return safety.exact_if_loose(problem, result, self.max_gap, self.exact_time_limit)

    def route_one(self, query: OneQuery) -> int | None:
        """Without a budget or floor (no side row): the most accurate model with room, the first of
        ties — where the auction ends when at most one full model scores at least as much: its first
        round lowers that model's score just below the best with room (ε ≥ 1e-12 of the spread, far above
        float error), and the improvement pass cannot better the answer. With two or more such full
        models their prices climb by ε in turns (a price war, finished by augmenting paths whose float
        distances can tie differently), so those, a side row, and no room without rejection take the
        general path (``tests/policies/test_one_query.py``)."""
        if query.budget is not None or query.min_quality is not None:
            return None
        q, cap = query.quality, query.capacity
        j = best_with_room(query, lambda j: (q[j], -j))
        if j < 0 and not query.allow_reject:
            return None
        best = q[j] if j >= 0 else 0.0
        if query.allow_reject and best < 0.0:  # (qualities are >= 0; the reject column scores 0)
            best = 0.0
        if sum(1 for k in range(query.m) if cap[k] < 1 and q[k] >= best) >= 2:
            return None
        return j


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
