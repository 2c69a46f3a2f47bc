"""Accuracy at matched spend: move each policy's spend knob until its mean spend over the seeds is within
1 % of a reference policy's, then report its accuracy there.

Comparing policies at different spend misleads (a published reproduction found most of a reported
batch-vs-per-query gain vanished at equal spend), so ``compare --match-spend REF`` adds these rows. The
knob comes from the policy registry (:class:`policies.SpendKnob`); batch policies are matched in their
budget form (max quality s.t. a per-batch budget), so a scenario's quality floor is dropped for them.
Each policy's search runs in one worker, preparing each seed's workload once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from policies import SpendKnob, policy_class
from reports.stats import bisect_knob
from sim.config.schema import Scenario
from sim.experiments.execute import Executor
from sim.experiments.plan import RunSpec
from sim.runner import Prepared, prepare, simulate

RTOL = 0.01


@dataclass(frozen=True)
class MatchTask:
    policy: str
    knob: SpendKnob
    runs: list[RunSpec]  # one per seed
    targets: list[float]  # the reference's spend per seed
    rtol: float = RTOL


def with_knob(sc: Scenario, knob: SpendKnob, value: float) -> Scenario:
    """``sc`` with the knob's field set to ``value`` (validated again by the schema)."""
    data = sc.model_dump(mode="python")
    node = data
    *parents, last = knob.path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = float(value)
    if knob.path == "router.budget_per_query":
        data["router"]["min_quality"] = None
    return Scenario.model_validate(data)


def _bracket(knob: SpendKnob, prepared: list[Prepared]) -> tuple[float, float]:
    hi = knob.hi if knob.hi is not None else max(float(p.predictions.cost.max()) for p in prepared) * 1.01
    if knob.log:
        return math.log10(knob.lo), math.log10(hi)
    return knob.lo, hi


def match_policy(task: MatchTask) -> list[dict[str, Any]]:
    """Worker entry point: bisect one policy's knob on the mean spend over seeds; one row per seed."""
    prepared = [prepare(r.scenario) for r in task.runs]
    knob, cache = task.knob, {}

    def runs_at(u: float) -> list[dict[str, Any]]:
        if u not in cache:
            value = 10.0**u if knob.log else u
            cache[u] = [simulate(with_knob(r.scenario, knob, value), prepared=p).summary
                        for r, p in zip(task.runs, prepared, strict=True)]
        return cache[u]

    def spend(u: float) -> float:
        return float(np.mean([s["cost"]["total_usd"] for s in runs_at(u)]))

    lo, hi = _bracket(knob, prepared)
    target = float(np.mean(task.targets))
    found = bisect_knob(spend, lo, hi, target, rtol=task.rtol, increasing=knob.increasing)
    value = 10.0**found.value if knob.log else found.value
    note = (f"mean spend within {task.rtol:.0%} of the reference's" if found.reached else
            f"cannot reach the reference's mean spend ${target:.4g}: closest ${found.achieved:.4g} "
            f"(spend over the knob's range: ${min(spend(lo), spend(hi)):.4g}–${max(spend(lo), spend(hi)):.4g})")
    return [
        {"policy": task.policy, "seed": r.seed, "knob": knob.path, "knob_value": value,
         "spend_usd": s["cost"]["total_usd"], "target_spend_usd": t, "accuracy": s["accuracy"],
         "reached": found.reached, "note": note}
        for r, s, t in zip(task.runs, runs_at(found.value), task.targets, strict=True)
    ]


def matched_spend(runs: list[RunSpec], results: pd.DataFrame, reference: str,
                  executor: Executor) -> list[dict[str, Any]]:
    """Rows (policy, seed, knob, knob_value, spend_usd, target_spend_usd, accuracy, reached, note) for
    every policy of a compare, the reference's own rows included; ``results`` is the experiment's results
    table (its ``cost.total_usd`` and ``accuracy`` per run id)."""
    by_id = results.set_index("run_id")
    spend, accuracy = by_id["cost.total_usd"].astype(float), by_id["accuracy"].astype(float)
    by_policy: dict[str, list[RunSpec]] = {}
    for r in runs:
        by_policy.setdefault(r.policy, []).append(r)
    target = {r.seed: float(spend[r.run_id]) for r in by_policy[reference]}
    rows: list[dict[str, Any]] = []
    tasks: list[MatchTask] = []
    for label, specs in by_policy.items():
        knob = policy_class(specs[0].scenario.router.policy).spend_knob
        if label == reference or knob is None:
            note = "reference" if label == reference else "no spend knob: shown at its own spend"
            rows += [{"policy": label, "seed": r.seed, "knob": knob.path if knob else None,
                      "knob_value": None, "spend_usd": float(spend[r.run_id]),
                      "target_spend_usd": target[r.seed], "accuracy": float(accuracy[r.run_id]),
                      "reached": label == reference, "note": note} for r in specs]
        else:
            tasks.append(MatchTask(label, knob, specs, [target[r.seed] for r in specs]))
    for part in executor.map_unordered(match_policy, tasks):
        rows += part
    order = list(by_policy)
    return sorted(rows, key=lambda row: (order.index(row["policy"]), row["seed"]))
