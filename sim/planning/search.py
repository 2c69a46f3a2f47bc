"""Simulate a plan's allocations and, when the optimised one misses the SLO, search the nearest plan
that meets it.

The search moves one instance at a time toward the bottleneck the simulation shows: the model whose
per-model p95 (TTFT or end-to-end, whichever SLO it misses most, relative to the target) is worst gets one
more instance of its best candidate (most sustainable queries/s per $/hour) if the inventory and the
$/hour cap allow; otherwise instances of the same GPU type are taken, one at a time, from the models
with the most headroom until it fits. Each step
is simulated on the same seeds (``optimised+1``, ``optimised+2``, ...). If no step within
``search_steps`` meets the SLO, the verdict reports the largest load the inventory sustains at the SLO
(from the sustainable rates, :func:`sim.planning.plan.max_load`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.experiments.execute import Executor
from sim.experiments.folder import (
    check_folder,
    check_writable,
    refuse_other,
    run_experiment,
    write_atomic,
    write_manifest,
)
from sim.planning.plan import OPTIMISED, Plan, add_runs, evaluate, max_load, slo_misses
from sim.planning.rate import read_cache, write_cache

PLAN_CSV = "plan.csv"
RATES_FILE = "rates.json"


def check_plan_folder(folder: Path) -> None:
    """Refuse a folder holding another experiment (a plan must not take over a compare's runs), or one we
    may not write: now, before the rate probes that take most of a plan's time."""
    refuse_other(folder, "plan")
    check_writable(Path(os.path.abspath(folder)), folder)


def rate_cache_of(folder: Path) -> dict[str, Any]:
    """The sustainable rates a previous ``llmsim plan`` into this folder found (resume), else empty."""
    return read_cache(folder / RATES_FILE)


def means(results: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per plan label, the mean over seeds of every numeric result column."""
    num = results.select_dtypes(include="number").drop(columns=["seed"], errors="ignore")
    grouped = num.groupby(results["policy"], sort=False).mean()
    return {str(k): {c: float(v) for c, v in row.items()} for k, row in grouped.iterrows()}


def model_p95(folder: Path, plan: Plan, label: str) -> dict[str, dict[str, float]]:
    """Per model, p95 TTFT and end-to-end over the completed requests of every seed's run of ``label``
    (from the run folders' requests.parquet; empty when the scenario does not write it)."""
    frames = []
    for spec in plan.exp.runs:
        path = folder / spec.run_dir / "requests.parquet"
        if spec.policy == label and path.is_file():
            frames.append(pd.read_parquet(path, columns=["model", "arrival_s", "first_token_s", "finish_s", "status"]))
    if not frames:
        return {}
    req = pd.concat(frames)
    req = req[req["status"] == "completed"]
    req = req.assign(ttft=req["first_token_s"] - req["arrival_s"], e2e=req["finish_s"] - req["arrival_s"])
    q = req.groupby("model")[["ttft", "e2e"]].quantile(0.95)
    return {str(m): {"ttft": float(r["ttft"]), "e2e": float(r["e2e"])} for m, r in q.iterrows()}


def _pressure(plan: Plan, row: dict[str, float], per_model: dict[str, dict[str, float]]) -> np.ndarray:
    """Per model: worst p95 / target over the SLO targets (0 for a model with no traffic). Without
    request tables, the mean queue length per instance stands in (queues are what break an SLO)."""
    out = np.zeros(len(plan.model_names))
    for j, name in enumerate(plan.model_names):
        if per_model:
            for metric, target in plan.slo.targets().items():
                v = per_model.get(name, {}).get(metric)
                if v is not None and math.isfinite(v):
                    out[j] = max(out[j], v / target)
        else:
            out[j] = row.get(f"models.{name}.mean_queue", 0.0) or 0.0
    return out


def next_counts(plan: Plan, counts: np.ndarray, pressure: np.ndarray) -> np.ndarray | None:
    """One step toward the bottleneck (see the module docstring), or None when no move fits. A model
    that serves traffic never gives up its last instance (that would trade one miss for a worse one)."""
    p = plan.problem
    j = int(np.argmax(pressure))
    mine = [d for d in range(p.d) if p.model[d] == j]
    mine.sort(key=lambda d: -float(p.rate[d]) / max(float(p.price_per_hour[d]), 1e-9))
    for d in mine:
        trial = counts.copy()
        trial[d] += 1
        if p.fits(trial):
            return trial
    for d in mine:  # move: free GPUs of d's type from the models with most headroom, one instance at a time
        trial = counts.copy()
        trial[d] += 1
        donors = [int(k) for k in np.argsort(pressure, kind="stable") if k != j]

        def spare(g: int, t: np.ndarray) -> bool:  # never a serving model's last instance
            left = int(t[p.model == p.model[g]].sum()) - 1
            return t[g] > 0 and (left >= 1 or pressure[int(p.model[g])] == 0)

        while not p.fits(trial):
            give = next((g for k in donors for g in range(p.d)
                         if p.model[g] == k and p.gpu_type[g] == p.gpu_type[d] and spare(g, trial)), None)
            if give is None:
                break
            trial[give] -= 1
        if p.fits(trial):
            return trial
    return None


def _run(folder: Path, plan: Plan, executor: Executor, command: str,
         on_start: Callable[[int], None] | None, on_done: Callable[[int], None] | None) -> pd.DataFrame:
    return run_experiment(folder, plan.exp, executor, command=command, extra=plan.manifest_extra(),
                          on_start=on_start, on_done=on_done)


def search(folder: Path, plan: Plan, results: pd.DataFrame, executor: Executor, command: str,
           on_start: Callable[[int], None] | None, on_done: Callable[[int], None] | None) -> pd.DataFrame:
    """Steps toward the SLO from the optimised plan; records each in ``plan.search``."""
    label = plan.allocations[0].runs_label
    counts = plan.allocations[0].counts.copy()
    pressure = _pressure(plan, means(results)[label], _p95(folder, plan, label))
    for step in range(1, plan.options.search_steps + 1):
        nxt = next_counts(plan, counts, pressure)
        if nxt is None:
            plan.search.append({"step": step, "label": None, "note": "no instance can be added or moved"})
            break
        counts = nxt
        label = f"{OPTIMISED}+{step}"
        alloc = evaluate(plan.problem, counts, label, note=f"SLO search step {step}")
        plan.allocations.append(alloc)
        add_runs(plan, alloc)
        results = _run(folder, plan, executor, command, on_start, on_done)
        label = alloc.runs_label
        missed = slo_misses(plan, means(results)[label])
        plan.search.append({"step": step, "label": alloc.label, "met": not missed, "missed": dict(missed),
                            "bottleneck": plan.model_names[int(np.argmax(pressure))]})
        if not missed:
            break
        after = _pressure(plan, means(results)[label], _p95(folder, plan, label))
        if after.max() > pressure.max():  # the move made the worst model worse: stop here
            plan.search.append({"step": step + 1, "label": None, "note": f"{alloc.label} is further from the "
                                "SLO than the plan before it; the search stops"})
            break
        pressure = after
    return results


def _p95(folder: Path, plan: Plan, runs_label: str) -> dict[str, dict[str, float]]:
    """:func:`model_p95` of a plan's runs, read once (the search and the final manifest both need it)."""
    if runs_label not in plan.p95_by_runs:
        plan.p95_by_runs[runs_label] = model_p95(folder, plan, runs_label)
    return plan.p95_by_runs[runs_label]


def run_plan(folder: Path, plan: Plan, executor: Executor, *, command: str,
             on_start: Callable[[int], None] | None = None, on_done: Callable[[int], None] | None = None
             ) -> pd.DataFrame:
    """Simulate every allocation (resuming), search when the optimised plan misses the SLO, write the
    manifest's final ``plan`` entry, ``rates.json``, ``plan.csv`` and the report; return the results."""
    from reports.build import write_report
    from reports.plan import plan_table

    # the folder, its manifest and the rates first (the rates are all known by now): a plan interrupted
    # while simulating resumes without probing a single rate again
    check_folder(folder, plan.exp.kind, "plan")
    write_manifest(folder, plan.exp, command, plan.manifest_extra())
    write_cache(folder / RATES_FILE, plan.rate_cache)
    results = _run(folder, plan, executor, command, on_start, on_done)
    missed = slo_misses(plan, means(results)[plan.allocations[0].runs_label])
    if missed and plan.options.search_steps > 0:
        results = search(folder, plan, results, executor, command, on_start, on_done)
    plan.verdict = verdict(plan, results)
    plan.per_model_p95 = {a.label: _p95(folder, plan, a.runs_label) for a in plan.allocations}
    write_manifest(folder, plan.exp, command, plan.manifest_extra())
    # through a temporary sibling like every other file of the folder: never half a file, and a read-only
    # plan.csv an earlier plan left is replaced like its results.csv, not the end of a finished plan
    table = plan_table(plan.manifest_extra()["plan"], results)
    write_atomic(folder / PLAN_CSV, lambda p: table.to_csv(p, index=False))
    write_report(folder)
    return results


def verdict(plan: Plan, results: pd.DataFrame) -> dict[str, Any]:
    """Which simulated plans meet the SLO, the recommended one, and (when none of the optimiser's does)
    the largest load the inventory sustains."""
    rows = means(results)
    met = {a.label: not slo_misses(plan, rows[a.runs_label]) for a in plan.allocations if a.runs_label in rows}
    ours = [a.label for a in plan.allocations if a.label.startswith(OPTIMISED) and met.get(a.label)]
    out: dict[str, Any] = {"slo_met": met, "recommended": ours[0] if ours else None}
    if not ours and plan.slo.targets():
        load = max_load(plan.problem)
        lam = plan.inputs.arrival_rate
        out["max_load_qps"] = load
        out["arrival_rate_qps"] = lam
        out["reason"] = (
            f"the inventory sustains at most {load:.3g} queries/s at this SLO (from the sustainable rates); "
            f"the workload sends {lam:.3g}/s: add GPUs, relax the SLO or shed load" if load < lam else
            f"by the sustainable rates the inventory could carry {load:.3g} queries/s, more than the {lam:.3g}/s "
            "sent, so the miss comes from where the router sends queries (queue-blind routing piles them on "
            "the slowest model) or from batching: try an SLO-aware router (router.slo) or a looser SLO")
    return out
