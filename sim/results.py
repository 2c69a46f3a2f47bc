"""Turn what a simulation recorded into a :class:`RunResult`: the summary dict and the result tables.

Pure functions of recorded arrays and the scenario (no SimPy objects), so :mod:`sim.runner` stays the
only module that drives the engine, and every table written to a run folder is declared here once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.tables import Columns, frame

if TYPE_CHECKING:  # the metrics load when a run is summarised, not with sim.runner; pandas when a table
    import pandas as pd  # is read as a DataFrame (sim.tables; issue 14)

    from sim.config.schema import Scenario
    from sim.metrics.summary import DeploymentStats


#: The run's tables, as :meth:`RunResult.columns` names them (each written as ``<name>.parquet``).
TABLES = ("requests", "batches", "instances", "occupancy")


@dataclass
class RunResult:
    """One simulated run: the summary (summary.json) and its tables (the run folder's parquet files).

    The tables are numpy columns (:mod:`sim.tables`), read as DataFrames through ``requests``,
    ``batches``, ``instances`` (one row per instance: limits and the peaks it reached) and ``occupancy``
    (one row per sample time and deployment: queued and running sequences); pandas loads then, not
    before. ``requests`` and ``batches`` are built on first access: they hold one row per query (one per
    batch: per query at window 0), ~250 bytes a row, and most callers (``llmsim run`` with those outputs
    off, compare, sweep, plan) only read the summary. Their builders hold the recorder's arrays, not
    copies."""

    summary: dict[str, Any]
    tables: dict[str, Callable[[], Columns]] = field(repr=False)  # builders, by name (TABLES)
    _frames: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    def columns(self, name: str) -> Columns:
        """Table ``name`` (one of :data:`TABLES`) as columns: a new dict of read-only views. Many columns
        are the recorded arrays themselves, some shared by two tables (a batch row kept by its query
        reads the query's arrival time), so a write must not reach them; a DataFrame is a copy."""
        out = {}
        for key, col in self.tables[name]().items():
            view = np.asarray(col).view()  # (a test's stand-in batch log gives lists)
            view.flags.writeable = False
            out[key] = view
        return out

    def frame(self, name: str) -> pd.DataFrame:
        """Table ``name`` as a DataFrame, built on first access and kept."""
        if name not in self._frames:
            self._frames[name] = frame(self.columns(name))
        return self._frames[name]

    @property
    def requests(self) -> pd.DataFrame:
        return self.frame("requests")

    @property
    def batches(self) -> pd.DataFrame:
        return self.frame("batches")

    @property
    def instances(self) -> pd.DataFrame:
        return self.frame("instances")

    @property
    def occupancy(self) -> pd.DataFrame:
        return self.frame("occupancy")

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (a Dask worker sends its result back) with every table built as columns: the builders
        are closures over the recorder."""
        state = dict(self.__dict__)
        state["tables"] = {name: _Built(self.columns(name)) for name in TABLES}
        state["_frames"] = {}  # (built again from the columns on access: each table travels once)
        return state


@dataclass(frozen=True)
class _Built:
    """A table already built, standing in for its builder (what a pickled :class:`RunResult` holds)."""

    cols: Columns

    def __call__(self) -> Columns:
        return self.cols


@dataclass(frozen=True)
class Routing:
    """What the summary reads of the dispatcher: its batch log and counters. Not the dispatcher itself,
    which holds the run's per-query routing inputs (predictions, costs, decisions made up front: ~150 MB
    at a million queries) that nothing needs once the engine has stopped (issue 14)."""

    log: Any  # sim.dispatcher.BatchLog
    budget_violations: int
    overspend_usd: float
    quality_floor_misses: int
    capacity_refusals: int

    @classmethod
    def of(cls, dispatcher: Any) -> Routing:
        return cls(log=dispatcher.log, budget_violations=dispatcher.budget_violations,
                   overspend_usd=dispatcher.overspend_usd, quality_floor_misses=dispatcher.quality_floor_misses,
                   capacity_refusals=dispatcher.capacity_refusals)


@dataclass(frozen=True)
class RunInputs:
    """What :func:`summarise` and the requests table read of the prepared inputs. A run that prepared its
    own inputs keeps only these through summarising (the rest — predictions, per-model costs and output
    tokens, arrival times, ~200 MB at a million queries of four models — is freed when the engine stops;
    issue 14); the requests table is built from these, so it keeps no more than they hold."""

    query_ids: np.ndarray
    task: np.ndarray
    task_names: tuple[str, ...]
    prompt_tokens: np.ndarray  # as served
    quality: np.ndarray  # (N, m) realised, for the requests table's difficulty column
    data_report: dict[str, int] | None
    references: dict[str, Any]
    scores: dict[str, Any]  # the predictor's

    @classmethod
    def of(cls, prepared: Any) -> RunInputs:
        """From a :class:`sim.prepare.Prepared` (a RunInputs is returned as it is)."""
        if isinstance(prepared, RunInputs):
            return prepared
        wl = prepared.workload
        q = wl.queries
        return cls(query_ids=q.query_ids, task=q.task, task_names=q.task_names, prompt_tokens=wl.prompt_tokens,
                   quality=q.quality, data_report=q.data_report, references=prepared.references,
                   scores=prepared.predictions.scores)


@dataclass
class Trace:
    """What the engine leaves behind: recorder, dispatcher log and counters, samples, instance peaks."""

    rec: Any  # sim.metrics.recorder.RequestRecorder
    routing: Routing
    deployments: list[DeploymentStats]
    instances: Columns  # one row per instance (instances.parquet)
    sample_t: np.ndarray
    sample_queued: np.ndarray  # (samples, deployments)
    sample_running: np.ndarray
    end_time: float
    arrivals_end: float
    events: list[dict[str, Any]] | None = None  # summary rows of the scenario's events (None: no events)


def finite(x: Any) -> Any:
    """The summary with every non-finite float (e.g. an AUC undefined on one class) as None (JSON null)."""
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def difficulty(quality: np.ndarray) -> np.ndarray:
    """Per query, 1 − its mean true quality over the models: a policy-free difficulty (report deciles)."""
    if quality.shape[1] == 0:
        return np.zeros(quality.shape[0])
    return 1.0 - quality.mean(axis=1)


def batch_budget_stats(sc: Scenario, trace: Trace) -> dict[str, Any]:
    """The dispatcher's per-batch counters, as :func:`sim.metrics.summary.summarize` takes them."""
    d, log = trace.routing, trace.routing.log
    sizes = log.sizes()
    return {
        "count": len(log),
        "budget_per_query": sc.router.budget_per_query,
        "over_budget": d.budget_violations,
        "overspend_usd": d.overspend_usd,
        "quality_floor": sc.router.min_quality,
        "floor_misses": d.quality_floor_misses,
        "capacity_refusals": d.capacity_refusals,
        "mean_size": float(np.mean(sizes)) if sizes.size else 0.0,
        "sizes": sizes,
        "infeasible": log.infeasible(),
    }


def slo_targets(sc: Scenario) -> dict[str, float | None]:
    """The scenario's SLO targets (``router.slo``) keyed ``"ttft"`` / ``"e2e"``; None when unset.

    Read with ``getattr`` so a scenario object without the section (an older schema, or a stand-in in a
    test) simply has no SLO.
    """
    slo = getattr(sc.router, "slo", None)
    return {m: getattr(slo, f"{m}_s", None) for m in ("ttft", "e2e")}


def summarise(sc: Scenario, prepared: Any, trace: Trace) -> RunResult:
    """The run's summary and tables from the engine's trace and the prepared inputs (a
    :class:`sim.prepare.Prepared`, or the :class:`RunInputs` of one)."""
    from sim.metrics.summary import summarize

    inputs = RunInputs.of(prepared)
    model_names = tuple(m.name for m in sc.models)
    summary = summarize(
        rec=trace.rec,
        model_names=model_names,
        deployments=trace.deployments,
        sample_t=trace.sample_t,
        sample_queued=trace.sample_queued,
        sample_running=trace.sample_running,
        end_time=trace.end_time,
        arrivals_end=trace.arrivals_end,
        warmup_s=sc.warmup_s,
        batches=batch_budget_stats(sc, trace),
        references=inputs.references,
        data=inputs.data_report,
        prompt_tokens=inputs.prompt_tokens,
        slo=slo_targets(sc),
    )
    summary = finite({
        "scenario": sc.name,
        "seed": sc.seed,
        "policy": sc.router.policy,
        "predictor": sc.router.predictor.name,
        **summary,
        "predictor_scores": inputs.scores,
        **({} if trace.events is None else {"events": trace.events}),
    })
    rec = trace.rec

    def requests() -> Columns:
        cols = rec.columns(
            query_ids=inputs.query_ids,
            task=inputs.task,
            task_names=inputs.task_names,
            prompt_tokens=inputs.prompt_tokens,
            model_names=model_names,
        )
        cols["difficulty"] = difficulty(inputs.quality)
        return cols

    log = trace.routing.log
    instances = trace.instances
    occupancy = occupancy_columns(trace, model_names)
    return RunResult(summary=summary, tables={
        "requests": requests,
        "batches": lambda: batches_columns(log),
        "instances": lambda: instances,
        "occupancy": lambda: occupancy,
    })


def batches_columns(log: Any) -> Columns:
    """One row per routed batch (batches.parquet), from the dispatcher's :class:`~sim.dispatcher.BatchLog`."""
    cols = log.columns()
    return {
        "batch": np.arange(len(log)),
        "time_s": cols["time"],
        "size": cols["size"],
        "status": np.array(cols["status"], dtype=object),
        "solve_time_s": cols["solve_time_s"],
        "routing_time_s": cols["routing_time_s"],
        "predicted_cost_usd": cols["predicted_cost"],
        "budget_usd": cols["budget"],
        "predicted_mean_quality": cols["predicted_mean_quality"],
        "rejected": cols["rejected"],
        "violations": np.array(cols["violations"], dtype=object),
    }


def occupancy_columns(trace: Trace, model_names: tuple[str, ...]) -> Columns:
    """Long table of the occupancy samples: per sample time and deployment, queued and running sequences
    and the slots it has (instances × max_seqs), so reports can plot utilisation and queues over time."""
    deps = trace.deployments
    k, t = len(deps), trace.sample_t
    return {
        "time_s": np.repeat(t, k),
        "deployment": np.tile(np.array([d.name for d in deps], dtype=object), t.size),
        "model": np.tile(np.array([model_names[d.model_index] for d in deps], dtype=object), t.size),
        "queued": trace.sample_queued.reshape(-1).astype(np.int64),
        "running": trace.sample_running.reshape(-1).astype(np.int64),
        "slots": np.tile(np.array([d.instances * d.max_seqs for d in deps], dtype=np.int64), t.size),
    }
