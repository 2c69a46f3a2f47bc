"""Candidate deployments of a plan: which (model, GPU type, tensor-parallel degree) triples may be used.

A candidate must *run*: the model's weights and activation reserve leave KV room on ``tp`` GPUs of that
type, at least the longest request of its token mix fits, the inventory has ``tp`` GPUs of the type, and
a latency profile resolves for it. Which tp values are tried:

* the model has explicit latency coefficients for the GPU (``latency: {GPU: {...}}``): they were measured
  at one tp, so only that tp — the scenario's deployment of the model on that GPU if there is one,
  else an exact ``GPU@tpN`` key, else the smallest tp (1, 2, 4, 8) that fits;
* a built-in profile (``builtin: true`` or a source name): the two smallest tp values that fit and have an
  entry — a larger tp buys KV room and speed at the price of GPUs, which the optimiser weighs.

Every other deployment field (``max_seqs``, scheduler, queue, ...) comes from the scenario's first
deployment of the model (the template), so a plan changes instance counts and placement, not how an
instance is configured. A model with no deployment on a GPU type gets the template with that GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.config.checks import kv_capacity_tokens, latency_for, profile_for
from sim.config.schema import Deployment, GPUType, ModelSpec, Scenario

TP_CHOICES = (1, 2, 4, 8)
BUILTIN_TP_COUNT = 2


@dataclass(frozen=True)
class Candidate:
    """One deployment the optimiser may instantiate (``deployment.instances`` is 1, a template)."""

    model_index: int
    model: ModelSpec
    gpu: GPUType
    deployment: Deployment
    kv_tokens: int

    @property
    def tp(self) -> int:
        return self.deployment.tp

    @property
    def price_per_hour(self) -> float:
        return self.gpu.cost_per_hour * self.deployment.tp

    @property
    def label(self) -> str:
        return f"{self.model.name}@{self.gpu.name}x{self.deployment.tp}"


def _template(sc: Scenario, model: str, gpu: str) -> Deployment:
    """The model's deployment on this GPU in the scenario, else its first one (moved to ``gpu``)."""
    deps = [d for d in sc.deployments if d.model == model]
    same = [d for d in deps if d.gpu == gpu]
    base = (same or deps)[0]
    return base.model_copy(update={"gpu": gpu, "instances": 1})


def _tp_options(sc: Scenario, model: ModelSpec, gpu: GPUType) -> list[int]:
    """tp values worth trying, in order (see the module docstring)."""
    if gpu.name in model.latency and model.latency[gpu.name].builtin is False:
        deployed = [d.tp for d in sc.deployments if d.model == model.name and d.gpu == gpu.name]
        return deployed[:1] or list(TP_CHOICES)
    exact = sorted(int(k.split("@tp")[1]) for k in model.latency
                   if k.startswith(f"{gpu.name}@tp") and model.latency[k].builtin is False)
    if exact:
        return exact
    return list(TP_CHOICES)


def _usable(model: ModelSpec, gpu: GPUType, dep: Deployment, need_tokens: int) -> int | None:
    """KV tokens of the instance, or None when it cannot serve the mix's longest request or has no
    latency profile."""
    if latency_for(model, dep) is None:
        return None
    try:
        profile_for(model, dep)
    except (KeyError, ValueError):
        return None
    kv = kv_capacity_tokens(model, gpu, dep)
    return kv if kv >= need_tokens else None


def candidates(sc: Scenario, inventory: dict[str, int], need_tokens: dict[str, int]) -> list[Candidate]:
    """Every candidate deployment over the GPU types in ``inventory`` (name → GPUs available).

    ``need_tokens``: per model, the context (prompt + output tokens) its longest planned request needs.
    """
    gpus = {g.name: g for g in sc.gpus}
    out: list[Candidate] = []
    for j, model in enumerate(sc.models):
        for gname, count in inventory.items():
            gpu = gpus[gname]
            builtin = gname in model.latency and model.latency[gname].builtin is not False
            taken = 0
            for tp in _tp_options(sc, model, gpu):
                if tp > count:
                    continue
                dep = _template(sc, model.name, gname).model_copy(update={"tp": tp})
                kv = _usable(model, gpu, dep, need_tokens[model.name])
                if kv is None:
                    continue
                out.append(Candidate(j, model, gpu, dep, kv))
                taken += 1
                if taken >= (BUILTIN_TP_COUNT if builtin else 1):
                    break
    return out


def why_nothing_fits(sc: Scenario, inventory: dict[str, int], need_tokens: dict[str, int]) -> str:
    """One line per model on why no (GPU, tp) of the inventory can host it."""
    gpus = {g.name: g for g in sc.gpus}
    lines = []
    for model in sc.models:
        reasons = []
        for gname, count in inventory.items():
            gpu = gpus[gname]
            if gname not in model.latency and not any(k.startswith(f"{gname}@tp") for k in model.latency):
                reasons.append(f"no latency profile for {gname}")
                continue
            fits = [tp for tp in TP_CHOICES if tp <= count and kv_capacity_tokens(
                model, gpu, _template(sc, model.name, gname).model_copy(update={"tp": tp})) >= need_tokens[model.name]]
            reasons.append(f"{gname}: {'needs more than ' + str(count) + ' GPUs' if not fits else 'no profile at tp ' + str(fits[0])}")
        lines.append(f"{model.name} ({'; '.join(reasons)})")
    return "; ".join(lines)
