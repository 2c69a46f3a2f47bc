"""Scores of predictions: AUC by ranks, Brier, ECE, std coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
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


def _scored(quality: np.ndarray, y: np.ndarray, std: np.ndarray, truth: np.ndarray | None) -> tuple[Prediction, QuerySet]:
    n, m = y.shape
    qs = QuerySet(model_names=tuple(f"m{j}" for j in range(m)), task_names=("t",), task=np.zeros(n, dtype=np.int64),
                  prompt_tokens=np.ones(n, dtype=np.int64), quality=y, output_tokens=np.ones((n, m), dtype=np.int64),
                  query_ids=np.arange(n), true_prob=truth)
    return Prediction(quality=quality, quality_std=std, output_tokens=np.ones((n, m))), qs


@pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:invalid value")
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 900), st.integers(1, 5), st.sampled_from([0.0, 0.5, 1.0]), st.booleans(),
       st.integers(0, 2**32 - 1))
def test_chunked_scores_equal_the_whole_array_formulas(n: int, m: int, tie_share: float, truth: bool,
                                                        seed: int) -> None:
    """predictor_scores scores CHUNK pairs at a time; with CHUNK at its 128 floor (so ranges are split
    as numpy's pairwise sum splits them, several levels deep) every score is scores_direct's float."""
    from sim.predictors import evaluate

    rng = np.random.default_rng(seed)
    quality = rng.random((n, m))
    tied = rng.random((n, m)) < tie_share  # ties, also across positives and negatives
    quality[tied] = rng.choice([0.0, 0.25, 0.5, 1.0], size=int(tied.sum()))
    y = (rng.random((n, m)) < 0.4).astype(np.float64) if seed % 2 else rng.random((n, m))
    std = np.broadcast_to(np.float64(0.2), (n, m)) if seed % 3 else rng.random((n, m)) * 0.3
    pred, qs = _scored(quality, y, std, rng.random((n, m)) if truth else None)
    target = qs.true_prob if truth else y
    with pytest.MonkeyPatch.context() as mp, np.errstate(invalid="ignore", divide="ignore"):
        mp.setattr(evaluate, "CHUNK", 128)
        got = evaluate._chunked_scores(pred, y, target)
        want = evaluate.scores_direct(pred, y, target)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_scores_of_other_layouts_are_the_whole_array_ones() -> None:
    """A Fortran-order quality (a pandas block) is summed in another order by numpy: scored whole."""
    from sim.predictors import evaluate

    rng = np.random.default_rng(0)
    y = np.asfortranarray(rng.random((5000, 3)))
    pred, qs = _scored(rng.random((5000, 3)), y, np.full((5000, 3), 0.1), None)
    assert not evaluate._chunkable(pred.quality, y)
    s = predictor_scores(pred, qs)
    want = evaluate.scores_direct(pred, y, y)
    assert [s["brier"], s["mae"], s["auc"], s["ece"], s["std_coverage"]] == list(want)


def test_a_large_run_scores_like_the_whole_array_formulas() -> None:
    """A million pairs at the real CHUNK: the pieces, the tree of sums and the rank sums at scale."""
    from sim.predictors import evaluate

    rng = np.random.default_rng(1)
    y = (rng.random((250_001, 4)) < 0.5).astype(np.float64)
    pred, _ = _scored(np.round(rng.random((250_001, 4)), 4), y, np.full((250_001, 4), 0.1), None)
    assert evaluate._chunked_scores(pred, y, y) == evaluate.scores_direct(pred, y, y)
