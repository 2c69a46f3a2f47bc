"""One normal form for every batch problem: maximise Σ score subject to capacity and one side row.

Both problem forms of ``routing.md`` become

    max Σ_ij score_ij x_ij   s.t.   Σ_j x_ij = 1,   Σ_i x_ij ≤ cap_j,   Σ_ij row_ij x_ij ≤ rhs

* max-quality (N): ``score = quality``, ``row = cost / scale``, ``rhs = budget / scale``;
* min-cost (P): ``score = -cost / scale``, ``row = -quality``, ``rhs = -α n``.

Rejection is an extra column (score 0, row 0, capacity n), so the solvers never special-case it.
Costs are divided by ``scale`` (the largest cost) because raw costs are ~1e-6..1e-2 USD while
qualities are ~1: without it a multiplier on the budget row would live around 1e3..1e6 and the
solvers' absolute tolerances would mean different things on the two rows.

When both ``budget`` and ``min_quality`` are set, the side row is the α row; the budget is left to
:func:`policies.check_assignment` (only ``milp`` models both rows; see :mod:`policies.batch.milp`).

**Latency SLO** (issue 12), the same for every batch policy because they all solve this form:

* penalty mode: ``μ·(latency − slo)+`` is taken off the score in the objective's units — quality
  points per second over the SLO in the max-quality form (``score = quality − μ·excess``), USD per
  second in the min-cost form (``score = −(cost + μ·excess) / scale``). The side rows keep the true
  cost and quality: the penalty prices latency, it does not spend budget or earn quality.
* constraint mode: a pair over the SLO is *forbidden* (``forbidden`` mask). Its score is lowered by
  ``P`` so that every allowed column and the reject column beat it, and in the min-cost form its quality
  counts for nothing (row 0). With rejection allowed, ``P = 3`` already makes the reject column
  (score 0, row 0, unlimited) dominate it for every multiplier, so no optimum uses it, and ``milp``
  fixes it to 0 outright; a query with no allowed model is rejected. Without rejection ``P = 2n + 3``
  exceeds any score difference a whole batch can make, so an assignment with fewer forbidden pairs
  always scores more: the solvers then use forbidden pairs only where capacity forces them, and the
  result (checked by :func:`policies.check_assignment`) is ``infeasible`` naming the SLO.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies.problem import REJECT, FloatArray, IntArray, ProblemForm, RoutingProblem
from policies.result import TOL


@dataclass(frozen=True, eq=False)
class LinearForm:
    """The arrays a solver works on; columns ``0..m-1`` are models, column ``m`` (if any) is reject."""

    problem: RoutingProblem
    quality: FloatArray  # the quality the form was built on (predicted, robust or true)
    score: FloatArray
    row: FloatArray | None
    rhs: float | None
    cap: IntArray
    reject_col: int | None
    cost_scale: float
    row_name: str | None  # "budget" or "min_quality"
    row_tol: float  # slack the checker allows on the side row, in the row's (scaled) units
    forbidden: np.ndarray | None = None  # (n, k) pairs over the SLO in constraint mode (None: none)

    @classmethod
    def from_problem(cls, problem: RoutingProblem, quality: FloatArray | None = None) -> LinearForm:
        """Normal form of ``problem``; ``quality`` overrides the predicted quality (robust, oracle)."""
        q = problem.quality if quality is None else np.asarray(quality, dtype=np.float64)
        c = problem.cost
        n = problem.n
        scale = float(c.max()) if c.size and c.max() > 0 else 1.0
        row: FloatArray | None
        rhs: float | None
        if problem.form is ProblemForm.MIN_COST:
            assert problem.min_quality is not None
            score = -c / scale
            row, rhs, name = -q, -float(problem.min_quality) * n, "min_quality"
            tol = TOL * n
        elif problem.budget is not None:
            score = q.copy()
            row, rhs, name = c / scale, float(problem.budget) / scale, "budget"
            tol = TOL * max(1.0, float(problem.budget)) / scale
        else:
            score, row, rhs, name, tol = q.copy(), None, None, None, 0.0
        score, row, q, forbidden = _apply_slo(problem, score, row, q, scale)
        cap = problem.int_capacity()
        reject_col = None
        if problem.allow_reject:
            reject_col = problem.m
            score = np.hstack([score, np.zeros((n, 1))])
            if row is not None:
                row = np.hstack([row, np.zeros((n, 1))])
            if forbidden is not None:
                forbidden = np.hstack([forbidden, np.zeros((n, 1), dtype=bool)])
            cap = np.append(cap, n).astype(np.int64)
        # The checker's tolerance is generous next to float error, but rounding must not eat all of it.
        return cls(problem, q, score, row, rhs, cap, reject_col, scale, name, 0.5 * tol, forbidden)

    # ------------------------------------------------------------------ shape and mapping
    @property
    def n(self) -> int:
        return int(self.score.shape[0])

    @property
    def k(self) -> int:
        """Number of columns (models plus the reject column)."""
        return int(self.score.shape[1])

    @property
    def has_row(self) -> bool:
        return self.row is not None

    def to_assignment(self, cols: IntArray) -> IntArray:
        """Column indices → the public assignment (reject column → ``REJECT``)."""
        a = np.asarray(cols, dtype=np.int64).copy()
        if self.reject_col is not None:
            a[a == self.reject_col] = REJECT
        return a

    def from_assignment(self, assignment: IntArray) -> IntArray:
        a = np.asarray(assignment, dtype=np.int64).copy()
        if self.reject_col is not None:
            a[a == REJECT] = self.reject_col
        return a

    # ------------------------------------------------------------------ evaluation
    def value(self, cols: IntArray) -> float:
        return float(self.score[np.arange(self.n), cols].sum())

    def side(self, cols: IntArray) -> float:
        """Left-hand side of the side row (0 when there is none)."""
        if self.row is None:
            return 0.0
        return float(self.row[np.arange(self.n), cols].sum())

    def slack(self, cols: IntArray) -> float:
        """``rhs - side``: >= 0 when the side row holds (``inf`` without a side row)."""
        if self.rhs is None:
            return float("inf")
        return self.rhs - self.side(cols)

    def side_ok(self, cols: IntArray) -> bool:
        return self.slack(cols) >= -self.row_tol

    def loads(self, cols: IntArray) -> IntArray:
        return np.bincount(cols, minlength=self.k).astype(np.int64)

    def cap_ok(self, cols: IntArray) -> bool:
        return bool(np.all(self.loads(cols) <= self.cap))

    def feasible(self, cols: IntArray) -> bool:
        return self.cap_ok(cols) and self.side_ok(cols)

    def objective(self, cols: IntArray) -> float:
        """The problem's own objective (Σ quality, or Σ cost in USD) of ``cols``."""
        if self.problem.form is ProblemForm.MIN_COST:
            return -self.value(cols) * self.cost_scale
        return self.value(cols)

    def to_objective(self, value: float) -> float:
        """Convert a value of Σ score (e.g. a dual bound) into the problem's objective units."""
        return -value * self.cost_scale if self.problem.form is ProblemForm.MIN_COST else value


def _apply_slo(problem: RoutingProblem, score: FloatArray, row: FloatArray | None, q: FloatArray,
               scale: float) -> tuple[FloatArray, FloatArray | None, FloatArray, np.ndarray | None]:
    """Score, side row, quality and forbidden mask with the SLO of the module docstring applied.

    Untouched (the very same arrays) when the problem has no SLO, or a penalty that is zero everywhere:
    that is what makes ``slo_penalty = 0`` reproduce the SLO-free answer exactly.
    """
    min_cost = problem.form is ProblemForm.MIN_COST
    penalty = problem.slo_penalty_matrix()
    if penalty is not None:
        score = score - (penalty / scale if min_cost else penalty)
    forbidden = problem.slo_forbidden()
    if forbidden is None or not forbidden.any():
        return score, row, q, None
    n = problem.n
    big = 3.0 if problem.allow_reject else 2.0 * n + 3.0
    score = np.where(forbidden, score - big, score)
    if min_cost:
        assert row is not None
        q = np.where(forbidden, 0.0, q)
        row = np.where(forbidden, 0.0, row)
    return score, row, q, forbidden
