"""Build the runtime cluster (deployments grouped by model) from a validated scenario."""

from __future__ import annotations

from collections.abc import Callable

import simpy

from sim.config.checks import kv_capacity_tokens, profile_for, scheduler_for
from sim.config.schema import Scenario
from sim.engine.cluster import DeploymentRuntime, ModelGroup
from sim.engine.request import Request


def build_cluster(
    env: simpy.Environment, sc: Scenario, on_finish: Callable[[Request], None]
) -> tuple[list[ModelGroup], list[DeploymentRuntime]]:
    """One :class:`ModelGroup` per scenario model (in ``sc.models`` order) and the flat deployment list."""
    gpus = {g.name: g for g in sc.gpus}
    models = {m.name: m for m in sc.models}
    index = {m.name: j for j, m in enumerate(sc.models)}
    deployments: list[DeploymentRuntime] = []
    next_iid = 0
    for k, d in enumerate(sc.deployments):
        model, gpu = models[d.model], gpus[d.gpu]
        dep = DeploymentRuntime(
            env,
            name=f"{d.model}@{d.gpu}#{k}",
            model_index=index[d.model],
            gpu=d.gpu,
            tp=d.tp,
            gpu_cost_per_hour=gpu.cost_per_hour,
            profile=profile_for(model, d),
            n_instances=d.instances,
            max_seqs=d.max_seqs,
            kv_capacity_tokens=kv_capacity_tokens(model, gpu, d),
            shared_queue=d.queue == "shared",
            max_queue=d.max_queue,
            scheduler=scheduler_for(d, sc),
            first_iid=next_iid,
            on_finish=on_finish,
        )
        next_iid += d.instances
        deployments.append(dep)
    groups = [
        ModelGroup(m.name, [dep for dep in deployments if dep.model_index == j]) for j, m in enumerate(sc.models)
    ]
    return groups, deployments
