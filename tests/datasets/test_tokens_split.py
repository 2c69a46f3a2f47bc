"""Token estimation rule, output-length filling, and seeded stratified splits."""

from __future__ import annotations

import numpy as np
import pytest

from sim.datasets import estimate_tokens, stratified_sample, train_test_split
from sim.datasets.tokens import fill_output_tokens
from sim.rng import stream
from sim.workload.queryset import QuerySet


def test_estimate_tokens_rule():
    assert estimate_tokens(["", "abc", "abcd", "abcde", "x" * 400]).tolist() == [1, 1, 1, 2, 100]


def test_fill_output_tokens_most_specific_first():
    nan = np.nan
    tokens = np.array(
        [
            [10.0, nan, nan],  # task 0
            [30.0, 100.0, nan],  # task 0
            [nan, 200.0, nan],  # task 1
            [50.0, 300.0, nan],  # task 1
        ]
    )
    task = np.array([0, 0, 1, 1])
    out = fill_output_tokens(tokens, task)
    assert out[0, 1] == 100  # model 1's median on task 0
    assert out[2, 0] == 50  # model 0's median on task 1
    assert out[0, 2] == 30  # model 2 never known: all models on task 0 → median(10, 30, 100)
    assert out[2, 2] == 200  # all models on task 1 → median(200, 50, 300)
    assert fill_output_tokens(np.full((2, 1), nan), np.array([0, 0]), default=77).tolist() == [[77], [77]]


def _qs(n=200, tasks=4):
    rng = np.random.default_rng(0)
    return QuerySet(
        model_names=("a", "b"),
        task_names=tuple(f"t{i}" for i in range(tasks)),
        task=np.arange(n, dtype=np.int64) % tasks,
        prompt_tokens=np.ones(n, dtype=np.int64),
        quality=rng.random((n, 2)),
        output_tokens=np.ones((n, 2), dtype=np.int64),
        query_ids=np.arange(n),
    )


def test_split_is_deterministic_stratified_and_disjoint():
    qs = _qs()
    tr1, te1 = train_test_split(qs, 0.25, stream(7, "split"))
    tr2, te2 = train_test_split(qs, 0.25, stream(7, "split"))
    np.testing.assert_array_equal(te1.query_ids, te2.query_ids)
    np.testing.assert_array_equal(tr1.quality, tr2.quality)
    assert te1.n == 50 and tr1.n == 150 and np.bincount(te1.task).tolist() == [13, 13, 12, 12]
    assert not set(te1.query_ids) & set(tr1.query_ids)
    _, te3 = train_test_split(qs, 0.25, stream(8, "split"))
    assert set(te3.query_ids) != set(te1.query_ids)


def test_split_edge_cases():
    qs = _qs(n=3, tasks=1)
    tr, te = train_test_split(qs, 0.01, stream(0, "split"))
    assert (tr.n, te.n) == (2, 1)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        train_test_split(qs, 1.0, stream(0, "split"))


def test_stratified_sample_exact_size():
    labels = np.array([0] * 7 + [1] * 2 + [2] * 1)
    idx = stratified_sample(labels, 5, stream(0, "s"))
    assert len(idx) == 5 and len(set(idx)) == 5 and np.all(np.diff(idx) > 0)
    assert np.bincount(labels[idx], minlength=3).tolist() == [4, 1, 0]
