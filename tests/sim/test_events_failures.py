"""Node failures in whole runs (docs/events.md): every request is accounted for, nothing runs or
finishes on a failed instance while it is down, recovered instances serve again, the engine's limits hold
across the failure, ``lose`` loses exactly the requests in flight on the failed instances (computed from
a run without the failure), and runs are deterministic. Both schedulers, both queue modes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.config import parse_scenario
from sim.runner import RunResult, run
from tests.sim.conftest import small_scenario


def scenario(scheduler: str, queue: str, events: list[dict[str, Any]], **over: Any) -> dict[str, Any]:
    """Two models; the big one on three instances, loaded enough that failures hit running and queued
    requests."""
    data = small_scenario(**{"num_queries": 400, **over})
    data["deployments"] = [
        {"model": "small", "gpu": "A100", "tp": 1, "instances": 1, "max_seqs": 16, "scheduler": scheduler,
         "queue": queue},
        {"model": "big", "gpu": "A100", "tp": 1, "instances": 3, "max_seqs": 6, "scheduler": scheduler,
         "queue": queue},
    ]
    data["gpus"][0]["count"] = 4
    data["models"][1]["params_b"] = 30
    data["workload"]["arrivals"] = {"type": "poisson", "rate": 6.0}
    data["router"] = {"policy": "threshold_greedy", "params": {"alpha": 0.6}}
    data["events"] = events
    return data


def run_dict(data: dict[str, Any]) -> RunResult:
    return run(parse_scenario(yaml.safe_dump(data), file="test.yaml"))


def iid_of(res: RunResult, deployment: int, index: int) -> int:
    inst = res.instances
    names = list(dict.fromkeys(inst.deployment))
    return int(inst[inst.deployment == names[deployment]].instance.iloc[index])


def check_run(res: RunResult, failures: list[dict[str, Any]], reconstruct: bool = True) -> None:
    """Accounting, engine limits and the down windows of a drained run. ``reconstruct``: also rebuild
    each instance's concurrency from start/finish times, valid when a request runs on one instance from
    start to finish (reserve; paged requests may be preempted in between) and its ``instance`` is the
    one it finished on (not so for a paged request preempted on a shared queue)."""
    q = res.summary["queries"]
    req = res.requests
    assert q["completed"] + q["rejected"] + q["lost"] == q["arrived"] == len(req)
    assert q["running"] == q["pending"] == 0
    counts = req.status.value_counts()
    assert counts.get("lost", 0) == q["lost"]
    assert int(req.retries.sum()) == q["retried"]
    assert (req[req.status == "lost"].reject_reason == "node_failure").all()
    inst = res.instances
    assert (inst.max_running_seen <= inst.max_seqs).all()
    assert (inst.max_kv_used_seen <= inst.kv_capacity_tokens).all()
    done = req[req.status == "completed"]
    assert (done.arrival_s <= done.decision_s).all() and (done.decision_s <= done.start_s).all()
    assert (done.start_s < done.first_token_s).all() and (done.first_token_s <= done.finish_s).all()
    if not reconstruct:
        return
    check_down_windows(res, failures)
    _concurrency_from_timestamps(done, inst)


def check_down_windows(res: RunResult, failures: list[dict[str, Any]]) -> None:
    """No completed request started or finished on an instance while it was down."""
    done = res.requests[res.requests.status == "completed"]
    for f in failures:
        end = f.get("recover_at_s", np.inf)
        for k in f.get("instances") or list(range(f["count"])):
            mine = done[done.instance == iid_of(res, f["deployment"], k)]
            assert not ((mine.finish_s >= f["at_s"]) & (mine.finish_s < end)).any()
            assert not ((mine.start_s >= f["at_s"]) & (mine.start_s < end)).any()


def _concurrency_from_timestamps(done: pd.DataFrame, inst: pd.DataFrame) -> None:
    """Independently of the engine's counters (reserve semantics: a request runs from start to finish
    on one instance): never more requests at once than max_seqs."""
    seqs = dict(zip(inst.instance, inst.max_seqs, strict=True))
    for iid, g in done.groupby("instance"):
        t = np.concatenate([g.start_s.to_numpy(), g.finish_s.to_numpy()])
        d = np.concatenate([np.ones(len(g)), -np.ones(len(g))])
        order = np.lexsort((d, t))  # finishes before starts at one instant
        assert np.cumsum(d[order]).max() <= seqs[iid]


FAIL_RECOVER = [{"kind": "node_failure", "at_s": 20.0, "deployment": 1, "instances": [1], "recover_at_s": 40.0}]


@pytest.mark.parametrize("scheduler", ["reserve", "paged"])
@pytest.mark.parametrize("queue", ["per_instance", "shared"])
@pytest.mark.parametrize("mode", ["requeue", "lose"])
@pytest.mark.parametrize("recover", [True, False])
def test_failure_accounts_for_every_request(scheduler: str, queue: str, mode: str, recover: bool) -> None:
    ev = {**FAIL_RECOVER[0], "on_failure": mode}
    if not recover:
        ev.pop("recover_at_s")
    res = run_dict(scenario(scheduler, queue, [ev]))
    q = res.summary["queries"]
    check_run(res, [ev], reconstruct=scheduler == "reserve")
    if scheduler == "paged" and queue == "per_instance":  # one instance per request: down windows hold
        check_down_windows(res, [ev])
    if mode == "lose":
        assert q["lost"] > 0 and q["retried"] == 0
    else:
        assert q["lost"] == 0 and q["retried"] > 0
    iid = iid_of(res, 1, 1)
    served_after = res.requests[(res.requests.instance == iid) & (res.requests.start_s >= 40.0)]
    assert (len(served_after) > 0) == recover  # a recovered instance serves again; a dead one never


@pytest.mark.parametrize("scheduler", ["reserve", "paged"])
def test_lose_loses_exactly_the_requests_in_flight(scheduler: str) -> None:
    """Per-instance queues: the lost requests are those the run without the failure had on the failed
    instance at at_s (decided before, finished after); runs agree up to at_s."""
    at = 25.0
    ev = {"kind": "node_failure", "at_s": at, "deployment": 1, "instances": [0, 2], "on_failure": "lose",
          "recover_at_s": 50.0}
    base = run_dict(scenario(scheduler, "per_instance", []))
    hit = run_dict(scenario(scheduler, "per_instance", [ev]))
    b = base.requests
    iids = [iid_of(base, 1, 0), iid_of(base, 1, 2)]
    in_flight = b[b.instance.isin(iids) & (b.decision_s < at) & (b.finish_s > at)].request_id
    lost = hit.requests[hit.requests.status == "lost"].request_id
    assert len(in_flight) > 3
    assert sorted(lost) == sorted(in_flight)
    assert hit.summary["queries"]["lost"] == len(in_flight)
    row = hit.summary["events"][0]
    assert row["requests_hit"] == row["lost"] == len(in_flight) and row["requeued"] == 0
    assert row["instance_ids"] == iids and row["instances"] == [0, 2] and "events" not in base.summary
    # before the failure both runs did the same thing
    early = b.finish_s < at
    h = hit.requests.set_index("request_id").loc[b.request_id[early]]
    assert np.array_equal(h.finish_s.to_numpy(), b.finish_s[early].to_numpy())


def test_whole_model_down_holds_until_recovery_or_loses() -> None:
    """Every big instance fails: with a recovery scheduled, requeued requests wait for it (none lost,
    none routed to the dead model meanwhile); without one they are lost."""
    ev = {"kind": "node_failure", "at_s": 20.0, "deployment": 1, "count": 3, "recover_at_s": 45.0}
    res = run_dict(scenario("reserve", "per_instance", [ev]))
    check_run(res, [ev])
    req = res.requests
    assert res.summary["queries"]["lost"] == 0 and res.summary["queries"]["retried"] > 0
    big = req[(req.model == "big") & (req.status == "completed")]
    assert not ((big.start_s >= 20.0) & (big.start_s < 45.0)).any()
    routed_while_down = req[(req.decision_s >= 20.0) & (req.decision_s < 45.0)]
    assert len(routed_while_down) > 0 and (routed_while_down.model != "big").all()
    ev.pop("recover_at_s")
    res = run_dict(scenario("reserve", "per_instance", [ev]))
    q = res.summary["queries"]
    assert q["lost"] > 0 and q["completed"] + q["rejected"] + q["lost"] == q["arrived"]


@pytest.mark.parametrize("capacity", ["unlimited", "slots"])
def test_dead_model_gets_no_new_work_in_any_capacity_mode(capacity: str) -> None:
    ev = {"kind": "node_failure", "at_s": 10.0, "deployment": 1, "count": 3}
    data = scenario("paged", "shared", [ev])
    data["router"] = {"policy": "strongest", "capacity": capacity, "allow_reject": True}
    res = run_dict(data)
    req = res.requests
    late = req[req.decision_s >= 10.0]
    assert (late.model != "big").all()
    assert (late.status != "lost").all()  # refused up front (capacity 0), not lost
    q = res.summary["queries"]
    assert q["completed"] + q["rejected"] + q["lost"] == q["arrived"]


@pytest.mark.parametrize("scheduler", ["reserve", "paged"])
def test_deterministic(scheduler: str) -> None:
    data = scenario(scheduler, "shared", FAIL_RECOVER)
    a, b = run_dict(data), run_dict(data)
    assert yaml.safe_dump(a.summary) == yaml.safe_dump(b.summary)
    assert a.requests.equals(b.requests)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scheduler=st.sampled_from(["reserve", "paged"]),
    queue=st.sampled_from(["per_instance", "shared"]),
    mode=st.sampled_from(["requeue", "lose"]),
    windows=st.lists(
        st.tuples(st.integers(0, 2), st.floats(0.0, 35.0), st.one_of(st.none(), st.floats(0.5, 40.0))),
        min_size=1, max_size=3,
    ),
)
def test_fuzz_random_failures(scheduler: str, queue: str, mode: str,
                              windows: list[tuple[int, float, float | None]]) -> None:
    events, used = [], set()
    for k, at, dur in windows:
        if k in used:  # one failure per instance keeps the windows disjoint
            continue
        used.add(k)
        ev: dict[str, Any] = {"kind": "node_failure", "at_s": at, "deployment": 1, "instances": [k],
                              "on_failure": mode}
        if dur is not None:
            ev["recover_at_s"] = at + dur
        events.append(ev)
    data = scenario(scheduler, queue, events, num_queries=250)
    res = run_dict(data)
    q = res.summary["queries"]
    assert q["completed"] + q["rejected"] + q["lost"] == q["arrived"]
    assert q["running"] == q["pending"] == 0
    check_run(res, events, reconstruct=scheduler == "reserve")
    if scheduler == "paged" and queue == "per_instance":
        check_down_windows(res, events)


def test_cut_off_run_counts_retries_of_unfinished_requests() -> None:
    """drain: false: requests still running at the cut-off keep their retry counts, and every request
    is completed, rejected, lost, running or pending."""
    ev = {"kind": "node_failure", "at_s": 20.0, "deployment": 1, "count": 2}
    data = scenario("reserve", "per_instance", [ev], num_queries=None, duration_s=30.0, drain=False)
    res = run_dict(data)
    q = res.summary["queries"]
    assert q["completed"] + q["rejected"] + q["lost"] + q["running"] + q["pending"] == q["arrived"]
    assert q["running"] > 0 and q["retried"] > 0
    assert int(res.requests.retries.sum()) == q["retried"]
    assert res.requests[res.requests.status == "running"].retries.sum() > 0


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scheduler=st.sampled_from(["reserve", "paged"]),
    drain=st.booleans(),
    fail_at=st.floats(0.0, 30.0),
    whole_model=st.booleans(),
    burst=st.tuples(st.floats(0.0, 30.0), st.floats(1.0, 30.0), st.floats(0.2, 4.0)),
    price=st.tuples(st.floats(0.0, 30.0), st.sampled_from(["small", "big"]), st.floats(0.01, 100.0)),
    policy=st.sampled_from(["threshold_greedy", "cheapest", "least_loaded"]),
)
def test_fuzz_mixed_events_always_finish(scheduler: str, drain: bool, fail_at: float, whole_model: bool,
                                         burst: tuple[float, float, float], price: tuple[str, str, float],
                                         policy: str) -> None:
    """Failures with a burst and a price change, any policy, drained or cut off: the run ends and
    accounts for every request."""
    events: list[dict[str, Any]] = [
        {"kind": "node_failure", "at_s": fail_at, "deployment": 1, "count": 3 if whole_model else 1,
         "recover_at_s": fail_at + 10.0},
        {"kind": "rate_change", "start_s": burst[0], "end_s": burst[0] + burst[1], "multiplier": burst[2]},
        {"kind": "price_change", "at_s": price[0], "model": price[1], "multiplier": price[2]},
    ]
    data = scenario(scheduler, "per_instance", events, num_queries=None, duration_s=40.0, drain=drain)
    data["router"] = {"policy": policy}
    res = run_dict(data)
    q = res.summary["queries"]
    assert q["completed"] + q["rejected"] + q["lost"] + q["running"] + q["pending"] == q["arrived"]
    if drain:
        assert q["running"] == q["pending"] == 0
    assert len(res.summary["events"]) == 3
    assert (res.instances.max_running_seen <= res.instances.max_seqs).all()
