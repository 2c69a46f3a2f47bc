"""The arrival feed (bare-event callbacks) against the generator process it replaces: the same calls at
the same times, in the same order relative to every other event, and the same end."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import pytest
import simpy

from sim.engine.feed import ArrivalFeed, reference_process


def _trace(times: np.ndarray, starts: np.ndarray | None, use_feed: bool) -> list[tuple[Any, ...]]:
    """Every arrive call and every event the calls and a competing process cause, in firing order;
    the run stops when the arrivals end (as the runner's ``env.run(until=arrivals)``)."""
    env = simpy.Environment()
    log: list[tuple[Any, ...]] = []

    def echo(tag: Any) -> Callable[[simpy.Event], None]:
        return lambda _ev: log.append((env.now, "echo", tag))

    def arrive(s: int, e: int) -> None:
        log.append((env.now, "arrive", s, e))
        env.timeout(0).callbacks.append(echo(("now", s)))  # same-instant work scheduled by the call
        env.timeout(float(times[s]) * 0.5 % 0.7).callbacks.append(echo(("later", s)))

    def rival() -> Generator[simpy.Event, None, None]:  # ticks that land on the arrival times too
        for t in np.unique(times)[:20].tolist():
            if t > env.now:
                yield env.timeout(t - env.now)
            log.append((env.now, "rival"))

    env.process(rival())
    end = ArrivalFeed(env, times, starts, arrive).done if use_feed else env.process(
        reference_process(env, times, np.arange(len(times)) if starts is None else starts, arrive))
    env.process(rival())
    env.run(until=end)
    log.append((env.now, "end"))
    env.run(until=max(float(times[-1]), env.now) + 2.0)  # what is left runs the same too
    log.append((env.now, "drained"))
    return log


@pytest.mark.parametrize("seed", range(8))
def test_feed_equals_the_generator(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    times = np.cumsum(rng.choice([0.0, 0.0, 0.1, 0.25, 1 / 3, 0.7], size=n))  # ties and float sums
    times[0] = [0.0, 0.1][seed % 2]  # a first arrival at the start, or not
    times = np.maximum.accumulate(times)
    starts = np.flatnonzero(np.r_[True, rng.random(n - 1) < 0.7])  # groups of one or more
    feed, ref = _trace(times, starts, True), _trace(times, starts, False)
    assert sum(1 for x in feed if x[1] == "arrive") == len(starts)
    assert feed == ref


def test_everything_at_time_zero() -> None:
    times = np.zeros(5)
    starts = np.array([0, 2, 3])
    assert _trace(times, starts, True) == _trace(times, starts, False)


@pytest.mark.parametrize("seed", range(3))
def test_unit_groups_without_a_starts_array(seed: int) -> None:
    """``starts=None`` (every query its own group, no index array kept) feeds as ``arange`` does."""
    rng = np.random.default_rng(seed)
    times = np.maximum.accumulate(np.cumsum(rng.choice([0.0, 0.1, 0.25], size=200)))
    feed, ref = _trace(times, None, True), _trace(times, None, False)
    assert feed == ref == _trace(times, np.arange(200), True)
    assert sum(1 for x in feed if x[1] == "arrive") == 200
