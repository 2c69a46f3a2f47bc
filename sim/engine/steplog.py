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
    arrays; all the work happens in :meth:`quantiles`. A run's step and token counts are kept as 32-bit
    ints (24 bytes a run, not 32: a million requests make ~2.4 M runs); a log whose count outgrows them
    switches that array to 64 bits (:func:`_append`), and readers widen both to int64 (:meth:`_arrays`).
    """

    __slots__ = ("_alpha", "_slope", "_k", "_n", "_gaps", "_gapn")

    def __init__(self) -> None:
        self._alpha = array("d")
        self._slope = array("d")
        self._k = array("i")
        self._n = array("i")
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
            try:
                self._k.append(k)
            except OverflowError:
                self._k = _append(self._k, k)
            try:
                self._n.append(n)
            except OverflowError:
                self._n = _append(self._n, n)
            self._alpha.append(alpha)
            self._slope.append(slope)

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
        self._k = _extend(self._k, other._k)
        self._n = _extend(self._n, other._n)
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
                _ints(self._k), _ints(self._n))

    @property
    def steps(self) -> int:
        """Steps recorded by :meth:`add_steps` (with or without tokens)."""
        return int(_ints(self._k).sum())

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
        return StepLogs([self]).mean()

    def quantiles(self, qs: Sequence[float]) -> list[float]:
        """``numpy.quantile(sample, qs, method="inverted_cdf")`` of the expanded sample, exactly.

        The sample holds each run's step durations ``n`` times each and every gap once; it is never
        built. NaN for every q when the log holds no token. Raises ValueError for q outside [0, 1].
        """
        return StepLogs([self]).quantiles(qs)


def _append(counts: array[int], value: int) -> array[int]:
    """``counts`` with ``value`` appended, widened to 64 bits (it did not fit in 32)."""
    wide = array("q", counts)
    wide.append(value)
    return wide


def _extend(counts: array[int], more: array[int]) -> array[int]:
    """``counts`` extended by ``more`` (in place when both have the same width, else widened)."""
    if counts.typecode == more.typecode:
        counts.extend(more)
        return counts
    wide = array("q", counts)
    wide.extend(array("q", more))
    return wide


def _stored(counts: array[int]) -> np.ndarray:
    """A count array's buffer as numpy (int32 or int64, no copy); products must widen first."""
    return np.frombuffer(counts, dtype=np.int32 if counts.typecode == "i" else np.int64)


def _ints(counts: array[int]) -> np.ndarray:
    """A count array as int64 (a copy when stored in 32 bits): products and sums stay exact."""
    return _stored(counts).astype(np.int64, copy=False)


class StepLogs:
    """The union of several :class:`StepLog` (a deployment's instances, a model's deployments, the whole
    cluster) read in place: the same aggregates as :meth:`StepLog.merged` of them, bit for bit, without
    copying the parts' arrays into one log (a million-request run's logs are ~80 MB; the summary reads
    them per model and overall, which used to copy them twice more, plus once per deployment).

    Quantiles sum each part's exact count at every bisection step (a count of the union is the sum of
    the parts' counts), so they are the merged log's. The mean sums per-run token sums in the merged
    order (numpy's pairwise sum depends on the array, so the parts' sums are not added separately):
    only those 8 bytes a run are concatenated.
    """

    __slots__ = ("parts",)

    def __init__(self, logs: Iterable[StepLog | StepLogs]) -> None:
        parts: list[StepLog] = []
        for log in logs:
            parts.extend(log.parts if isinstance(log, StepLogs) else (log,))
        self.parts: tuple[StepLog, ...] = tuple(parts)

    @property
    def steps(self) -> int:
        """Steps recorded by :meth:`StepLog.add_steps` in any part."""
        return sum(p.steps for p in self.parts)

    @property
    def tokens(self) -> int:
        """Total weight of the union."""
        return sum(p.tokens for p in self.parts)

    @property
    def max_step(self) -> float:
        """The longest step of any part (NaN when no part has a run)."""
        ends = [p.max_step for p in self.parts if p._k]
        return max(ends) if ends else math.nan

    def mean(self) -> float:
        """:meth:`StepLog.mean` of the merged log (the same float: see the class docstring)."""
        total = self.tokens
        if not total:
            return math.nan
        run_sums = np.concatenate([np.zeros(0), *(_run_sums(p) for p in self.parts)])
        gaps = np.concatenate([np.zeros(0), *(np.frombuffer(p._gaps, dtype=np.float64) for p in self.parts)])
        gapn = np.concatenate([np.zeros(0, np.int64), *(np.frombuffer(p._gapn, dtype=np.int64) for p in self.parts)])
        return float((run_sums.sum() + gaps @ gapn) / total)

    def quantiles(self, qs: Sequence[float], samples: dict[int, Any] | None = None) -> list[float]:
        """:meth:`StepLog.quantiles` of the merged log. ``samples`` (by ``id`` of a part, for parts that
        stay alive and unchanged while it is used) keeps each part's sorted sample for the next union
        that holds the part: building it is ~40 % of a quantile's cost at a million requests."""
        q = np.asarray(qs, dtype=np.float64).reshape(-1)
        if q.size and not ((q >= 0) & (q <= 1)).all():
            raise ValueError(f"quantiles must be in [0, 1], got {list(qs)!r}")
        total = self.tokens
        if total == 0 or q.size == 0:
            return [math.nan] * int(q.size)
        kept = {} if samples is None else samples
        for p in self.parts:
            if p.tokens and id(p) not in kept:
                kept[id(p)] = _Sample(p)
        parts = [kept[id(p)] for p in self.parts if p.tokens]
        return [_select(parts, int(r)) for r in _ranks(total, q)]


def step_log_of(instances: Iterable[Any]) -> StepLogs | None:
    """The union of a deployment's instances' ``step_log`` (read in place, not copied), or None when
    none keeps one."""
    logs = [log for log in (getattr(inst, "step_log", None) for inst in instances) if log is not None]
    return StepLogs(logs) if logs else None


def _run_sums(log: StepLog) -> np.ndarray:
    """Per run, its duration sum times its tokens (what :meth:`StepLog.mean` adds up)."""
    a, s, k, n = log._arrays()
    kf = k.astype(np.float64)
    return n * (kf * a + s * kf * (kf - 1) / 2)


def _ranks(total: int, q: np.ndarray) -> np.ndarray:
    """1-based order statistic numpy's ``inverted_cdf`` picks for each q (its very float arithmetic)."""
    index = total * q - 1
    previous = np.floor(index)
    pick = np.where(index - previous == 0, previous, previous + 1).astype(np.int64)
    return np.clip(pick, 0, total - 1) + 1


class _Sample:
    """One part's expanded sample as sorted weighted points (flat runs and gaps) plus sloped runs.

    Built from masks on the log's own buffers, so a part costs one copy of its sloped runs (the flat
    ones become points), not the intermediate copies a filter-then-split would make."""

    def __init__(self, log: StepLog) -> None:
        a, s = np.frombuffer(log._alpha, dtype=np.float64), np.frombuffer(log._slope, dtype=np.float64)
        k, n = _stored(log._k), _stored(log._n)  # as stored (32 bits mostly): products widen below
        has = n > 0
        flat = has & ((s == 0) | (k == 1))
        sloped = has & ~flat
        values = np.concatenate([a[flat], np.frombuffer(log._gaps, dtype=np.float64)])
        weights = np.concatenate([k[flat].astype(np.int64) * n[flat], np.frombuffer(log._gapn, dtype=np.int64)])
        order = np.argsort(values, kind="stable")
        self.values = values[order]
        self.cum = np.concatenate([[0], np.cumsum(weights[order])])
        self.runs = _Runs(a[sloped], s[sloped], k[sloped], n[sloped])
        self.lo = float(np.min(np.concatenate([self.values[:1], self.runs.a])))
        self.hi = float(np.max(np.concatenate([self.values[-1:], self.runs.ends])))

    def count(self, x: float, runs: _Runs) -> int:
        """Tokens of this part whose gap is ``<= x`` (``runs``: this part's sloped runs, pruned)."""
        return int(self.cum[np.searchsorted(self.values, x, side="right")]) + runs.count(x)


class _Runs:
    """Sloped runs still straddling a bisection's bracket, plus the tokens of those folded below it. ``k`` and
    ``n`` keep the log's storage width (int32 mostly): every product with them is taken in int64."""

    __slots__ = ("a", "s", "k", "n", "ends", "base")

    def __init__(self, a: np.ndarray, s: np.ndarray, k: np.ndarray, n: np.ndarray, base: int = 0,
                 ends: np.ndarray | None = None) -> None:
        self.a, self.s, self.k, self.n, self.base = a, s, k, n, base
        self.ends = a + s * (k - 1).astype(np.float64) if ends is None else ends  # each run's last value

    def count(self, x: float) -> int:
        """Tokens of the runs ``<= x``, in slices of :data:`CHUNK` runs (bounded temporaries)."""
        got = self.base
        for i in range(0, self.a.size, CHUNK):
            part = slice(i, i + CHUNK)
            got += int(_run_counts(x, self.a[part], self.s[part], self.k[part]) @ self.n[part])
        return got

    def pruned(self, lo: int, hi: int) -> _Runs:
        """The runs with values inside ``(lo, hi]`` (bit patterns), those entirely ``<= lo`` folded."""
        below = self.ends <= (_value(lo) if lo >= 0 else -1.0)
        keep = ~below & (self.a <= _value(hi))
        return _Runs(self.a[keep], self.s[keep], self.k[keep], self.n[keep],
                     self.base + int(self.k[below].astype(np.int64) @ self.n[below]), self.ends[keep])


CHUNK = 1 << 16
"""Runs counted at once: a count's temporaries are ~10 arrays of this many elements (~5 MB)."""


def _select(samples: list[_Sample], rank: int) -> float:
    """The smallest value whose count over ``samples`` reaches ``rank``. Bisection on the float bits,
    invariant ``count(lo) < rank <= count(hi)``; every few rounds each part's runs entirely at or below
    ``lo`` are folded into a constant and those above ``hi`` dropped, so late rounds only touch the runs
    straddling the shrinking bracket."""
    lo = min(_bits(smp.lo) for smp in samples) - 1
    hi = max(_bits(smp.hi) for smp in samples)
    runs = [smp.runs for smp in samples]
    rounds = 0
    while hi - lo > 1:
        mid = lo + (hi - lo) // 2
        x = _value(mid)
        if sum(smp.count(x, r) for smp, r in zip(samples, runs, strict=True)) >= rank:
            hi = mid
        else:
            lo = mid
        rounds += 1
        if rounds % 4 == 0:
            runs = [r.pruned(lo, hi) if r.a.size else r for r in runs]
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
