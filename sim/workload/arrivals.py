"""Arrival processes: when queries reach the router.

Every process returns an :class:`Arrivals` (plain arrays, no simulation objects) so the runner can feed
any of them, or a replayed trace (:mod:`sim.workload.traces`), to the dispatcher the same way.

Conventions shared by every generator here:

* Randomness comes only from the ``rng`` the caller passes (a stream of :mod:`sim.rng`), so the same
  seed gives bit-identical arrays whatever the policy under test.
* Exactly one of ``duration_s`` (keep arrivals with ``0 <= t < duration_s``: a half-open window, so
  back-to-back windows never share an arrival) or ``num_queries`` (exactly that many) must be given.
* Inter-arrival gaps are drawn in chunks and accumulated with ``cumsum``: 1 M arrivals take tens of
  milliseconds. numpy draws chunk after chunk from the same stream as one big draw would, so the first
  ``n`` arrivals of a ``duration_s`` run equal a ``num_queries=n`` run with the same seed.
* Renewal processes start at t = 0 with an ordinary (not equilibrium) first gap: the first arrival is
  at the first drawn gap, not at 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from sim.workload.prefix import PrefixHashes

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: Refuse to materialise more arrivals than this in one call (about 4 GB of float64 times).
MAX_ARRIVALS = 500_000_000


@dataclass(frozen=True, eq=False)
class Arrivals:
    """Arrival times of queries, in seconds from the start of the run.

    Attributes:
        times: (n,) float64, non-decreasing, >= 0.
        group: (n,) int64, non-decreasing. Consecutive arrivals with the same id arrive together as one
            batch (same time); processes without batches use ``arange(n)``.
        prompt_tokens, output_tokens: (n,) int64 token counts when the source fixes them (traces);
            None for synthetic processes, whose queries come from a query pool instead.
        prefix: prefix-block hashes of each arrival's prompt (a Mooncake trace's ``hash_ids``), n rows;
            None when the source has none.
    """

    times: FloatArray
    group: IntArray
    prompt_tokens: IntArray | None = None
    output_tokens: IntArray | None = None
    prefix: PrefixHashes | None = None

    def __post_init__(self) -> None:
        n = len(self.times)
        if self.times.ndim != 1 or self.group.shape != (n,):
            raise ValueError(f"Arrivals: times {self.times.shape} and group {self.group.shape} must be (n,)")
        for name in ("prompt_tokens", "output_tokens"):
            tokens = getattr(self, name)
            if tokens is not None and tokens.shape != (n,):
                raise ValueError(f"Arrivals: {name} has shape {tokens.shape}, expected ({n},)")
        if self.prefix is not None and self.prefix.n != n:
            raise ValueError(f"Arrivals: prefix has {self.prefix.n} rows, expected {n}")
        if n == 0:
            return
        if not np.all(np.isfinite(self.times)) or self.times[0] < 0:
            raise ValueError("Arrivals: times must be finite and >= 0")
        dt, dg = np.diff(self.times), np.diff(self.group)
        if np.any(dt < 0) or np.any(dg < 0):
            raise ValueError("Arrivals: times and group ids must be non-decreasing")
        if np.any((dg == 0) & (dt != 0)):
            raise ValueError("Arrivals: arrivals of one group must share one time")

    @property
    def n(self) -> int:
        return int(len(self.times))

    @property
    def num_groups(self) -> int:
        """Number of distinct batches (groups)."""
        return 0 if self.n == 0 else int(np.count_nonzero(np.diff(self.group)) + 1)


def _singletons(times: FloatArray) -> Arrivals:
    return Arrivals(times=times, group=np.arange(len(times), dtype=np.int64))


# ---------------------------------------------------------------------------------------------------
# Stop rule and renewal-process core
# ---------------------------------------------------------------------------------------------------


def _check_stop(duration_s: float | None, num_queries: int | None) -> None:
    """Exactly one stop rule, with a sane value: mixing both would make the length ambiguous."""
    if (duration_s is None) == (num_queries is None):
        raise ValueError("give exactly one of duration_s or num_queries")
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s >= 0):
        raise ValueError(f"duration_s must be finite and >= 0, got {duration_s!r}")
    if num_queries is not None:
        if isinstance(num_queries, bool) or int(num_queries) != num_queries or num_queries < 0:
            raise ValueError(f"num_queries must be an integer >= 0, got {num_queries!r}")
        if num_queries > MAX_ARRIVALS:
            raise ValueError(f"num_queries={num_queries} exceeds the limit of {MAX_ARRIVALS}")


def _check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")


def _gap_sampler(mean_gap: float, cv: float) -> Callable[[np.random.Generator, int], FloatArray]:
    """Inter-arrival sampler with the given mean and coefficient of variation.

    cv = 1 uses the exponential (Poisson process); numpy's Gamma with shape 1 is the same draw, so
    ``gamma(rate, 1.0)`` and ``poisson(rate)`` agree bit for bit. cv = 0 is a deterministic clock.
    """
    if cv == 0:
        return lambda rng, size: np.full(size, mean_gap)
    if cv == 1:
        return lambda rng, size: rng.exponential(mean_gap, size)
    shape = 1.0 / (cv * cv)
    scale = mean_gap / shape
    return lambda rng, size: rng.gamma(shape, scale, size)


def _renewal_count(rng: np.random.Generator, mean_gap: float, cv: float, count: int) -> FloatArray:
    """Times of the first ``count`` events of a renewal process started at 0."""
    return np.cumsum(_gap_sampler(mean_gap, cv)(rng, count))


def _renewal_horizon(rng: np.random.Generator, mean_gap: float, cv: float, horizon: float) -> FloatArray:
    """Times of all events in ``[0, horizon)``, drawing gaps in chunks until the horizon is passed.

    The first chunk covers the expected count plus four standard deviations of the count (≈ cv²·E for a
    renewal process), so one chunk nearly always suffices; further chunks continue the same cumsum
    (the running time is added to the chunk's first gap), so the result does not depend on chunking.
    """
    expected = horizon / mean_gap
    if expected > MAX_ARRIVALS:
        raise ValueError(f"about {expected:.3g} arrivals expected, over the limit of {MAX_ARRIVALS}")
    sample = _gap_sampler(mean_gap, cv)
    size = int(expected + 4.0 * max(cv, 1.0) * math.sqrt(expected)) + 64
    chunks: list[FloatArray] = []
    last = 0.0
    while last < horizon:
        gaps = sample(rng, size)
        gaps[0] += last
        chunk = np.cumsum(gaps)
        chunks.append(chunk)
        last = float(chunk[-1])
        size = int((horizon - last) / mean_gap * 1.5) + 64
    times = np.concatenate(chunks) if chunks else np.empty(0)
    return times[: np.searchsorted(times, horizon, side="left")]


def _renewal(
    rng: np.random.Generator, rate: float, cv: float, duration_s: float | None, num_queries: int | None
) -> FloatArray:
    if num_queries is not None:
        return _renewal_count(rng, 1.0 / rate, cv, int(num_queries))
    assert duration_s is not None
    return _renewal_horizon(rng, 1.0 / rate, cv, float(duration_s))


# ---------------------------------------------------------------------------------------------------
# Homogeneous processes
# ---------------------------------------------------------------------------------------------------


def poisson(
    rate: float,
    rng: np.random.Generator,
    *,
    duration_s: float | None = None,
    num_queries: int | None = None,
) -> Arrivals:
    """Poisson process of ``rate`` arrivals per second (exponential gaps, CV = 1)."""
    _check_positive("rate", rate)
    _check_stop(duration_s, num_queries)
    return _singletons(_renewal(rng, rate, 1.0, duration_s, num_queries))


def gamma(
    rate: float,
    cv: float,
    rng: np.random.Generator,
    *,
    duration_s: float | None = None,
    num_queries: int | None = None,
) -> Arrivals:
    """Renewal process with Gamma gaps of mean ``1/rate`` and coefficient of variation ``cv``.

    cv > 1 is burstier than Poisson (the Azure code trace has CV ≈ 13), cv < 1 more regular, cv = 1 is
    exactly :func:`poisson` (same numbers for the same seed), cv = 0 a deterministic clock.
    Gamma shape k = 1/cv², scale = cv²/rate. For large cv many gaps are tinier than the float spacing
    of t (cv = 3: ~5 % below 1e-12 s), so those arrivals share a time: they stay separate arrivals
    (separate groups), as simultaneous requests would.
    """
    _check_positive("rate", rate)
    if not (math.isfinite(cv) and cv >= 0):
        raise ValueError(f"cv must be finite and >= 0, got {cv!r}")
    _check_stop(duration_s, num_queries)
    return _singletons(_renewal(rng, rate, cv, duration_s, num_queries))


def batch(
    batch_size: int,
    interval_s: float,
    rng: np.random.Generator | None = None,
    *,
    duration_s: float | None = None,
    num_queries: int | None = None,
    offset_s: float = 0.0,
) -> Arrivals:
    """``batch_size`` queries together every ``interval_s`` seconds, each batch one group.

    The first batch arrives at ``offset_s`` (default 0, so a window of D seconds holds exactly
    ceil(D / T) batches and the mean rate over whole intervals is exactly B / T). With ``num_queries``
    not a multiple of ``batch_size`` the last batch is partial. The process is deterministic: ``rng`` is
    accepted only so every process has the same call shape, and is never drawn from.
    """
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    _check_positive("interval_s", interval_s)
    if not (math.isfinite(offset_s) and offset_s >= 0):
        raise ValueError(f"offset_s must be finite and >= 0, got {offset_s!r}")
    _check_stop(duration_s, num_queries)
    if num_queries is not None:
        n = int(num_queries)
    else:
        assert duration_s is not None
        n_batches = max(0, math.ceil((duration_s - offset_s) / interval_s))
        n = n_batches * int(batch_size)
        if n > MAX_ARRIVALS:
            raise ValueError(f"{n} arrivals exceed the limit of {MAX_ARRIVALS}")
    group = np.arange(n, dtype=np.int64) // int(batch_size)
    times = offset_s + group.astype(np.float64) * interval_s
    if duration_s is not None:  # float rounding of offset + k·T must not let a batch slip past D
        keep = np.searchsorted(times, duration_s, side="left")
        times, group = times[:keep], group[:keep]
    return Arrivals(times=times, group=group)


# ---------------------------------------------------------------------------------------------------
# Rate profiles and the modulated (non-homogeneous) process
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiurnalProfile:
    """Sinusoidal rate multiplier f(t) = 1 + amplitude · sin(2π t / period_s + phase).

    ``phase`` is in radians (phase = π/2 starts at the peak). amplitude ∈ [0, 1] keeps f >= 0; the
    average of f over a period is 1, so ``rate`` stays the long-run mean rate.
    """

    amplitude: float
    period_s: float = 86_400.0
    phase: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.amplitude) and 0 <= self.amplitude <= 1):
            raise ValueError(f"amplitude must be in [0, 1], got {self.amplitude!r}")
        _check_positive("period_s", self.period_s)
        if not math.isfinite(self.phase):
            raise ValueError(f"phase must be finite, got {self.phase!r}")

    @property
    def _omega(self) -> float:
        return 2.0 * math.pi / self.period_s

    def multiplier(self, t: FloatArray | float) -> FloatArray:
        """f(t)."""
        return np.asarray(1.0 + self.amplitude * np.sin(self._omega * np.asarray(t) + self.phase))

    def cumulative(self, t: FloatArray | float) -> FloatArray:
        """Λ(t) = ∫₀ᵗ f(s) ds, in closed form."""
        t = np.asarray(t, dtype=np.float64)
        c = self.amplitude / self._omega
        return t + c * (math.cos(self.phase) - np.cos(self._omega * t + self.phase))

    def inverse(self, u: FloatArray) -> FloatArray:
        """The t with Λ(t) = u (vectorised).

        Λ(t + P) = Λ(t) + P, so u is reduced to one period, bracketed on a 1,024-cell table of Λ and
        solved by Newton steps that fall back to bisection whenever a step leaves the bracket (f can
        touch 0 when amplitude = 1, where plain Newton would divide by zero).
        """
        u = np.asarray(u, dtype=np.float64)
        period = self.period_s
        k = np.floor(u / period)
        r = u - k * period
        grid = np.linspace(0.0, period, 1025)
        table = self.cumulative(grid)
        cell = np.clip(np.searchsorted(table, r, side="right") - 1, 0, 1023)
        lo, hi = grid[cell], grid[cell + 1]
        width = np.maximum(table[cell + 1] - table[cell], 1e-300)
        start = lo + (r - table[cell]) / width * (hi - lo)
        s = _safeguarded_newton(self.cumulative, self.multiplier, r, start, lo, hi, tol=period * 1e-14)
        return k * period + s


def _safeguarded_newton(
    func: Callable[[FloatArray], FloatArray],
    deriv: Callable[[FloatArray], FloatArray],
    target: FloatArray,
    x: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
    tol: float,
    max_iter: int = 200,
) -> FloatArray:
    """Solve func(x) = target for increasing ``func`` on brackets [lo, hi], only iterating the unsolved."""
    x, lo, hi = x.copy(), lo.copy(), hi.copy()
    active = np.arange(len(x))
    for _ in range(max_iter):
        if active.size == 0:
            break
        xa, la, ha, ta = x[active], lo[active], hi[active], target[active]
        res = func(xa) - ta
        above = res > 0
        ha = np.where(above, xa, ha)
        la = np.where(above, la, xa)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = xa - res / deriv(xa)
        inside = (step > la) & (step < ha)
        new = np.where(inside, step, 0.5 * (la + ha))
        done = (np.abs(res) <= tol) | (ha - la <= tol)
        x[active] = np.where(done, xa, new)
        lo[active], hi[active] = la, ha
        active = active[~done]
    return x


@dataclass(frozen=True)
class PiecewiseProfile:
    """Piecewise-constant rate multiplier: ``steps`` = ((start_s, multiplier), ...).

    The first step must start at 0, starts strictly increase, and the last multiplier holds forever.
    A multiplier of 0 switches arrivals off for that step.
    """

    steps: tuple[tuple[float, float], ...]
    _starts: FloatArray = field(init=False, repr=False, compare=False)
    _mult: FloatArray = field(init=False, repr=False, compare=False)
    _cum: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        steps = tuple((float(s), float(m)) for s, m in self.steps)
        if not steps or steps[0][0] != 0.0:
            raise ValueError("PiecewiseProfile: steps must be non-empty and start at start_s = 0")
        starts = np.array([s for s, _ in steps])
        mult = np.array([m for _, m in steps])
        if not np.all(np.isfinite(starts)) or np.any(np.diff(starts) <= 0):
            raise ValueError("PiecewiseProfile: start_s values must be finite and strictly increasing")
        if not np.all(np.isfinite(mult)) or np.any(mult < 0):
            raise ValueError("PiecewiseProfile: multipliers must be finite and >= 0")
        cum = np.concatenate([[0.0], np.cumsum(mult[:-1] * np.diff(starts))])
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "_starts", starts)
        object.__setattr__(self, "_mult", mult)
        object.__setattr__(self, "_cum", cum)

    def _segment(self, t: FloatArray) -> IntArray:
        return np.searchsorted(self._starts, t, side="right") - 1

    def multiplier(self, t: FloatArray | float) -> FloatArray:
        """f(t)."""
        return self._mult[self._segment(np.asarray(t, dtype=np.float64))]

    def cumulative(self, t: FloatArray | float) -> FloatArray:
        """Λ(t) = ∫₀ᵗ f(s) ds (piecewise linear)."""
        t = np.asarray(t, dtype=np.float64)
        j = self._segment(t)
        return self._cum[j] + self._mult[j] * (t - self._starts[j])

    def inverse(self, u: FloatArray) -> FloatArray:
        """The earliest t with Λ(t) = u; +inf when u is beyond Λ(∞) (profile ending in a 0 step)."""
        u = np.asarray(u, dtype=np.float64)
        on = np.flatnonzero(self._mult > 0)
        if on.size == 0:
            return np.full(u.shape, np.inf)
        j = on[np.clip(np.searchsorted(self._cum[on], u, side="right") - 1, 0, None)]
        t = self._starts[j] + (u - self._cum[j]) / self._mult[j]
        if self._mult[-1] == 0:
            t = np.where(u >= self._cum[-1], np.inf, t)
        return t


Profile = DiurnalProfile | PiecewiseProfile


def piecewise(steps: Sequence[tuple[float, float]] | Sequence[Sequence[float]]) -> PiecewiseProfile:
    """Convenience constructor from plain ``[(start_s, multiplier), ...]`` lists (e.g. parsed YAML)."""
    return PiecewiseProfile(steps=tuple((float(s[0]), float(s[1])) for s in steps))


def modulated(
    rate: float,
    profile: Profile | WindowedProfile,
    rng: np.random.Generator,
    *,
    cv: float = 1.0,
    duration_s: float | None = None,
    num_queries: int | None = None,
) -> Arrivals:
    """Base process of mean ``rate`` with its rate modulated over time: rate(t) = rate · f(t).

    Built by time change, not thinning: a renewal process of rate ``rate`` is generated in
    "operational time" u, and each event is mapped back to t = Λ⁻¹(u) with Λ(t) = ∫₀ᵗ f. For the
    Poisson base (cv = 1, the default) this is exactly the non-homogeneous Poisson process with
    intensity rate · f(t) (time-rescaling theorem). For a Gamma base (cv ≠ 1) it is the time-changed
    Gamma renewal process: gaps measured in Λ-time are Gamma with the requested cv, and the rate
    tracks rate · f(t); the burstiness is thus that of the base process stretched with the load, which
    thinning could not give (thinning a non-Poisson process changes its gap distribution).

    ``duration_s`` keeps arrivals with t < duration_s. With ``num_queries`` and a profile whose last
    step has multiplier 0, only the arrivals that fit before arrivals stop can exist: ValueError.
    """
    _check_positive("rate", rate)
    if not (math.isfinite(cv) and cv >= 0):
        raise ValueError(f"cv must be finite and >= 0, got {cv!r}")
    _check_stop(duration_s, num_queries)
    if duration_s is not None:
        horizon = float(profile.cumulative(float(duration_s)))
        u = _renewal(rng, rate, cv, horizon, None)
    else:
        u = _renewal(rng, rate, cv, None, num_queries)
    t = np.maximum.accumulate(profile.inverse(u)) if len(u) else np.empty(0)
    if not np.all(np.isfinite(t)):
        fits = int(np.count_nonzero(np.isfinite(t)))
        raise ValueError(
            f"the profile switches arrivals off for good: only {fits} of {num_queries} arrivals fit"
        )
    if duration_s is not None:  # Λ⁻¹ rounding must not push an arrival to or past the end
        t = t[: np.searchsorted(t, duration_s, side="left")]
    return _singletons(t)


# ---------------------------------------------------------------------------------------------------
# Rate-change events (scenario ``events``, kind ``rate_change``; docs/events.md)
# ---------------------------------------------------------------------------------------------------

Window = tuple[float, float, float]
"""(start_s, end_s, multiplier): the rate is multiplied by ``multiplier`` on [start_s, end_s)."""


def window_steps(windows: Sequence[Window]) -> tuple[FloatArray, FloatArray]:
    """The piecewise-constant product g(t) of the windows: segment starts (the first 0) and g on each
    (overlapping windows multiply; 1 outside every window)."""
    cuts = sorted({0.0, *(float(a) for a, _, _ in windows), *(float(b) for _, b, _ in windows)})
    starts = np.array(cuts, dtype=np.float64)
    g = np.ones(len(cuts))
    for a, b, m in windows:
        g[(starts >= a) & (starts < b)] *= m
    return starts, g


@dataclass(frozen=True)
class WindowedProfile:
    """A base profile f (None: constant 1) multiplied by the windows' g: rate(t) = rate · f(t) · g(t).

    With B the base's Λ, Λ(t) = C_k + g_k · (B(t) − B(s_k)) on segment k = [s_k, s_{k+1}), where C_k sums
    the earlier segments; so Λ⁻¹ finds the segment, then inverts the base: the composed process is the
    same time change as :func:`modulated` uses, and stays exact for a Poisson base.
    """

    base: Profile | None
    windows: tuple[Window, ...]
    _starts: FloatArray = field(init=False, repr=False, compare=False)
    _g: FloatArray = field(init=False, repr=False, compare=False)
    _bs: FloatArray = field(init=False, repr=False, compare=False)
    _cum: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for a, b, m in self.windows:
            if not (math.isfinite(a) and math.isfinite(b) and 0 <= a < b and math.isfinite(m) and m > 0):
                raise ValueError(f"WindowedProfile: bad window {(a, b, m)!r}")
        starts, g = window_steps(self.windows)
        bs = self._base_cum(starts)
        cum = np.concatenate([[0.0], np.cumsum(g[:-1] * np.diff(bs))])
        object.__setattr__(self, "_starts", starts)
        object.__setattr__(self, "_g", g)
        object.__setattr__(self, "_bs", bs)
        object.__setattr__(self, "_cum", cum)

    def _base_cum(self, t: FloatArray) -> FloatArray:
        return np.asarray(t, dtype=np.float64) if self.base is None else self.base.cumulative(t)

    def multiplier(self, t: FloatArray | float) -> FloatArray:
        """f(t) · g(t)."""
        t = np.asarray(t, dtype=np.float64)
        g = self._g[np.searchsorted(self._starts, t, side="right") - 1]
        return g if self.base is None else g * self.base.multiplier(t)

    def cumulative(self, t: FloatArray | float) -> FloatArray:
        """Λ(t) = ∫₀ᵗ f·g."""
        t = np.asarray(t, dtype=np.float64)
        k = np.searchsorted(self._starts, t, side="right") - 1
        return self._cum[k] + self._g[k] * (self._base_cum(t) - self._bs[k])

    def inverse(self, u: FloatArray) -> FloatArray:
        """The t with Λ(t) = u (+inf past the end of a base that switches arrivals off for good)."""
        u = np.asarray(u, dtype=np.float64)
        k = np.clip(np.searchsorted(self._cum, u, side="right") - 1, 0, None)
        b = self._bs[k] + (u - self._cum[k]) / self._g[k]
        t = b if self.base is None else self.base.inverse(b)
        # Rounding must not carry a time out of its own segment (arrivals stay in their window).
        hi = np.append(self._starts[1:], np.inf)[k]
        return np.minimum(np.maximum(t, self._starts[k]), np.nextafter(hi, -np.inf))


def rescale_batches(
    batch_size: int,
    interval_s: float,
    profile: WindowedProfile,
    *,
    duration_s: float | None = None,
    num_queries: int | None = None,
) -> Arrivals:
    """:func:`batch` under rate windows: the batch clock runs in the profile's operational time, so
    inside a window of multiplier m batches come m times as often (same size); outside, as before."""
    _check_stop(duration_s, num_queries)
    horizon = None if duration_s is None else float(profile.cumulative(float(duration_s)))
    base = batch(batch_size, interval_s, duration_s=horizon, num_queries=num_queries)
    t = np.maximum.accumulate(profile.inverse(base.times)) if base.n else np.empty(0)
    keep = len(t) if duration_s is None else int(np.searchsorted(t, duration_s, side="left"))
    return Arrivals(times=t[:keep], group=base.group[:keep])


def rescale_trace(arrivals: Arrivals, windows: Sequence[Window], rng: np.random.Generator) -> Arrivals:
    """A replayed trace under rate windows (its rate is not a parameter, so it is thinned or topped up).

    Each arrival at t with window product g(t): kept with probability min(g, 1) (thinning: exact for
    a Poisson trace, and it keeps the trace's own burst pattern); where g > 1 it also gets Poisson(g − 1)
    copies (its own tokens and prefix hashes: the extra load resamples the window's own requests),
    each at a uniform time in the same constant-g segment. Every arrival draws its keep uniform and its
    copy count from ``rng`` in order, so the result depends only on the seed. Returns singleton groups,
    sorted by time (copies after originals at equal times).
    """
    n = arrivals.n
    starts, g = window_steps(windows)
    seg = np.searchsorted(starts, arrivals.times, side="right") - 1
    gi = g[seg]
    keep = rng.random(n) < np.minimum(gi, 1.0)
    copies = rng.poisson(np.maximum(gi - 1.0, 0.0))
    src = np.concatenate([np.flatnonzero(keep), np.repeat(np.arange(n), copies)])
    ends = np.append(starts[1:], np.inf)
    cseg = np.repeat(seg, copies)
    span_end = np.minimum(ends[cseg], max(float(arrivals.times[-1]) if n else 0.0, 0.0) + 1e-9)
    lo = starts[cseg]
    t_copy = lo + rng.random(int(copies.sum())) * np.maximum(span_end - lo, 0.0)
    times = np.concatenate([arrivals.times[keep], t_copy])
    order = np.argsort(times, kind="stable")
    src = src[order]
    return Arrivals(
        times=times[order],
        group=np.arange(len(src), dtype=np.int64),
        prompt_tokens=None if arrivals.prompt_tokens is None else arrivals.prompt_tokens[src],
        output_tokens=None if arrivals.output_tokens is None else arrivals.output_tokens[src],
        prefix=None if arrivals.prefix is None else arrivals.prefix.take(src),
    )
