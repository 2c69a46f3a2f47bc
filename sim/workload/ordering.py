"""Query ordering for random and adversarial batching (see docs/routing.md, "Batching and arrivals").

:func:`order_queries` returns a permutation of the pool. The runner then gives query ``order[k]`` to
the k-th arrival (:func:`arrival_query_index` does exactly that, cycling when there are more arrivals
than queries). With a batch arrival process (:func:`sim.workload.arrivals.batch`) consecutive arrivals
form one batch, so sorting the pool makes batches homogeneous — some all hard, some all expensive, some
all one task — which is the adversary a batch-level router has to survive and a per-query router tuned
to the average budget does not.

Ties are broken at random (the pool is shuffled first and then sorted stably), so queries of equal key
never keep the source's order, which is often itself sorted by task or id.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

from sim.workload.queryset import QuerySet

OrderMode = Literal["random", "by_difficulty", "by_cost", "by_task"]
ORDER_MODES: tuple[str, ...] = ("random", "by_difficulty", "by_cost", "by_task")


def hardness(qs: QuerySet) -> NDArray[np.float64]:
    """Per-query hardness: ``qs.difficulty`` when known, else how many models fail it.

    Without a difficulty score, the number of models answering correctly is the usual proxy (fewer =
    harder); with quality in [0, 1] rather than 0/1 it is m − Σ_j quality_ij.
    """
    if qs.difficulty is not None:
        return np.asarray(qs.difficulty, dtype=np.float64)
    return qs.m - qs.quality.sum(axis=1)


def strong_model_index(qs: QuerySet, strong_model: str | None = None) -> int:
    """Column of the named model, else of the model with the highest mean quality (first on ties)."""
    if strong_model is None:
        return int(np.argmax(qs.quality.mean(axis=0)))
    if strong_model not in qs.model_names:
        raise ValueError(f"strong_model {strong_model!r} is not one of the models {list(qs.model_names)}")
    return qs.model_names.index(strong_model)


def _sorted_by(key: NDArray[np.float64], descending: bool, rng: np.random.Generator) -> NDArray[np.int64]:
    """Random shuffle, then stable sort on ``key``: ties end up in random order."""
    shuffled = rng.permutation(len(key))
    k = key[shuffled]
    return shuffled[np.argsort(-k if descending else k, kind="stable")].astype(np.int64)


def _cost_key(qs: QuerySet, cost: np.ndarray | None, strong_model: str | None) -> NDArray[np.float64]:
    table = qs.cost_usd if cost is None else np.asarray(cost, dtype=np.float64)
    if table is None:
        raise ValueError("mode 'by_cost' needs cost: an (n, m) array of per-query cost (or qs.cost_usd)")
    if table.shape != (qs.n, qs.m):
        raise ValueError(f"cost has shape {table.shape}, expected ({qs.n}, {qs.m})")
    return np.asarray(table[:, strong_model_index(qs, strong_model)], dtype=np.float64)


def _by_task(qs: QuerySet, rng: np.random.Generator) -> NDArray[np.int64]:
    """Tasks in random order, each task's queries contiguous and shuffled."""
    rank = rng.permutation(len(qs.task_names)).astype(np.float64)
    return _sorted_by(rank[qs.task], False, rng)


def order_queries(
    qs: QuerySet,
    mode: OrderMode | str,
    rng: np.random.Generator,
    *,
    descending: bool = True,
    strong_model: str | None = None,
    cost: np.ndarray | None = None,
) -> NDArray[np.int64]:
    """A permutation of ``range(qs.n)``: the order in which queries are handed to arrivals.

    Modes:
        ``random``: a uniform shuffle (random batching).
        ``by_difficulty``: by :func:`hardness`; ``descending=True`` (default) puts the hardest first.
        ``by_cost``: by the strong model's cost per query, ``cost[:, j]`` (caller-priced (n, m) array,
            default ``qs.cost_usd``); the strong model is ``strong_model`` if named, else the one with the
            highest mean quality. ``descending=True`` puts the most expensive first.
        ``by_task``: grouped by task, tasks in random order, shuffled within each task.
    """
    if mode == "random":
        return rng.permutation(qs.n).astype(np.int64)
    if mode == "by_difficulty":
        return _sorted_by(hardness(qs), descending, rng)
    if mode == "by_cost":
        return _sorted_by(_cost_key(qs, cost, strong_model), descending, rng)
    if mode == "by_task":
        return _by_task(qs, rng)
    raise ValueError(f"unknown ordering mode {mode!r}; expected one of {', '.join(ORDER_MODES)}")


def arrival_query_index(order: NDArray[np.int64], num_arrivals: int) -> NDArray[np.int64]:
    """Pool index of each arrival: arrival k gets ``order[k % len(order)]``.

    Cycling (rather than failing) when there are more arrivals than queries repeats the ordered pool,
    keeping its adversarial structure; use ``qs.subset(arrival_query_index(order, arrivals.n))`` to get
    the arrivals' queries as one QuerySet.
    """
    if len(order) == 0:
        if num_arrivals:
            raise ValueError("cannot assign queries to arrivals from an empty pool")
        return np.empty(0, dtype=np.int64)
    return np.asarray(order, dtype=np.int64)[np.arange(num_arrivals) % len(order)]
