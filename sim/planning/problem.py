"""From a scenario to an :class:`~policies.allocation.AllocationProblem`, and from an allocation back to
the scenario that runs it.

* **Batches (sample-average approximation).** ``batches`` batches of ``batch_size`` queries are drawn
  (seeded, stream ``plan.batches``) from the scenario's workload; their predicted quality and cost are what
  the scenario's router would see (:func:`sim.runner.prepare`).
* **Rates.** Each candidate's sustainable rate at the SLO (:mod:`sim.planning.rate`), on the token mix of
  its model (the workload's prompts with that model's output lengths).
* **Per-batch capacity** ``slots = rate × batch_size / λ``: the queries one instance can take in the time a
  batch stands for, so each sampled batch must fit as well as the average (a robust reading of the
  throughput row).
* **λ** is the workload's mean arrival rate (arrivals / their span).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from policies import AllocationProblem
from sim import rng as rngs
from sim.config.schema import Scenario
from sim.planning.candidates import Candidate
from sim.runner import Prepared

MAX_INSTANCES = 100_000
"""A deployment's most instances (the scenario schema's limit)."""
MIX_SAMPLE = 1200
"""Token pairs per model for its sustainable-rate probes (also the probe's request count)."""


@dataclass(frozen=True)
class PlanInputs:
    """What the optimiser is given, kept for the report."""

    arrival_rate: float
    batch_size: int
    batches: int
    budget_per_query: float | None
    allow_reject: bool


def arrival_rate(prepared: Prepared) -> float:
    """Mean arrivals per second over the workload's arrival span."""
    t = prepared.workload.times
    span = float(t[-1] - t[0]) if len(t) > 1 else 0.0
    return len(t) / span if span > 0 else float(len(t))


def need_tokens(sc: Scenario, prepared: Prepared, quantile: float = 0.99) -> dict[str, int]:
    """Per model, the context (prompt + output) of its ``quantile`` request: a candidate must hold it."""
    wl = prepared.workload
    return {m.name: int(np.quantile(wl.prompt_tokens + wl.output_tokens[:, j], quantile))
            for j, m in enumerate(sc.models)}


def sample_batches(sc: Scenario, prepared: Prepared, batches: int, batch_size: int
                   ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Predicted quality and cost of ``batches`` random batches (without replacement inside a batch)."""
    rng = rngs.stream(sc.seed, "plan.batches")
    n = len(prepared.workload.times)
    size = min(batch_size, n)
    q, c = [], []
    for _ in range(batches):
        ids = rng.choice(n, size=size, replace=False)
        q.append(np.clip(prepared.predictions.quality[ids], 0.0, 1.0))
        c.append(np.maximum(prepared.predictions.cost[ids], 0.0))
    return q, c


def batch_slots(rate: np.ndarray, batch_size: int, arrival_rate: float) -> np.ndarray:
    """Queries one instance of each candidate takes in a sampled batch: its sustainable rate times the
    time a batch of ``batch_size`` stands for at ``arrival_rate`` (see the module docstring)."""
    return np.asarray(rate, dtype=np.float64) * batch_size / max(arrival_rate, 1e-12)


def build_problem(sc: Scenario, prepared: Prepared, cands: list[Candidate], rates: list[float],
                  inventory: dict[str, int], *, max_cost_per_hour: float | None, min_accuracy: float | None,
                  batches: int, batch_size: int) -> tuple[AllocationProblem, PlanInputs]:
    """The allocation problem of a plan (see the module docstring)."""
    lam = arrival_rate(prepared)
    quality, cost = sample_batches(sc, prepared, batches, batch_size)
    n = quality[0].shape[0]
    gpu_names = tuple(inventory)
    rate = np.asarray(rates, dtype=np.float64)
    r = sc.router
    problem = AllocationProblem(
        model=np.array([c.model_index for c in cands], dtype=np.int64),
        gpu_type=np.array([gpu_names.index(c.gpu.name) for c in cands], dtype=np.int64),
        gpus=np.array([c.tp for c in cands], dtype=np.int64),
        price_per_hour=np.array([c.price_per_hour for c in cands], dtype=np.float64),
        rate=rate,
        slots=batch_slots(rate, n, lam),
        inventory=np.array([inventory[g] for g in gpu_names], dtype=np.int64),
        quality=quality,
        cost=cost,
        arrival_rate=lam,
        budget_per_query=r.budget_per_query,
        max_cost_per_hour=max_cost_per_hour,
        allow_reject=r.allow_reject,
        model_names=tuple(m.name for m in sc.models),
        gpu_names=gpu_names,
        min_quality=min_accuracy,
        max_instances=np.full(len(cands), MAX_INSTANCES, dtype=np.int64),
    )
    return problem, PlanInputs(lam, n, batches, r.budget_per_query, r.allow_reject)


def deployments_for(sc: Scenario, cands: list[Candidate], counts: np.ndarray) -> list[dict[str, Any]]:
    """The ``deployments`` list that runs ``counts`` instances of each candidate. A model the allocation
    leaves out keeps one entry with ``instances: 0`` (listed but not served: the router sees no capacity)."""
    out: list[dict[str, Any]] = []
    served: set[int] = set()
    for cand, k in zip(cands, counts.tolist(), strict=True):
        if k > 0:
            out.append(cand.deployment.model_copy(update={"instances": int(k)}).model_dump(
                mode="json", exclude_defaults=True) | {"model": cand.model.name, "gpu": cand.gpu.name})
            served.add(cand.model_index)
    for j, m in enumerate(sc.models):
        if j not in served:
            first = next(d for d in sc.deployments if d.model == m.name)
            out.append(first.model_dump(mode="json", exclude_defaults=True)
                       | {"model": m.name, "gpu": first.gpu, "instances": 0})
    return out


def sustainable_load(problem: AllocationProblem, counts: np.ndarray, share: np.ndarray) -> float:
    """Largest arrival rate the allocation sustains at the SLO with this routing mix: every model's
    capacity (Σ instances × sustainable rate) must cover its share of the traffic."""
    cap = np.bincount(problem.model, weights=problem.rate * counts, minlength=problem.m)
    used = share > 1e-9
    if not np.any(used):
        return 0.0
    return float(np.min(cap[used] / share[used]))
