"""The reserve engine's time-between-tokens log against the per-iteration reference: decodes paused by
prefill steps get the pause in their next gap, exactly as token timestamps would show."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from sim.engine.steplog import StepLog

from .reference import RefConfig, simulate
from .test_instance import Run, close, random_kv_cap, random_profile, random_workload


@pytest.mark.parametrize("seed", range(16))
def test_reserve_tbt_matches_reference(seed: int) -> None:
    rng = random.Random(12000 + seed)
    shared = seed % 2 == 1
    keys = ["s"] if shared else [0]
    arrivals = random_workload(rng, 120, keys, dyadic=seed % 4 < 2, rate=rng.choice([5.0, 50.0]))
    max_seqs = rng.choice([1, 4, 16, 64])
    prof = random_profile(rng, dyadic=seed % 4 < 2, instant_prefill_ok=False)
    configs = [RefConfig(prof, max_seqs, random_kv_cap(rng, arrivals, max_seqs), keys[0]) for _ in range(3 if shared else 1)]
    ref, insts = simulate(configs, arrivals)
    run = Run(configs, arrivals, mode="early", seed=seed)
    gaps = [g for x in ref for g in x.gaps]
    log = StepLog.merged(inst.step_log for inst in run.instances)
    assert log.tokens == len(gaps)
    assert log.steps == sum(len(i.steps) for i in insts)
    assert close(log.max_step, max(s for i in insts for s in i.steps))
    if gaps:
        qs = [0.0, 0.25, 0.5, 0.9, 0.99, 1.0]
        want = np.quantile(np.array(gaps), qs, method="inverted_cdf")
        for got, exp in zip(log.quantiles(qs), want, strict=True):
            assert close(got, float(exp)), (got, exp)
        assert math.isclose(log.mean(), float(np.mean(gaps)), rel_tol=1e-9)


def test_weighted_gaps_count_once_per_token() -> None:
    log = StepLog()
    log.add_gap(2.0, 3)
    log.add_steps(1.0, 0.0, 1, 1)
    assert log.tokens == 4 and log.steps == 1 and log.max_step == 1.0
    assert log.quantiles([0.25, 0.5, 1.0]) == [1.0, 2.0, 2.0]
