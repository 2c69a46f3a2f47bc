"""The latency estimator: predicted TTFT and end-to-end latency of a new query on each model, from the
live cluster state, for SLO-aware routing (issue 12).

Model (per model j, O(deployments + instances) Python work per call, then O(n·m) numpy):

* **Where it goes.** The deployment :meth:`ModelGroup.least_loaded` picks and, with per-instance queues,
  the instance :meth:`DeploymentRuntime.next_instance` picks: the queue the query would really join. A
  shared queue is one queue feeding all ``N`` instances of the deployment.
* **Slots.** Each instance runs ``s = min(max_seqs, KV capacity / mean KV per request)`` sequences at
  once (mean KV per request = prompt + output under ``reserve``, which reserves it at admission; prompt +
  output / 2 under ``paged``, whose blocks grow with the output). The target queue is served by ``K``
  slots (``s`` for a private queue, ``N·s`` for a shared one); ``free`` of them are free now (KV-aware).
* **Waiting.** With ``q`` requests queued ahead: none if ``q < free``; otherwise the query starts at the
  ``(q − free + 1)``-th completion, and a full queue group completes requests at rate ``K / S̄``, so
  ``wait = (q − free + 1) · S̄ / K`` — work ahead over the deployment's current service rate. ``S̄`` is the
  mean residence time of a request in a slot at the current batch size, from the token totals of every
  request ever submitted to the deployment (an unbiased sample; the requests running *now* are
  length-biased). For M/M/c (exponential service, memoryless) this is exactly the conditional mean wait
  ``(q + 1)/(cμ)``, so its average over arrivals is Erlang C's mean wait (PASTA): the test checks it.
* **Own service.** TTFT = wait + prefill of its own prompt; end to end = TTFT + (output − 1) decode steps
  at the batch size it will run in (``s`` when the group is saturated, else the running count + 1),
  each sequence holding the mean context (prompt + output / 2). Decodes are paused (``reserve``) or slowed
  (``paged``: the extra cost of a mixed step) by other requests' prefills; about ``(b − 1)·D / S̄`` of them
  are admitted during a decode phase of length ``D``, so ``D`` is inflated by ``1 + (b − 1)·pause / S̄``.

Deliberate simplifications: it does not see the queries of its own batch ahead of each other (the
dispatcher's SLO capacity accounts for that, :meth:`LatencyEstimator.slo_capacity`), the residual of the
step in progress, prompt chunking beyond the first step, preemptions, or prefix-cache hits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim.engine.cluster import DeploymentRuntime, ModelGroup
from sim.engine.latency import LatencyProfile

__all__ = ["LatencyEstimator", "ModelState", "model_state"]


@dataclass(frozen=True)
class ModelState:
    """One model's snapshot as the estimator sees it (target queue group of its least-loaded deployment)."""

    wait_s: float  # predicted wait before admission of one more query
    batch: int  # sequences per instance it will decode with
    decode_step_s: float  # one decode iteration at that batch, inflated for others' prefills
    profile: LatencyProfile
    mean_service_s: float  # S̄: mean residence time of a request in a slot (for SLO capacity)
    mean_prefill_s: float  # mean prefill time of a request here
    groups: tuple[tuple[int, int, int], ...]  # per queue group of the model: (free slots, queued, slots K)


def _means(d: DeploymentRuntime, prompt: float, output: float) -> tuple[float, float, float]:
    """Mean prompt, prompt², output of the deployment's requests (the fallback: the batch's own)."""
    if d.submitted:
        k = d.submitted
        return d.submitted_prompt / k, d.submitted_prompt_sq / k, d.submitted_output / k
    return prompt, prompt * prompt, output


def _slots(d: DeploymentRuntime, kv_mean: float) -> int:
    """Sequences one instance of ``d`` holds at once: max_seqs, or fewer when KV memory binds first."""
    by_kv = int(d.kv_capacity_tokens // max(kv_mean, 1.0))
    return max(1, min(d.max_seqs, by_kv))


def _free(d: DeploymentRuntime, insts: list, kv_mean: float) -> int:
    free = 0
    for inst in insts:
        by_kv = int(max(0, inst.kv_capacity_tokens - inst.kv_used_tokens) // max(kv_mean, 1.0))
        free += max(0, min(d.max_seqs - inst.running, by_kv))
    return free


def _groups(d: DeploymentRuntime, kv_mean: float, s: int) -> list[tuple[int, int, int]]:
    """(free, queued, slots) of each queue of ``d``: one shared queue, or one per instance."""
    if d.queue is not None:
        return [(_free(d, d.instances, kv_mean), len(d.queue), s * len(d.instances))]
    return [(_free(d, [inst], kv_mean), inst.queue_len, s) for inst in d.instances]


def model_state(group: ModelGroup, prompt: float, output: float, *, groups: bool = True) -> ModelState:
    """Snapshot of ``group`` for a query; ``prompt`` / ``output`` (the batch's mean tokens on this model)
    stand in for the deployment's means until it has served anything. ``groups=False`` skips the
    per-queue listing only :func:`slo_capacity` reads (the per-query recording path)."""
    d = group.least_loaded() if len(group.deployments) > 1 else group.deployments[0]
    prof = d.instances[0].profile
    p, p2, o = _means(d, prompt, output)
    paged = d.scheduler.kind == "paged"
    s = _slots(d, p + (o / 2 if paged else o))
    kv_mean = p + (o / 2 if paged else o)
    if d.queue is not None:
        free, q, k = _free(d, d.instances, kv_mean), len(d.queue), s * len(d.instances)
        running = d.running / len(d.instances)
    else:
        inst = d.next_instance()
        free, q, k = _free(d, [inst], kv_mean), inst.queue_len, s
        running = float(inst.running)
    saturated = q >= free
    b = s if saturated else max(1, min(s, math.ceil(running + (q + 1) / max(k // s, 1))))
    prefill = prof.prefill_base_s + prof.prefill_per_token_s * p + prof.prefill_per_token2_s * p2
    prefill += prof.step_overhead_s
    ctx = p + o / 2
    step = prof.iteration_time(b, int(b * ctx))
    base_service = prefill + max(o - 1.0, 0.0) * step
    others = b - 1
    if others > 0 and base_service > 0:
        if paged:
            pm = int(round(p))
            pause = prof.step_time(pm, pm * pm / 2, others, int(others * ctx)) - prof.iteration_time(
                others, int(others * ctx))
        else:
            pause = prefill
        step *= 1.0 + others * max(pause, 0.0) / base_service
    service = prefill + max(o - 1.0, 0.0) * step
    wait = 0.0 if not saturated else (q - free + 1) * service / k
    all_groups = (
        tuple(g for dep in group.deployments for g in _groups(dep, kv_mean, _slots(dep, kv_mean)))
        if groups else ()
    )
    return ModelState(wait, b, step, prof, service, prefill, all_groups)


class LatencyEstimator:
    """Predicted TTFT and end-to-end seconds of queries on every model, from the live cluster state."""

    def __init__(self, models: list[ModelGroup]) -> None:
        self.models = models

    def states(self, prompt: np.ndarray, output: np.ndarray) -> list[ModelState]:
        """One :class:`ModelState` per model; ``prompt`` (n,) and ``output`` (n, m) give the fallback means."""
        mp = float(np.mean(prompt)) if len(prompt) else 0.0
        mo = np.mean(output, axis=0) if len(output) else np.zeros(len(self.models))
        return [model_state(g, mp, float(mo[j])) for j, g in enumerate(self.models)]

    def predict(
        self, prompt: np.ndarray, output: np.ndarray, states: list[ModelState] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ttft, e2e), each (n, m) seconds, for queries with ``prompt`` (n,) tokens and predicted
        ``output`` (n, m) tokens."""
        p = np.asarray(prompt, dtype=np.float64)
        o = np.maximum(np.asarray(output, dtype=np.float64), 1.0)
        if states is None:
            states = self.states(p, o)
        wait = np.array([st.wait_s for st in states])
        step = np.array([st.decode_step_s for st in states])
        base = np.array([st.profile.prefill_base_s + st.profile.step_overhead_s for st in states])
        lin = np.array([st.profile.prefill_per_token_s for st in states])
        quad = np.array([st.profile.prefill_per_token2_s for st in states])
        pc = p[:, None]
        ttft = wait + base + lin * pc + quad * pc * pc
        e2e = ttft + (o - 1.0) * step
        return ttft, e2e

    def predict_one(self, j: int, prompt: int, output: int) -> tuple[float, float]:
        """(ttft, e2e) of one query on model ``j`` only: the cheap path for recording a decision."""
        st = model_state(self.models[j], float(prompt), float(output), groups=False)
        prof = st.profile
        ttft = st.wait_s + prof.prefill_time(prompt)
        return ttft, ttft + max(output - 1, 0) * st.decode_step_s


def slo_capacity(states: list[ModelState], slo: float, route_on: str) -> np.ndarray:
    """Queries each model can take in this batch and still meet ``slo`` (the dispatcher's capacity rule).

    Per queue group (free slots ``f``, ``q`` queued, ``K`` slots) the k-th extra query waits
    ``max(0, q + k − f)·S̄/K`` and then needs its own service ``s`` (``S̄`` end to end, the mean prefill for
    TTFT), so it meets the SLO iff ``s ≤ slo`` and ``k ≤ f − q + ⌊(slo − s)·K / S̄⌋``; the model's capacity
    is the sum over its queue groups (a query goes to the least-loaded one, which keeps them balanced).
    """
    caps = np.zeros(len(states))
    for j, st in enumerate(states):
        own = st.mean_service_s if route_on == "e2e" else st.mean_prefill_s
        if own > slo:
            continue
        if st.mean_service_s <= 0:
            caps[j] = np.inf
            continue
        total = 0
        for free, queued, k in st.groups:
            total += max(0, free - queued + math.floor((slo - own) * k / st.mean_service_s))
        caps[j] = total
    return caps
