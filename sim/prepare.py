"""A scenario's inputs: :func:`prepare` builds the workload (arrivals + queries) and the router's
predictions, running every load-time data check; :func:`prepare_key` says which scenarios share them.

Kept apart from :mod:`sim.runner` (which re-exports everything here) so that ``llmsim validate``, which
runs exactly :func:`prepare`, loads neither SimPy nor the engine, the dispatcher or the metrics, and
pandas only when a trace or dataset is actually read (start-up, issue 14). Nothing here may import them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim.config.checks import MAX_HORIZON_S
from sim.config.schema import Scenario
from sim.errors import InputError, ScenarioError, read_error
from sim.predict import Predictions, build_predictions
from sim.workload.build import Workload, build_workload

__all__ = ["MAX_SAMPLES", "Prepared", "prepare", "prepare_key", "references"]

MAX_SAMPLES = 1_000_000


@dataclass(frozen=True)
class Prepared:
    """A scenario's workload and predictions: everything that does not depend on cluster or policy."""

    key: str  # prepare_key of the scenario it was built from
    workload: Workload
    predictions: Predictions
    references: dict[str, Any]  # oracle and best-single-model rows on these queries


def prepare_key(sc: Scenario) -> str:
    """A hash of exactly the scenario fields :func:`prepare` reads: two scenarios with the same key get
    identical workloads and predictions (the seed's streams are per component, see :mod:`sim.rng`)."""
    data = sc.model_dump(mode="json")
    read = {k: data[k] for k in ("seed", "duration_s", "num_queries", "workload", "models", "prices_file")}
    read["predictor"] = data["router"]["predictor"]
    rates = [e for e in data.get("events", []) if e["kind"] == "rate_change"]
    if rates:  # only events that change the workload; absent otherwise, so keys without events stay
        read["rate_changes"] = rates
    text = json.dumps(read, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def prepare(sc: Scenario, base_dir: Path | None = None) -> Prepared:
    """Build the workload and the router's predictions, running every load-time data check (trace and
    dataset files, empty windows, zero arrivals); ``llmsim validate`` calls exactly this."""
    try:
        return _prepare(sc, base_dir)
    except OSError as exc:  # a data file, or a folder on its path, the system will not let us read: the
        raise read_error(exc) from None  # loaders check content; one place names every refused read


def _prepare(sc: Scenario, base_dir: Path | None) -> Prepared:
    try:
        wl = build_workload(sc, base_dir)
    except ValueError as exc:  # a generator refusing its parameters (e.g. an absurd duration)
        if isinstance(exc, InputError):
            raise
        raise ScenarioError(str(exc), where="workload") from None
    if len(wl.times) == 0:
        raise ScenarioError(
            "the workload has no arrivals (is duration_s too short for the arrival rate or trace window?)",
            where="workload.arrivals",
        )
    _check_span(sc, wl)
    _check_samples(sc, wl)
    pred = build_predictions(sc, wl)
    refs = references(wl.queries.quality, wl.cost, tuple(m.name for m in sc.models))
    return Prepared(key=prepare_key(sc), workload=wl, predictions=pred, references=refs)


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


def horizon(sc: Scenario, wl: Workload) -> float:
    """The simulated span: the last arrival or ``duration_s``, whichever is later."""
    return max(float(wl.times[-1]), sc.duration_s or 0.0)


def sample_interval(sc: Scenario, wl: Workload) -> float:
    """The occupancy sampler's period: the scenario's, else 2000 samples over the horizon."""
    return sc.outputs.sample_interval_s or max(horizon(sc, wl), 1e-3) / 2000.0


def _check_span(sc: Scenario, wl: Workload) -> None:
    """A replayed trace's span is known only once it is read (the load-time check covers generated
    arrivals): refuse spans where float64 timestamps lose the engine's resolution."""
    span = float(wl.times[-1])
    if span > MAX_HORIZON_S:
        raise ScenarioError(
            f"the arrivals span {span:.3g} s of simulated time; at most {MAX_HORIZON_S:g} s (a trace's "
            "time_scale below 1 stretches it; raise it or cut the trace with duration_s)",
            where="workload.arrivals",
        )


def _check_samples(sc: Scenario, wl: Workload) -> None:
    span, interval = horizon(sc, wl), sample_interval(sc, wl)
    if span / interval > MAX_SAMPLES:
        raise ScenarioError(
            f"{span / interval:,.0f} occupancy samples over {span:g} s; at most {MAX_SAMPLES:,} "
            "(raise sample_interval_s)",
            where="outputs.sample_interval_s",
        )
