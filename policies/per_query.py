"""Per-query policies: each query is decided on its own, in batch order.

They exist as baselines for the batch-level solvers and accept the same :class:`RoutingProblem`, so
every policy can be compared on identical batches. Each rule ranks the models for a query by a score;
the query goes to the best-ranked model that still has capacity in this batch. These rules do not
look at the batch budget unless ``on_budget`` says so:

* ``ignore`` (default): route as the rule says; an overspent batch comes back ``infeasible`` with the
  budget violation named (the simulator counts it as a budget violation);
* ``reject``: once the query's preferred model no longer fits the remaining budget, reject the query;
* ``downgrade``: each query, in batch order, takes its best-ranked model that fits the remaining budget
  *after reserving, for every later query of the batch, the cost of its cheapest model*; when none does,
  it takes its cheapest model if that fits the remaining budget (first come, first served), else it is
  rejected. The reserve is what makes this a downgrade rather than first-come spending: without it the
  first queries of a batch take dear models and the last ones find nothing left (λ = 0 rejected 892 of
  1,500 queries), whereas with it no query is rejected while the whole batch at its cheapest models fits
  the budget. Capacity is not part of the reserve (a full cheapest model is skipped as usual).

Latency SLO (issue 12; see :class:`~policies.problem.RoutingProblem`):

* constraint mode: a pair predicted over the SLO is unavailable to every rule, like a full model —
  when ``allow_reject`` a query with no model within the SLO is rejected; otherwise such pairs rank
  below every pair within the SLO (in the rule's own order), so they are used only when nothing else
  is left, and the result is ``infeasible`` naming the SLO;
* penalty mode: rules with an objective add ``μ·(latency − slo)+`` to it in its own units — cost-led
  rules (``cheapest``, ``threshold_greedy``'s cheapest-above-α choice) in USD per second over the SLO,
  quality-led ones (``strongest``, ``utility_greedy``) in quality points per second; ``random``,
  ``round_robin``, ``least_loaded`` and ``latency_aware`` (which already minimises latency) ignore it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np

from policies.errors import InvalidParameterError
from policies.one_query import OneQuery, best_with_room, least_loaded_one
from policies.problem import REJECT, FloatArray, IntArray, RoutingProblem
from policies.registry import Policy, SpendKnob, register
from policies.result import STATUS_FEASIBLE, TOL, RoutingResult

OnBudget = Literal["ignore", "reject", "downgrade"]
_ON_BUDGET = ("ignore", "reject", "downgrade")


def _lexsort_scores(primary: FloatArray, secondary: FloatArray) -> FloatArray:
    """Combine two (n, m) scores into one ranking: primary first, secondary breaks ties.

    Returned as a rank-valued float matrix (higher = preferred) so the generic greedy can use it.
    """
    n, m = primary.shape
    ranks = np.empty((n, m), dtype=np.float64)
    for_rank = np.lexsort((secondary, primary), axis=-1) if n else np.empty((0, m), dtype=np.int64)
    rows = np.arange(n)[:, None]
    ranks[rows, for_rank] = np.arange(m, dtype=np.float64)[None, :]
    return ranks


class _PerQuery(Policy):
    """Shared machinery: rank models per query, then assign greedily in batch order."""

    def __init__(self, on_budget: OnBudget = "ignore") -> None:
        if on_budget not in _ON_BUDGET:
            raise InvalidParameterError(f"on_budget must be one of {_ON_BUDGET}, got {on_budget!r}")
        self.on_budget: OnBudget = on_budget

    @property
    def row_independent(self) -> bool:
        # With on_budget="ignore" the rules only look at the query's own row; capacity aside, that makes
        # routing N queries at once identical to routing them one batch at a time.
        return self.on_budget == "ignore"

    #: What a penalty-mode SLO charge is added to: ``"cost"`` (USD per second over the SLO), ``"quality"``
    #: (taken off, quality points per second), or ``None`` (the rule ignores the penalty).
    slo_penalty_on: ClassVar[str | None] = None

    def scores(self, problem: RoutingProblem) -> FloatArray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _route(self, problem: RoutingProblem) -> RoutingResult:
        score = self.scores(penalised(problem, self.slo_penalty_on))
        assignment = greedy_assign(problem, slo_scores(problem, score), self.on_budget)
        return RoutingResult.build(problem, assignment, STATUS_FEASIBLE)

    def route_one(self, query: OneQuery) -> int | None:
        """The rule's best model with room (:mod:`policies.one_query`); the budget modes need the
        batch's budget row, so they take the general path."""
        if self.on_budget != "ignore":
            return None
        key = self.one_key(query)
        return None if key is None else best_with_room(query, key)

    def one_key(self, query: OneQuery) -> Callable[[int], Any] | None:
        """A key per model whose order is the rule's ranking of :meth:`scores` (None: no scalar path)."""
        return None


def penalised(problem: RoutingProblem, on: str | None) -> RoutingProblem:
    """``problem`` with the penalty-mode SLO charge folded into its cost or quality (the same object
    when there is no charge, so μ = 0 gives the SLO-free ranking exactly). Only the ranking sees it:
    the result is still evaluated on the true cost and quality."""
    charge = problem.slo_penalty_matrix() if on is not None else None
    if charge is None:
        return problem
    if on == "cost":
        return dataclasses.replace(problem, cost=problem.cost + charge, validate=False)
    return dataclasses.replace(problem, quality=problem.quality - charge, validate=False)


def slo_scores(problem: RoutingProblem, score: FloatArray) -> FloatArray:
    """Scores with the constraint-mode SLO applied (module docstring): pairs over the SLO become
    unavailable (``-inf``) when rejection is allowed, else rank below every pair within it."""
    forbidden = problem.slo_forbidden()
    if forbidden is None or not forbidden.any():
        return score
    if problem.allow_reject:
        return np.where(forbidden, -np.inf, score)
    span = float(score.max() - score.min()) + 1.0
    return np.where(forbidden, score - span, score)


def greedy_assign(problem: RoutingProblem, score: FloatArray, on_budget: OnBudget = "ignore") -> IntArray:
    """Give each query, in order, its highest-scoring model that has capacity left (and budget, per
    ``on_budget``); a query with no such model is rejected (``-1``).

    A score of ``-inf`` marks a pair as unavailable (an SLO miss in constraint mode): it is never chosen.
    Vectorised when neither capacity nor budget binds, which is the common case with Δ = 0.
    """
    n, m = problem.n, problem.m
    if n == 0:
        return np.empty(0, dtype=np.int64)
    cap = problem.capacity
    assert cap is not None
    if np.any(cap < 1):  # no room for even one query: unavailable to every row (as the loop below skips it)
        score = np.where(cap >= 1, score, -np.inf)
    first = np.argmax(score, axis=1).astype(np.int64)
    usable = score > -np.inf
    if not usable.all():
        first = np.where(usable[np.arange(n), first], first, REJECT)
    budget = problem.budget if on_budget != "ignore" else None
    if budget is None and np.all(np.bincount(first[first >= 0], minlength=m) <= cap):
        return first
    order = np.argsort(-score, axis=1, kind="stable")
    remaining = np.floor(np.where(np.isinf(cap), n, cap))
    if on_budget == "downgrade" and budget is not None:
        return _downgrade(problem.cost, order, remaining, budget, usable)
    cost = problem.cost
    spent = 0.0
    out = np.full(n, REJECT, dtype=np.int64)
    for i in range(n):
        for j in order[i]:
            if remaining[j] < 1 or not usable[i, j]:
                continue
            if budget is not None and spent + cost[i, j] > budget + TOL:
                break  # reject: the preferred model with capacity does not fit
            out[i] = j
            remaining[j] -= 1
            spent += cost[i, j]
            break
    return out


def _downgrade(cost: FloatArray, order: IntArray, remaining: FloatArray, budget: float,
               usable: np.ndarray) -> IntArray:
    """``on_budget="downgrade"`` (rule in the module docstring): best-ranked model within the budget
    left after reserving every later query's cheapest cost; else the cheapest that fits; else reject.
    Only ``usable`` pairs are considered (the reserve too: an unusable model is no fallback)."""
    n = cost.shape[0]
    cheapest = np.where(usable, cost, np.inf).min(axis=1)
    cheapest = np.where(np.isfinite(cheapest), cheapest, 0.0)  # a query with no usable model is rejected
    # reserve[i] = Σ_{k > i} cheapest[k]
    reserve = np.concatenate([np.cumsum(cheapest[::-1])[::-1][1:], [0.0]])
    by_cost = np.argsort(cost, axis=1, kind="stable")
    spent = 0.0
    out = np.full(n, REJECT, dtype=np.int64)
    for i in range(n):
        choice = -1
        for j in order[i]:
            if remaining[j] >= 1 and usable[i, j] and spent + cost[i, j] + reserve[i] <= budget + TOL:
                choice = int(j)
                break
        if choice < 0:
            for j in by_cost[i]:
                if remaining[j] >= 1 and usable[i, j]:
                    if spent + cost[i, j] <= budget + TOL:
                        choice = int(j)
                    break
        if choice >= 0:
            out[i] = choice
            remaining[choice] -= 1
            spent += cost[i, choice]
    return out


@register("cheapest")
class Cheapest(_PerQuery):
    """Lowest predicted cost; ties go to the higher predicted quality."""

    slo_penalty_on: ClassVar[str | None] = "cost"

    def scores(self, problem: RoutingProblem) -> FloatArray:
        return _lexsort_scores(-problem.cost, problem.quality)

    def one_key(self, query: OneQuery) -> Callable[[int], Any]:
        q, c = query.quality, query.cost
        return lambda j: (-c[j], q[j], j)


@register("strongest")
class Strongest(_PerQuery):
    """Highest predicted quality; ties go to the cheaper model."""

    slo_penalty_on: ClassVar[str | None] = "quality"

    def scores(self, problem: RoutingProblem) -> FloatArray:
        return _lexsort_scores(problem.quality, -problem.cost)

    def one_key(self, query: OneQuery) -> Callable[[int], Any]:
        q, c = query.quality, query.cost
        return lambda j: (q[j], -c[j], j)


@register("threshold_greedy")
class ThresholdGreedy(_PerQuery):
    """OmniRouter's per-query baseline: the cheapest model whose predicted quality ≥ α, else the best.

    ``alpha`` defaults to the problem's ``min_quality`` (and to 0.5 when that is unset).
    """

    slo_penalty_on: ClassVar[str | None] = "cost"

    # A higher α rules out cheap models, so spend rises with it.
    spend_knob: ClassVar[SpendKnob | None] = SpendKnob("router.params.alpha", increasing=True, lo=0.0, hi=1.0)

    def __init__(self, alpha: float | None = None, on_budget: OnBudget = "ignore") -> None:
        super().__init__(on_budget)
        if alpha is not None and not 0.0 <= float(alpha) <= 1.0:
            raise InvalidParameterError(f"alpha must be within [0, 1], got {alpha}")
        self.alpha = alpha

    def scores(self, problem: RoutingProblem) -> FloatArray:
        alpha = quality_floor(self.alpha, problem)
        ok = problem.quality >= alpha
        # Models meeting α rank above all others, cheapest first; below α, the most accurate first.
        cheap_rank = _lexsort_scores(-problem.cost, problem.quality)
        good_rank = _lexsort_scores(problem.quality, -problem.cost)
        m = problem.m
        return np.where(ok, m + cheap_rank, good_rank)

    def one_key(self, query: OneQuery) -> Callable[[int], Any]:
        alpha = quality_floor(self.alpha, query)
        q, c = query.quality, query.cost
        # models meeting α first, cheapest first; then the others, most accurate first
        return lambda j: (1, -c[j], q[j], j) if q[j] >= alpha else (0, q[j], -c[j], j)


def quality_floor(alpha: float | None, problem: RoutingProblem | OneQuery) -> float:
    """The per-query quality floor of the α rules: ``alpha``, else the problem's ``min_quality``, else 0.5."""
    a = alpha if alpha is not None else problem.min_quality
    return 0.5 if a is None else float(a)


@register("utility_greedy")
class UtilityGreedy(_PerQuery):
    """RouterBench/CARROT-style: argmax predicted quality − λ·cost − w·latency.

    λ (``lam``) is in quality points per USD; w (``latency_weight``) in quality points per second of
    predicted latency, used only when the problem carries ``latency`` (w = 0, the default, is the
    latency-blind rule exactly). Ties go to the cheaper model.
    """

    # A higher λ prices cost in more heavily, so spend falls with it; λ matters over decades.
    spend_knob: ClassVar[SpendKnob | None] = SpendKnob("router.params.lam", increasing=False, lo=1e-2, hi=1e7,
                                                       log=True)

    slo_penalty_on: ClassVar[str | None] = "quality"

    def __init__(self, lam: float = 100.0, on_budget: OnBudget = "ignore", latency_weight: float = 0.0) -> None:
        super().__init__(on_budget)
        if not np.isfinite(lam) or lam < 0:
            raise InvalidParameterError(f"lam must be a finite number >= 0, got {lam}")
        if not np.isfinite(latency_weight) or latency_weight < 0:
            raise InvalidParameterError(f"latency_weight must be a finite number >= 0, got {latency_weight}")
        self.lam = float(lam)
        self.latency_weight = float(latency_weight)
        self.needs_latency = self.latency_weight > 0  # type: ignore[misc]

    def scores(self, problem: RoutingProblem) -> FloatArray:
        utility = problem.quality - self.lam * problem.cost
        if self.latency_weight > 0 and problem.latency is not None:
            utility = utility - self.latency_weight * problem.latency
        return _lexsort_scores(utility, -problem.cost)

    def one_key(self, query: OneQuery) -> Callable[[int], Any] | None:
        if self.latency_weight > 0:
            return None
        q, c, lam = query.quality, query.cost, self.lam
        return lambda j: (q[j] - lam * c[j], -c[j], j)


@register("latency_aware")
class LatencyAware(_PerQuery):
    """LiteLLM-style latency routing under a quality floor and a per-query budget.

    Among the models *eligible* for a query — predicted quality ≥ α and predicted cost ≤ the per-query
    budget — the lowest predicted latency wins; ties go to the cheaper model, then the lower index.
    Without ``problem.latency`` it is the cheapest eligible model. A query with no eligible model goes
    to the most accurate one (as ``threshold_greedy`` falls back), ties cheaper. Capacity, the batch
    budget (``on_budget``) and a constraint-mode SLO apply as to every per-query rule.

    Args:
        alpha: the quality floor; defaults like ``threshold_greedy`` (``min_quality``, else 0.5).
        max_cost: the per-query budget in USD; ``None`` (default) = the batch budget over the batch's
            queries (the scenario's ``budget_per_query``), or no cap without a budget.
        on_budget: see the module docstring.
    """

    needs_latency: ClassVar[bool] = True

    def __init__(self, alpha: float | None = None, max_cost: float | None = None,
                 on_budget: OnBudget = "ignore") -> None:
        super().__init__(on_budget)
        if alpha is not None and not 0.0 <= float(alpha) <= 1.0:
            raise InvalidParameterError(f"alpha must be within [0, 1], got {alpha}")
        if max_cost is not None and (not np.isfinite(max_cost) or max_cost < 0):
            raise InvalidParameterError(f"max_cost must be a finite number >= 0, got {max_cost}")
        self.alpha = alpha
        self.max_cost = None if max_cost is None else float(max_cost)

    def eligible(self, problem: RoutingProblem) -> np.ndarray:
        """(n, m) mask of the models meeting the quality floor and the per-query budget."""
        ok = problem.quality >= quality_floor(self.alpha, problem)
        cap = self.max_cost
        if cap is None and problem.budget is not None and problem.n:
            cap = problem.budget / problem.n
        if cap is not None:
            ok &= problem.cost <= cap + TOL
        return ok

    def scores(self, problem: RoutingProblem) -> FloatArray:
        n, m = problem.n, problem.m
        latency = problem.latency if problem.latency is not None else np.zeros((n, m))
        # Eligible: fastest, then cheaper, then lower index; the rest: most accurate, then cheaper.
        fast = _rank(-latency, -problem.cost)
        good = _rank(problem.quality, -problem.cost)
        return np.where(self.eligible(problem), m + fast, good)


def _rank(primary: FloatArray, secondary: FloatArray) -> FloatArray:
    """:func:`_lexsort_scores` with the remaining ties going to the lower model index."""
    n, m = primary.shape
    index = np.broadcast_to(-np.arange(m, dtype=np.float64), (n, m))
    order = np.lexsort((index, secondary, primary), axis=-1) if n else np.empty((0, m), dtype=np.int64)
    ranks = np.empty((n, m), dtype=np.float64)
    ranks[np.arange(n)[:, None], order] = np.arange(m, dtype=np.float64)[None, :]
    return ranks


@register("random")
class RandomPolicy(_PerQuery):
    """Uniformly random model per query (seeded; pass ``rng`` to share a stream)."""

    def __init__(
        self, seed: int | None = 0, rng: np.random.Generator | None = None, on_budget: OnBudget = "ignore"
    ) -> None:
        super().__init__(on_budget)
        self.rng = rng if rng is not None else np.random.default_rng(seed)

    def scores(self, problem: RoutingProblem) -> FloatArray:
        return self.rng.random((problem.n, problem.m))

    def one_key(self, query: OneQuery) -> Callable[[int], Any]:
        r = self.rng.random((1, query.m))[0].tolist()  # the same draws as scores() on one query
        return lambda j: (r[j], -j)  # np.argmax: the first of equal draws


@register("round_robin")
class RoundRobin(_PerQuery):
    """Models in turn; the cursor carries over between batches of the same instance."""

    def __init__(self, on_budget: OnBudget = "ignore") -> None:
        super().__init__(on_budget)
        self.cursor = 0

    def scores(self, problem: RoutingProblem) -> FloatArray:
        n, m = problem.n, problem.m
        want = (self.cursor + np.arange(n)) % m
        self.cursor = int((self.cursor + n) % m)
        # Preference decreases with the distance after the wanted model, cyclically.
        return -(((np.arange(m)[None, :] - want[:, None]) % m).astype(np.float64))

    def one_key(self, query: OneQuery) -> Callable[[int], Any]:
        m = query.m
        want = self.cursor % m
        self.cursor = int((self.cursor + 1) % m)
        return lambda j: -((j - want) % m)


@register("least_loaded")
class LeastLoaded(Policy):
    """The model with the smallest fraction of its slots in use (``load`` in flight + this batch).

    With unlimited capacity the raw load decides. Sequential because every choice changes the loads.
    A constraint-mode SLO applies as to the other per-query rules (a pair over it is unavailable, or
    with no rejection allowed taken last).
    """

    needs_load = True

    def __init__(self) -> None:
        pass

    def route_one(self, query: OneQuery) -> int:
        return least_loaded_one(query)

    def _route(self, problem: RoutingProblem) -> RoutingResult:
        n, m = problem.n, problem.m
        cap = problem.capacity
        assert cap is not None
        load = np.zeros(m) if problem.load is None else problem.load.astype(np.float64).copy()
        remaining = np.floor(np.where(np.isinf(cap), n, cap))
        finite = np.isfinite(cap)
        total = np.where(finite, load + cap, 1.0)
        out = np.full(n, REJECT, dtype=np.int64)
        forbidden = problem.slo_forbidden()
        for i in range(n):
            frac = np.where(finite, load / np.maximum(total, 1e-12), load)
            frac = np.where(remaining >= 1, frac, np.inf)
            if forbidden is not None and forbidden[i].any():
                frac = _slo_last(frac, forbidden[i], problem.allow_reject)
            j = int(np.argmin(frac))
            if not np.isfinite(frac[j]):
                if forbidden is not None:
                    continue  # this query has no usable model; later ones may
                break
            out[i] = j
            load[j] += 1
            remaining[j] -= 1
        return RoutingResult.build(problem, out, STATUS_FEASIBLE)


def _slo_last(frac: FloatArray, forbidden: np.ndarray, allow_reject: bool) -> FloatArray:
    """``least_loaded``'s load fractions of one query with its pairs over the SLO unavailable (``inf``)
    when rejection is allowed, else placed after every pair within the SLO (same order among them)."""
    if allow_reject:
        return np.where(forbidden, np.inf, frac)
    finite = frac[np.isfinite(frac)]
    if finite.size == 0:
        return frac
    shift = float(finite.max() - finite.min()) + 1.0
    return np.where(forbidden & np.isfinite(frac), frac + shift, frac)
