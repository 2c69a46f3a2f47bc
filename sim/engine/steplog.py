"""The time-between-tokens (TBT) distribution of one instance, kept without per-token storage.

A paged instance runs iterations ("steps"); every running decode produces one token per step, so the
gap between a sequence's consecutive tokens is the duration of the step that produced the second one.
Between two engine events the batch is fixed and each step is longer than the previous by a constant
(the decode context grows by one token per sequence), so a stretch of ``k`` steps with ``n`` sequences
is an arithmetic run: ``k`` durations ``alpha + slope·j``, each weighing ``n`` tokens. :class:`StepLog`
stores one row per such run (and one per irregular gap, e.g. a token delayed by a preemption), so a
100 k-step stretch costs 40 bytes, and computes exact quantiles of the expanded token-weighted sample
on demand (:meth:`StepLog.quantiles`).

Exactness: durations are ``alpha + slope * j`` evaluated in float64, which is non-decreasing in ``j``
(IEEE rounding is monotone), so the number of a run's durations ``<= x`` is a prefix length that a
closed-form estimate finds and an exact check confirms. The ``q``-quantile (numpy's ``inverted_cdf``:
the smallest sample value whose cumulative weight reaches ``ceil(q·N)``) is the smallest float ``x``
with ``count(x) >= rank``; non-negative float64 values order like their bit patterns, so bisecting the
bit pattern finds it in at most 64 counts, each O(runs) vectorised.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


class StepLog:
    """Token-weighted step durations and gaps of one instance (see the module docstring).

    ``add_steps`` and ``add_gap`` are on the engine's hot path: they only validate and append to typed
    arrays; all the work happens in :meth:`quantiles`.
    """

    __slots__ = ("_alpha", "_slope", "_k", "_n", "_gaps", "_gapn")

    def __init__(self) -> None:
        self._alpha = array("d")
        self._slope = array("d")
        self._k = array("q")
        self._n = array("q")
        self._gaps = array("d")
        self._gapn = array("q")  # tokens per gap entry

    def add_steps(self, alpha: float, slope: float, k: int, n: int) -> None:
        """``k`` consecutive steps lasting ``alpha + slope·j`` (j = 0..k-1), each giving ``n`` tokens.

        ``n = 0`` (e.g. prefill-only steps) adds no tokens but still counts towards :attr:`steps` and
        :attr:`max_step`; ``k = 0`` is a no-op. Raises ValueError on a negative or non-finite duration
        term, or a negative count (an engine bug, caught where it happens).
        """
        if not (0.0 <= alpha < math.inf and 0.0 <= slope < math.inf) or k < 0 or n < 0:
            raise ValueError(f"invalid steps: alpha={alpha!r}, slope={slope!r}, k={k!r}, n={n!r}")
        if k:
            self._alpha.append(alpha)
            self._slope.append(slope)
            self._k.append(k)
            self._n.append(n)

    def add_gap(self, gap: float, count: int = 1) -> None:
        """``count`` tokens whose gap from their request's previous token is ``gap`` (e.g. across a
        preemption, or decodes paused by a prefill step)."""
        if not 0.0 <= gap < math.inf or count < 0:
            raise ValueError(f"invalid gap: {gap!r} x {count!r}")
        if count:
            self._gaps.append(gap)
            self._gapn.append(count)

    def merge(self, other: StepLog) -> None:
        """Append ``other``'s runs and gaps to this log (the distribution of the union)."""
        self._alpha.extend(other._alpha)
        self._slope.extend(other._slope)
        self._k.extend(other._k)
        self._n.extend(other._n)
        self._gaps.extend(other._gaps)
        self._gapn.extend(other._gapn)

    @classmethod
    def merged(cls, logs: Iterable[StepLog]) -> StepLog:
        """A new log holding every run and gap of ``logs`` (e.g. all instances of a deployment)."""
        out = cls()
        for log in logs:
            out.merge(log)
        return out

    # -- aggregates (O(runs); called once per summary, not on the hot path) ------------------------

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (np.frombuffer(self._alpha, dtype=np.float64), np.frombuffer(self._slope, dtype=np.float64),
                np.frombuffer(self._k, dtype=np.int64), np.frombuffer(self._n, dtype=np.int64))

    @property
    def steps(self) -> int:
        """Steps recorded by :meth:`add_steps` (with or without tokens)."""
        return int(np.frombuffer(self._k, dtype=np.int64).sum())

    @property
    def tokens(self) -> int:
        """Total weight of the distribution: tokens of the runs plus one per gap."""
        _, _, k, n = self._arrays()
        return int(np.dot(k, n)) + int(np.frombuffer(self._gapn, dtype=np.int64).sum())

    @property
    def max_step(self) -> float:
        """The longest step duration of any :meth:`add_steps` run (NaN when there is none)."""
        if not self._k:
            return math.nan
        a, s, k, _ = self._arrays()
        return float(np.max(a + s * (k - 1).astype(np.float64)))

    def mean(self) -> float:
        """Token-weighted mean gap (NaN when empty); not bit-exact, unlike :meth:`quantiles`."""
        total = self.tokens
        if not total:
            return math.nan
        a, s, k, n = self._arrays()
        kf = k.astype(np.float64)
        run_sums = n * (kf * a + s * kf * (kf - 1) / 2)
        gaps = np.frombuffer(self._gaps, dtype=np.float64) @ np.frombuffer(self._gapn, dtype=np.int64)
        return float((run_sums.sum() + gaps) / total)

    def quantiles(self, qs: Sequence[float]) -> list[float]:
        """``numpy.quantile(sample, qs, method="inverted_cdf")`` of the expanded sample, exactly.

        The sample holds each run's step durations ``n`` times each and every gap once; it is never
        built. NaN for every q when the log holds no token. Raises ValueError for q outside [0, 1].
        """
        q = np.asarray(qs, dtype=np.float64).reshape(-1)
        if q.size and not ((q >= 0) & (q <= 1)).all():
            raise ValueError(f"quantiles must be in [0, 1], got {list(qs)!r}")
        total = self.tokens
        if total == 0 or q.size == 0:
            return [math.nan] * int(q.size)
        return _Sample(self).select(_ranks(total, q)).tolist()


def step_log_of(instances: Iterable[Any]) -> StepLog | None:
    """The merged ``step_log`` of a deployment's instances, or None when none keeps one (reserve)."""
    logs = [log for log in (getattr(inst, "step_log", None) for inst in instances) if log is not None]
    return StepLog.merged(logs) if logs else None


def _ranks(total: int, q: np.ndarray) -> np.ndarray:
    """1-based order statistic numpy's ``inverted_cdf`` picks for each q (its very float arithmetic)."""
    index = total * q - 1
    previous = np.floor(index)
    pick = np.where(index - previous == 0, previous, previous + 1).astype(np.int64)
    return np.clip(pick, 0, total - 1) + 1


class _Sample:
    """The expanded sample as sorted weighted points (flat runs and gaps) plus sloped runs."""

    def __init__(self, log: StepLog) -> None:
        a, s, k, n = log._arrays()
        keep = n > 0
        a, s, k, n = a[keep], s[keep], k[keep], n[keep]
        flat = (s == 0) | (k == 1)
        gaps = np.frombuffer(log._gaps, dtype=np.float64)
        values = np.concatenate([a[flat], gaps])
        weights = np.concatenate([k[flat] * n[flat], np.frombuffer(log._gapn, dtype=np.int64)])
        order = np.argsort(values, kind="stable")
        self.values = values[order]
        self.cum = np.concatenate([[0], np.cumsum(weights[order])])
        sl = ~flat
        self.a, self.s, self.k, self.n = a[sl], s[sl], k[sl], n[sl]
        self.ends = self.a + self.s * (self.k - 1).astype(np.float64)
        self.lo = float(np.min(np.concatenate([self.values[:1], self.a])))
        self.hi = float(np.max(np.concatenate([self.values[-1:], self.ends])))

    def select(self, ranks: np.ndarray) -> np.ndarray:
        """For each rank r, the smallest sample value whose count reaches r."""
        return np.array([self._select_one(int(r)) for r in ranks], dtype=np.float64)

    def _select_one(self, rank: int) -> float:
        """Bisection on the float bits, invariant ``count(lo) < rank <= count(hi)``. Every few rounds
        the runs entirely at or below ``lo`` are folded into a constant and those above ``hi`` dropped,
        so late rounds only touch the runs straddling the shrinking bracket."""
        lo, hi = _bits(self.lo) - 1, _bits(self.hi)
        a, s, k, n = self.a, self.s, self.k, self.n
        ends, base = self.ends, 0
        rounds = 0
        while hi - lo > 1:
            mid = lo + (hi - lo) // 2
            x = _value(mid)
            got = int(self.cum[np.searchsorted(self.values, x, side="right")]) + base
            if a.size:
                got += int(_run_counts(x, a, s, k) @ n)
            if got >= rank:
                hi = mid
            else:
                lo = mid
            rounds += 1
            if rounds % 4 == 0 and a.size:
                below = ends <= (_value(lo) if lo >= 0 else -1.0)
                keep = ~below & (a <= _value(hi))
                base += int(k[below] @ n[below])
                a, s, k, n, ends = a[keep], s[keep], k[keep], n[keep], ends[keep]
        return _value(hi)


def _value(bits: int) -> float:
    return float(np.int64(bits).view(np.float64))


def _bits(x: float) -> int:
    """The int64 bit pattern of a non-negative float (orders like the value; -0.0 taken as 0.0)."""
    return int(np.array(x + 0.0, dtype=np.float64).view(np.int64))


def _run_counts(x: float | np.ndarray, a: np.ndarray, s: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Per (x, run): how many of ``a + s*j`` (j < k, s > 0) are ``<= x``, exactly as float64 evaluates.

    The estimate ``floor((x - a) / s)`` is off by rounding (or far off when ``a`` swamps ``s*j``);
    entries whose prefix check fails are settled by a bisection on ``j``.
    """
    x, a, s, k = np.broadcast_arrays(x, a, s, k)
    with np.errstate(over="ignore", invalid="ignore"):
        est = np.floor((x - a) / s)
    j = np.clip(np.nan_to_num(est, nan=-1.0), -1, k - 1).astype(np.int64)
    ok = _is_prefix_end(j, x, a, s, k)
    if ok.all():
        return j + 1
    bad = ~ok
    xb, ab, sb, kb = x[bad], a[bad], s[bad], k[bad]
    lo = np.full(xb.shape, -1, dtype=np.int64)  # value(lo) <= x (or lo = -1)
    hi = kb.copy()  # value(hi) > x (or hi = k)
    while (hi - lo > 1).any():
        mid = lo + (hi - lo) // 2
        le = ab + sb * mid.astype(np.float64) <= xb
        open_ = hi - lo > 1
        lo = np.where(open_ & le, mid, lo)
        hi = np.where(open_ & ~le, mid, hi)
    j[bad] = lo
    return j + 1


def _is_prefix_end(j: np.ndarray, x: np.ndarray, a: np.ndarray, s: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Whether ``j`` is the last index with ``a + s*j <= x`` (j = -1: none is)."""
    jf = j.astype(np.float64)
    here = (j < 0) | (a + s * jf <= x)
    nxt = (j + 1 >= k) | (a + s * (jf + 1) > x)
    return here & nxt
