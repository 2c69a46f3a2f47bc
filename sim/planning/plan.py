"""``llmsim plan``: choose instance counts for a GPU inventory, then check every plan by simulation.

1. Candidates (:mod:`sim.planning.candidates`) and their sustainable rates at the SLO
   (:mod:`sim.planning.rate`), the allocation problem (:mod:`sim.planning.problem`).
2. Three allocations: the optimiser's (:func:`policies.allocate_milp`, maximising expected routed
   quality, or with ``--min-accuracy`` minimising $/hour subject to it) and the two baselines (GPUs split
   uniformly across models; in proportion to expected traffic). When the optimiser spends more $/hour
   than the cheaper baseline, an ``optimised@matched`` allocation is solved at that spend as well, so the
   comparison is also made at equal spend.
3. Every allocation is simulated on the scenario's workload, several seeds, through the experiment
   machinery of ``compare`` (:func:`sim.experiments.folder.run_experiment`: run folders, resume, CIs):
   the router is the scenario's own, and all plans of a seed share its workload draws.
4. If the optimised plan misses the SLO in simulation, :mod:`sim.planning.search` looks for the nearest
   plan that meets it.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from policies import (
    AllocationProblem,
    AllocationResult,
    InfeasibleAllocationError,
    allocate_milp,
    allocate_proportional,
    allocate_uniform,
    balanced_share,
    evaluate_allocation,
)
from sim.config.load import parse_scenario
from sim.config.schema import NodeFailure, Scenario
from sim.errors import InputError
from sim.experiments.plan import MAX_RUNS, Experiment, RunSpec, Source, run_id
from sim.planning.candidates import Candidate, candidates, why_nothing_fits
from sim.planning.problem import (
    MIX_SAMPLE,
    PlanInputs,
    batch_slots,
    build_problem,
    deployments_for,
    need_tokens,
    sustainable_load,
)
from sim.planning.rate import RateFinder, RateResult, Slo, TokenMix
from sim.runner import Prepared, prepare

KIND = "compare"  # folder contract shared with compare (reports.tables.EXPERIMENT_KINDS); "plan" in the manifest
OPTIMISED, MATCHED, UNIFORM, PROPORTIONAL = "optimised", "optimised@matched", "uniform", "proportional"
LOAD_STEPS = 30
HEADROOM_TOLERANCE = 1e-3
"""Expected accuracy (0.1 point) the optimiser may give up for load headroom (see allocate_milp)."""
MAX_HEADROOM = 8.0
"""Spare capacity stops at 8 × each model's traffic at the SLO: more would fill a large inventory for a
small load."""


@dataclass
class PlanOptions:
    """What ``llmsim plan`` was asked (``None`` = take it from the scenario)."""

    inventory: dict[str, int] | None = None
    max_cost_per_hour: float | None = None
    slo: Slo | None = None
    min_accuracy: float | None = None
    seeds: int = 3
    batches: int = 16
    batch_size: int = 64
    search_steps: int = 4


@dataclass
class Allocation:
    """One plan: instance counts per candidate and what the routing model expects of it."""

    label: str
    method: str
    counts: np.ndarray
    expected_accuracy: float
    cost_per_hour: float
    routed_share: np.ndarray
    sustainable_load: float
    note: str = ""
    same_as: str | None = None  # an earlier allocation with the same counts: its runs are these runs

    @property
    def runs_label(self) -> str:
        """The label its simulated runs carry in the results table."""
        return self.same_as or self.label

    def to_json(self, cands: list[Candidate], model_names: list[str]) -> dict[str, Any]:
        per_model = {m: {"instances": 0, "gpus": 0} for m in model_names}
        deployments = []
        for c, k in zip(cands, self.counts.tolist(), strict=True):
            if k:
                per_model[c.model.name]["instances"] += k
                per_model[c.model.name]["gpus"] += k * c.tp
                deployments.append({"candidate": c.label, "model": c.model.name, "gpu": c.gpu.name,
                                    "tp": c.tp, "instances": k})
        return {"label": self.label, "same_as": self.same_as, "runs_label": self.runs_label,
                "method": self.method, "expected_accuracy": self.expected_accuracy,
                "cost_per_hour": self.cost_per_hour, "sustainable_load_qps": self.sustainable_load,
                "routed_share": dict(zip(model_names, self.routed_share.tolist(), strict=True)),
                "models": per_model, "deployments": deployments, "note": self.note}


@dataclass
class Plan:
    """A planned ``llmsim plan``: inputs, rates, allocations and the experiment that simulates them."""

    source: Source
    base: Scenario
    options: PlanOptions
    slo: Slo
    inventory: dict[str, int]
    cands: list[Candidate]
    rates: list[RateResult]
    problem: AllocationProblem
    inputs: PlanInputs
    allocations: list[Allocation]
    exp: Experiment
    search: list[dict[str, Any]] = field(default_factory=list)
    verdict: dict[str, Any] = field(default_factory=dict)
    rate_cache: dict[str, Any] = field(default_factory=dict)
    per_model_p95: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    p95_by_runs: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict, repr=False)  # read cache

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.base.models]

    def manifest_extra(self) -> dict[str, Any]:
        """The manifest's ``plan`` entry: everything the report shows besides the simulated results."""
        cand_rows = [{"candidate": c.label, "model": c.model.name, "gpu": c.gpu.name, "tp": c.tp,
                      "price_per_hour": c.price_per_hour, "kv_tokens": c.kv_tokens,
                      "sustainable_rate_qps": r.rate, "saturation_estimate_qps": r.saturation_estimate,
                      "idle_p95_s": r.idle_p95, "p95_at_rate_s": r.p95_at_rate, "targets_s": r.targets}
                     for c, r in zip(self.cands, self.rates, strict=True)]
        return {"baseline": UNIFORM, "plan": {
            "inventory": self.inventory, "slo": dataclasses.asdict(self.slo), "slo_label": self.slo.label(),
            "max_cost_per_hour": self.options.max_cost_per_hour, "min_accuracy": self.options.min_accuracy,
            "arrival_rate_qps": self.inputs.arrival_rate, "batches": self.inputs.batches,
            "batch_size": self.inputs.batch_size, "budget_per_query": self.inputs.budget_per_query,
            "allow_reject": self.inputs.allow_reject, "candidates": cand_rows,
            "allocations": [a.to_json(self.cands, self.model_names) for a in self.allocations],
            "search": self.search, "verdict": self.verdict, "per_model_p95_s": self.per_model_p95}}


# ---------------------------------------------------------------------- inputs
def resolve_inventory(base: Scenario, asked: dict[str, int] | None) -> dict[str, int]:
    """GPU type → GPUs available: ``--gpus`` (each type must be one of the scenario's ``gpus``), else the
    scenario's ``gpus[].count``. Types with 0 GPUs are left out."""
    known = {g.name: g.count for g in base.gpus}
    if asked is None:
        return dict(known)
    for name in asked:
        if name not in known:
            raise InputError(f"unknown GPU type {name!r}; the scenario's gpus are {', '.join(known)} (add it "
                             "to gpus: with memory_gib and cost_per_hour)", where="--gpus")
    out = {k: v for k, v in asked.items() if v > 0}
    if not out:
        raise InputError("the inventory has no GPU at all", where="--gpus")
    return out


def resolve_slo(base: Scenario, asked: Slo | None) -> Slo:
    """``--slo``, else the scenario's ``router.slo`` read as p95 targets, else none (the knee rule)."""
    if asked is not None:
        return asked
    s = base.router.slo
    return Slo() if s is None else Slo(ttft_p95=s.ttft_s, e2e_p95=s.e2e_s)


def instance_slo(base: Scenario, slo: Slo) -> Slo:
    """The targets an instance must meet: the SLO minus the router's batching window, which a query may
    wait in before it reaches any instance (the sustainable-rate probes have no window)."""
    window = base.router.window_s
    if window <= 0:
        return slo
    for metric, target in slo.targets().items():
        if target <= window:
            raise InputError(f"the {metric} p95 target {target:g}s is not above the router's batching window "
                             f"(router.window_s = {window:g}s), which a query may spend before reaching an "
                             "instance: no allocation can meet it", where="--slo")
    return Slo(ttft_p95=None if slo.ttft_p95 is None else slo.ttft_p95 - window,
               e2e_p95=None if slo.e2e_p95 is None else slo.e2e_p95 - window)


def _rates(base: Scenario, prepared: Prepared, cands: list[Candidate], slo: Slo, cache: dict[str, Any],
           on_probe: Callable[[], None] | None) -> list[RateResult]:
    wl = prepared.workload
    mixes: dict[int, TokenMix] = {}
    with tempfile.TemporaryDirectory(prefix="llmsim-plan-") as tmp:
        finder = RateFinder(Path(tmp), seed=base.seed, n_requests=MIX_SAMPLE, cache=cache, on_probe=on_probe)
        out = []
        for c in cands:
            j = c.model_index
            if j not in mixes:
                mixes[j] = TokenMix.sample(wl.prompt_tokens, wl.output_tokens[:, j], MIX_SAMPLE, base.seed,
                                           c.model.name)
            out.append(finder.rate(c.model, c.gpu, c.deployment, mixes[j], slo))
    return out


def _no_rate_message(cands: list[Candidate], rates: list[RateResult], slo: Slo) -> str:
    best = min(zip(cands, rates, strict=True), key=lambda cr: max(cr[1].idle_p95[m] / t
                                                                   for m, t in cr[1].targets.items()))
    idle = ", ".join(f"{m} p95 {best[1].idle_p95[m]:.3g}s" for m in best[1].targets)
    return (f"no allocation can meet the SLO {slo.label()}: even a nearly idle instance misses it on every "
            f"candidate (closest: {best[0].label} with {idle}); relax --slo or add faster GPUs")


# ---------------------------------------------------------------------- allocations
def _as_allocation(label: str, res: AllocationResult, problem: AllocationProblem, note: str = "",
                   scored: AllocationProblem | None = None) -> Allocation:
    """``res`` as a plan row. Its routed share, and the sustainable load read from it, are those of the
    routing that keeps the counts' expected quality with the most load headroom (:func:`balanced_share`,
    solved on ``scored``, the problem ``res`` was solved on): the same yardstick for every row, whatever
    routing among equally good ones the solver returned."""
    share = balanced_share(problem if scored is None else scored, res.counts, res.expected_quality)
    return Allocation(label, res.method, res.counts, res.expected_quality, res.cost_per_hour, share,
                      sustainable_load(problem, res.counts, share), note)


def max_load(problem: AllocationProblem) -> float:
    """Largest arrival rate (queries/s) for which some allocation of the inventory serves every query at
    the SLO rates (bisection on the MILP's feasibility; 0 when none does at any load)."""
    strict = dataclasses.replace(problem, allow_reject=False, min_quality=None)

    def ok(lam: float) -> bool:
        q = dataclasses.replace(strict, arrival_rate=lam, slots=batch_slots(problem.rate, problem.quality[0].shape[0],
                                                                           lam))
        try:
            allocate_milp(q, time_limit=10.0, mip_rel_gap=1e-3)
            return True
        except InfeasibleAllocationError:
            return False

    lo, hi = 0.0, max(problem.arrival_rate, 1e-6)
    for _ in range(LOAD_STEPS):  # the inventory may sustain more than the workload sends
        if not ok(hi):
            break
        lo, hi = hi, 2 * hi
    else:
        return lo
    for _ in range(LOAD_STEPS):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
        if hi - lo < 1e-3 * hi:
            break
    return lo


def _optimised(problem: AllocationProblem, opts: PlanOptions) -> Allocation:
    objective = "cost" if opts.min_accuracy is not None else "quality"
    try:
        res = allocate_milp(problem, objective=objective, headroom=HEADROOM_TOLERANCE, max_headroom=MAX_HEADROOM)
    except InfeasibleAllocationError as exc:
        gpus = "--gpus" if opts.inventory is not None else "gpus[].count (the scenario's inventory; --gpus overrides it)"
        if "inventory cannot host" in str(exc):
            cap = problem.max_cost_per_hour
            short = cap is not None and bool(np.all(problem.price_per_hour > cap + 1e-9))
            raise InputError(str(exc), where="--max-cost-per-hour" if short else gpus) from None
        lam = problem.arrival_rate
        sustained = max_load(problem)
        where = "--min-accuracy" if opts.min_accuracy is not None else gpus
        raise InputError(f"{exc}; the inventory serves at most {sustained:.3g} queries/s at this SLO "
                         f"(the workload sends {lam:.3g}/s): add GPUs, relax --slo or --max-cost-per-hour",
                         where=where) from None
    return _as_allocation(OPTIMISED, res, problem)


def _baseline(problem: AllocationProblem, fn: Callable[[AllocationProblem], AllocationResult], label: str
              ) -> Allocation:
    """A baseline scored on the same problem (no accuracy floor); one that cannot serve every query is
    scored with rejection allowed and says so."""
    free = dataclasses.replace(problem, min_quality=None)
    try:
        return _as_allocation(label, fn(free), problem, scored=free)
    except InfeasibleAllocationError:
        lax = dataclasses.replace(free, allow_reject=True)
        return _as_allocation(label, fn(lax), problem, note="cannot serve every query at the SLO rates", scored=lax)


def solve(problem: AllocationProblem, opts: PlanOptions) -> list[Allocation]:
    """The optimised allocation, both baselines, and the optimiser at the cheaper baseline's spend when
    it spends more."""
    best = _optimised(problem, opts)
    uni = _baseline(problem, allocate_uniform, UNIFORM)
    prop = _baseline(problem, allocate_proportional, PROPORTIONAL)
    out = [best, uni, prop]
    spend = min(uni.cost_per_hour, prop.cost_per_hour)
    if opts.min_accuracy is None and best.cost_per_hour > spend + 1e-9:
        cap = spend if problem.max_cost_per_hour is None else min(spend, problem.max_cost_per_hour)
        try:
            capped = dataclasses.replace(problem, max_cost_per_hour=cap)
            res = allocate_milp(capped, headroom=HEADROOM_TOLERANCE, max_headroom=MAX_HEADROOM)
            out.insert(1, _as_allocation(MATCHED, res, problem, note=f"at the cheaper baseline's {cap:.4g} $/h",
                                         scored=capped))
        except InfeasibleAllocationError:
            pass  # nothing fits at that spend without rejection: the table shows the spends as they are
    return out


def evaluate(problem: AllocationProblem, counts: np.ndarray, label: str, note: str = "") -> Allocation:
    """Score fixed counts (e.g. a plan found by the SLO search) on the plan's problem."""
    free = dataclasses.replace(problem, min_quality=None, allow_reject=True)
    return _as_allocation(label, evaluate_allocation(free, counts, method="search"), problem, note, scored=free)


# ---------------------------------------------------------------------- the experiment
def _set(path: str, value: Any) -> str:
    return f"{path}={yaml.safe_dump(value, default_flow_style=True, width=10**9).strip().removesuffix('...').strip()}"


def remap_failures(base: Scenario, deployments: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The scenario's events with each ``node_failure`` moved onto the plan's cluster (events name
    deployments by position, and a plan rebuilds the list): the plan's deployment of the same model on
    the same GPU type, else its largest one of that model; instance indices beyond it dropped and a
    ``count`` capped at its size. A failure of a model the plan does not serve is left out (nothing of it
    can fail). None when the scenario has no node failure (its events apply unchanged)."""
    if not any(isinstance(e, NodeFailure) for e in base.events):
        return None
    out: list[dict[str, Any]] = []
    for e in base.events:
        row = e.model_dump(mode="json", exclude_none=True)
        if not isinstance(e, NodeFailure):
            out.append(row)
            continue
        was = base.deployments[e.deployment]
        mine = [(k, d) for k, d in enumerate(deployments) if d["model"] == was.model and d.get("instances", 1) > 0]
        if not mine:
            continue
        k, d = max(mine, key=lambda kd: (kd[1]["gpu"] == was.gpu, kd[1].get("instances", 1)))
        n = int(d.get("instances", 1))
        row["deployment"] = k
        if e.instances is not None:
            kept = [i for i in e.instances if i < n]
            row.pop("instances")
            row.update({"instances": kept} if kept else {"count": min(len(e.instances), n)})
        else:
            row["count"] = min(e.count or 1, n)
        out.append(row)
    return out


def plan_sets(base: Scenario, cands: list[Candidate], counts: np.ndarray, inventory: dict[str, int]) -> list[str]:
    """``--set`` overrides that turn the scenario into this allocation (node failures moved onto it)."""
    deployments = deployments_for(base, cands, counts)
    sets = [_set("deployments", deployments)]
    events = remap_failures(base, deployments)
    if events is not None:
        sets.append(_set("events", events))
    for i, g in enumerate(base.gpus):
        if g.name in inventory:
            sets.append(f"gpus.{i}.count={inventory[g.name]}")
    return sets


def add_runs(plan: Plan, alloc: Allocation) -> None:
    """Append one allocation's runs (one per seed) to the experiment; an allocation with the same counts
    as an earlier one shares its runs (the same scenario is the same run)."""
    upto = next((k for k, a in enumerate(plan.allocations) if a is alloc), len(plan.allocations))
    twin = next((a for a in plan.allocations[:upto] if a.same_as is None
                 and np.array_equal(a.counts, alloc.counts)), None)
    if twin is not None:
        alloc.same_as = twin.label
        return
    src = plan.source
    sets = plan_sets(plan.base, plan.cands, alloc.counts, plan.inventory)
    for seed in plan.exp.seeds:
        try:
            sc = parse_scenario(src.text, file=src.file, base_dir=src.base_dir, overrides=[*sets, f"seed={seed}"])
        except InputError as exc:
            raise InputError(f"plan {alloc.label}: {exc.detail}", file=exc.file, where=exc.where) from None
        rid = run_id(sc)
        slug = alloc.label.replace("@", "-at-").replace("+", "-plus")
        plan.exp.runs.append(RunSpec(rid, f"runs/{slug}-s{seed}-{rid[:10]}", alloc.label, seed, {}, sc))
    if alloc.label not in plan.exp.policies:
        plan.exp.policies.append(alloc.label)


def make_plan(source: Source, opts: PlanOptions, *, rate_cache: dict[str, Any] | None = None,
              on_probe: Callable[[], None] | None = None) -> Plan:
    """Everything up to (not including) the simulations of the plans; InputError (exit 2) when the
    inventory hosts nothing, no allocation meets the SLO, or a plan's scenario is refused."""
    if opts.seeds < 1 or opts.seeds * 8 > MAX_RUNS:
        raise InputError(f"--seeds must be within 1..{MAX_RUNS // 8}, got {opts.seeds}", where="--seeds")
    base = parse_scenario(source.text, file=source.file, base_dir=source.base_dir)
    inventory = resolve_inventory(base, opts.inventory)
    prepared = prepare(base, source.base_dir)
    need = need_tokens(base, prepared)
    cands = candidates(base, inventory, need)
    if not cands:
        raise InputError("inventory cannot host one instance of any model: " + why_nothing_fits(base, inventory, need),
                         where="--gpus")
    slo = resolve_slo(base, opts.slo)
    cache = dict(rate_cache or {})
    rates = _rates(base, prepared, cands, instance_slo(base, slo), cache, on_probe)
    if all(r.rate <= 0 for r in rates):
        raise InputError(_no_rate_message(cands, rates, slo), where="--slo")
    live = [k for k, r in enumerate(rates) if r.rate > 0]  # a candidate that never meets the SLO is no option
    cands, rates = [cands[k] for k in live], [rates[k] for k in live]
    problem, inputs = build_problem(base, prepared, cands, [r.rate for r in rates], inventory,
                                    max_cost_per_hour=opts.max_cost_per_hour, min_accuracy=opts.min_accuracy,
                                    batches=opts.batches, batch_size=opts.batch_size)
    allocations = solve(problem, opts)
    seeds = [base.seed + k for k in range(opts.seeds)]
    exp = Experiment(KIND, base.name, source.file, seeds, [], {})
    plan = Plan(source, base, opts, slo, inventory, cands, rates, problem, inputs, allocations, exp,
                rate_cache=cache)
    for alloc in allocations:
        add_runs(plan, alloc)
    return plan


def slo_misses(plan: Plan, row: dict[str, float]) -> dict[str, float]:
    """Metric → measured p95 for every SLO target the simulated mean misses (empty: met). The knee rule
    has no run-level target, so it is never missed."""
    out = {}
    for metric, target in plan.slo.targets().items():
        v = row.get(f"latency_s.{metric}.p95")
        if v is None or not math.isfinite(v) or v > target:
            out[metric] = math.inf if v is None else float(v)
    return out
