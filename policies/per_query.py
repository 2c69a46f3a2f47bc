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
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np

from policies.errors import InvalidParameterError
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

    def scores(self, problem: RoutingProblem) -> FloatArray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _route(self, problem: RoutingProblem) -> RoutingResult:
        assignment = greedy_assign(problem, self.scores(problem), self.on_budget)
        return RoutingResult.build(problem, assignment, STATUS_FEASIBLE)


def greedy_assign(problem: RoutingProblem, score: FloatArray, on_budget: OnBudget = "ignore") -> IntArray:
    """Give each query, in order, its highest-scoring model that has capacity left (and budget, per
    ``on_budget``); a query with no such model is rejected (``-1``).

    Vectorised when neither capacity nor budget binds, which is the common case with Δ = 0.
    """
    n, m = problem.n, problem.m
    if n == 0:
        return np.empty(0, dtype=np.int64)
    first = np.argmax(score, axis=1).astype(np.int64)
    cap = problem.capacity
    assert cap is not None
    budget = problem.budget if on_budget != "ignore" else None
    if budget is None and np.all(np.bincount(first, minlength=m) <= cap):
        return first
    order = np.argsort(-score, axis=1, kind="stable")
    remaining = np.floor(np.where(np.isinf(cap), n, cap))
    if on_budget == "downgrade" and budget is not None:
        return _downgrade(problem.cost, order, remaining, budget)
    cost = problem.cost
    spent = 0.0
    out = np.full(n, REJECT, dtype=np.int64)
    for i in range(n):
        for j in order[i]:
            if remaining[j] < 1:
                continue
            if budget is not None and spent + cost[i, j] > budget + TOL:
                break  # reject: the preferred model with capacity does not fit
            out[i] = j
            remaining[j] -= 1
            spent += cost[i, j]
            break
    return out


def _downgrade(cost: FloatArray, order: IntArray, remaining: FloatArray, budget: float) -> IntArray:
    """``on_budget="downgrade"`` (rule in the module docstring): best-ranked model within the budget
    left after reserving every later query's cheapest cost; else the cheapest that fits; else reject."""
    n = cost.shape[0]
    cheapest = cost.min(axis=1)
    # reserve[i] = Σ_{k > i} cheapest[k]
    reserve = np.concatenate([np.cumsum(cheapest[::-1])[::-1][1:], [0.0]])
    by_cost = np.argsort(cost, axis=1, kind="stable")
    spent = 0.0
    out = np.full(n, REJECT, dtype=np.int64)
    for i in range(n):
        choice = -1
        for j in order[i]:
            if remaining[j] >= 1 and spent + cost[i, j] + reserve[i] <= budget + TOL:
                choice = int(j)
                break
        if choice < 0:
            for j in by_cost[i]:
                if remaining[j] >= 1:
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

    def scores(self, problem: RoutingProblem) -> FloatArray:
        return _lexsort_scores(-problem.cost, problem.quality)


@register("strongest")
class Strongest(_PerQuery):
    """Highest predicted quality; ties go to the cheaper model."""

    def scores(self, problem: RoutingProblem) -> FloatArray:
        return _lexsort_scores(problem.quality, -problem.cost)


@register("threshold_greedy")
class ThresholdGreedy(_PerQuery):
    """OmniRouter's per-query baseline: the cheapest model whose predicted quality ≥ α, else the best.

    ``alpha`` defaults to the problem's ``min_quality`` (and to 0.5 when that is unset).
    """

    # A higher α rules out cheap models, so spend rises with it.
    spend_knob: ClassVar[SpendKnob | None] = SpendKnob("router.params.alpha", increasing=True, lo=0.0, hi=1.0)

    def __init__(self, alpha: float | None = None, on_budget: OnBudget = "ignore") -> None:
        super().__init__(on_budget)
        if alpha is not None and not 0.0 <= float(alpha) <= 1.0:
            raise InvalidParameterError(f"alpha must be within [0, 1], got {alpha}")
        self.alpha = alpha

    def scores(self, problem: RoutingProblem) -> FloatArray:
        alpha = self.alpha if self.alpha is not None else problem.min_quality
        alpha = 0.5 if alpha is None else float(alpha)
        ok = problem.quality >= alpha
        # Models meeting α rank above all others, cheapest first; below α, the most accurate first.
        cheap_rank = _lexsort_scores(-problem.cost, problem.quality)
        good_rank = _lexsort_scores(problem.quality, -problem.cost)
        m = problem.m
        return np.where(ok, m + cheap_rank, good_rank)


@register("utility_greedy")
class UtilityGreedy(_PerQuery):
    """RouterBench/CARROT-style: argmax predicted quality − λ·cost, λ in quality points per USD."""

    # A higher λ prices cost in more heavily, so spend falls with it; λ matters over decades.
    spend_knob: ClassVar[SpendKnob | None] = SpendKnob("router.params.lam", increasing=False, lo=1e-2, hi=1e7,
                                                       log=True)

    def __init__(self, lam: float = 100.0, on_budget: OnBudget = "ignore") -> None:
        super().__init__(on_budget)
        if not np.isfinite(lam) or lam < 0:
            raise InvalidParameterError(f"lam must be a finite number >= 0, got {lam}")
        self.lam = float(lam)

    def scores(self, problem: RoutingProblem) -> FloatArray:
        return _lexsort_scores(problem.quality - self.lam * problem.cost, -problem.cost)


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


@register("least_loaded")
class LeastLoaded(Policy):
    """The model with the smallest fraction of its slots in use (``load`` in flight + this batch).

    With unlimited capacity the raw load decides. Sequential because every choice changes the loads.
    """

    needs_load = True

    def __init__(self) -> None:
        pass

    def _route(self, problem: RoutingProblem) -> RoutingResult:
        n, m = problem.n, problem.m
        cap = problem.capacity
        assert cap is not None
        load = np.zeros(m) if problem.load is None else problem.load.astype(np.float64).copy()
        remaining = np.floor(np.where(np.isinf(cap), n, cap))
        finite = np.isfinite(cap)
        total = np.where(finite, load + cap, 1.0)
        out = np.full(n, REJECT, dtype=np.int64)
        for i in range(n):
            frac = np.where(finite, load / np.maximum(total, 1e-12), load)
            frac = np.where(remaining >= 1, frac, np.inf)
            j = int(np.argmin(frac))
            if not np.isfinite(frac[j]):
                break
            out[i] = j
            load[j] += 1
            remaining[j] -= 1
        return RoutingResult.build(problem, out, STATUS_FEASIBLE)
