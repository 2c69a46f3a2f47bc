"""The library API: ``prepare`` a scenario's inputs, ``simulate`` it, get a :class:`RunResult`.

The data flow is one way: validated scenario → :func:`prepare` (workload: arrivals + queries, and the
router's predictions; no SimPy, picklable) → :func:`simulate` (cluster, dispatcher, instances: the only
code that drives the engine) → :func:`sim.results.summarise` (summary and tables). Nothing here writes
files (see :mod:`sim.output`). ``compare``, ``sweep`` and later ``plan`` call :func:`simulate`, never a
copy of it; they may pass one :class:`Prepared` to several simulations whose scenarios differ only in
what :func:`prepare` does not read (policy, budget, deployments, ...), which is what makes their
comparisons use common random numbers.

:func:`prepare` lives in :mod:`sim.prepare` (re-exported here) and the engine side (SimPy, cluster,
dispatcher, metrics) is imported where a simulation starts (pandas not at all: :mod:`sim.tables`), so
importing this module stays cheap: ``llmsim validate`` calls ``sim.runner.prepare`` without loading the
engine (issue 14).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from policies import make_policy, policy_class
from sim import rng as rngs
from sim.config.schema import NodeFailure, PriceChange, Scenario
from sim.prepare import Prepared, prepare, prepare_key
from sim.prepare import horizon as _horizon
from sim.prepare import sample_interval as _sample_interval
from sim.results import Routing, RunInputs, RunResult, Trace, summarise
from sim.tables import Columns

if TYPE_CHECKING:  # the engine side is imported where a simulation starts (start-up, issue 14)
    import simpy

    from sim.dispatcher import Dispatcher, SloRouting
    from sim.engine.cluster import DeploymentRuntime
    from sim.engine.faults import Failure, FaultController
    from sim.engine.request import Request
    from sim.metrics.recorder import RequestRecorder
    from sim.metrics.summary import DeploymentStats

__all__ = ["Prepared", "RunResult", "prepare", "prepare_key", "run", "simulate"]

ProgressFn = Callable[[float], None]
PROGRESS_SLICES = 100


def simulate(
    sc: Scenario,
    *,
    prepared: Prepared | None = None,
    base_dir: Path | None = None,
    progress: ProgressFn | None = None,
    _no_precompute: bool = False,
) -> RunResult:
    """Simulate ``sc`` and summarise it. ``prepared`` reuses a :func:`prepare` result (it must come from
    a scenario with the same :func:`prepare_key`); ``progress`` is called with the fraction of the arrival
    window simulated. ``_no_precompute`` forces batch-by-batch routing even where deciding all queries
    up front is equivalent (tests use it to check that equivalence)."""
    if prepared is None:
        prepared = _for_this_run(prepare(sc, base_dir))
    elif prepared.key != prepare_key(sc):
        raise ValueError("prepared inputs come from a scenario with a different workload or predictor")
    trace = _run_engine(sc, prepared, progress, precompute=not _no_precompute)
    # From here on only what the summary and the tables read is kept: prepared here, the rest of the
    # inputs is freed before summarising (issue 14's memory target; a caller's ``prepared`` stays theirs).
    inputs = RunInputs.of(prepared)
    del prepared
    return summarise(sc, inputs, trace)


def _for_this_run(prepared: Prepared) -> Prepared:
    """``prepared`` without what only :func:`prepare` itself reads: the synthetic pool's success
    probabilities and difficulties (the predictor and the ordering used them; the engine and summary
    never do). Only for inputs :func:`simulate` prepared itself, which no one else sees."""
    q = prepared.workload.queries
    if q.true_prob is None and q.difficulty is None:
        return prepared
    wl = replace(prepared.workload, queries=replace(q, true_prob=None, difficulty=None))
    return replace(prepared, workload=wl)


def run(
    sc: Scenario,
    base_dir: Path | None = None,
    progress: ProgressFn | None = None,
    *,
    _no_precompute: bool = False,
) -> RunResult:
    """:func:`simulate` with the positional signature the first releases had."""
    return simulate(sc, base_dir=base_dir, progress=progress, _no_precompute=_no_precompute)


def _make_policy(sc: Scenario) -> Any:
    params = dict(sc.router.params)
    accepted = inspect.signature(policy_class(sc.router.policy).__init__).parameters
    if "rng" in accepted and "rng" not in params and "seed" not in params:
        params["rng"] = rngs.stream(sc.seed, "policy")
    return make_policy(sc.router.policy, **params)


def _make_dispatcher(
    env: simpy.Environment, sc: Scenario, prepared: Prepared, groups: Any, rec: RequestRecorder,
    on_reject: Callable[..., None],
) -> Dispatcher:
    from sim.dispatcher import Dispatcher, RoutingInputs

    wl, pred = prepared.workload, prepared.predictions
    inputs = RoutingInputs(
        predicted_quality=pred.quality,
        predicted_std=pred.quality_std,
        predicted_cost=pred.cost,
        true_quality=wl.queries.quality,
        cost=wl.cost,
        output_tokens=wl.output_tokens,
        prompt_tokens=wl.prompt_tokens,
        prefix=wl.prefix,
        predicted_output_tokens=pred.output_tokens,
    )
    r = sc.router
    failures = bool(_failures(sc))
    return Dispatcher(
        env,
        groups,
        _make_policy(sc),
        inputs,
        rec,
        window_s=r.window_s,
        budget_per_query=r.budget_per_query,
        min_quality=r.min_quality,
        allow_reject=r.allow_reject,
        capacity_mode=r.capacity,
        model_names=tuple(m.name for m in sc.models),
        on_reject=on_reject,
        # a failed model's capacity drops to 0 whatever the mode, so with failures it can always bind
        capacity_never_binds=not failures and (
            r.capacity == "unlimited"
            or (r.capacity == "slots_and_queue" and all(d.max_queue is None for d in sc.deployments))),
        slo=_slo_routing(sc),
        record_estimates=sc.outputs.latency_estimates,
        price_changes=_price_changes(sc),
        failures=failures,
    )


def _failures(sc: Scenario) -> list[Failure]:
    """The scenario's node_failure events in the engine's terms."""
    from sim.engine.faults import Failure

    return [
        Failure(at_s=e.at_s, deployment=e.deployment, indices=e.indices, recover_at_s=e.recover_at_s,
                lose=e.on_failure == "lose")
        for e in sc.events
        if isinstance(e, NodeFailure)
    ]


def _price_changes(sc: Scenario) -> list[tuple[float, int, float]]:
    """The scenario's price_change events as (at_s, model index, multiplier)."""
    index = {m.name: j for j, m in enumerate(sc.models)}
    return [(e.at_s, index[e.model], e.multiplier) for e in sc.events if isinstance(e, PriceChange)]


def _slo_routing(sc: Scenario) -> SloRouting | None:
    """The dispatcher's view of ``router.slo`` (checked at load: the route_on SLO is set)."""
    from sim.dispatcher import SloRouting

    slo = sc.router.slo
    if slo is None:
        return None
    target = slo.e2e_s if slo.route_on == "e2e" else slo.ttft_s
    assert target is not None
    return SloRouting(slo_s=target, route_on=slo.route_on, mode=slo.mode, penalty=slo.penalty)


def _run_engine(sc: Scenario, prepared: Prepared, progress: ProgressFn | None, *, precompute: bool) -> Trace:
    """Build the cluster and dispatcher, run the SimPy environment until every query is accounted for
    (``drain``) or the horizon (no drain), and return what the engine recorded."""
    import simpy

    from sim.engine.build import build_cluster
    from sim.engine.faults import FaultController
    from sim.engine.feed import ArrivalFeed
    from sim.metrics.recorder import RequestRecorder
    from sim.metrics.sampler import OccupancySampler

    wl = prepared.workload
    n = len(wl.times)
    horizon = _horizon(sc, wl)
    env = simpy.Environment()
    rec = RequestRecorder(n)
    done = env.event()

    def check_done(_k: int = 0) -> None:
        # `dispatcher` is bound below, before any request can finish, be rejected or be lost (and deleted
        # once the run is over, which is what ruff's F821 sees)
        if rec.completed + dispatcher.rejected + rec.lost >= n and not done.triggered:  # noqa: F821
            done.succeed()

    def on_finish(req: Request) -> None:
        rec.on_finish(req)
        dispatcher.finished(req)  # noqa: F821
        check_done()

    def on_lost(req: Request, instance: int) -> None:
        rec.on_lost(req, instance)
        check_done()

    groups, deployments = build_cluster(env, sc, on_finish)
    dispatcher = _make_dispatcher(env, sc, prepared, groups, rec, check_done)
    failures = _failures(sc)
    faults = None
    if failures:
        faults = FaultController(env, groups, deployments, failures, on_lost,
                                 on_retry=lambda req: rec.retries.__setitem__(req.rid, req.retries))
    if precompute:
        dispatcher.precompute()
    sampler = OccupancySampler(env, deployments, _sample_interval(sc, wl), until=horizon)
    arrivals = ArrivalFeed(env, wl.times, wl.group_starts, dispatcher.arrive).done
    env.process(sampler.process())
    # Advance in slices so the caller can show progress, then make sure every arrival is processed
    # (run(until=t) leaves events at exactly t unprocessed).
    for k in range(1, PROGRESS_SLICES + 1):
        t = horizon * k / PROGRESS_SLICES
        if t > env.now:
            env.run(until=t)
        if progress:
            progress(k / PROGRESS_SLICES)
    env.run(until=arrivals)
    if sc.drain:
        # Until every query is completed, rejected or lost: an event, not a time, so a long batching window
        # or a slow drain costs nothing extra (the sampler has stopped at the horizon).
        if not done.triggered:
            env.run(until=done)
        end_time = float(np.nanmax(rec.finish)) if rec.completed else float(env.now)
    else:
        if horizon > env.now:
            env.run(until=horizon)
        dispatcher.flush()  # a window still open at the cut-off is routed now, then the run stops
        end_time = float(env.now)
    st, sq, sr = sampler.arrays()
    routing = Routing.of(dispatcher)
    # The engine's callbacks (on_finish, check_done) reach the dispatcher through this frame's cell, and
    # the engine reaches them: a reference cycle, which would keep the dispatcher's per-query inputs
    # (~150 MB at a million queries) until the next cyclic collection. Without the cell they go now.
    del dispatcher
    return Trace(
        rec=rec,
        routing=routing,
        deployments=[_stats(d, end_time) for d in deployments],
        instances=_instances_columns(deployments),
        sample_t=st,
        sample_queued=sq,
        sample_running=sr,
        end_time=end_time,
        arrivals_end=float(wl.times[-1]),
        events=_event_rows(sc, deployments, faults, rec) if sc.events else None,
    )


def _event_rows(
    sc: Scenario, deployments: list[DeploymentRuntime], faults: FaultController | None, rec: RequestRecorder
) -> list[dict[str, Any]]:
    """One summary row per event, in scenario order: what it was and what it touched (docs/events.md)."""
    rows: list[dict[str, Any]] = []
    fails = iter(faults.stats if faults is not None else [])
    index = {m.name: j for j, m in enumerate(sc.models)}
    for e in sc.events:
        row: dict[str, Any] = e.model_dump(mode="json", exclude_none=True)
        if isinstance(e, NodeFailure):
            dep = deployments[e.deployment]
            row.update(deployment_name=dep.name, instance_ids=[dep.instances[k].iid for k in e.indices], **next(fails))
        elif isinstance(e, PriceChange):  # decided while this change was the model's latest
            until = min((o.at_s for o in sc.events if isinstance(o, PriceChange) and o.model == e.model
                         and o.at_s > e.at_s), default=np.inf)
            during = (rec.decision >= e.at_s) & (rec.decision < until) & (rec.model == index[e.model])
            row["queries_decided_after"] = int(during.sum())
        else:
            inside = (rec.arrival >= e.start_s) & (rec.arrival < e.end_s)
            row["arrivals_in_window"] = int(inside.sum())
        rows.append(row)
    return rows


def _stats(d: DeploymentRuntime, end_time: float) -> DeploymentStats:
    from sim.engine.steplog import step_log_of
    from sim.metrics.summary import DeploymentStats

    return DeploymentStats(
        name=d.name,
        model_index=d.model_index,
        instances=len(d.instances),
        max_seqs=d.max_seqs,
        gpus=d.tp * len(d.instances),
        gpu_cost_per_hour=d.gpu_cost_per_hour,
        busy_time_s=float(sum(min(i.busy_time, end_time) for i in d.instances)),
        step_log=step_log_of(d.instances),
        prefix_cache=d.scheduler.prefix_cache,
    )


def _instances_columns(deployments: list[DeploymentRuntime]) -> Columns:
    """One row per instance (instances.parquet): its limits and the peaks it reached."""
    rows = [(d, inst) for d in deployments for inst in d.instances]
    return {
        "deployment": np.array([d.name for d, _ in rows], dtype=object),
        "instance": np.array([inst.iid for _, inst in rows], dtype=np.int64),
        "max_seqs": np.array([d.max_seqs for d, _ in rows], dtype=np.int64),
        "kv_capacity_tokens": np.array([d.kv_capacity_tokens for d, _ in rows], dtype=np.int64),
        "max_running_seen": np.array([inst.max_running_seen for _, inst in rows], dtype=np.int64),
        "max_kv_used_seen": np.array([inst.max_kv_used_seen for _, inst in rows], dtype=np.int64),
        "busy_time_s": np.array([inst.busy_time for _, inst in rows], dtype=np.float64),
    }
