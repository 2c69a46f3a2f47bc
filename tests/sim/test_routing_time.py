"""The batch log times the whole routing path (issue 14): ``routing_time_s`` covers the policy call
(``solve_time_s``) and everything around it, on the batch path and on the decided-up-front path."""

from __future__ import annotations

import numpy as np
import pytest

from sim.config.load import parse_scenario
from sim.experiments.plan import read_source
from sim.runner import simulate


@pytest.mark.parametrize("sets", [
    ["router.policy=least_loaded", "router.params={}"],           # one policy call per query
    ["router.policy=lagrangian", "router.params={}", "router.window_s=2.0"],  # batches
    [],                                                            # threshold_greedy, decided up front
])
def test_routing_time_covers_the_policy_call(sets: list[str]) -> None:
    src = read_source(None)
    sc = parse_scenario(src.text, file=src.file, base_dir=None, overrides=[*sets, "num_queries=300"])
    batches = simulate(sc).batches
    assert len(batches) > 0
    solve, routing = batches["solve_time_s"].to_numpy(), batches["routing_time_s"].to_numpy()
    assert np.all(np.isfinite(routing)) and np.all(routing > 0)
    assert np.all(routing >= solve)
