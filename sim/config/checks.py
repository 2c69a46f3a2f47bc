"""Cross-field checks of a scenario that the declarative schema cannot express.

They run at load time so that a bad scenario fails before anything is simulated or written: references
between sections, GPU inventory, memory fit of every deployment, policy names and parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from policies import PolicyError, available_policies, make_policy
from sim.config.schema import (
    COEFFICIENTS,
    DatasetPool,
    Deployment,
    GPUType,
    LatencySpec,
    ModelSpec,
    Scenario,
    SyntheticPool,
    TraceArrivals,
)
from sim.engine.latency import LatencyProfile
from sim.errors import ScenarioError, format_path
from sim.predictors.registry import PREDICTORS, make_predictor
from sim.profiles import builtin_profile
from sim.rng import stream

GIB = 2**30

Locate = Callable[[tuple[Any, ...]], "int | None"]


def weights_bytes(model: ModelSpec) -> float:
    return model.params_b * 1e9 * model.bytes_per_param


def usable_bytes(gpu: GPUType, dep: Deployment) -> float:
    """Memory an instance may use for weights + KV cache."""
    return dep.tp * gpu.memory_gib * GIB * dep.gpu_memory_utilization


def kv_capacity_tokens(model: ModelSpec, gpu: GPUType, dep: Deployment) -> int:
    """KV-cache tokens one instance can hold after loading its weights (<= 0: does not fit)."""
    return int((usable_bytes(gpu, dep) - weights_bytes(model)) // model.kv_bytes_per_token)


def latency_for(model: ModelSpec, dep: Deployment) -> LatencySpec | None:
    """The model's profile for the deployment's GPU, preferring one measured at the same tp."""
    return model.latency.get(f"{dep.gpu}@tp{dep.tp}") or model.latency.get(dep.gpu)


def profile_for(model: ModelSpec, dep: Deployment) -> LatencyProfile:
    """The engine's latency profile of a deployment (explicit coefficients, or the built-in table)."""
    spec = latency_for(model, dep)
    assert spec is not None  # checked at load time
    if spec.builtin:
        return builtin_profile(model.params_b, dep.gpu, dep.tp)
    return LatencyProfile(**{f: getattr(spec, f) for f in COEFFICIENTS})


def resolve_path(path: str, base_dir: Path | None) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or base_dir is None else base_dir / p


def check_scenario(
    sc: Scenario, *, file: str | Path, base_dir: Path | None, locate: Locate | None = None
) -> None:
    """Raise :class:`ScenarioError` naming the first inconsistency found."""

    def fail(loc: tuple[Any, ...], msg: str) -> None:
        line = locate(loc) if locate else None
        where = (f"line {line}: " if line else "") + format_path(loc)
        raise ScenarioError(msg, file=file, where=where)

    gpus: dict[str, GPUType] = {}
    for i, g in enumerate(sc.gpus):
        if g.name in gpus:
            fail(("gpus", i, "name"), f"GPU type {g.name!r} is listed twice")
        gpus[g.name] = g
    models: dict[str, ModelSpec] = {}
    for i, m in enumerate(sc.models):
        if m.name in models:
            fail(("models", i, "name"), f"model {m.name!r} is listed twice")
        for key in m.latency:
            gpu_name = key.split("@tp")[0]
            if gpu_name not in gpus:
                fail(("models", i, "latency", key), f"unknown GPU type {gpu_name!r}; known: {', '.join(gpus)}")
        models[m.name] = m

    used: dict[str, int] = {name: 0 for name in gpus}
    deployed: set[str] = set()
    for i, d in enumerate(sc.deployments):
        if d.model not in models:
            fail(("deployments", i, "model"), f"unknown model {d.model!r}; expected one of: {', '.join(models)}")
        if d.gpu not in gpus:
            fail(("deployments", i, "gpu"), f"unknown GPU type {d.gpu!r}; expected one of: {', '.join(gpus)}")
        model, gpu = models[d.model], gpus[d.gpu]
        if latency_for(model, d) is None:
            fail(
                ("deployments", i, "gpu"),
                f"model {model.name!r} has no latency profile for {d.gpu!r} (add models[].latency.{d.gpu})",
            )
        spec = latency_for(model, d)
        if spec is not None and spec.builtin:
            try:
                builtin_profile(model.params_b, d.gpu, d.tp)
            except (KeyError, ValueError) as exc:
                fail(("deployments", i, "gpu"), f"builtin latency profile: {exc.args[0] if exc.args else exc}")
        need = weights_bytes(model)
        have = usable_bytes(gpu, d)
        if kv_capacity_tokens(model, gpu, d) < 1:
            fail(
                ("deployments", i),
                f"{model.name} does not fit: its weights need {need / GIB:.1f} GiB but {d.tp} × {gpu.name} "
                f"at {d.gpu_memory_utilization:g} utilisation gives {have / GIB:.1f} GiB with no room for "
                "KV cache; raise tp or lower bytes_per_param",
            )
        used[d.gpu] += d.tp * d.instances
        deployed.add(d.model)
    for i, g in enumerate(sc.gpus):
        if used[g.name] > g.count:
            fail(
                ("gpus", i, "count"),
                f"deployments use {used[g.name]} × {g.name} but the inventory has {g.count}",
            )
    for i, m in enumerate(sc.models):
        if m.name not in deployed:
            fail(("models", i, "name"), f"model {m.name!r} has no deployment, so it cannot be routed to")

    pool = sc.workload.pool
    if isinstance(pool, SyntheticPool):
        for i, m in enumerate(sc.models):
            if m.strength is None:
                fail(("models", i, "strength"), "required with a synthetic pool (ability on the difficulty scale)")
    if isinstance(pool, DatasetPool) and not resolve_path(pool.path, base_dir).exists():
        fail(("workload", "pool", "path"), f"dataset not found: {resolve_path(pool.path, base_dir)}")
    arr = sc.workload.arrivals
    if isinstance(arr, TraceArrivals) and not resolve_path(arr.path, base_dir).is_file():
        fail(("workload", "arrivals", "path"), f"trace file not found: {resolve_path(arr.path, base_dir)}")
    strong = sc.workload.order.strong_model
    if strong is not None and strong not in models:
        fail(("workload", "order", "strong_model"), f"unknown model {strong!r}; expected one of: {', '.join(models)}")

    if isinstance(pool, DatasetPool):
        from sim.datasets import LOADERS

        if pool.kind not in LOADERS:
            fail(("workload", "pool", "kind"), f"unknown dataset kind {pool.kind!r}; valid kinds: {', '.join(sorted(LOADERS))}")

    r = sc.router

    if r.predictor.name not in PREDICTORS:
        fail(("router", "predictor", "name"),
             f"unknown predictor {r.predictor.name!r}; valid predictors: {', '.join(sorted(PREDICTORS))}")
    try:  # constructing a predictor checks its parameters; no draws are made
        make_predictor(r.predictor.name, stream(0, "validation"), **r.predictor.params)
    except (TypeError, ValueError) as exc:
        fail(("router", "predictor", "params"),
             f"predictor {r.predictor.name!r} rejects its parameters {r.predictor.params}: {exc}")
    if "rng" in r.params:
        fail(("router", "params", "rng"), "not settable in a scenario: the simulator derives it from the seed")
    if "seed" in r.params and not isinstance(r.params["seed"], int):
        fail(("router", "params", "seed"), f"expected an integer (a fixed seed keeps runs reproducible), got {r.params['seed']!r}")
    if r.policy not in available_policies():
        fail(("router", "policy"), f"unknown policy {r.policy!r}; valid names: {', '.join(available_policies())}")
    if r.budget_per_query is not None and r.min_quality is not None and r.policy in (
        "lagrangian", "min_cost_flow", "robust"
    ):
        fail(("router", "policy"),
             f"{r.policy} optimises one side row, but both budget_per_query and min_quality are set; "
             "use milp (it models both) or drop one of them")
    try:
        make_policy(r.policy, **r.params)
    except PolicyError as exc:
        fail(("router", "params"), str(exc))
