"""Arrivals fed to the dispatcher by callbacks on bare SimPy events, not by a generator process.

A SimPy process resumes its generator through ``Process._resume`` and a full ``Timeout`` per arrival;
the feed schedules the same events — at the same times, priorities and places in SimPy's order — as the
generator it replaces (:func:`reference_process`, which ``tests/engine/test_feed.py`` runs side by
side with it):

    for each arrival group k:  wait times[start_k] - now if that is > 0, then arrive(start_k, end_k)

started where ``env.process`` would start it (an urgent event now) and ending with ``done`` succeeding
where the process's own end event would be scheduled.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import simpy
from simpy.core import NORMAL, URGENT

from sim.engine.closedform import Wake

ArriveFn = Callable[[int, int], None]


def _tick(cb: Callable[[Any], None]) -> Wake:
    """A bare event calling ``cb`` when SimPy steps it (its time slot unused here)."""
    ev = Wake()
    ev.callbacks = [cb]
    return ev


class ArrivalFeed:
    """Calls ``arrive(start, end)`` for each arrival group, at ``times[start]``.

    Args:
        env: the SimPy environment (the feed starts at once, like a process created now).
        times: arrival time of every query, non-decreasing.
        starts: index of the first query of each group (groups are ``starts[k] .. starts[k+1] - 1``);
            ``None``: every query is a group of its own.
        arrive: the dispatcher's entry point.
    """

    def __init__(self, env: simpy.Environment, times: np.ndarray, starts: np.ndarray | None,
                 arrive: ArriveFn) -> None:
        self.env = env
        # Read through memoryviews: a Python float / int per index, no numpy scalar, and no Python list of
        # a million boxed numbers (~40 MB at 1 M arrivals, issue 14). Same values: float64 / int64 as given.
        # (Typed Any: typeshed says a memoryview's items are ints, which a mypyc build would enforce.)
        self.times: Any = memoryview(np.ascontiguousarray(times, dtype=np.float64))  # type: ignore[arg-type]
        self.n = len(times)  # end of the last group
        self.starts: Any = (  # None: every query its own group, 0 .. n - 1
            range(self.n) if starts is None
            else memoryview(np.ascontiguousarray(starts, dtype=np.int64)))  # type: ignore[arg-type]
        self.arrive = arrive
        self.done = env.event()
        self._k = 0
        env.schedule(_tick(self._begin), URGENT, 0)  # type: ignore[arg-type]

    def _begin(self, _ev: Any) -> None:
        self._from(0)

    def _fire(self, _ev: Any) -> None:
        """Group ``_k``'s wait is over: it arrives now (the time is not compared again, as the
        generator does not after its timeout), then the following groups."""
        k = self._k
        starts = self.starts
        self.arrive(starts[k], starts[k + 1] if k + 1 < len(starts) else self.n)
        self._from(k + 1)

    def _from(self, k: int) -> None:
        """Deliver the groups from ``k`` on that are due now, then wait for the next one."""
        env, starts, times = self.env, self.starts, self.times
        n = len(starts)
        while k < n:
            s = starts[k]
            delay = times[s] - env.now
            if delay > 0:
                self._k = k
                env.schedule(_tick(self._fire), NORMAL, delay)  # type: ignore[arg-type]
                return
            self.arrive(s, starts[k + 1] if k + 1 < n else self.n)
            k += 1
        self.done.succeed()


def reference_process(env: simpy.Environment, times: np.ndarray, starts: np.ndarray,
                      arrive: ArriveFn) -> Generator[simpy.Event, None, None]:
    """The straightforward generator the feed replaces (run with ``env.process``): the reference."""
    ends = np.append(starts[1:], len(times))
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        delay = times[s] - env.now
        if delay > 0:
            yield env.timeout(delay)
        arrive(s, e)
