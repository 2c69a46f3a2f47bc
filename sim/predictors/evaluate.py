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

from collections.abc import Iterator

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
    """Brier, AUC, MAE and std coverage of ``pred`` against ``qs`` (see the module docstring).

    Scored :data:`CHUNK` pairs at a time (a million queries × 4 models made ~200 MB of (n, m)
    temporaries scored whole) with the very floats of the whole-array formulas, :func:`scores_direct`:
    see :func:`_chunked_scores`. Arrays laid out otherwise than C order are scored whole by it.
    """
    if pred.quality.shape != qs.quality.shape:
        raise ValueError(f"prediction shape {pred.quality.shape} != QuerySet shape {qs.quality.shape}")
    target_name = "true_prob" if qs.true_prob is not None else "quality"
    target = qs.true_prob if qs.true_prob is not None else qs.quality
    if _chunkable(pred.quality, qs.quality):
        brier, mae, auc, ece, coverage = _chunked_scores(pred, qs.quality, target)
    else:
        brier, mae, auc, ece, coverage = scores_direct(pred, qs.quality, target)
    return {
        "brier": brier,
        "auc": auc,
        "mae": mae,
        "ece": ece,
        "std_coverage": coverage,
        "n_pairs": float(qs.quality.size),
        "coverage_target": target_name,
    }


Scores = tuple[float, float, float, float, float]
"""(brier, mae, auc, ece, std coverage)."""


def scores_direct(pred: Prediction, y: NDArray[np.float64], target: NDArray[np.float64]) -> Scores:
    """The scores from whole (n, m) arrays: the definition :func:`_chunked_scores` reproduces."""
    err = pred.quality - y
    return (float(np.mean(err**2)), float(np.mean(np.abs(err))), auc_score(pred.quality, y >= 0.5),
            expected_calibration_error(pred.quality, y),
            float(np.mean(np.abs(pred.quality - target) <= pred.quality_std)))


CHUNK = 1 << 16
"""(query, model) pairs scored at once (a few MB of temporaries); at least 128, numpy's pairwise block."""

MAX_EXACT_PAIRS = 90_000_000
"""Up to this many pairs every partial sum of AUC ranks (multiples of 0.5, at most n²/2) is an exact
float64, so a rank sum in any order equals the whole-array one; above it AUC is ranked whole."""


def _chunkable(quality: np.ndarray, y: np.ndarray) -> bool:
    """Whether numpy's whole-array means run over the C-order flat sequence (one pairwise sum), which the
    chunked sums reproduce: float64 C-contiguous operands (then ``quality - y`` is C-contiguous too)."""
    return all(a.dtype == np.float64 and a.flags.c_contiguous for a in (quality, y)) and y.ndim == 2


def _flat(a: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Elements ``lo:hi`` of ``a``'s C-order flat sequence, copying at most those rows (``a`` may be a
    broadcast view, whose ravel would copy everything)."""
    m = a.shape[1]
    r0, r1 = lo // m, -(-hi // m)
    return np.asarray(a[r0:r1]).reshape(-1)[lo - r0 * m : hi - r0 * m]


def _pieces(n: int, lo: int = 0) -> Iterator[tuple[int, int]]:
    """The ranges numpy's pairwise sum of ``n`` elements adds up whole below :data:`CHUNK` elements, in
    order: it halves a range of more than 128 elements at a multiple of 8 (``n2 = n / 2 - (n / 2) % 8``)
    and adds the halves' sums, so summing these ranges with ``np.sum`` and adding the results along the
    same halving (:func:`_tree_sum`) gives its float exactly."""
    if n <= CHUNK:
        yield lo, lo + n
        return
    half = n // 2 - (n // 2) % 8
    yield from _pieces(half, lo)
    yield from _pieces(n - half, lo + half)


def _tree_sum(sums: Iterator[np.ndarray], n: int) -> np.ndarray:
    """Add the per-range sums of :func:`_pieces` (same ``n``, same order) along numpy's halving."""
    if n <= CHUNK:
        return next(sums)
    half = n // 2 - (n // 2) % 8
    left = _tree_sum(sums, half)
    return left + _tree_sum(sums, n - half)


def _chunked_scores(pred: Prediction, y: NDArray[np.float64], target: NDArray[np.float64]) -> Scores:
    """:func:`scores_direct`'s floats, :data:`CHUNK` pairs at a time.

    Brier and MAE: numpy's pairwise sums, reproduced range by range (:func:`_pieces`). ECE: ``np.add.at``
    over the pairs in order adds each bin's values one by one from 0, as ``np.bincount`` does. Coverage
    and the AUC's rank sum are sums of integers (half-integers), exact in any order."""
    q, n, bins = pred.quality, y.size, 10
    ranks = _RankSum(q, y) if n <= MAX_EXACT_PAIRS else None
    count = np.zeros(bins, dtype=np.int64)
    by_pred, by_outcome = np.zeros(bins), np.zeros(bins)
    covered = 0

    def sums() -> Iterator[np.ndarray]:
        nonlocal count, covered
        for lo, hi in _pieces(n):
            qc, yc = _flat(q, lo, hi), _flat(y, lo, hi)
            err = qc - yc
            which = np.minimum((qc * bins).astype(np.int64), bins - 1)
            count += np.bincount(which, minlength=bins)
            np.add.at(by_pred, which, qc)
            np.add.at(by_outcome, which, yc)
            covered += int(np.count_nonzero(np.abs(qc - _flat(target, lo, hi)) <= _flat(pred.quality_std, lo, hi)))
            yield np.array([np.sum(err**2), np.sum(np.abs(err))])

    sq, ab = _tree_sum(sums(), n) if n else np.zeros(2)
    with np.errstate(invalid="ignore", divide="ignore"):
        brier, mae = float(np.float64(sq) / n), float(np.float64(ab) / n)
    ece = float(np.abs(by_pred - by_outcome).sum() / max(n, 1)) if count.sum() else float("nan")
    auc = ranks.auc() if ranks is not None else auc_score(q, y >= 0.5)
    return brier, mae, auc, ece, float(np.float64(covered) / n) if n else float("nan")


class _RankSum:
    """AUC from the sorted scores of positive and of negative pairs (one float copy of the scores in
    all, not :func:`average_ranks`' dozen (n,) arrays): a positive's average rank is (scores below it
    + 1 + scores at or below it) / 2, counted by ``searchsorted`` in each sorted part."""

    def __init__(self, q: np.ndarray, y: np.ndarray) -> None:
        self.q, self.y = q, y
        flat_q, flat_y = q.reshape(-1), y.reshape(-1)
        n_pos = sum(int(np.count_nonzero(flat_y[lo:lo + CHUNK] >= 0.5)) for lo in range(0, flat_y.size, CHUNK))
        self.pos, self.neg = np.empty(n_pos), np.empty(flat_y.size - n_pos)
        i = j = 0
        for lo in range(0, flat_y.size, CHUNK):
            qc, hit = flat_q[lo:lo + CHUNK], flat_y[lo:lo + CHUNK] >= 0.5
            a, b = qc[hit], qc[~hit]
            self.pos[i:i + a.size], self.neg[j:j + b.size] = a, b
            i, j = i + a.size, j + b.size
        self.pos.sort()
        self.neg.sort()

    def auc(self) -> float:
        n_pos, n_neg = self.pos.size, self.neg.size
        if n_pos == 0 or n_neg == 0:
            return float("nan")
        if np.isnan(self.pos[-1]) or np.isnan(self.neg[-1]):  # NaNs (sorted last) are not ties there
            return auc_score(self.q, self.y >= 0.5)
        twice = n_pos  # the sum of 2 × rank: (below + 1 + at or below) per positive
        for lo in range(0, n_pos, CHUNK):
            keys = self.pos[lo:lo + CHUNK]
            for part in (self.pos, self.neg):
                twice += int(np.searchsorted(part, keys, "left").sum() + np.searchsorted(part, keys, "right").sum())
        return float((twice / 2 - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
