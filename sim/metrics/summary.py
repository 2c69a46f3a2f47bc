"""The run summary: accuracy, cost, budget adherence, latency percentiles, throughput, per-model shares.

Pure functions of the recorded columns (no engine objects), so the same code summarises a run now and
re-summarises a stored ``requests.parquet`` later. Everything here is deterministic given the records:
wall-clock times are kept out, which is what makes ``summary.json`` byte-identical across runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.engine.steplog import StepLog, StepLogs
from sim.metrics.recorder import (
    REASON_NAMES,
    STATUS_DONE,
    STATUS_IN_FLIGHT,
    STATUS_LOST,
    STATUS_PENDING,
    STATUS_REJECTED,
    tpot,
)
from sim.metrics.slo import Spans, estimator_section, slo_section
from sim.metrics.tokens import TbtCache, scheduler_stats, tbt_stats
from sim.workload.queryset import DATA_REPORT_KEYS

PERCENTILES = (50, 95, 99)


def dist(x: np.ndarray, *, scratch: bool = False) -> dict[str, float | None]:
    """Mean and p50/p95/p99 of ``x`` (None when empty). ``scratch``: ``x`` is the caller's temporary, so
    the percentiles may partition it in place instead of copying it (the same values either way)."""
    finite = np.isfinite(x)
    if not finite.all():
        x, scratch = x[finite], True
    if x.size == 0:
        return {"mean": None, **{f"p{p}": None for p in PERCENTILES}}
    out: dict[str, float | None] = {"mean": float(x.mean())}
    for p, v in zip(PERCENTILES, np.percentile(x, PERCENTILES, overwrite_input=scratch), strict=True):
        out[f"p{p}"] = float(v)
    return out


@dataclass(frozen=True)
class DeploymentStats:
    """One deployment as the summary needs it. ``step_log``: its instances' step logs
    (:class:`~sim.engine.steplog.StepLogs`, their union read in place, or one
    :class:`~sim.engine.steplog.StepLog`), None when they keep none (TBT and
    preemption counters are then not applicable); ``prefix_cache``: whether it caches prompt prefixes."""

    name: str
    model_index: int
    instances: int
    max_seqs: int
    gpus: int
    gpu_cost_per_hour: float
    busy_time_s: float
    step_log: StepLog | StepLogs | None = None
    prefix_cache: bool = False


def token_sections(
    rec: Any, mine: np.ndarray, lat_mask: np.ndarray, deps: list[DeploymentStats], prompt_tokens: np.ndarray | None,
    tbt_cache: TbtCache | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(``{"tpot": ..., "tbt": ...}``, scheduler counters) for the requests ``mine`` served by ``deps``.

    TPOT over completed steady-state requests (``lat_mask``, like every request latency); TBT over every
    token the deployments' step logs hold (warm-up included: a step log has no request identity;
    ``tbt_cache``: see :class:`~sim.metrics.tokens.TbtCache`).
    """
    sel = mine & lat_mask  # tpot is elementwise: over the selected requests only, not (N,) temporaries
    per_token = tpot(rec.first_token[sel], rec.finish[sel], rec.output_tokens[sel])
    latency = {"tpot": dist(per_token, scratch=True), "tbt": tbt_stats([d.step_log for d in deps], tbt_cache)}
    caching = [d.model_index for d in deps if d.prefix_cache]
    sched = scheduler_stats(rec, mine, prompt_tokens, paged=any(d.step_log is not None for d in deps),
                            cache_scope=np.isin(rec.model, caching) if caching else None)
    return latency, sched


def summarize(
    *,
    rec: Any,
    model_names: tuple[str, ...],
    deployments: list[DeploymentStats],
    sample_t: np.ndarray,
    sample_queued: np.ndarray,
    sample_running: np.ndarray,
    end_time: float,
    arrivals_end: float,
    warmup_s: float,
    batches: dict[str, Any],
    references: dict[str, float],
    data: dict[str, int] | None = None,
    prompt_tokens: np.ndarray | None = None,
    slo: dict[str, float | None] | None = None,
) -> dict[str, Any]:
    """The summary dict (summary.json).

    ``batches`` holds the dispatcher's counters (``quality_floor``: the α, optional); ``data`` what
    loading the dataset dropped (:attr:`sim.workload.queryset.QuerySet.data_report`; zeros when None).
    Budgets and the quality floor are reported twice: ``batches_over_budget`` / ``quality_floor_misses``
    on what the router predicted (what it could enforce), ``*_realised`` on the realised cost and quality
    of the served queries of each batch (a rejected query counts 0 towards the batch mean, as routed).

    Per-token metrics (:mod:`sim.metrics.tokens`; ``prompt_tokens`` per request feeds the token hit
    rate, which is None without it): ``latency_s.tpot`` (mean, p50/p95/p99 of each request's
    ``(finish - first token) / (output - 1)``; one-token outputs excluded), ``latency_s.tbt`` (mean,
    p50/p95/p99 of the time between consecutive tokens, token-weighted, from the deployments' step logs,
    and ``max_step``, the longest step; None without step logs), and ``scheduler``: ``preemptions``,
    ``recomputed_tokens`` (None when no deployment is paged), ``prefix_cache_hit_rate_tokens`` and
    ``prefix_cache_hit_rate_requests`` (None when no deployment caches prefixes). Each model's section
    repeats them (``models.<name>.latency_s`` / ``.scheduler``) over its own requests and deployments.
    ``queries.lost`` counts requests lost to node failures and ``queries.retried`` their restarts
    (docs/events.md); both are 0 without events, and ``completed + rejected + lost + running + pending``
    is always ``arrived``.
    """
    n = rec.n
    status = rec.status
    done = status == STATUS_DONE
    rejected = status == STATUS_REJECTED
    running = status == STATUS_IN_FLIGHT
    pending = status == STATUS_PENDING
    steady = rec.arrival >= warmup_s
    lat_mask = done & steady
    total_cost = float(rec.cost[done].sum())
    gpu_cost = float(sum(d.gpus * d.gpu_cost_per_hour for d in deployments) * end_time / 3600.0)
    span = max(end_time, 1e-12)
    # Latencies are differences of the recorder's columns, computed where used (over the requests used
    # where possible): a million-request run would otherwise hold six (N,) float temporaries throughout.
    measured = Spans(rec, {"ttft": ("arrival", "first_token"), "e2e": ("arrival", "finish")})
    # the estimator predicts, at the routing decision, the latency from then on (sim/engine/estimate.py)
    since_decision = Spans(rec, {"ttft": ("decision", "first_token"), "e2e": ("decision", "finish")})
    targets = dict(slo or {})

    per_model: dict[str, Any] = {}
    tbt_cache = TbtCache()  # no union's TBT and no part's sample computed twice
    for j, name in enumerate(model_names):
        mine = rec.model == j
        served = mine & done
        deps = [d for d in deployments if d.model_index == j]
        inst = sum(d.instances for d in deps)
        cols = [k for k, d in enumerate(deployments) if d.model_index == j]
        slots = sum(d.instances * d.max_seqs for d in deps)
        per_model[name] = {
            "queries": int(served.sum()),
            "share": float(served.sum() / n) if n else 0.0,
            "accuracy": float(rec.quality[served].mean()) if served.any() else None,
            "cost_usd": float(rec.cost[served].sum()),
            "busy_fraction": float(sum(d.busy_time_s for d in deps) / (inst * span)) if inst else 0.0,
            "mean_running": float(sample_running[:, cols].sum(axis=1).mean()) if sample_t.size else 0.0,
            "slot_utilisation": float(sample_running[:, cols].sum(axis=1).mean() / slots)
            if sample_t.size and slots
            else 0.0,
            "mean_queue": float(sample_queued[:, cols].sum(axis=1).mean()) if sample_t.size else 0.0,
            "peak_queue": int(sample_queued[:, cols].sum(axis=1).max()) if sample_t.size else 0,
        }
        latency, sched = token_sections(rec, mine, lat_mask, deps, prompt_tokens, tbt_cache)
        per_model[name].update(latency_s=latency, scheduler=sched,
                               slo=slo_section(rec, mine & steady, measured, targets, end_time),
                               estimator=estimator_section(rec, mine & steady, since_decision))

    reasons = {
        name: int(((rec.reason == code) & rejected).sum()) for code, name in REASON_NAMES.items() if code
    }
    in_window = sample_t <= arrivals_end
    # Realised spend per batch (served queries' actual cost) against the same batch budget.
    sizes = np.asarray(batches["sizes"], dtype=np.float64)
    per_query_budget = batches["budget_per_query"]
    realised_over, realised_overspend = 0, 0.0
    if per_query_budget is not None and sizes.size:
        billed = (done | running) & (rec.batch >= 0)
        spent = np.bincount(rec.batch[billed], weights=rec.cost[billed], minlength=sizes.size)
        excess = spent - per_query_budget * sizes
        over = excess > 1e-12 + 1e-9 * per_query_budget * sizes
        realised_over, realised_overspend = int(over.sum()), float(excess[over].sum())
    floor = batches.get("quality_floor")
    floor_realised = _floor_misses_realised(rec, done | running, sizes, floor)
    occupancy = (sample_queued + sample_running).sum(axis=1)
    token_latency, sched = token_sections(rec, np.ones(n, dtype=bool), lat_mask, deployments, prompt_tokens,
                                          tbt_cache)
    summary: dict[str, Any] = {
        "queries": {
            "arrived": int(n),
            "completed": int(done.sum()),
            "rejected": int(rejected.sum()),
            "lost": int((status == STATUS_LOST).sum()),
            "retried": int(rec.retries.sum()),
            "running": int(running.sum()),
            "pending": int(pending.sum()),
            "rejected_by_reason": reasons,
        },
        # Accuracy and spend count completed queries: a query still running at a cut-off (drain: false)
        # has no answer yet, and a rejected one scores 0 at no cost.
        "accuracy": float(np.where(done, rec.quality, 0.0).mean()) if n else None,
        "accuracy_of_completed": float(rec.quality[done].mean()) if done.any() else None,
        "predicted_accuracy": float(np.where(done, rec.predicted_quality, 0.0).mean()) if n else None,
        "cost": {
            "total_usd": total_cost,
            "per_query_usd": total_cost / n if n else None,
            "gpu_usd": gpu_cost,
        },
        "budget": {
            "per_query_usd": batches["budget_per_query"],
            "batches": int(batches["count"]),
            "batches_over_budget": int(batches["over_budget"]),
            "overspend_usd": float(batches["overspend_usd"]),
            "batches_over_budget_realised": realised_over,
            "overspend_realised_usd": realised_overspend,
            "policy_infeasible_batches": int(batches["infeasible"]),
            "quality_floor": None if floor is None else float(floor),
            "quality_floor_misses": int(batches["floor_misses"]),
            "quality_floor_misses_realised": floor_realised,
            "capacity_refusals": int(batches["capacity_refusals"]),
            "mean_batch_size": float(batches["mean_size"]),
        },
        "latency_s": {
            "ttft": dist(measured.over("ttft", lat_mask), scratch=True),
            "e2e": dist(measured.over("e2e", lat_mask), scratch=True),
            "batching_delay": dist(rec.decision[lat_mask] - rec.arrival[lat_mask], scratch=True),
            "queue_delay": dist(rec.start[lat_mask] - rec.decision[lat_mask], scratch=True),
            **token_latency,
        },
        "scheduler": sched,
        "slo": slo_section(rec, steady, measured, targets, end_time),
        "estimator": estimator_section(rec, steady, since_decision),
        "throughput": {
            "queries_per_s": float(done.sum() / span),
            "output_tokens_per_s": float(rec.output_tokens[done].sum() / span),
        },
        "occupancy": {
            "mean_in_system": float(occupancy[in_window].mean()) if in_window.any() else 0.0,
            "mean_queued": float(sample_queued.sum(axis=1)[in_window].mean()) if in_window.any() else 0.0,
            "max_queued": int(sample_queued.sum(axis=1).max()) if sample_t.size else 0,
        },
        "models": per_model,
        "references": references,
        "data": {key: int((data or {}).get(key, 0)) for key in DATA_REPORT_KEYS},
        "sim_time_s": float(end_time),
        "arrivals_end_s": float(arrivals_end),
    }
    return summary


FLOOR_TOL = 1e-9
"""The dispatcher's tolerance on the predicted floor, used for the realised one too."""


def _floor_misses_realised(rec: Any, served: np.ndarray, sizes: np.ndarray, floor: float | None) -> int:
    """Batches whose realised mean quality (served queries' quality summed, over the batch size) is
    below α; 0 without a floor (like the predicted count)."""
    if floor is None or not sizes.size:
        return 0
    billed = served & (rec.batch >= 0)
    got = np.bincount(rec.batch[billed], weights=rec.quality[billed], minlength=sizes.size)
    mean = got / np.maximum(sizes, 1.0)
    return int((mean < float(floor) - FLOOR_TOL).sum())
