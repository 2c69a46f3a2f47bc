"""Query ordering: every mode is a permutation with the intended monotone or grouped structure."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sim.rng import stream
from sim.workload.arrivals import batch
from sim.workload.ordering import ORDER_MODES, arrival_query_index, hardness, order_queries
from sim.workload.queryset import QuerySet
from sim.workload.synthetic import synthetic_pool


@pytest.fixture(scope="module")
def qs() -> QuerySet:
    return synthetic_pool(3_000, None, None, stream(21, "pool"))


def _cost(qs: QuerySet) -> np.ndarray:
    return (qs.prompt_tokens[:, None] * 1e-6 + qs.output_tokens * np.array([1, 2, 4, 15]) * 1e-6).astype(
        float
    )


def _is_permutation(order: np.ndarray, n: int) -> bool:
    return order.dtype == np.int64 and np.array_equal(np.sort(order), np.arange(n))


@pytest.mark.parametrize("mode", ORDER_MODES)
def test_every_mode_is_a_deterministic_permutation(qs: QuerySet, mode: str) -> None:
    a = order_queries(qs, mode, stream(1, "order"), cost=_cost(qs))
    b = order_queries(qs, mode, stream(1, "order"), cost=_cost(qs))
    assert _is_permutation(a, qs.n) and np.array_equal(a, b)
    assert not np.array_equal(a, np.arange(qs.n))


def test_random_differs_by_seed(qs: QuerySet) -> None:
    assert not np.array_equal(
        order_queries(qs, "random", stream(1, "o")), order_queries(qs, "random", stream(2, "o"))
    )


def test_by_difficulty_known_is_monotone_both_ways(qs: QuerySet) -> None:
    assert qs.difficulty is not None
    hard_first = order_queries(qs, "by_difficulty", stream(1, "o"))
    easy_first = order_queries(qs, "by_difficulty", stream(1, "o"), descending=False)
    assert np.all(np.diff(qs.difficulty[hard_first]) <= 0)
    assert np.all(np.diff(qs.difficulty[easy_first]) >= 0)


def test_by_difficulty_without_scores_uses_models_correct_and_shuffles_ties(qs: QuerySet) -> None:
    blind = replace(qs, difficulty=None)
    correct = blind.quality.sum(axis=1)
    assert np.array_equal(hardness(blind), blind.m - correct)
    a = order_queries(blind, "by_difficulty", stream(1, "o"))
    b = order_queries(blind, "by_difficulty", stream(2, "o"))
    assert np.all(np.diff(correct[a]) >= 0)  # fewest correct (hardest) first
    assert np.array_equal(correct[a], correct[b]) and not np.array_equal(a, b)  # ties in random order
    tie_block = a[correct[a] == 0]
    assert not np.all(np.diff(tie_block) > 0)  # not left in source order


def test_by_cost_sorts_on_the_strongest_models_cost(qs: QuerySet) -> None:
    cost = _cost(qs)
    strong = int(np.argmax(qs.quality.mean(axis=0)))
    assert strong == qs.m - 1
    order = order_queries(qs, "by_cost", stream(1, "o"), cost=cost)
    assert np.all(np.diff(cost[order, strong]) <= 0)
    named = order_queries(
        qs, "by_cost", stream(1, "o"), cost=cost, strong_model=qs.model_names[0], descending=False
    )
    assert np.all(np.diff(cost[named, 0]) >= 0)
    priced = replace(qs, cost_usd=cost)
    assert np.array_equal(order_queries(priced, "by_cost", stream(1, "o")), order)  # falls back to cost_usd


def test_by_task_groups_each_task_contiguously_in_random_task_order(qs: QuerySet) -> None:
    task_orders = set()
    for seed in range(6):
        order = order_queries(qs, "by_task", stream(seed, "o"))
        runs = qs.task[order][np.r_[True, np.diff(qs.task[order]) != 0]]
        assert len(runs) == len(np.unique(qs.task))  # one run per task
        task_orders.add(tuple(runs))
        first = order[qs.task[order] == runs[0]]
        assert not np.all(np.diff(first) > 0)  # shuffled within the task
    assert len(task_orders) > 1


def test_ordered_pool_on_batch_arrivals_gives_homogeneous_batches(qs: QuerySet) -> None:
    arrivals = batch(50, 1.0, num_queries=qs.n + 500)  # more arrivals than queries: the pool cycles
    idx = arrival_query_index(order_queries(qs, "by_task", stream(1, "o")), arrivals.n)
    assert np.array_equal(idx[qs.n :], idx[:500])
    served = qs.subset(idx)
    mixed = [g for g in range(arrivals.num_groups) if len(np.unique(served.task[arrivals.group == g])) > 1]
    assert len(mixed) <= len(qs.task_names) * 2  # only batches straddling a task boundary (or the wrap)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "sideways"}, "unknown ordering mode"),
        ({"mode": "by_cost"}, "needs cost"),
        ({"mode": "by_cost", "cost": np.zeros((3, 4))}, "shape"),
        ({"mode": "by_cost", "cost": "ok", "strong_model": "gpt-9"}, "not one of the models"),
    ],
)
def test_bad_requests_raise_value_error(qs: QuerySet, kwargs: dict[str, object], message: str) -> None:
    if isinstance(kwargs.get("cost"), str):
        kwargs = {**kwargs, "cost": _cost(qs)}
    with pytest.raises(ValueError, match=message):
        order_queries(qs, rng=stream(1, "o"), **kwargs)  # type: ignore[arg-type]


def test_arrival_query_index_empty_pool() -> None:
    empty = np.empty(0, dtype=np.int64)
    assert arrival_query_index(empty, 0).size == 0
    with pytest.raises(ValueError):
        arrival_query_index(empty, 3)
