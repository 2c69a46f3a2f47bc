"""Columns that can be dropped without changing the optimum.

If column j has unlimited capacity (``cap_j >= n``) and is at least as good as column k for query i
in every coefficient that matters (score, side rows, robust deviations), any solution sending i to k
can send it to j instead without losing anything. Dropping such (i, k) pairs shrinks the flow
network of ``min_cost_flow`` and the MILP of ``milp`` several-fold on realistic batches, where most
models have no binding capacity. Ties between identical unlimited columns are broken by index, so
the relation is a strict order and every query keeps at least one column.
"""

from __future__ import annotations

import numpy as np

from policies.problem import FloatArray, IntArray


def dominated(cap: IntArray, better: list[FloatArray]) -> np.ndarray:
    """(n, k) mask of pairs (i, k) dominated by some unlimited column.

    Args:
        cap: (k,) integer capacities (``>= n`` means unlimited).
        better: arrays of shape (n, k) where a larger value is better (e.g. ``score`` and ``-row``).
    """
    n, k = better[0].shape
    mask = np.zeros((n, k), dtype=bool)
    if n == 0:
        return mask
    cols = np.arange(k)
    for j in np.nonzero(np.asarray(cap) >= n)[0]:
        ge = np.ones((n, k), dtype=bool)
        gt = np.zeros((n, k), dtype=bool)
        for arr in better:
            ge &= arr[:, [j]] >= arr
            gt |= arr[:, [j]] > arr
        dom = ge & (gt | (j < cols)[None, :])
        dom[:, j] = False
        mask |= dom
    return mask
