"""``min_cost_flow``: the transportation structure solved by networkx's network simplex.

Network: source → query i (capacity 1) → model j (cost ``−w_ij``) → sink (capacity ``cap_j``). The
source is folded into the query nodes, each of which supplies one unit (the same network with n
fewer arcs). Arc costs are ``−w`` scaled to integers (resolution 1e-12 of the largest |w|) so that
network simplex is exact; rejection, when allowed, is one more "model" node with cost 0 and
unlimited capacity, i.e. a reject arc from every query to the sink. Without a side row this *is*
the problem, so the flow is optimal. With a budget or quality floor the row is priced by ν and
searched as in :mod:`policies.batch.multiplier`; to keep the number of network-simplex runs small,
the bracket on ν is first located with the auction inner solver and then confirmed and refined with
flows, and the best feasible flow found is returned (after the shared single-query improvement
pass).

Arcs (i, k) dominated by an unlimited-capacity model are left out of the network
(:mod:`policies.batch.dominance`), which keeps the graph small on realistic batches.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from policies.batch import multiplier, relaxation, safety, transport
from policies.batch.base import BatchPolicy, check_gap, positive
from policies.batch.dominance import dominated
from policies.batch.linear_form import LinearForm
from policies.batch.transport import Transport
from policies.errors import InvalidParameterError, PolicyError
from policies.problem import FloatArray, IntArray, RoutingProblem
from policies.registry import register
from policies.result import RoutingResult

# Integer resolution of the arc costs, relative to the largest |w|: rounding changes the flow's
# objective by at most n · max|w| / RESOLUTION.
RESOLUTION = 10**12


def flow_assign(w: FloatArray, cap: IntArray) -> Transport:
    """Optimal ``max Σ w x`` within capacity by network simplex (Σ cap ≥ n required)."""
    n, k = w.shape
    if int(np.minimum(cap, n).sum()) < n:
        raise PolicyError("min-cost flow needs Σ capacity ≥ n")
    wmax = float(np.abs(w).max(initial=0.0)) or 1.0
    unit = wmax / RESOLUTION
    cost = np.rint(-w / unit).astype(np.int64)
    keep = ~dominated(np.asarray(cap), [w])
    g = nx.DiGraph()
    sink = n + k
    g.add_nodes_from((i, {"demand": -1}) for i in range(n))
    g.add_nodes_from(range(n, n + k))
    g.add_node(sink, demand=n)
    qi, kj = np.nonzero(keep)
    g.add_edges_from(zip(qi.tolist(), (kj + n).tolist(), ({"weight": c} for c in cost[qi, kj].tolist()),
                         strict=True))
    for j in range(k):
        if cap[j] < n:
            g.add_edge(n + j, sink, capacity=int(cap[j]), weight=0)
        else:
            g.add_edge(n + j, sink, weight=0)
    try:
        _, flow = nx.network_simplex(g)
    except nx.NetworkXUnfeasible as exc:  # pragma: no cover - excluded by the capacity check
        raise PolicyError(f"network simplex: {exc}") from exc
    cols = np.empty(n, dtype=np.int64)
    for i in range(n):
        cols[i] = next(v for v, f in flow[i].items() if f > 0) - n
    value = float(w[np.arange(n), cols].sum())
    return Transport(cols, value, value + n * unit, exact=True)


@register("min_cost_flow")
class MinCostFlow(BatchPolicy):
    """Network simplex; exact without a side row, multiplier search on the flow with one.

    Args:
        max_flows: largest number of network-simplex runs in the multiplier search.
        warm_bracket: locate the ν bracket with the (much faster) auction before running flows.
        best_effort: see :class:`~policies.batch.base.BatchPolicy`.
    """

    def __init__(self, max_flows: int = 12, warm_bracket: bool = True,
                 max_gap: float | None = safety.DEFAULT_MAX_GAP, exact_time_limit: float = 10.0,
                 best_effort: bool = True) -> None:
        super().__init__(best_effort)
        self.max_gap = check_gap(max_gap)
        self.exact_time_limit = positive("exact_time_limit", exact_time_limit)
        if not isinstance(max_flows, int) or isinstance(max_flows, bool) or max_flows < 1:
            raise InvalidParameterError(f"max_flows must be an int >= 1, got {max_flows!r}")
        self.max_flows = max_flows
        self.warm_bracket = bool(warm_bracket)

    def _solve(self, problem: RoutingProblem) -> RoutingResult:
        result = self.solve_form(problem, LinearForm.from_problem(problem))
        return safety.exact_if_loose(problem, result, self.max_gap, self.exact_time_limit)

    def solve_form(self, problem: RoutingProblem, form: LinearForm) -> RoutingResult:
        flows = 0

        def inner(w: FloatArray) -> Transport:
            nonlocal flows
            flows += 1
            return flow_assign(w, form.cap)

        bracket = None
        if self.warm_bracket and form.row is not None and form.cap.sum() >= form.n:
            s = multiplier.search(form, lambda w: transport.solve(w, form.cap))
            if s.hi is not None:
                bracket = (0.0 if s.lo is None else s.lo.nu, s.hi.nu)
        result = relaxation.route(self, problem, form, inner, max_evals=self.max_flows, bracket=bracket)
        result.info.update(flows=flows, bracket=bracket)
        return result
