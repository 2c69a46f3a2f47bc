"""What the reserve and paged instances share: the closed form of a run of decode steps, SimPy wakes at
exact boundary times, and re-entrant settling of the instances on one queue.

A run of ``k`` decode steps whose first lasts ``alpha`` and each next one ``cn`` longer (``n`` sequences,
context growing by ``n`` per step) takes ``T(k) = k*alpha + cn*k*(k-1)/2``. Both engines compute every
boundary time as ``t0 + T(j)`` with the same float expression, so the times SimPy fires at, the times
arrivals are compared with and the times the per-step references produce agree exactly.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any

import simpy
from simpy.events import NORMAL

INF = math.inf


def run_time(alpha: float, cn: float, k: int) -> float:
    """``T(k)``: duration of the first ``k`` steps of a run."""
    return k * alpha + cn * (k * (k - 1) // 2)


def steps_until(alpha: float, cn: float, tau: float) -> float:
    """Real root ``x >= 0`` of ``T(x) = tau`` (``nan`` if every step costs nothing)."""
    if cn > 0.0:
        half = 0.5 * cn
        b = alpha - half  # > 0: alpha >= c*ctx >= c*n
        if b > 0.0:
            return 2.0 * tau / (b + math.sqrt(b * b + 4.0 * half * tau))  # cancellation-free form
        return math.sqrt(tau / half)
    if alpha > 0.0:
        return tau / alpha
    return math.nan


def first_boundary(t0: float, alpha: float, cn: float, kmax: int, now: float) -> tuple[int, float]:
    """Smallest ``j`` in ``0..kmax`` with ``t0 + T(j) >= now`` (``kmax`` if none), and that time.

    Solves ``T(j) = now - t0`` (a quadratic), then steps ``j`` by one until the float boundary the
    wakes themselves use brackets ``now``: the float ``t0 + T(j)`` is monotone in ``j``, so the result
    is exactly the boundary the instance would reach, whatever the rounding of the square root.
    """
    if now <= t0:
        return 0, t0
    est = steps_until(alpha, cn, now - t0)
    if est != est:  # zero-cost steps: the whole run sits at t0
        return kmax, t0 + run_time(alpha, cn, kmax)
    j = min(max(0, math.ceil(est)), kmax)
    # run_time(alpha, cn, i), inlined (hot path)
    while j > 0 and t0 + ((j - 1) * alpha + cn * ((j - 1) * (j - 2) // 2)) >= now:
        j -= 1
    t = t0 + (j * alpha + cn * (j * (j - 1) // 2))
    while j < kmax and t < now:
        j += 1
        t = t0 + (j * alpha + cn * (j * (j - 1) // 2))
    return j, t


class Settling:
    """Re-entrant settling of the instances admitting from one queue: a call made while settling (an
    ``on_finish``/``on_admit`` callback submitting a request) is folded into one more pass of the outer
    call, so no member is ever seen half-updated. Subclasses set ``_settling = _again = False``."""

    _settling: bool
    _again: bool
    _cover_head: Any  # the queue head last covered (see the subclasses' _cover), None: choose again
    _cover_m: Any

    def settle(self, now: float, woken: Any = None) -> None:
        """Bring every member to a consistent state at ``now`` and (re)arm their wakes; ``woken`` is the
        member whose own wake fired (it completes its step even if zero-length)."""
        if self._settling:
            self._again = True
            return
        self._settling = True
        try:
            self._settle_once(now, woken)
            while self._again:
                self._again = False
                self._settle_once(now, None)
        finally:
            self._settling = False

    @abstractmethod
    def _settle_once(self, now: float, woken: Any) -> None: ...


class Wake:
    """The least a SimPy event needs to be stepped (``callbacks``, and ``_ok`` for the failure check):
    one wake per boundary is the engine's commonest event, and a full ``Timeout`` (environment, value,
    delay, ``__init__``) costs several times more. Scheduled by :meth:`simpy.Environment.schedule` with
    the priority and delay ``env.timeout`` would use, so it takes the same place in SimPy's order.
    No ``__init__`` either: :meth:`Wakes._arm_at` fills the two slots (a Python-level constructor call
    costs more than the rest of the object); the arrival feed (:mod:`sim.engine.feed`) uses it too."""

    __slots__ = ("callbacks", "t")
    callbacks: Any  # a list; SimPy sets it to None once the event is processed
    t: float  # the time it fires at, computed as SimPy does
    _ok = True


class Wakes:
    """A SimPy wake at ``_wake_t``, the instance's next boundary, settling its group when it fires.

    SimPy cannot cancel a timeout, so superseded wakes stay in its heap and are ignored when they fire
    (their time no longer equals ``_wake_t``). SimPy fires at ``now + (t - now)``, which rounds back to
    exactly ``t``, so its clock equals the engine's boundary times.
    """

    env: simpy.Environment
    _wake_t: float
    _pending: set[float]  # times of scheduled wakes not yet fired
    _group: Settling
    _cb: Any  # self._on_wake, bound once (a wake is armed per event)
    iid: int
    queue: Any
    down: bool
    _t0: float

    def poke(self) -> None:  # pragma: no cover - both instance kinds define it
        raise NotImplementedError

    def _hand_back(self, running: list[Any], queued: list[Any]) -> list[tuple[Any, int]]:
        """The end of a failure, shared by both instance kinds once their state is reset: every request
        it held, restarted, with this instance's id (-1: it was only queued); the group's cover is chosen
        again, and a shared queue's surviving members settle now."""
        self._t0 = self.env.now
        group = self._group
        group._cover_head = group._cover_m = None
        lost = [(r, self.iid) for r in running] + [(r, -1) for r in queued]
        for r, _ in lost:
            r.restart()
        if self.queue:
            group.settle(self.env.now)
        return lost

    def recover(self) -> None:
        """The node is back, empty: it takes work again from now (its queue or the shared one)."""
        self.down = False
        self._t0 = self.env.now
        self._group._cover_head = None
        self.poke()

    def _arm(self) -> None:
        """Schedule a wake at ``_wake_t`` unless one is already pending for that time."""
        self._arm_at(self.env.now)

    def _arm_at(self, now: float) -> None:
        """:meth:`_arm` with the clock already read by the caller (``now`` is ``env.now``)."""
        t = self._wake_t
        if t == INF or t in self._pending:
            return
        d = t - now
        if now + d != t:  # not seen in practice (round-to-nearest, 0 <= now <= t); follow the clock if it is
            self._wake_t = t = now + d
            if t in self._pending:
                return
        self._pending.add(t)
        if d < 0.0:  # not seen either (a boundary in the past): SimPy fires it now
            d = 0.0
        ev = Wake()
        ev.callbacks = [self._cb]
        ev.t = now + d
        self.env.schedule(ev, NORMAL, d)  # type: ignore[arg-type]

    def _on_wake(self, ev: Wake) -> None:
        now = ev.t  # == env.now: SimPy's clock is the scheduling time plus the delay, as computed there
        self._pending.discard(now)
        if now == self._wake_t:
            self._group.settle(now, self)
