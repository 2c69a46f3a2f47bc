"""Run one scenario: build workload, predictions, cluster and policy; simulate; summarise.

The data flow is one way: validated scenario → workload (arrivals + queries) → predictions → cluster →
dispatcher → instances → recorder → summary. Nothing here writes files (see :mod:`sim.output`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import simpy

from policies import make_policy, policy_class
from sim import rng as rngs
from sim.config.schema import Scenario
from sim.dispatcher import Dispatcher, RoutingInputs
from sim.engine.build import build_cluster
from sim.engine.request import Request
from sim.errors import InputError, ScenarioError
from sim.metrics.recorder import RequestRecorder
from sim.metrics.sampler import OccupancySampler
from sim.metrics.summary import DeploymentStats, summarize
from sim.predict import build_predictions
from sim.workload.build import Workload, build_workload

ProgressFn = Callable[[float], None]
MAX_SAMPLES = 1_000_000


@dataclass
class RunResult:
    summary: dict[str, Any]
    requests: pd.DataFrame
    batches: pd.DataFrame
    instances: pd.DataFrame  # one row per instance: limits and the peaks it reached (invariant checks)


def _arrival_process(
    env: simpy.Environment, wl: Workload, dispatcher: Dispatcher
) -> Generator[simpy.Event, None, None]:
    times = wl.times
    starts = wl.group_starts
    ends = np.append(starts[1:], len(times))
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        delay = times[s] - env.now
        if delay > 0:
            yield env.timeout(delay)
        dispatcher.arrive(s, e)


def _make_policy(sc: Scenario) -> Any:
    params = dict(sc.router.params)
    accepted = inspect.signature(policy_class(sc.router.policy).__init__).parameters
    if "rng" in accepted and "rng" not in params and "seed" not in params:
        params["rng"] = rngs.stream(sc.seed, "policy")
    return make_policy(sc.router.policy, **params)


def _finite(x: Any) -> Any:
    """The summary with every non-finite float (e.g. an AUC undefined on one class) as None (JSON null)."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def references(quality: np.ndarray, cost: np.ndarray, model_names: tuple[str, ...]) -> dict[str, Any]:
    """Reference rows: the oracle (best model per query) and the best single model, on these queries."""
    if quality.shape[0] == 0:
        return {}
    means = quality.mean(axis=0)
    best = int(np.argmax(means))
    return {
        "oracle_accuracy": float(quality.max(axis=1).mean()),
        "best_single_model": model_names[best],
        "best_single_model_accuracy": float(means[best]),
        "best_single_model_cost_usd": float(cost[:, best].sum()),
        "cheapest_single_model_cost_usd": float(cost.sum(axis=0).min()),
    }


def run(
    sc: Scenario,
    base_dir: Path | None = None,
    progress: ProgressFn | None = None,
    *,
    _no_precompute: bool = False,
) -> RunResult:
    """Simulate ``sc``; ``progress`` is called with the fraction of arrivals processed.

    ``_no_precompute`` forces batch-by-batch routing even where deciding all queries up front is
    equivalent (tests use it to check that equivalence).
    """
    try:
        wl = build_workload(sc, base_dir)
    except ValueError as exc:  # a generator refusing its parameters (e.g. an absurd duration)
        if isinstance(exc, InputError):
            raise
        raise ScenarioError(str(exc), where="workload") from None
    n = len(wl.times)
    if n == 0:
        raise ScenarioError(
            "the workload has no arrivals (is duration_s too short for the arrival rate or trace window?)",
            where="workload.arrivals",
        )
    pred = build_predictions(sc, wl)
    model_names = tuple(m.name for m in sc.models)

    arrivals_end = float(wl.times[-1])
    horizon = max(arrivals_end, sc.duration_s or 0.0)
    interval = sc.outputs.sample_interval_s or max(horizon, 1e-3) / 2000.0
    if horizon / interval > MAX_SAMPLES:
        raise ScenarioError(
            f"{horizon / interval:,.0f} occupancy samples over {horizon:g} s; at most {MAX_SAMPLES:,} "
            "(raise sample_interval_s)",
            where="outputs.sample_interval_s",
        )

    env = simpy.Environment()
    rec = RequestRecorder(n)
    done = env.event()

    def check_done(_k: int = 0) -> None:
        # `dispatcher` is bound below, before any request can finish or be rejected.
        if rec.completed + dispatcher.rejected >= n and not done.triggered:
            done.succeed()

    def on_finish(req: Request) -> None:
        rec.on_finish(req)
        check_done()

    groups, deployments = build_cluster(env, sc, on_finish)
    inputs = RoutingInputs(
        predicted_quality=pred.quality,
        predicted_std=pred.quality_std,
        predicted_cost=pred.cost,
        true_quality=wl.queries.quality,
        cost=wl.cost,
        output_tokens=wl.output_tokens,
        prompt_tokens=wl.prompt_tokens,
    )
    r = sc.router
    dispatcher = Dispatcher(
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
        model_names=model_names,
        on_reject=check_done,
        capacity_never_binds=r.capacity == "unlimited"
        or (r.capacity == "slots_and_queue" and all(d.max_queue is None for d in sc.deployments)),
    )
    if not _no_precompute:
        dispatcher.precompute()
    sampler = OccupancySampler(env, deployments, interval, until=horizon)
    arrivals = env.process(_arrival_process(env, wl, dispatcher))
    env.process(sampler.process())
    # Advance in slices so the caller can show progress, then make sure every arrival is processed
    # (run(until=t) leaves events at exactly t unprocessed).
    slices = 100
    for k in range(1, slices + 1):
        t = horizon * k / slices
        if t > env.now:
            env.run(until=t)
        if progress:
            progress(k / slices)
    env.run(until=arrivals)
    if sc.drain:
        # Until every query is completed or rejected: an event, not a time, so a long batching window
        # or a slow drain costs nothing extra (the sampler has stopped at the horizon).
        if not done.triggered:
            env.run(until=done)
        end_time = float(np.nanmax(rec.finish)) if rec.completed else float(env.now)
    else:
        if horizon > env.now:
            env.run(until=horizon)
        dispatcher.flush()  # a window still open at the cut-off is routed now, then the run stops
        end_time = float(env.now)

    stats = [
        DeploymentStats(
            name=d.name,
            model_index=d.model_index,
            instances=len(d.instances),
            max_seqs=d.max_seqs,
            gpus=d.tp * len(d.instances),
            gpu_cost_per_hour=d.gpu_cost_per_hour,
            busy_time_s=float(sum(min(i.busy_time, end_time) for i in d.instances)),
        )
        for d in deployments
    ]
    st, sq, sr = sampler.arrays()
    log = dispatcher.log
    summary = summarize(
        rec=rec,
        model_names=model_names,
        deployments=stats,
        sample_t=st,
        sample_queued=sq,
        sample_running=sr,
        end_time=end_time,
        arrivals_end=arrivals_end,
        warmup_s=sc.warmup_s,
        batches={
            "count": len(log.time),
            "budget_per_query": sc.router.budget_per_query,
            "over_budget": dispatcher.budget_violations,
            "overspend_usd": dispatcher.overspend_usd,
            "floor_misses": dispatcher.quality_floor_misses,
            "capacity_refusals": dispatcher.capacity_refusals,
            "mean_size": float(np.mean(log.size)) if log.size else 0.0,
            "sizes": np.asarray(log.size, dtype=np.int64),
            "infeasible": sum(st == "infeasible" for st in log.status),
        },
        references=references(wl.queries.quality, wl.cost, model_names),
    )
    summary = _finite({
        "scenario": sc.name,
        "seed": sc.seed,
        "policy": sc.router.policy,
        "predictor": sc.router.predictor.name,
        **summary,
        "predictor_scores": pred.scores,
    })
    requests = rec.to_frame(
        query_ids=wl.queries.query_ids,
        task=wl.queries.task,
        task_names=wl.queries.task_names,
        prompt_tokens=wl.prompt_tokens,
        model_names=model_names,
    )
    batches = pd.DataFrame(
        {
            "batch": np.arange(len(log.time)),
            "time_s": log.time,
            "size": log.size,
            "status": log.status,
            "solve_time_s": log.solve_time_s,
            "predicted_cost_usd": log.predicted_cost,
            "budget_usd": log.budget,
            "predicted_mean_quality": log.predicted_mean_quality,
            "rejected": log.rejected,
            "violations": log.violations,
        }
    )
    instances = pd.DataFrame(
        [
            {
                "deployment": d.name,
                "instance": inst.iid,
                "max_seqs": d.max_seqs,
                "kv_capacity_tokens": d.kv_capacity_tokens,
                "max_running_seen": inst.max_running_seen,
                "max_kv_used_seen": inst.max_kv_used_seen,
                "busy_time_s": inst.busy_time,
            }
            for d in deployments
            for inst in d.instances
        ]
    )
    return RunResult(summary=summary, requests=requests, batches=batches, instances=instances)
