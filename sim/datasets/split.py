"""Seeded, task-stratified subsampling and train/test splits.

Predictors are fitted on one part of a dataset and evaluated (or routed) on another. Stratifying by task
keeps each task's share the same in both parts, so a small split still has every task and a
per-task predictor is not judged on tasks it never saw. All randomness comes from the caller's
Generator; the same seed gives the same split.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from sim.workload.queryset import QuerySet


def stratified_sample(labels: NDArray[np.int64], k: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """``k`` indices drawn without replacement, each label getting its proportional share.

    Shares are ``k * count / n`` rounded by largest remainder (ties to the smaller label), so the total
    is exactly ``k``. Returned sorted, i.e. in the source order.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if not 0 <= k <= n:
        raise ValueError(f"cannot sample {k} of {n} items")
    groups, counts = np.unique(labels, return_counts=True)
    quota = k * counts / n
    take = np.floor(quota).astype(np.int64)
    short = k - int(take.sum())
    if short:
        order = np.lexsort((groups, -(quota - take)))  # largest remainder first, then label
        take[order[:short]] += 1
    chosen = [
        rng.choice(np.flatnonzero(labels == g), size=int(t), replace=False)
        for g, t in zip(groups, take, strict=True)
        if t
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, dtype=np.int64)


def train_test_split(
    qs: QuerySet, test_fraction: float, rng: np.random.Generator
) -> tuple[QuerySet, QuerySet]:
    """(train, test): ``round(test_fraction * n)`` queries (at least 1, at most n - 1) go to test.

    Stratified by task (see :func:`stratified_sample`); both parts keep the source order.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if qs.n < 2:
        raise ValueError(f"cannot split {qs.n} query(ies) into non-empty train and test parts")
    n_test = min(max(int(round(test_fraction * qs.n)), 1), qs.n - 1)
    test_idx = stratified_sample(qs.task, n_test, rng)
    mask = np.ones(qs.n, dtype=bool)
    mask[test_idx] = False
    return qs.subset(np.flatnonzero(mask)), qs.subset(test_idx)
