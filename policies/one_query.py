"""A batch of ONE query as Python scalars, and the per-query rules' choice for it.

At Δ = 0 the simulator routes every query alone. Building a 1 × m :class:`~policies.problem.RoutingProblem`
and running a rule's numpy code on it costs tens of microseconds of numpy call overhead per query — more
than simulating the query. :meth:`policies.registry.Policy.route_one` answers the same question on a
:class:`OneQuery` (lists of m floats) in plain Python; a rule that has no such path, or a problem it does
not cover (an SLO, a budget mode), returns ``None`` and the caller builds the problem instead.

Each rule's order is the one its numpy path induces (``_lexsort_scores``: the last key is the model index,
so a full tie goes to the higher index; ``np.argmax`` / ``np.argmin``: the first extreme), so the two paths
give the same model on every input; ``tests/policies/test_one_query.py`` checks it against
:meth:`~policies.registry.Policy.route` on random and tied problems.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from policies.problem import REJECT


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs several times more, per query
class OneQuery:
    """One query × ``m`` models: the 1 × m :class:`~policies.problem.RoutingProblem` without an SLO or a
    true quality, as sequences of Python floats (``quality[j]``, ``cost[j]``, ``capacity[j]`` with
    ``math.inf`` for unlimited; ``load`` only for policies that read it)."""

    quality: Sequence[float]
    cost: Sequence[float]
    capacity: Sequence[float]
    load: Sequence[float] | None = None
    budget: float | None = None
    min_quality: float | None = None
    allow_reject: bool = False

    @property
    def m(self) -> int:
        return len(self.quality)


def best_with_room(query: OneQuery, key: Callable[[int], Any]) -> int:
    """The model with room (capacity ≥ 1) whose ``key`` is largest; keys must be distinct (end them with
    the index), as the ranks of ``_lexsort_scores`` are. -1 when no model has room — what the greedy
    assignment of a one-query batch gives when every model is full."""
    best = REJECT
    best_key: Any = None
    cap = query.capacity
    for j in range(query.m):
        if cap[j] >= 1:
            k = key(j)
            if best_key is None or k > best_key:
                best, best_key = j, k
    return best


def least_loaded_one(query: OneQuery) -> int:
    """``least_loaded`` on one query: the smallest ``load / (load + capacity)`` (raw load when capacity is
    unlimited) among models with room, first on ties; -1 when none has room."""
    load = query.load if query.load is not None else [0.0] * query.m
    best = REJECT
    best_f = math.inf
    for j, c in enumerate(query.capacity):
        lj = float(load[j])
        if math.isinf(c):
            f = lj
        elif math.floor(c) >= 1:
            f = lj / max(lj + c, 1e-12)
        else:
            continue
        if f < best_f:
            best, best_f = j, f
    return best
