"""Scores of predictions: AUC by ranks, Brier, ECE, std coverage."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.predictors import Prediction, auc_score, predictor_scores
from sim.predictors.evaluate import expected_calibration_error
from sim.workload.queryset import QuerySet


def test_auc():
    y = np.array([0, 0, 1, 1], dtype=bool)
    assert auc_score(np.array([0.1, 0.2, 0.8, 0.9]), y) == 1.0
    assert auc_score(np.array([0.9, 0.8, 0.2, 0.1]), y) == 0.0
    assert auc_score(np.full(4, 0.5), y) == 0.5
    assert auc_score(np.array([0.1, 0.6, 0.4, 0.9]), y) == 0.75
    assert math.isnan(auc_score(np.array([0.1, 0.2]), np.array([True, True])))


def test_ece():
    assert expected_calibration_error(np.full(10, 0.3), np.array([1] * 3 + [0] * 7)) < 1e-12
    assert expected_calibration_error(np.full(4, 0.95), np.zeros(4)) == 0.95


def test_predictor_scores():
    quality = np.array([[1.0, 0.0], [0.0, 1.0]])
    qs = QuerySet(
        model_names=("a", "b"),
        task_names=("t",),
        task=np.zeros(2, dtype=np.int64),
        prompt_tokens=np.ones(2, dtype=np.int64),
        quality=quality,
        output_tokens=np.ones((2, 2), dtype=np.int64),
        query_ids=np.arange(2),
        true_prob=np.array([[0.8, 0.3], [0.2, 0.7]]),
    )
    pred = Prediction(
        quality=np.array([[0.7, 0.4], [0.2, 0.9]]),
        quality_std=np.full((2, 2), 0.15),
        output_tokens=np.ones((2, 2)),
    )
    s = predictor_scores(pred, qs)
    assert s["brier"] == np.mean((pred.quality - quality) ** 2)
    assert s["mae"] == np.mean(np.abs(pred.quality - quality))
    assert s["auc"] == 1.0 and s["n_pairs"] == 4
    assert s["coverage_target"] == "true_prob" and s["std_coverage"] == 0.75  # |0.9 - 0.7| > 0.15


@settings(deadline=None)  # the first example imports scipy.stats
@given(st.lists(st.sampled_from([0.0, 0.1, 0.5, 0.5, 1.0, -2.0, 3.25]), max_size=60))
def test_average_ranks_is_scipys_rankdata(values: list[float]) -> None:
    """The numpy ranks used for AUC (scipy.stats stays out of start-up) equal scipy's average ranks."""
    from scipy.stats import rankdata

    from sim.predictors.evaluate import average_ranks

    x = np.array(values, dtype=np.float64)
    assert np.array_equal(average_ranks(x), rankdata(x) if x.size else np.zeros(0))
