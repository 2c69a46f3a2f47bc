"""Review of issue 14's speed and memory commits (30e69c8, dda4344, 76fc32a, 66e377e, f278a87) against
the straightforward representations they replace, on the inputs where they could part.

The commits: fits as one comparison with a precomputed limit; the arrival feed over memoryviews and
``group_starts=None`` for unit groups; a run freeing its routing inputs, dropping the pool's
``true_prob`` / ``difficulty`` it prepared itself and sharing the predicted cost with the realised one
when bit-identical; the batch log keeping one-query rows by their query; the recorder keeping latency
predictions only when made and one column for arrival and decision without a window.

Each representation is checked where its exactness rests on an argument (hypothesis, over far more inputs
than a run reaches), and a scenario matrix runs every switch at once against the lean default: windows,
budgets and floors, refusals (policy and too long), node failures, price and rate changes, SLO routing,
latency estimates, grouped arrivals, cut-off runs, noisy token predictions. Summary JSON (key order
included) and both tables (dtypes and column order included) must be equal; so must a caller's Prepared
be after it served several runs, and results that went through pickle (Dask sweeps).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
from typing import Any

import numpy as np
import pandas as pd
import pytest
import simpy
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sim.engine.feed as feed
from sim.config import parse_scenario
from sim.dispatcher import STATUS_FEASIBLE, BatchLog, Dispatcher, _OneRows
from sim.engine.cluster import DeploymentRuntime, ModelGroup
from sim.engine.latency import LatencyProfile
from sim.engine.request import Request
from sim.engine.scheduler import SchedulerConfig
from sim.metrics.recorder import RequestRecorder
from sim.predict import priced
from sim.runner import Prepared, prepare, simulate
from sim.workload.build import price
from tests.sim.conftest import small_scenario

WALL_CLOCK = ["solve_time_s", "routing_time_s"]
SMALL_KV = {"gpu_memory_utilization": 0.2005, "activation_reserve_gib": 1.0}  # some queries never fit


# -- fits: one comparison against the scheduler's limit (30e69c8) -------------------------------------------

SCHEDULERS = st.builds(
    SchedulerConfig,
    kind=st.sampled_from(["reserve", "paged"]),
    block_size=st.sampled_from([1, 2, 3, 16]),
    max_num_batched_tokens=st.integers(1, 300),
    chunked_prefill=st.booleans(),
    watermark=st.sampled_from([0.0, 0.01, 0.1, 0.5, 1.0]),
)


def _deployment(env: simpy.Environment, k: int, sched: SchedulerConfig, kv: int, instances: int) -> DeploymentRuntime:
    return DeploymentRuntime(
        env, name=f"d{k}", model_index=0, gpu="g", tp=1, gpu_cost_per_hour=0.0,
        profile=LatencyProfile(decode_base_s=0.01), n_instances=instances, max_seqs=1, kv_capacity_tokens=kv,
        shared_queue=False, max_queue=None, first_iid=10 * k, on_finish=lambda _r: None, scheduler=sched,
    )


@settings(max_examples=150, deadline=None)
@given(deps=st.lists(st.tuples(SCHEDULERS, st.integers(16, 400), st.integers(0, 2)), min_size=1, max_size=3),
       splits=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=3))
def test_fits_is_the_schedulers_test(deps: list[tuple[SchedulerConfig, int, int]], splits: list[float]) -> None:
    """DeploymentRuntime.fits against ``instances and scheduler.fits(kv, prompt, output)``, ModelGroup.fits
    against "some deployment fits", for every total of tokens up to past the largest KV capacity and
    several prompt/output splits of it; deployments of mixed kinds, limits, and without instances."""
    env = simpy.Environment()
    runtimes = [_deployment(env, k, sched, kv, n) for k, (sched, kv, n) in enumerate(deps)]
    group = ModelGroup("m", runtimes)
    for total in range(1, max(kv for _s, kv, _n in deps) + 4):
        for f in splits:
            output = max(1, round(total * f))
            req = Request(0, total - output, output)
            plain = [bool(d.instances) and d.scheduler.fits(d.kv_capacity_tokens, req.prompt_tokens, req.output_tokens)
                     for d in runtimes]
            assert [d.fits(req) for d in runtimes] == plain, (total, output)
            assert group.fits(req) == any(plain), (total, output)


# -- the predicted cost shared with the realised cost (76fc32a) ------------------------------------------------

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 70), m=st.integers(1, 4), seed=st.integers(0, 2**16),
       change=st.sampled_from(["none", "value", "negative zero", "nan"]), at=st.floats(0.0, 1.0))
def test_priced_is_price_bit_for_bit(monkeypatch: pytest.MonkeyPatch, n: int, m: int, seed: int, change: str,
                                     at: float) -> None:
    """priced(same_as=...) gives price()'s floats bit for bit; it shares same_as (read-only) exactly when
    every value of same_as has those bits — a 0.0 against a -0.0, or another NaN, is a difference
    although == (or array_equal with equal_nan) would not see one."""
    from sim import predict

    monkeypatch.setattr(predict, "ROWS_AT_ONCE", 8)  # slice edges everywhere
    rng = np.random.default_rng(seed)
    prompt = rng.integers(0, 3000, n)
    output = rng.integers(0, 500, (n, m))
    pin = rng.choice([0.0, 0.05, 3.0, np.nan], m)
    pout = rng.choice([0.0, 0.3, 15.0], m)
    straight = price(prompt, output, pin, pout)
    same_as = straight.copy()
    if change != "none" and n:
        i, j = min(int(at * n), n - 1), int(rng.integers(m))
        same_as[i, j] = {"value": same_as[i, j] + 1.0, "negative zero": -0.0 if same_as[i, j] == 0 else -same_as[i, j],
                         "nan": np.nan if not np.isnan(same_as[i, j]) else 0.0}[change]
    got = priced(prompt, output, pin, pout, same_as=same_as)
    assert got.dtype == np.float64 and got.shape == straight.shape
    assert got.view(np.int64).tolist() == straight.view(np.int64).tolist()
    bitwise = same_as.view(np.int64).tolist() == straight.view(np.int64).tolist()
    assert np.shares_memory(got, same_as) == (bitwise and got.size > 0) or got.size == 0
    assert got.flags.writeable == (not bitwise)


def test_shared_cost_is_read_only_on_both_sides() -> None:
    """A Prepared whose predicted cost is its realised cost: a write into either would change the other
    (a caller rescaling a model's realised prices would silently change what the router predicts, which
    two arrays never did), so both refuse writes. Unshared (token noise), both stay as they were."""
    shared = prepare(_parse(small_scenario()))
    assert np.shares_memory(shared.predictions.cost, shared.workload.cost)
    for arr in (shared.predictions.cost, shared.workload.cost):
        with pytest.raises(ValueError, match="read-only"):
            arr[0, 0] = 1.0
    noisy = prepare(_parse(small_scenario(router={"policy": "threshold_greedy", "predictor": {
        "name": "noisy_oracle", "params": {"token_noise": 0.3}}})))
    assert not np.shares_memory(noisy.predictions.cost, noisy.workload.cost)
    assert noisy.predictions.cost.flags.writeable and noisy.workload.cost.flags.writeable


def test_recorded_costs_predicted_as_they_are_refuse_writes(tmp_path: Any) -> None:
    """With a dataset's recorded costs and noisy_oracle the prediction is the recorded array itself (no
    copy, older than 76fc32a): read-only, so a write into it fails instead of changing the prediction."""
    table = tmp_path / "scores.csv"
    rows = ["query_id,task,model,score,prompt,input_tokens,output_tokens,cost_usd"]
    for q in range(40):
        for m, recorded in (("small", 0.001 * (q + 1)), ("big", 0.01 * (q + 1))):
            rows.append(f"q{q},qa,{m},1,question {q},{100 + q},10,{recorded}")
    table.write_text("\n".join(rows) + "\n")
    data = small_scenario(num_queries=12, workload={
        "arrivals": {"type": "poisson", "rate": 5.0},
        "pool": {"type": "dataset", "kind": "long_table", "path": str(table), "test_fraction": 0.5}})
    for m in data["models"]:
        m.pop("strength")
    prep = prepare(_parse(data))
    recorded = prep.workload.queries.cost_usd
    assert recorded is not None and prep.predictions.cost is recorded
    with pytest.raises(ValueError, match="read-only"):
        recorded[0, 0] = 1.0
    res = simulate(_parse(data), prepared=prep)
    served = res.requests[res.requests.status == "completed"]
    assert len(served) and np.array_equal(served.predicted_cost_usd.to_numpy(), served.cost_usd.to_numpy())


# -- the batch log's rows kept by their query (66e377e) ------------------------------------------------------

WHOLE = st.tuples(
    st.floats(0, 1e4), st.integers(1, 50), st.sampled_from(["feasible", "infeasible", "optimal"]),
    st.floats(0, 1), st.floats(0, 1), st.floats(0, 10), st.one_of(st.none(), st.floats(0, 10)),
    st.floats(0, 1), st.integers(0, 50), st.sampled_from(["", "budget: cost 2 > 1"]),
)


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.one_of(st.tuples(st.just("whole"), WHOLE),
                               st.tuples(st.just("one"), st.tuples(st.integers(0, 19), st.booleans(), st.floats(0, 1)))),
                     max_size=30),
       budget=st.one_of(st.none(), st.floats(0, 1)), share=st.floats(0, 1e-3), seed=st.integers(0, 99))
def test_batch_log_columns_are_its_rows(rows: list[tuple[str, Any]], budget: float | None, share: float,
                                        seed: int) -> None:
    """Whole rows and rows kept by their query, interleaved in any order (query 0 refused included: it is
    kept as ~0 = -1), against the table of every row written out: values, dtypes, order, and the size,
    count and infeasible counters the summary reads."""
    rng = np.random.default_rng(seed)
    rec = RequestRecorder(20)
    rec.arrival[:] = np.sort(rng.random(20) * 100)
    rec.predicted_cost[:] = rng.random(20)
    rec.predicted_quality[:] = rng.random(20)
    log = BatchLog()
    log.one_source = _OneRows(rec, share, budget)
    expect: list[tuple[Any, ...]] = []
    for kind, row in rows:
        if kind == "whole":
            log.add(*row)
            t, size, status, solve, routing, cost, b, quality, rejected, violations = row
            expect.append((t, size, status, solve, routing, cost, np.nan if b is None else b, quality, rejected,
                           violations))
            continue
        rid, served, routing = row
        log.one.append(rid if served else ~rid)
        log.routing_time_s.append(routing)
        expect.append((rec.arrival[rid], 1, STATUS_FEASIBLE, share, routing,
                       rec.predicted_cost[rid] if served else 0.0, np.nan if budget is None else budget,
                       rec.predicted_quality[rid] if served else 0.0, 0 if served else 1, ""))
    names = ["time", "size", "status", "solve_time_s", "routing_time_s", "predicted_cost", "budget",
             "predicted_mean_quality", "rejected", "violations"]
    cols = log.columns()
    assert len(log) == len(expect)
    for k, name in enumerate(names):
        values = [r[k] for r in expect]
        if name in ("status", "violations"):
            assert cols[name] == values
            continue
        dtype = np.int64 if name in ("size", "rejected") else np.float64
        assert cols[name].dtype == dtype
        np.testing.assert_array_equal(cols[name], np.array(values, dtype=dtype))
    np.testing.assert_array_equal(log.sizes(), np.array([r[1] for r in expect], dtype=np.int64))
    assert log.infeasible() == sum(r[2] == "infeasible" for r in expect)


# -- every switch at once, on scenarios ------------------------------------------------------------------------

def _parse(d: dict[str, Any]) -> Any:
    return parse_scenario(yaml.safe_dump(d), file="t.yaml")


def _case(router: dict[str, Any], *, dep0: dict[str, Any] | None = None, scheduler: str | None = None,
          **top: Any) -> Any:
    d = small_scenario(router=router, num_queries=top.pop("num_queries", 200), **top)
    d["gpus"][0]["count"] = 16
    d["deployments"].append({"model": "big", "gpu": "A100", "tp": 2, "instances": 1, "max_seqs": 8})
    d["deployments"][0].update(dep0 or {})
    for dep in d["deployments"]:
        if scheduler is not None:
            dep["scheduler"] = scheduler
    return _parse(d)


EVENTS = [{"kind": "price_change", "at_s": 6, "model": "big", "multiplier": 0.5},
          {"kind": "price_change", "at_s": 12, "model": "small", "multiplier": 3.0},
          {"kind": "rate_change", "start_s": 3, "end_s": 9, "multiplier": 3.0},
          {"kind": "node_failure", "at_s": 5, "deployment": 1, "instances": [0], "recover_at_s": 15,
           "on_failure": "lose"}]
FLOOR_LOW = {"policy": "threshold_greedy", "params": {"alpha": 0.2}}

CASES: dict[str, Any] = {
    "plain": lambda: _case({"policy": "threshold_greedy"}),
    "too-long-floor-paged": lambda: _case({**FLOOR_LOW, "min_quality": 0.5}, dep0=SMALL_KV, scheduler="paged"),
    "too-long-reserve": lambda: _case(FLOOR_LOW, dep0=SMALL_KV, scheduler="reserve"),
    "budget-reject": lambda: _case({"policy": "cheapest", "budget_per_query": 5e-5, "allow_reject": True},
                                   dep0=SMALL_KV),
    "window-budget": lambda: _case({"policy": "lagrangian", "budget_per_query": 1e-4, "window_s": 0.5}),
    "window-too-long": lambda: _case({**FLOOR_LOW, "window_s": 0.3}, dep0=SMALL_KV),
    "events": lambda: _case({"policy": "least_loaded"}, events=EVENTS),
    "events-window": lambda: _case({"policy": "threshold_greedy", "window_s": 0.4}, events=EVENTS),
    "slo": lambda: _case({"policy": "cheapest", "slo": {"e2e_s": 5.0}}),
    "latency-routing": lambda: _case({"policy": "latency_aware"}),
    "estimates": lambda: _case({"policy": "threshold_greedy"}, outputs={"latency_estimates": True}),
    "grouped": lambda: _case({"policy": "threshold_greedy", "min_quality": 0.6, "budget_per_query": 2e-4},
                             workload={"arrivals": {"type": "batch", "batch_size": 3, "interval_s": 0.5},
                                       "pool": {"type": "synthetic"}}),
    "cut-off": lambda: _case({"policy": "threshold_greedy"}, num_queries=None, duration_s=30.0, drain=False),
    "cut-off-window": lambda: _case({"policy": "lagrangian", "window_s": 2.0}, num_queries=None, duration_s=30.0,
                                    drain=False),
    "token-noise": lambda: _case({"policy": "threshold_greedy", "predictor": {
        "name": "noisy_oracle", "params": {"noise": 0.1, "token_noise": 0.3}}}),
}


def _plain_deployment_fits(self: DeploymentRuntime, req: Request) -> bool:
    return bool(self.instances) and self.scheduler.fits(self.kv_capacity_tokens, req.prompt_tokens, req.output_tokens)


def _plain_group_fits(self: ModelGroup, req: Request) -> bool:
    return any(d.fits(req) for d in self.deployments)


class _ReferenceFeed:
    """The arrival generator the feed replaced, in ArrivalFeed's shape (``done`` is the process)."""

    def __init__(self, env: simpy.Environment, times: np.ndarray, starts: np.ndarray, arrive: Any) -> None:
        self.done = env.process(feed.reference_process(env, times, starts, arrive))


def _straightforward(sc: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``sc`` run with every representation of the five commits switched back: the scheduler's fits per
    request, the generator feed over an explicit 0 .. N-1, a caller's whole Prepared (true_prob and
    difficulty kept) whose predicted cost is an array of its own, whole batch-log rows, two time columns
    and the prediction columns always kept."""
    with monkeypatch.context() as m:
        m.setattr(DeploymentRuntime, "fits", _plain_deployment_fits)
        m.setattr(ModelGroup, "fits", _plain_group_fits)
        m.setattr(feed, "ArrivalFeed", _ReferenceFeed)
        m.setattr(Dispatcher, "rows_by_query", False)
        m.setattr(Dispatcher, "decisions_at_arrival", False)
        init = RequestRecorder.__init__

        def keeping(self: RequestRecorder, n: int) -> None:
            init(self, n)
            self.keep_estimates()

        m.setattr(RequestRecorder, "__init__", keeping)
        prepared = prepare(sc)
        wl = prepared.workload
        starts = np.arange(len(wl.times)) if wl.group_starts is None else wl.group_starts
        own = dataclasses.replace(prepared.predictions, cost=np.array(prepared.predictions.cost))
        prepared = dataclasses.replace(prepared, workload=dataclasses.replace(wl, group_starts=starts),
                                       predictions=own)
        return simulate(sc, prepared=prepared)


def _assert_same(a: Any, b: Any) -> None:
    assert json.dumps(a.summary) == json.dumps(b.summary)  # values and key order
    pd.testing.assert_frame_equal(a.requests, b.requests, check_exact=True)
    pd.testing.assert_frame_equal(a.batches.drop(columns=WALL_CLOCK), b.batches.drop(columns=WALL_CLOCK),
                                  check_exact=True)
    pd.testing.assert_frame_equal(a.occupancy, b.occupancy, check_exact=True)
    pd.testing.assert_frame_equal(a.instances, b.instances, check_exact=True)


@pytest.mark.parametrize("case", sorted(CASES))
def test_lean_run_equals_the_straightforward_one(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sc = CASES[case]()
    lean = simulate(sc)
    _assert_same(lean, _straightforward(sc, monkeypatch))
    requests = lean.requests
    if "too-long" in case or case == "budget-reject":
        assert (requests["status"] == "rejected").any()
    if case.startswith("events"):
        assert (requests["status"] == "lost").any()
    if case in ("slo", "latency-routing", "estimates"):
        assert requests["predicted_e2e_s"].notna().any()
    if case.startswith("cut-off"):
        assert requests["arrival_s"].notna().any() and (requests["status"] == "running").any()


def _digest(prepared: Prepared) -> str:
    """A hash of every array a Prepared holds (to see that no run wrote into one)."""
    h = hashlib.sha256()

    def walk(x: Any) -> None:
        if isinstance(x, np.ndarray):
            h.update(str(x.dtype).encode() + str(x.shape).encode() + np.ascontiguousarray(x).tobytes())
        elif dataclasses.is_dataclass(x):
            for f in dataclasses.fields(x):
                walk(getattr(x, f.name))
        elif isinstance(x, dict):
            for k in sorted(x):
                walk(x[k])
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)
        else:
            h.update(repr(x).encode())

    walk(prepared)
    return h.hexdigest()


def test_one_prepared_serves_runs_in_any_order_unchanged() -> None:
    """compare / sweep / matched spend simulate several runs on one Prepared (its predicted cost a read-only
    view of the realised cost): each run gives what it gives alone on its own inputs, in either order, the
    Prepared's arrays are bit for bit what they were, and a Prepared or a result that went through pickle
    (a Dask worker) gives the same results."""
    base = small_scenario(num_queries=150)
    routers = [{"policy": "threshold_greedy"}, {"policy": "lagrangian", "budget_per_query": 1e-4, "window_s": 0.5},
               {"policy": "utility_greedy", "params": {"lam": 30.0}, "min_quality": 0.5}, {"policy": "least_loaded"}]
    scs = [_parse({**base, "router": r}) for r in routers]
    scs.append(_parse({**base, "router": routers[0], "events": [
        {"kind": "price_change", "at_s": 5, "model": "big", "multiplier": 2.0}]}))
    alone = [simulate(sc) for sc in scs]
    shared = prepare(scs[0])
    assert not shared.predictions.cost.flags.writeable
    before = _digest(shared)
    for order in (range(len(scs)), reversed(range(len(scs)))):
        for k in order:
            _assert_same(simulate(scs[k], prepared=shared), alone[k])
    assert _digest(shared) == before
    thawed = pickle.loads(pickle.dumps(shared))
    _assert_same(simulate(scs[1], prepared=thawed), alone[1])
    unpickled = pickle.loads(pickle.dumps(simulate(scs[0])))
    _assert_same(unpickled, alone[0])
