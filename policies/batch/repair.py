"""Turn a near-feasible assignment into a feasible one, then spend what slack is left.

Used after a Lagrangian step (whose argmax can overfill a model or miss the side row by a few
queries) and after HiGHS (whose tolerances can leave a side row over by ~1e-7). Three greedy moves,
each a single query changing column:

* :func:`repair_capacity` — move queries off over-full columns, least loss first;
* :func:`repair_side` — while the side row is violated, take the moves that reduce it at the least
  loss of score per unit of row (the cheapest quality downgrades under a budget, the cheapest
  quality upgrades under a floor α);
* :func:`improve` — while moves raise the score without breaking capacity or the side row, take the
  best ones (first those that also help the side row, then by score gained per unit of slack used).

Candidates are built vectorised over all (query, column) pairs; only the accepted moves are looped.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from policies.batch.linear_form import LinearForm
from policies.problem import FloatArray, IntArray

_GAIN_EPS = 1e-12


def repair_capacity(form: LinearForm, cols: IntArray, weights: FloatArray | None = None) -> IntArray:
    """Move queries off over-full columns to columns with room, losing the least ``weights``."""
    w = form.score if weights is None else weights
    cols = cols.copy()
    n, k = w.shape
    for _ in range(4 * k + 4):
        load = np.bincount(cols, minlength=k)
        room = form.cap - load
        if np.all(room >= 0):
            return cols
        for j in np.nonzero(room < 0)[0]:
            room = form.cap - np.bincount(cols, minlength=k)
            idx = np.nonzero(cols == j)[0]
            alt = np.where((room > 0)[None, :], w[idx], -np.inf)
            alt[:, j] = -np.inf
            best = np.argmax(alt, axis=1)
            loss = w[idx, j] - alt[np.arange(idx.size), best]
            order = np.argsort(loss, kind="stable")
            need = int(-room[j])
            for t in order:
                if need == 0:
                    break
                kk = int(best[t])
                if not np.isfinite(loss[t]) or room[kk] <= 0:
                    continue
                cols[idx[t]] = kk
                room[kk] -= 1
                need -= 1
    return cols


def _moves(form: LinearForm, cols: IntArray) -> tuple[FloatArray, FloatArray]:
    """Score gain and row change of moving each query to each column: two (n, k) arrays."""
    rows = np.arange(form.n)
    gain = form.score - form.score[rows, cols][:, None]
    drow = np.zeros_like(gain) if form.row is None else form.row - form.row[rows, cols][:, None]
    return gain, drow


def _best_first(key: FloatArray, chunk: int) -> Iterator[np.ndarray]:
    """Indices of ``key`` in increasing order, produced lazily chunk by chunk (partial sorts).

    Greedy passes usually stop after a handful of moves, so sorting every candidate would dominate
    the run time on large batches.
    """
    remaining = np.arange(key.size)
    while remaining.size:
        if remaining.size > chunk:
            part = np.argpartition(key[remaining], chunk)
            head, remaining = remaining[part[:chunk]], remaining[part[chunk:]]
        else:
            head, remaining = remaining, remaining[:0]
        yield head[np.argsort(key[head], kind="stable")]
        chunk *= 4


def repair_side(form: LinearForm, cols: IntArray, max_passes: int = 20) -> IntArray:
    """Greedy moves until the side row holds (may fail: check ``form.side_ok`` on the result)."""
    if form.row is None:
        return cols
    cols = cols.copy()
    for _ in range(max_passes):
        slack = form.slack(cols)
        if slack >= 0:
            return cols
        gain, drow = _moves(form, cols)
        room = form.cap - np.bincount(cols, minlength=form.k)
        qi, kj = np.nonzero((drow < 0) & (room > 0)[None, :])
        if qi.size == 0:
            return cols
        d = drow[qi, kj]
        # Score lost per unit of row given back; a move that also gains score comes first.
        ratio = -gain[qi, kj] / -d
        moved = np.zeros(form.n, dtype=bool)
        changed = False
        for block in _best_first(ratio, 64):
            for t in block:
                i, j = int(qi[t]), int(kj[t])
                if moved[i] or room[j] <= 0:
                    continue
                room[cols[i]] += 1
                room[j] -= 1
                slack -= d[t]
                cols[i] = j
                moved[i] = changed = True
                if slack >= 0:
                    break
            if slack >= 0:
                break
        if not changed:
            return cols
    return cols


def repair_side_swaps(form: LinearForm, cols: IntArray, max_n: int = 512, max_swaps: int = 8) -> IntArray:
    """When single moves cannot restore the side row (every column full), exchange two queries' columns:
    loads stay, and the row changes by ``row[i, c_k] + row[k, c_i] − row[i, c_i] − row[k, c_k]``; the
    best exchange first, a few times. For the tolerance-level misses HiGHS leaves (~1e-7) on small
    batches; bounded to ``max_n`` queries (an n × n table)."""
    if form.row is None or form.n > max_n or form.side_ok(cols):
        return cols
    cols = cols.copy()
    rows = np.arange(form.n)
    for _ in range(max_swaps):
        own = form.row[rows, cols]
        cross = form.row[:, cols]  # cross[i, k] = row[i, cols[k]]
        delta = cross + cross.T - own[:, None] - own[None, :]
        i, k = np.unravel_index(int(np.argmin(delta)), delta.shape)
        if delta[i, k] >= 0:
            break
        cols[i], cols[k] = cols[k], cols[i]
        if form.side_ok(cols):
            break
    return cols


def _free_moves(form: LinearForm, cols: IntArray) -> bool:
    """Apply, vectorised, the best move of each query that gains score without using slack.

    Each query takes its best such move; a column with r free slots accepts its r best movers.
    Slots freed by the movers are used by the next pass. Returns whether anything moved.
    """
    gain, drow = _moves(form, cols)
    room = form.cap - np.bincount(cols, minlength=form.k)
    g = np.where((gain > _GAIN_EPS) & (drow <= 0) & (room > 0)[None, :], gain, -np.inf)
    to = np.argmax(g, axis=1)
    best = g[np.arange(form.n), to]
    movers = np.nonzero(np.isfinite(best))[0]
    if movers.size == 0:
        return False
    order = movers[np.lexsort((-best[movers], to[movers]))]  # by target column, best gain first
    targets = to[order]
    first = np.searchsorted(targets, targets)  # index of the first mover into the same column
    accept = order[np.arange(order.size) - first < room[targets]]
    cols[accept] = to[accept]
    return True


def _paid_moves(form: LinearForm, cols: IntArray) -> bool:
    """Moves that gain score using slack of the side row, best gain per unit of slack first."""
    if form.row is None:
        return False
    slack = form.slack(cols)
    if slack <= 0:
        return False
    gain, drow = _moves(form, cols)
    room = form.cap - np.bincount(cols, minlength=form.k)
    qi, kj = np.nonzero((gain > _GAIN_EPS) & (room > 0)[None, :] & (drow > 0) & (drow <= slack))
    if qi.size == 0:
        return False
    g, d = gain[qi, kj], drow[qi, kj]
    d_min = float(d.min())
    moved = np.zeros(form.n, dtype=bool)
    changed = False
    for block in _best_first(-g / d, 256):
        if slack < d_min:
            break
        block = block[(d[block] <= slack) & ~moved[qi[block]] & (room[kj[block]] > 0)]
        for t in block:
            i, j = int(qi[t]), int(kj[t])
            if moved[i] or room[j] <= 0 or d[t] > slack:
                continue
            room[cols[i]] += 1
            room[j] -= 1
            slack -= d[t]
            cols[i] = j
            moved[i] = changed = True
    return changed


def improve(form: LinearForm, cols: IntArray, max_passes: int = 6) -> IntArray:
    """Single-query moves that raise the score and keep capacity and the side row.

    First the moves that use no slack (vectorised), then those that spend it, best gain per unit
    first, repeated while anything moves.
    """
    cols = cols.copy()
    for _ in range(max_passes):
        free = _free_moves(form, cols)
        paid = _paid_moves(form, cols)
        if not (free or paid):
            break
    return cols
