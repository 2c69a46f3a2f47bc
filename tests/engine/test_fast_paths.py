"""The reserve engine's fast paths against the straightforward ones they shortcut, exactly (bit for bit):
a queue group of one member (``_QueueGroup._settle_solo``) against the general group settle."""

from __future__ import annotations

import random

import pytest

from sim.engine.instance import Instance, _QueueGroup

from .reference import RefConfig
from .test_instance import MODES, Run, add_boundary_arrivals, random_kv_cap, random_profile, random_workload


def _general_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every queue group take the general (member-loop, cover-memo) settle, even with one member."""
    join = _QueueGroup.join

    def join_general(self: _QueueGroup, m: Instance) -> None:
        join(self, m)
        self.solo = None

    monkeypatch.setattr(_QueueGroup, "join", join_general)


def _state(run: Run) -> tuple:  # type: ignore[type-arg]
    """Everything a run produced: event log, request timestamps, instance statistics and step logs, and
    how many SimPy events it scheduled."""
    reqs = [(r.instance, r.enqueue_time, r.start_time, r.first_token_time, r.finish_time) for r in run.reqs]
    insts = [
        (i.busy_time, i.max_running_seen, i.max_kv_used_seen,
         *(list(a) for a in (i.step_log._alpha, i.step_log._slope, i.step_log._k, i.step_log._n,
                             i.step_log._gaps, i.step_log._gapn)))
        for i in run.instances
    ]
    return run.log, reqs, insts, run.env.scheduled


@pytest.mark.parametrize("seed", range(12))
def test_solo_settle_matches_group_settle(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(9000 + seed)
    dyadic = seed % 2 == 0
    keys = ["p0", "p1", "shared"] if seed % 3 == 0 else ["p0", "p1"]
    arrivals = random_workload(rng, 200, keys, dyadic=dyadic, rate=rng.choice([5.0, 50.0, 500.0]))
    configs = []
    for key in keys + (["shared"] if "shared" in keys else []):
        max_seqs = rng.choice([1, 2, 8, 64])
        prof = random_profile(rng, dyadic=dyadic, instant_prefill_ok=key != "shared")
        configs.append(RefConfig(prof, max_seqs, random_kv_cap(rng, arrivals, max_seqs), key))
    if dyadic:
        arrivals = add_boundary_arrivals(rng, configs, arrivals, 60)
    mode = MODES[seed % len(MODES)]
    fast = _state(Run(configs, arrivals, mode=mode, seed=seed))
    _general_only(monkeypatch)
    slow = _state(Run(configs, arrivals, mode=mode, seed=seed))
    assert fast == slow
