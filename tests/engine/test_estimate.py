"""The latency estimator (sim/engine/estimate.py): hand-computed idle and busy states, the SLO capacity
rule against a brute-force count, Erlang C on the M/M/c scenario, and its accuracy on quickstart."""

from __future__ import annotations

import math

import numpy as np
import pytest
import simpy

from sim.config import load_scenario
from sim.engine.cluster import DeploymentRuntime, ModelGroup
from sim.engine.estimate import LatencyEstimator, model_state, slo_capacity
from sim.engine.latency import LatencyProfile
from sim.engine.request import Request
from sim.engine.scheduler import RESERVE, SchedulerConfig
from sim.runner import simulate
from tests.sim.conftest import SCENARIOS
from tests.sim.test_queueing_theory import erlang_c_wait, mmc_run

PROFILE = LatencyProfile(prefill_base_s=0.01, prefill_per_token_s=1e-3, decode_base_s=0.02, decode_per_seq_s=1e-3)


def deployment(
    env: simpy.Environment, *, instances: int = 1, max_seqs: int = 4, shared: bool = False,
    kv: int = 1_000_000, scheduler: SchedulerConfig = RESERVE, name: str = "d", first_iid: int = 0,
) -> DeploymentRuntime:
    return DeploymentRuntime(
        env, name=name, model_index=0, gpu="g", tp=1, gpu_cost_per_hour=0.0, profile=PROFILE,
        n_instances=instances, max_seqs=max_seqs, kv_capacity_tokens=kv, shared_queue=shared,
        max_queue=None, first_iid=first_iid, on_finish=lambda _r: None, scheduler=scheduler,
    )


@pytest.mark.parametrize("scheduler", [RESERVE, SchedulerConfig(kind="paged")], ids=["reserve", "paged"])
def test_idle_model_is_prefill_plus_decodes_at_batch_one(scheduler: SchedulerConfig) -> None:
    env = simpy.Environment()
    est = LatencyEstimator([ModelGroup("m", [deployment(env, scheduler=scheduler)])])
    ttft, e2e = est.predict(np.array([100, 300]), np.array([[11], [1]]))
    # prefill 0.01 + 1e-3·p; decode step at batch 1 = 0.02 + 1e-3; no wait, no one else's prefill
    assert ttft[:, 0] == pytest.approx([0.11, 0.31], abs=1e-12)
    assert e2e[:, 0] == pytest.approx([0.11 + 10 * 0.021, 0.31], abs=1e-12)
    assert est.predict_one(0, 100, 11) == pytest.approx((0.11, 0.32), abs=1e-12)


def test_busy_shared_queue_waits_for_its_share_of_the_completions() -> None:
    env = simpy.Environment()
    d = deployment(env, instances=2, max_seqs=1, shared=True)
    for rid in range(4):  # 2 running, 2 queued; each 0.11 s of prefill (one output token)
        d.submit(Request(rid, 100, 1))
    assert (d.running, d.queued) == (2, 2)
    est = LatencyEstimator([ModelGroup("m", [d])])
    ttft, e2e = est.predict(np.array([100]), np.array([[1]]))
    # third completion from now, at 2 per mean service time: (2 - 0 + 1) · 0.11 / 2, then its prefill
    assert ttft[0, 0] == pytest.approx(3 * 0.11 / 2 + 0.11, abs=1e-12)
    assert e2e[0, 0] == ttft[0, 0]


def test_saturated_reserve_decodes_at_full_batch_paused_by_others_prefills() -> None:
    env = simpy.Environment()
    d = deployment(env, instances=1, max_seqs=2)
    for rid in range(3):
        d.submit(Request(rid, 100, 11))
    st = model_state(ModelGroup("m", [d]), 100.0, 11.0)
    # Two slots: per two requests the instance spends 2 prefills (0.11 s, decodes paused) and the 10
    # decode steps both need at batch 2 (0.022 s): S = 10·0.022 + 2·0.11 = 0.44 s in a slot; half the
    # instance's time is prefill, so a decode step takes 0.022 / (1 − 0.5) of wall time.
    assert st.batch == 2
    assert st.mean_service_s == pytest.approx(0.44, abs=1e-12)
    assert st.decode_step_s == pytest.approx(0.044, abs=1e-12)
    assert st.wait_s == pytest.approx((1 - 0 + 1) * 0.44 / 2, abs=1e-12)  # 1 queued, 0 free, 2 slots


def test_a_busy_instance_with_free_slots_admits_at_the_end_of_its_step() -> None:
    env = simpy.Environment()
    d = deployment(env, instances=1, max_seqs=8)
    d.submit(Request(0, 100, 11))
    st = model_state(ModelGroup("m", [d]), 100.0, 11.0)
    # No arrival rate seen yet (time 0): only decode steps of batch 2, mean residual half of one.
    assert st.batch == 2
    assert st.wait_s == pytest.approx(0.022 / 2, abs=1e-12)


def test_kv_memory_caps_the_slots() -> None:
    env = simpy.Environment()
    d = deployment(env, max_seqs=64, kv=1000)  # 1000 KV tokens, requests of 200 + 50: 4 fit
    d.submit(Request(0, 200, 50))
    st = model_state(ModelGroup("m", [d]), 200.0, 50.0)
    assert st.groups == ((3, 0, 4),)


def test_query_goes_where_the_cluster_would_send_it() -> None:
    env = simpy.Environment()
    busy = deployment(env, max_seqs=1, name="busy")
    idle = deployment(env, max_seqs=1, name="idle", first_iid=1)
    group = ModelGroup("m", [busy, idle])
    group.submit(Request(0, 100, 1))
    assert busy.running == 1 and idle.running == 0
    assert model_state(group, 100.0, 1.0).wait_s == 0.0
    group.submit(Request(1, 100, 1))
    assert model_state(group, 100.0, 1.0).wait_s == pytest.approx(0.11)  # both busy: (0 - 0 + 1)·0.11/1


@pytest.mark.parametrize(("queued", "slo", "route_on"), [(0, 1.0, "e2e"), (5, 1.0, "e2e"), (30, 2.5, "ttft"),
                                                         (3, 0.05, "e2e"), (0, 0.3, "e2e"), (1, 0.5, "ttft")])
def test_slo_capacity_counts_the_queries_predicted_within_the_slo(queued: int, slo: float, route_on: str) -> None:
    env = simpy.Environment()
    d = deployment(env, instances=2, max_seqs=3, shared=True)
    for rid in range(4 + queued):  # 4 running, 2 free slots, then a queue
        d.submit(Request(rid, 100, 5))
    st = model_state(ModelGroup("m", [d]), 100.0, 5.0)
    (free, q, k), = st.groups
    sat = st.mean_service_s
    now = st.now_service_s if route_on == "e2e" else st.mean_prefill_s
    later = sat if route_on == "e2e" else st.mean_prefill_s

    def latency(j: int) -> float:  # the j-th extra query: straight in while slots are free, else queued
        if q + j <= free:
            return now
        return (q + j - free) * sat / k + later

    within = sum(1 for j in range(1, 10_000) if latency(j) <= slo + 1e-12)
    assert slo_capacity([st], slo, route_on)[0] == within


def _steady(r):  # type: ignore[no-untyped-def]
    return r[(r.arrival_s >= 500) & (r.status == "completed")]


def test_mean_predicted_wait_matches_erlang_c_on_mmc() -> None:
    """Averaged over arrivals (PASTA), the predicted wait is Erlang C's mean wait (see the module docstring)."""
    steady = _steady(mmc_run().requests)
    predicted_wait = steady.predicted_ttft_s - 1e-3 * steady.prompt_tokens  # TTFT − its own 1 ms/token prefill
    expected = erlang_c_wait(3.2, 1.0, 4)
    assert abs(predicted_wait.mean() - expected) / expected < 0.10, (predicted_wait.mean(), expected)
    realised = steady.start_s - steady.arrival_s
    assert np.corrcoef(predicted_wait, realised)[0, 1] > 0.8  # and it tracks each query's own wait


def test_estimator_accuracy_on_quickstart_is_reported() -> None:
    sc = load_scenario(SCENARIOS / "quickstart.yaml")
    assert simulate(sc).requests.predicted_e2e_s.isna().all()  # off by default without an SLO
    res = simulate(sc.model_copy(update={"outputs": sc.outputs.model_copy(update={"latency_estimates": True})}))
    r = res.requests
    done = r[r.status == "completed"]
    assert done.predicted_e2e_s.notna().all() and done.predicted_ttft_s.notna().all()  # every served query
    assert r.loc[r.status == "rejected", "predicted_e2e_s"].isna().all()
    real = done.finish_s - done.decision_s
    err = done.predicted_e2e_s - real
    mape = float(np.mean(np.abs(err) / real))
    ttft_real = done.first_token_s - done.decision_s
    ttft_mape = float(np.mean(np.abs(done.predicted_ttft_s - ttft_real) / ttft_real))
    print(f"\nquickstart estimator: e2e MAPE {mape:.1%}, bias {err.mean():+.3f} s; TTFT MAPE {ttft_mape:.1%} "
          f"over {len(done)} queries")
    assert math.isfinite(mape)
