"""How good is a predictor? Scores over all (query, model) pairs of a held-out QuerySet.

- ``brier``: mean (â − y)², y the realised quality; the proper scoring rule routers care about,
  since both over- and under-confidence misroute.
- ``auc``: probability that a random correct pair is ranked above a random incorrect one (ties count
  half), from ranks (Mann–Whitney); outcomes are binarised at y >= 0.5. NaN when only one class occurs.
- ``mae``: mean |â − y|.
- ``ece``: expected calibration error, 10 equal-width bins of â, Σ_bins (share of pairs) ×
  |mean â − mean y|; says whether "0.7" means 70 %, which the Brier score mixes with sharpness.
- ``std_coverage``: fraction of pairs with |â − target| <= σ, where target is ``qs.true_prob`` when known
  (≈ 0.68 means σ is calibrated for Gaussian errors), else the realised quality (then it only
  compares predictors: a 0/1 outcome is rarely within σ of a probability).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from sim.predictors.base import Prediction
from sim.workload.queryset import QuerySet


def average_ranks(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Ranks 1..n of ``x``, ties given the mean of the ranks they span (what ``scipy.stats.rankdata``
    returns by default; done in numpy because importing scipy.stats costs ~0.3 s of every start-up, and
    ``llmsim validate`` scores the predictor)."""
    x = np.ravel(x)
    order = np.argsort(x, kind="mergesort")
    inverse = np.empty(x.size, dtype=np.intp)
    inverse[order] = np.arange(x.size)
    xs = x[order]
    new_value = np.concatenate(([True], xs[1:] != xs[:-1])) if x.size else np.zeros(0, dtype=bool)
    group = np.cumsum(new_value)[inverse]  # 1-based tie group of each element
    bounds = np.concatenate((np.flatnonzero(new_value), [x.size]))  # first sorted position of each group
    return 0.5 * (bounds[group - 1] + 1 + bounds[group]).astype(np.float64)


def auc_score(scores: NDArray[np.float64], positive: NDArray[np.bool_]) -> float:
    """Rank-based ROC AUC (ties averaged); NaN if ``positive`` is all True or all False."""
    scores, positive = np.ravel(scores), np.ravel(positive).astype(bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def expected_calibration_error(
    predicted: NDArray[np.float64], outcome: NDArray[np.float64], bins: int = 10
) -> float:
    """Σ over equal-width bins of predicted probability: (share of pairs) × |mean predicted − mean outcome|."""
    predicted, outcome = np.ravel(predicted), np.ravel(outcome)
    which = np.minimum((predicted * bins).astype(np.int64), bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, predicted, bins) - np.bincount(which, outcome, bins))
    return float(gap.sum() / max(predicted.size, 1)) if count.sum() else float("nan")


def predictor_scores(pred: Prediction, qs: QuerySet) -> dict[str, float | str]:
    """Brier, AUC, MAE and std coverage of ``pred`` against ``qs`` (see the module docstring)."""
    if pred.quality.shape != qs.quality.shape:
        raise ValueError(f"prediction shape {pred.quality.shape} != QuerySet shape {qs.quality.shape}")
    y = qs.quality
    err = pred.quality - y
    target_name = "true_prob" if qs.true_prob is not None else "quality"
    target = qs.true_prob if qs.true_prob is not None else y
    return {
        "brier": float(np.mean(err**2)),
        "auc": auc_score(pred.quality, y >= 0.5),
        "mae": float(np.mean(np.abs(err))),
        "ece": expected_calibration_error(pred.quality, y),
        "std_coverage": float(np.mean(np.abs(pred.quality - target) <= pred.quality_std)),
        "n_pairs": float(y.size),
        "coverage_target": target_name,
    }
