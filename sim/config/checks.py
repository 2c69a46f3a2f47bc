"""Cross-field checks of a scenario that the declarative schema cannot express.

They run at load time so that a bad scenario fails before anything is simulated or written: references
between sections, GPU inventory, memory fit of every deployment, policy names and parameters.
"""

from __future__ import annotations

import errno
import functools
import math
import os
import reprlib
import stat
import typing
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from pydantic import ConfigDict, TypeAdapter, ValidationError

from policies import PolicyError, available_policies, make_policy, policy_class, policy_parameters
from sim.config.schema import (
    COEFFICIENTS,
    MAX_SECONDS,
    PAGED_ONLY,
    BatchArrivals,
    DatasetPool,
    Deployment,
    DiurnalModulation,
    GammaArrivals,
    GPUType,
    LatencySpec,
    ModelSpec,
    NodeFailure,
    PoissonArrivals,
    PredictorSpec,
    PriceChange,
    RateChange,
    Router,
    Scenario,
    SyntheticPool,
    TraceArrivals,
    default_activation_reserve_gib,
)
from sim.engine.latency import MIXED_TERMS, LatencyProfile
from sim.engine.scheduler import SchedulerConfig
from sim.errors import ScenarioError, format_path, os_reason, warn_input
from sim.predictors.registry import (
    PREDICTORS,
    available_predictors,
    make_predictor,
    predictor_parameters,
    validate_predictor_params,
)
from sim.profiles import UnknownGPUError, builtin_profile
from sim.rng import stream
from sim.workload import arrivals as arr_mod
from sim.workload.prefix import MOONCAKE_BLOCK_TOKENS

GIB = 2**30

#: Longest simulated span accepted (s). float64 timestamps near 1e9 s are spaced ~1.2e-7 s apart, so
#: latencies keep sub-microsecond resolution; far beyond it ``now + x`` loses x (a 1e300 s window made
#: every request start, emit its first token and finish at one instant).
MAX_HORIZON_S = 1e9
#: Every positive time step (window, batch interval, sampling period, one-token service time) must be
#: at least horizon × this: then it spans thousands of float64 steps of the clock (eps = 2.2e-16), so
#: adding it to the clock keeps its value to better than 0.1 %.
MIN_STEP_PER_HORIZON = 1e-12
#: Occupancy samples a run may record (the runner enforces the same limit on the built workload).
MAX_SAMPLES = 1_000_000
#: Rough memory per simulated query: arrival, token and cost arrays, the query set, predictions and
#: the recorder's row (measured peak RSS growth, run and run folder included: ~1.1 kB per query with 2 models),
#: plus the paged scheduler's step log (~4 entries of 40 bytes per request) and per-token counters.
BYTES_PER_QUERY = 1200
BYTES_PER_QUERY_MODEL = 100
#: Hard cap of the estimated footprint, whatever the machine (bytes).
MAX_FOOTPRINT_BYTES = 256 * GIB
#: Largest integer accepted in free-form parameters (numpy's int64).
MAX_INT = 2**63 - 1

_short = reprlib.Repr()
_short.maxstring, _short.maxother, _short.maxlevel = 60, 60, 3
_short.maxlist = _short.maxdict = _short.maxtuple = _short.maxset = 6


def short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters, without building the whole repr first (an
    echoed YAML alias bomb once gave a 5.5 MB error message)."""
    return clip(_short.repr(value), limit)


def name_list(names: Any) -> str:
    """Valid names for a message, cut if a scenario lists very many."""
    return clip(", ".join(map(str, names)), 300)


def clip(text: str, limit: int = 300) -> str:
    """``text`` cut to ``limit`` characters (for messages that embed another message)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."

Locate = Callable[[tuple[Any, ...]], "int | None"]
Fail = Callable[[tuple[Any, ...], str], NoReturn]


def weights_bytes(model: ModelSpec) -> float:
    return model.params_b * 1e9 * model.bytes_per_param


def usable_bytes(gpu: GPUType, dep: Deployment) -> float:
    """Memory an instance may use for weights + KV cache."""
    return dep.tp * gpu.memory_gib * GIB * dep.gpu_memory_utilization


def activation_reserve_gib(model: ModelSpec, dep: Deployment) -> float:
    """Per-GPU memory kept from the KV cache: the deployment's ``activation_reserve_gib``, else the
    default by model size and tp (:func:`sim.config.schema.default_activation_reserve_gib`)."""
    if dep.activation_reserve_gib is not None:
        return dep.activation_reserve_gib
    return default_activation_reserve_gib(model.params_b, dep.tp)


def reserve_bytes(model: ModelSpec, dep: Deployment) -> float:
    """Activation reserve of a whole instance (every one of its ``tp`` GPUs keeps its own)."""
    return dep.tp * activation_reserve_gib(model, dep) * GIB


def resolved_config(sc: Scenario) -> dict[str, Any]:
    """The scenario as a run folder records it: every default filled in, including the activation
    reserve each deployment's KV capacity was computed with, so a rerun does not depend on the default
    table of a later version."""
    data = sc.model_dump(mode="json")
    models = {m.name: m for m in sc.models}
    for d, out in zip(sc.deployments, data["deployments"], strict=True):
        out["activation_reserve_gib"] = activation_reserve_gib(models[d.model], d)
    return data


def kv_capacity_tokens(model: ModelSpec, gpu: GPUType, dep: Deployment) -> int:
    """KV-cache tokens one instance can hold, as a vLLM instance would size it: usable memory minus
    weights minus the activation reserve, in whole tokens (<= 0: does not fit). Both schedulers use it:
    the reserve is a memory fact, not a scheduling policy."""
    free = usable_bytes(gpu, dep) - weights_bytes(model) - reserve_bytes(model, dep)
    return int(free // model.kv_bytes_per_token)


def is_mooncake_trace(arr: object) -> bool:
    """Whether the arrivals replay a Mooncake trace, the one source of prefix hashes (``format: auto``
    picks it for a ``.jsonl`` name, as :mod:`sim.workload.build` does)."""
    if not isinstance(arr, TraceArrivals):
        return False
    return arr.format == "mooncake" or (arr.format == "auto" and ".jsonl" in Path(arr.path).name)


def scheduler_for(dep: Deployment, sc: Scenario) -> SchedulerConfig:
    """The engine's scheduler configuration of one deployment. Prefix hashes cover the trace's
    ``prefix_block_tokens`` each (Mooncake's 512 when the workload is not a trace)."""
    arr = sc.workload.arrivals
    block_tokens = arr.prefix_block_tokens if isinstance(arr, TraceArrivals) else MOONCAKE_BLOCK_TOKENS
    return SchedulerConfig(
        kind=dep.scheduler,
        block_size=dep.block_size,
        max_num_batched_tokens=dep.max_num_batched_tokens,
        chunked_prefill=dep.chunked_prefill,
        prefix_cache=dep.prefix_cache,
        watermark=dep.watermark,
        prefix_block_tokens=block_tokens,
    )


def latency_key(model: ModelSpec, dep: Deployment) -> str:
    """The key of ``model.latency`` that :func:`latency_for` uses (``'GPU@tpN'`` when present, else ``'GPU'``)."""
    exact = f"{dep.gpu}@tp{dep.tp}"
    return exact if exact in model.latency else dep.gpu


def latency_for(model: ModelSpec, dep: Deployment) -> LatencySpec | None:
    """The model's profile for the deployment's GPU, preferring one measured at the same tp."""
    return model.latency.get(latency_key(model, dep))


def profile_for(model: ModelSpec, dep: Deployment) -> LatencyProfile:
    """The engine's latency profile of a deployment (explicit coefficients, or the built-in table by the
    default source policy or a named source), with the scenario's ``step_overhead_s`` when set.

    Raises the built-in lookup's KeyError/ValueError (e.g. a named source with no entry); load-time checks
    turn it into a message naming the field."""
    spec = latency_for(model, dep)
    assert spec is not None  # checked at load time
    if spec.builtin is not False:
        source = None if spec.builtin is True else spec.builtin
        profile = builtin_profile(model.params_b, dep.gpu, dep.tp, source=source)
    else:
        mixed = {f: getattr(spec, f) for f in MIXED_TERMS}
        profile = LatencyProfile(**{f: getattr(spec, f) for f in COEFFICIENTS}, **mixed)
    if spec.step_overhead_s is not None:
        profile = replace(profile, step_overhead_s=spec.step_overhead_s)
    return profile


def resolve_path(path: str, base_dir: Path | None) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or base_dir is None else base_dir / p


def _check_cluster(sc: Scenario, fail: Fail) -> dict[str, ModelSpec]:
    """GPU, model and deployment references, memory fit and inventory; returns the models by name."""
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
                fail(("models", i, "latency", key), f"unknown GPU type {gpu_name!r}; known: {name_list(gpus)}")
        models[m.name] = m

    used: dict[str, int] = {name: 0 for name in gpus}
    deployed: set[str] = set()
    for i, d in enumerate(sc.deployments):
        if d.model not in models:
            fail(("deployments", i, "model"), f"unknown model {d.model!r}; expected one of: {name_list(models)}")
        if d.gpu not in gpus:
            fail(("deployments", i, "gpu"), f"unknown GPU type {d.gpu!r}; expected one of: {name_list(gpus)}")
        model, gpu = models[d.model], gpus[d.gpu]
        if latency_for(model, d) is None:
            fail(
                ("deployments", i, "gpu"),
                f"model {model.name!r} has no latency profile for {d.gpu!r} (add models[].latency.{d.gpu})",
            )
        spec = latency_for(model, d)
        if spec is not None and spec.builtin is not False:
            try:
                profile_for(model, d)
            except UnknownGPUError as exc:
                fail(("deployments", i, "gpu"), f"builtin latency profile: {exc}")
            except (KeyError, ValueError) as exc:
                mi = next(j for j, m in enumerate(sc.models) if m.name == model.name)
                fail(("models", mi, "latency", latency_key(model, d), "builtin"),
                     f"builtin latency profile for deployments[{i}] (tp {d.tp}): {exc.args[0] if exc.args else exc}")
        if kv_capacity_tokens(model, gpu, d) < 1:
            fail(("deployments", i), _does_not_fit(model, gpu, d))
        used[d.gpu] += d.tp * d.instances
        deployed.add(d.model)
    if sc.deployments and all(d.instances == 0 for d in sc.deployments):
        fail(("deployments",), "every deployment has 0 instances: nothing can serve a query")
    for i, g in enumerate(sc.gpus):
        if used[g.name] > g.count:
            fail(
                ("gpus", i, "count"),
                f"deployments use {used[g.name]} × {g.name} but the inventory has {g.count}",
            )
    for i, m in enumerate(sc.models):
        if m.name not in deployed:
            fail(("models", i, "name"), f"model {m.name!r} has no deployment, so it cannot be routed to")
    return models


def _does_not_fit(model: ModelSpec, gpu: GPUType, d: Deployment) -> str:
    """Why a deployment has no KV room: weights plus activation reserve against usable memory."""
    reserve = activation_reserve_gib(model, d)
    how = "set" if d.activation_reserve_gib is not None else "default for its size"
    return (
        f"{model.name} does not fit: its weights need {weights_bytes(model) / GIB:.1f} GiB and the activation "
        f"reserve {d.tp} × {reserve:g} GiB ({how}; activations, CUDA graphs, buffers) but {d.tp} × {gpu.name} at "
        f"{d.gpu_memory_utilization:g} utilisation gives {usable_bytes(gpu, d) / GIB:.1f} GiB, leaving no "
        "room for KV cache; raise tp, lower bytes_per_param or set activation_reserve_gib"
    )


def _check_scheduler(sc: Scenario, fail: Fail, file: str | Path) -> None:
    """Scheduler fields of every deployment: paged-only knobs are errors under ``reserve`` (they would
    be silently ignored), the step budget covers ``max_seqs`` decodes (vLLM refuses less), and a prefix
    cache needs blocks that tile the trace's hashed blocks. A prefix cache with no hashes to match is
    only a warning: the run is valid, the cache just never hits."""
    arr = sc.workload.arrivals
    block_tokens = arr.prefix_block_tokens if isinstance(arr, TraceArrivals) else MOONCAKE_BLOCK_TOKENS
    for i, d in enumerate(sc.deployments):
        if d.scheduler == "reserve":
            for name in PAGED_ONLY:  # a default value is harmless (a paged scenario switched to reserve)
                if name in d.model_fields_set and getattr(d, name) != type(d).model_fields[name].default:
                    fail(("deployments", i, name), f"{name} is a paged-scheduler setting, but this deployment "
                         "has scheduler: reserve, which ignores it; remove it (or set it to its default) or "
                         "use scheduler: paged")
            continue
        if d.max_num_batched_tokens < d.max_seqs:
            fail(("deployments", i, "max_num_batched_tokens"),
                 f"{d.max_num_batched_tokens} is below max_seqs ({d.max_seqs}): a step must have room for "
                 "one decode token per running sequence (vLLM requires max_num_batched_tokens >= max_num_seqs)")
        if not d.chunked_prefill:
            warn_input(f"false: a request whose prompt + output exceeds max_num_batched_tokens "
                       f"({d.max_num_batched_tokens}) can never be scheduled and is refused at routing (vLLM "
                       "requires max_num_batched_tokens >= max_model_len without chunked prefill)", file=file,
                       where=format_path(("deployments", i, "chunked_prefill")))
        if not d.prefix_cache:
            continue
        hashes = is_mooncake_trace(arr) and bool(getattr(arr, "use_trace_tokens", True))
        if not hashes:
            warn_input("set, but the workload has no prefix hashes (only a Mooncake trace's "
                       "hash_ids, replayed with use_trace_tokens: true, give them), so nothing can hit the "
                       "cache", file=file, where=format_path(("deployments", i, "prefix_cache")))
            continue
        if block_tokens % d.block_size:
            fail(("deployments", i, "block_size"),
                 f"prefix_cache needs a block_size that divides the {block_tokens} prompt tokens of one "
                 f"prefix hash (workload.arrivals.prefix_block_tokens); {d.block_size} does not")


def check_scenario(
    sc: Scenario, *, file: str | Path, base_dir: Path | None, locate: Locate | None = None
) -> None:
    """Raise :class:`ScenarioError` naming the first inconsistency found. Every check that needs only
    the scenario (no trace or dataset contents) lives here, so ``llmsim validate`` and ``run`` agree."""

    def fail(loc: tuple[Any, ...], msg: str) -> NoReturn:
        line = locate(loc) if locate else None
        where = (f"line {line}: " if line else "") + format_path(loc)
        raise ScenarioError(msg, file=file, where=where)

    models = _check_cluster(sc, fail)
    _check_scheduler(sc, fail, file)
    pool = sc.workload.pool
    if isinstance(pool, SyntheticPool):
        for i, m in enumerate(sc.models):
            if m.strength is None:
                fail(("models", i, "strength"), "required with a synthetic pool (ability on the difficulty scale)")
    if isinstance(pool, DatasetPool):
        _check_finite(pool.options, ("workload", "pool", "options"), fail)
        listed = not isinstance(pool.path, str)
        if listed and pool.kind != "routerbench":
            fail(("workload", "pool", "path"), f"a list of files is read by the routerbench loader only, "
                 f"not {short(pool.kind)}: name one file or folder")
        for i, item in enumerate(pool.paths):
            loc = ("workload", "pool", "path", i) if listed else ("workload", "pool", "path")
            if _lookup(resolve_path(item, base_dir), loc, fail) is None:
                fail(loc, f"dataset not found: {resolve_path(item, base_dir)}")
    arr = sc.workload.arrivals
    if isinstance(arr, TraceArrivals):
        where = resolve_path(arr.path, base_dir)
        found = _lookup(where, ("workload", "arrivals", "path"), fail)
        if found is None or not stat.S_ISREG(found.st_mode):
            fail(("workload", "arrivals", "path"), f"{where} is a directory; expected a trace file (.csv, .jsonl or "
                 f".jsonl.gz)" if found is not None and stat.S_ISDIR(found.st_mode) else f"trace file not found: {where}")
    strong = sc.workload.order.strong_model
    if strong is not None and strong not in models:
        fail(("workload", "order", "strong_model"), f"unknown model {strong!r}; expected one of: {name_list(models)}")

    if isinstance(pool, DatasetPool):
        from sim.datasets import LOADERS

        if pool.kind not in LOADERS:
            fail(("workload", "pool", "kind"), f"unknown dataset kind {pool.kind!r}; valid kinds: {name_list(sorted(LOADERS))}")

    _check_predictor(sc.router.predictor, sc.workload.pool, fail)
    _check_policy(sc.router, fail)
    _check_slo(sc.router, fail)
    _check_horizon(sc, fail, file)
    _check_events(sc, fail)
    _check_footprint(sc, fail)




def _lookup(path: Path, loc: tuple[Any, ...], fail: Fail) -> os.stat_result | None:
    """``path``'s status, or None where it does not exist (as ``Path.exists`` tells); a path the system
    will not even look up (a folder on it we may not search) fails at its field, naming the path, where
    ``exists()`` would raise."""
    try:
        return path.stat()
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP):
            return None
        fail(loc, f"cannot read {path}: {os_reason(exc)}")


def predictor_accepts(name: Any) -> set[str] | None:
    """Parameter names predictor ``name`` accepts (None: not a known predictor)."""
    return set(predictor_parameters(name)) if isinstance(name, str) and name in PREDICTORS else None


def policy_accepts(name: Any) -> set[str] | None:
    """Parameter names policy ``name`` accepts (None: not a known policy)."""
    return set(policy_parameters(name)) if isinstance(name, str) and name in available_policies() else None


def _check_finite(value: Any, loc: tuple[Any, ...], fail: Fail) -> None:
    """No inf/NaN and no integer beyond int64 anywhere in a free-form parameter block."""
    if isinstance(value, float) and not math.isfinite(value):
        fail(loc, f"expected a finite number, got {value!r}")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        fail(loc, f"integer too large (|x| must be at most 2**63-1), got {short(value)}")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(v, (*loc, k), fail)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_finite(v, (*loc, i), fail)


@functools.cache
def _policy_adapters(name: str) -> dict[str, TypeAdapter[Any]]:
    """A strict validator per annotated parameter of policy ``name``'s constructor (floats finite)."""
    init = policy_class(name).__init__
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # an annotation that cannot be resolved: nothing to check against
        return {}
    config = ConfigDict(strict=True, allow_inf_nan=False, arbitrary_types_allowed=True)
    out: dict[str, TypeAdapter[Any]] = {}
    for param in policy_parameters(name):
        if param in hints and param != "rng":
            try:
                out[param] = TypeAdapter(hints[param], config=config)
            except Exception:  # a type pydantic cannot validate: left to the policy itself
                continue
    return out


def _check_policy_types(name: str, params: dict[str, Any], fail: Fail) -> None:
    """Values of policy parameters against the constructor's annotations (``alpha: .inf``,
    ``lam: "abc"``, ``best_effort: "yes"`` are errors naming the key); ranges stay the policy's job."""
    adapters = _policy_adapters(name)
    for key, value in params.items():
        if key not in adapters:
            continue
        try:
            adapters[key].validate_python(value)
        except ValidationError as exc:
            err = exc.errors()[0]
            fail(("router", "params", key),
                 f"policy {name!r} parameter {key}: {err['msg']} (got {short(value)})")


def _check_predictor(spec: PredictorSpec, pool: SyntheticPool | DatasetPool, fail: Fail) -> None:
    """The predictor exists and its parameters match its typed model (names, types, ranges)."""
    if spec.name not in PREDICTORS:
        fail(("router", "predictor", "name"),
             f"unknown predictor {short(spec.name)}; valid predictors: {', '.join(available_predictors())}")
    try:
        params = validate_predictor_params(spec.name, spec.params)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = err["loc"][0] if err["loc"] else None
        loc = ("router", "predictor", "params") + ((key,) if key is not None else ())
        accepted = ", ".join(predictor_parameters(spec.name)) or "(none)"
        what = "unknown parameter" if err["type"] == "extra_forbidden" else err["msg"]
        fail(loc, f"predictor {spec.name!r}: {what} (got {short(err.get('input'))}); accepts: {accepted}")
        return
    if getattr(PREDICTORS[spec.name], "needs_prompts", False) and isinstance(pool, SyntheticPool):
        fail(("router", "predictor", "name"),
             f"predictor {spec.name!r} retrieves similar prompt texts, but a synthetic pool has none; use "
             "task_mean or noisy_oracle, or a dataset pool with prompts")
    try:  # constructing a predictor runs its own checks; no draws are made
        make_predictor(spec.name, stream(0, "validation"), **params)
    except (TypeError, ValueError) as exc:
        fail(("router", "predictor", "params"), f"predictor {spec.name!r} rejects its parameters: {clip(str(exc))}")


def _check_policy(r: Router, fail: Fail) -> None:
    """Policy name, parameter names, value types (from the policy's signature) and cross-field rules."""
    _check_finite(r.params, ("router", "params"), fail)
    if "rng" in r.params:
        fail(("router", "params", "rng"), "not settable in a scenario: the simulator derives it from the seed")
    if "seed" in r.params and not isinstance(r.params["seed"], int):
        fail(("router", "params", "seed"),
             f"expected an integer (a fixed seed keeps runs reproducible), got {short(r.params['seed'])}")
    if r.policy not in available_policies():
        fail(("router", "policy"), f"unknown policy {short(r.policy)}; valid names: {', '.join(available_policies())}")
    _check_policy_types(r.policy, r.params, fail)
    if r.budget_per_query is not None and r.min_quality is not None and r.policy in (
        "lagrangian", "min_cost_flow", "robust"
    ):
        fail(("router", "policy"),
             f"{r.policy} optimises one side row, but both budget_per_query and min_quality are set; "
             "use milp (it models both) or drop one of them")
    try:
        make_policy(r.policy, **r.params)
    except PolicyError as exc:
        fail(("router", "params"), clip(str(exc)))


def _check_slo(r: Router, fail: Fail) -> None:
    """The SLO the router routes on must be set (the other may be set for reporting only)."""
    slo = r.slo
    if slo is None:
        return
    field = "e2e_s" if slo.route_on == "e2e" else "ttft_s"
    if getattr(slo, field) is None:
        fail(("router", "slo", field),
             f"route_on is {slo.route_on!r}, so {field} must be set (seconds > 0)")
    if slo.mode == "constraint" and slo.penalty != 0:
        fail(("router", "slo", "penalty"),
             f"{slo.penalty:g} would be ignored: mode is 'constraint' (pairs over the SLO are infeasible); "
             "use mode: penalty to charge it, or remove it")


def _arrival_span(sc: Scenario, fail: Fail) -> tuple[float, tuple[Any, ...]] | None:
    """Expected seconds of arrivals and the field that sets them (None: a trace without duration_s)."""
    a = sc.workload.arrivals
    spans: list[tuple[float, tuple[Any, ...]]] = []
    if sc.duration_s is not None:
        spans.append((sc.duration_s, ("duration_s",)))
    n = sc.num_queries
    # rate_change windows stretch or compress when num_queries arrivals end (a lull: later; a burst: sooner)
    windows = tuple((e.start_s, e.end_s, e.multiplier) for e in sc.events if isinstance(e, RateChange))
    if n is not None and isinstance(a, BatchArrivals):
        last = (math.ceil(n / a.batch_size) - 1) * a.interval_s
        if windows:
            last = float(arr_mod.WindowedProfile(None, windows).inverse(np.array([last]))[0])
        spans.append((last, ("num_queries",)))
    elif n is not None and isinstance(a, (PoissonArrivals, GammaArrivals)):
        work = n / a.rate  # in "operational time" of a modulated process
        if a.modulation is not None or windows:
            m = a.modulation
            profile: Any = None if m is None else (
                arr_mod.DiurnalProfile(amplitude=m.amplitude, period_s=m.period_s, phase=m.phase)
                if isinstance(m, DiurnalModulation) else arr_mod.piecewise(m.steps)
            )
            if windows:
                profile = arr_mod.WindowedProfile(profile, windows)
            assert profile is not None
            end = float(profile.inverse(np.array([work]))[0])
            if not math.isfinite(end) and sc.duration_s is None:
                fail(("num_queries",), f"the modulation switches arrivals off for good after about "
                     f"{float(profile.cumulative(np.array([MAX_SECONDS]))[0]) * a.rate:.6g} expected arrivals, "
                     f"fewer than num_queries={n}; end with a step whose multiplier is > 0, or set duration_s")
            work = end
        if math.isfinite(work):
            spans.append((work, ("num_queries",)))
    return min(spans, key=lambda x: x[0]) if spans else None


def _check_horizon(sc: Scenario, fail: Fail, file: str | Path) -> None:
    """The simulated span stays within :data:`MAX_HORIZON_S`, and no positive time step is so small next
    to it that adding it to the clock rounds it away (see :data:`MIN_STEP_PER_HORIZON`)."""
    found = _arrival_span(sc, fail)
    if found is None:
        return
    span, field = found
    if sc.warmup_s > 0 and sc.warmup_s >= span:
        warn_input(f"warmup_s ({sc.warmup_s:g} s) is not shorter than the arrivals (about {span:.3g} s): "
                   "no request would count in the latency statistics", file=file, where="warmup_s")
    horizon = span + sc.router.window_s
    if horizon > MAX_HORIZON_S:
        fail(field, f"the run would span about {horizon:.3g} s of simulated time; at most {MAX_HORIZON_S:g} s "
             "(beyond it float64 timestamps lose sub-microsecond resolution)")
    floor = horizon * MIN_STEP_PER_HORIZON
    steps: list[tuple[float, tuple[Any, ...], str]] = [(sc.router.window_s, ("router", "window_s"), "window")]
    if isinstance(sc.workload.arrivals, BatchArrivals):
        steps.append((sc.workload.arrivals.interval_s, ("workload", "arrivals", "interval_s"), "interval"))
    if sc.outputs.sample_interval_s is not None:
        steps.append((sc.outputs.sample_interval_s, ("outputs", "sample_interval_s"), "interval"))
    models = {m.name: m for m in sc.models}
    for i, d in enumerate(sc.deployments):
        p = profile_for(models[d.model], d)
        one_token = sum(getattr(p, f) for f in COEFFICIENTS)  # prefill 1 token + decode 1 seq, 1 ctx
        steps.append((one_token, ("deployments", i), "one-token service time (sum of the latency coefficients)"))
    for value, loc, what in steps:
        if 0 < value < floor:
            fail(loc, f"a {what} of {value:g} s is too small next to the run's span of {horizon:.3g} s (at least "
                 f"{floor:.3g} s, span × {MIN_STEP_PER_HORIZON:g}, or the clock's rounding swallows it)")
    interval = sc.outputs.sample_interval_s
    if interval is not None and horizon / interval > MAX_SAMPLES:
        fail(("outputs", "sample_interval_s"),
             f"{horizon / interval:,.0f} occupancy samples over {horizon:.3g} s; at most {MAX_SAMPLES:,} "
             "(raise sample_interval_s)")


def _check_events(sc: Scenario, fail: Fail) -> None:
    """References and times of ``events`` (docs/events.md): deployments and their instances exist, no
    instance fails twice at once, models exist, and nothing starts after the arrivals end (it could
    change nothing) — except a node failure in a drained run, which still hits the work in flight."""
    found = _arrival_span(sc, fail) if sc.events else None
    span = found[0] if found is not None else None
    down: dict[tuple[int, int], list[tuple[float, float, int]]] = {}
    models = {m.name for m in sc.models}
    for i, ev in enumerate(sc.events):
        start, field = (ev.start_s, "start_s") if isinstance(ev, RateChange) else (ev.at_s, "at_s")
        # (a node failure while a drained run finishes its work still hits the requests in flight)
        if span is not None and start >= span and not (isinstance(ev, NodeFailure) and sc.drain):
            fail(("events", i, field), f"{start:g} s is not before the arrivals end (about {span:.6g} s): "
                 "the event would change nothing")
        if isinstance(ev, PriceChange) and ev.model not in models:
            fail(("events", i, "model"), f"unknown model {ev.model!r}; expected one of: {name_list(models)}")
        if not isinstance(ev, NodeFailure):
            continue
        if ev.deployment >= len(sc.deployments):
            fail(("events", i, "deployment"), f"no deployment {ev.deployment}: the scenario has "
                 f"{len(sc.deployments)} (indices 0..{len(sc.deployments) - 1})")
        n = sc.deployments[ev.deployment].instances
        if ev.count is not None and ev.count > n:
            fail(("events", i, "count"), f"{ev.count} instances cannot fail: deployment {ev.deployment} has {n}")
        for k, idx in enumerate(ev.instances or []):
            if idx >= n:
                fail(("events", i, "instances", k), f"no instance {idx} in deployment {ev.deployment}: it "
                     f"has {n} (indices 0..{n - 1})")
        end = math.inf if ev.recover_at_s is None else ev.recover_at_s
        for idx in ev.indices:
            for a, b, other in down.get((ev.deployment, idx), []):
                if ev.at_s < b and a < end:
                    fail(("events", i, "at_s"), f"instance {idx} of deployment {ev.deployment} is already "
                         f"down then (events[{other}] from {a:g} s to {b:g} s)")
            down.setdefault((ev.deployment, idx), []).append((ev.at_s, end, i))


def _expected_arrivals(sc: Scenario) -> tuple[float, tuple[Any, ...]] | None:
    """Expected number of arrivals (at the modulation's peak rate, to be safe) and the field driving it."""
    a = sc.workload.arrivals
    counts: list[tuple[float, tuple[Any, ...]]] = []
    if sc.num_queries is not None:
        counts.append((float(sc.num_queries), ("num_queries",)))
    # rate_change windows add (multiplier - 1) x their length of extra time at the peak rate
    burst = _burst_seconds(sc, sc.duration_s) if sc.duration_s is not None else 0.0
    field = ("events",) if burst > 0 else ("duration_s",)
    if sc.duration_s is not None and isinstance(a, (PoissonArrivals, GammaArrivals)):
        m = a.modulation
        peak = 1.0 if m is None else (1.0 + m.amplitude if isinstance(m, DiurnalModulation)
                                      else max(x for _, x in m.steps))
        counts.append((a.rate * peak * (sc.duration_s + burst), field))
    elif sc.duration_s is not None and isinstance(a, BatchArrivals):
        counts.append((a.batch_size * ((sc.duration_s + burst) / a.interval_s + 1), field))
    return min(counts, key=lambda x: x[0]) if counts else None


def _burst_seconds(sc: Scenario, horizon: float) -> float:
    """∫ max(g(t) − 1, 0) dt over [0, horizon], g the product of the rate_change windows."""
    windows = [(e.start_s, e.end_s, e.multiplier) for e in sc.events if isinstance(e, RateChange)]
    if not windows:
        return 0.0
    starts, g = arr_mod.window_steps(windows)
    ends = np.minimum(np.append(starts[1:], horizon), horizon)
    return float(np.sum(np.maximum(g - 1.0, 0.0) * np.maximum(ends - np.minimum(starts, horizon), 0.0)))


def memory_limit_bytes() -> int:
    """Half the machine's physical memory, at most :data:`MAX_FOOTPRINT_BYTES` (16 GiB if unknown)."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        physical = 32 * GIB
    return int(min(physical // 2, MAX_FOOTPRINT_BYTES))


def _check_footprint(sc: Scenario, fail: Fail) -> None:
    """Refuse a run whose arrays cannot fit in memory, before minutes of work end in a MemoryError."""
    found = _expected_arrivals(sc)
    if found is None:
        return
    n, field = found
    need = n * (BYTES_PER_QUERY + BYTES_PER_QUERY_MODEL * len(sc.models))
    limit = memory_limit_bytes()
    if need > limit:
        fail(field, f"about {n:.3g} arrivals would need ~{need / 1e9:.3g} GB of memory "
             f"({need / n:.0f} bytes per query with {len(sc.models)} models); the limit here is "
             f"{limit / 1e9:.3g} GB (half the physical memory, at most {MAX_FOOTPRINT_BYTES / 1e9:.0f} GB)")
