"""The library API: prepare → simulate → RunResult, reusable prepared inputs (common random numbers)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from sim.config import parse_scenario
from sim.config.schema import Scenario
from sim.runner import prepare, prepare_key, run, simulate
from tests.sim.conftest import small_scenario


def scenario(**router: object) -> Scenario:
    data = small_scenario()
    data["router"] = {**data.get("router", {}), "params": {}, **router}
    return parse_scenario(yaml.safe_dump(data), file="test.yaml")


def test_prepare_key_ignores_policy_and_budget_but_not_seed_or_workload() -> None:
    base = scenario(policy="threshold_greedy")
    assert prepare_key(base) == prepare_key(scenario(policy="cheapest", budget_per_query=0.01))
    assert prepare_key(base) != prepare_key(base.model_copy(update={"seed": base.seed + 1}))
    assert prepare_key(base) != prepare_key(base.model_copy(update={"num_queries": 17}))


def test_simulate_with_shared_prepared_equals_fresh_runs() -> None:
    """compare reuses one Prepared per seed across policies; that must change nothing in the results."""
    a, b = scenario(policy="threshold_greedy"), scenario(policy="cheapest")
    shared = prepare(a)
    for sc in (a, b):
        fresh, reused = simulate(sc), simulate(sc, prepared=shared)
        assert fresh.summary == reused.summary
        pd.testing.assert_frame_equal(fresh.requests, reused.requests)
    assert simulate(a).summary == run(a).summary  # the old entry point is the same function


def test_policies_see_identical_workloads_through_prepare() -> None:
    a, b = prepare(scenario(policy="threshold_greedy")), prepare(scenario(policy="strongest"))
    np.testing.assert_array_equal(a.workload.times, b.workload.times)
    np.testing.assert_array_equal(a.predictions.quality, b.predictions.quality)
    np.testing.assert_array_equal(a.workload.cost, b.workload.cost)


def test_prepared_from_another_workload_is_refused() -> None:
    sc = scenario(policy="threshold_greedy")
    other = prepare(sc.model_copy(update={"seed": sc.seed + 1}))
    with pytest.raises(ValueError, match="different workload"):
        simulate(sc, prepared=other)


def test_occupancy_table_matches_the_summary() -> None:
    res = simulate(scenario(policy="threshold_greedy"))
    occ = res.occupancy
    assert set(occ.columns) == {"time_s", "deployment", "model", "queued", "running", "slots"}
    assert (occ["running"] <= occ["slots"]).all() and (occ["queued"] >= 0).all()
    window = occ[occ["time_s"] <= res.summary["arrivals_end_s"]]
    for model, stats in res.summary["models"].items():
        per_t = occ[occ["model"] == model].groupby("time_s")["running"].sum()
        assert per_t.mean() == pytest.approx(stats["mean_running"], rel=1e-9, abs=1e-12)
    assert len(window) > 0


def test_requests_carry_a_policy_free_difficulty() -> None:
    a = simulate(scenario(policy="threshold_greedy")).requests
    b = simulate(scenario(policy="strongest")).requests
    assert a["difficulty"].between(0, 1).all()
    np.testing.assert_array_equal(a["difficulty"], b["difficulty"])


def test_a_trace_stretched_beyond_the_float_horizon_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A replay's span is known once the trace is read: prepare (and so validate) refuses it there."""
    from sim.errors import ScenarioError

    trace = tmp_path / "t.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00,10,5\n"
                     "2023-11-16 18:10:00,12,6\n2023-11-16 18:40:00,9,4\n")
    data = small_scenario(num_queries=None)
    data["workload"] = {"arrivals": {"type": "trace", "path": str(trace), "time_scale": 1e-6},
                        "pool": {"type": "synthetic"}}
    data["router"] = {"policy": "cheapest", "params": {}}
    sc = parse_scenario(yaml.safe_dump(data), file="test.yaml")
    with pytest.raises(ScenarioError, match=r"span 2\.4e\+09 s"):
        prepare(sc)
    ok = sc.model_copy(update={"workload": sc.workload.model_copy(update={
        "arrivals": sc.workload.arrivals.model_copy(update={"time_scale": 1e-3})})})
    assert prepare(ok).workload.times[-1] == pytest.approx(2.4e6)
