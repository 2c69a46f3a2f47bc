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
* **Service rate.** Per instance, each admission costs ``pause`` of instance time (its prefill step under
  ``reserve``, which pauses the decodes; what its prompt adds to a decode step under ``paged``), and the
  rest of the time runs decode steps of ``iteration_time(b, b·ctx)`` with ``b`` sequences each holding
  the mean context (prompt + output / 2). Saturated (``s`` sequences), ``s`` requests take
  ``S̄ = (ō − 1)·step(s) + s·pause`` of instance time: ``S̄`` is a request's residence in its slot and
  the queue group completes ``K / S̄`` requests a second. The means come from the token totals of every
  request ever submitted to the deployment (an unbiased sample; the requests running *now* are
  length-biased).
* **Waiting.** With ``q`` requests queued ahead and ``free`` free slots: if ``q ≥ free`` the query starts
  at the ``(q − free + 1)``-th completion, ``wait = (q − free + 1)·S̄/K`` — work ahead over the current
  service rate. For M/M/c (exponential service, memoryless) this is exactly the conditional mean wait
  ``(q + 1)/(cμ)``, so its average over arrivals is Erlang C's mean wait (PASTA): the test checks it.
  Otherwise it is admitted at the end of the step in progress if the instance is busy (mean residual of
  a length-biased step) and at once if idle.
* **Own service.** TTFT = wait + prefill of its own prompt; end to end = TTFT + (output − 1) decode steps,
  each stretched by the instance time others' admissions take. Saturated: ``b = s`` and the stretch is
  ``1 / (1 − s·pause/S̄)``. With free slots: the admission rate is the deployment's recent arrival rate
  ``λ`` (:meth:`DeploymentRuntime.recent_rate`, per instance), the stretch ``1 / (1 − λ·pause)`` and ``b`` by
  Little's law ``λ × time in the batch``, at least the sequences running now plus this one.

Deliberate simplifications: it does not see the queries of its own batch ahead of each other (the
dispatcher's SLO capacity accounts for that, :func:`slo_capacity`; an expected-batch-mates term was
tried and dropped: it removed the bias on slo_routing.yaml but doubled the TTFT MAPE, charging every
model for bursts only some get), prompt chunking beyond the first step, preemptions, or prefix-cache hits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim.engine.cluster import DeploymentRuntime, ModelGroup
from sim.engine.instance import Instance
from sim.engine.latency import LatencyProfile
from sim.engine.paged import PagedInstance

__all__ = ["LatencyEstimator", "ModelState", "model_state"]


@dataclass(frozen=True)
class ModelState:
    """One model's snapshot as the estimator sees it (target queue group of its least-loaded deployment)."""

    wait_s: float  # predicted wait before admission of one more query
    batch: int  # sequences per instance it will decode with
    decode_step_s: float  # one decode iteration at that batch, inflated for others' prefills
    profile: LatencyProfile
    mean_service_s: float  # S̄: mean residence time of a request in a slot once the group is saturated
    mean_prefill_s: float  # mean prefill time of a request here
    groups: tuple[tuple[int, int, int], ...]  # per queue group of the model: (free slots, queued, slots K)
    now_service_s: float = 0.0  # a mean request's end-to-end service if admitted now (no wait)


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


def _free(d: DeploymentRuntime, insts: list[Instance | PagedInstance], kv_mean: float) -> tuple[int, bool]:
    """Free slots over ``insts`` (a slot counts when the KV memory left holds a mean request too), and
    whether one of them is idle."""
    kv, max_seqs = max(kv_mean, 1.0), d.max_seqs
    free, idle = 0, False
    for inst in insts:
        running = inst.running
        if running < max_seqs:
            idle = idle or running == 0
            by_kv = int((inst.kv_capacity_tokens - inst.kv_used_tokens) // kv)
            if by_kv > 0:
                free += min(max_seqs - running, by_kv)
    return free, idle


def _groups(d: DeploymentRuntime, kv_mean: float, s: int) -> list[tuple[int, int, int]]:
    """(free, queued, slots) of each queue of ``d``: one shared queue, or one per instance; failed
    instances (sim/engine/faults.py) have none."""
    if d.queue is not None:
        return [(_free(d, d.up, kv_mean)[0], len(d.queue), s * len(d.up))] if d.up else []
    return [(_free(d, [inst], kv_mean)[0], inst.queue_len, s) for inst in d.up]


def _pause(prof: LatencyProfile, paged: bool, p: float, prefill: float, n: int, ctx: float) -> float:
    """Decode time lost to one other request's admission: its whole prefill step under ``reserve``
    (decodes wait for it), what its prompt adds to a step of ``n`` decodes under ``paged``."""
    if not paged:
        return prefill
    pm, n = int(round(p)), max(n, 1)
    return max(0.0, prof.step_time(pm, pm * pm / 2, n, int(n * ctx)) - prof.iteration_time(n, int(n * ctx)))


_Static = tuple[float, float, float, float, int, float, float, float, float, float]


def _static(d: DeploymentRuntime, prompt: float, output: float) -> _Static:
    """The parts of a deployment's state that depend only on its mean request: mean prompt and output,
    mean KV per request, slots, mean prefill, mean context, decode steps, pause per admission,
    saturated decode step and slot residence S̄ (see the module docstring)."""
    prof = d.profile
    p, p2, o = _means(d, prompt, output)
    paged = d.scheduler.kind == "paged"
    kv_mean = p + (o / 2 if paged else o)
    s = _slots(d, kv_mean)
    prefill = prof.prefill_base_s + prof.prefill_per_token_s * p + prof.prefill_per_token2_s * p2
    prefill += prof.step_overhead_s
    ctx, dec = p + o / 2, max(o - 1.0, 0.0)
    # Saturated: per instance, s admissions cost s pauses and the decodes of s requests take dec steps.
    pause_s = _pause(prof, paged, p, prefill, s, ctx)
    sat_step = prof.iteration_time(s, int(s * ctx))
    return p, kv_mean, ctx, dec, s, prefill, pause_s, sat_step, dec * sat_step + s * pause_s, o


def model_state(group: ModelGroup, prompt: float, output: float, *, groups: bool = True) -> ModelState:
    """Snapshot of ``group`` for a query; ``prompt`` / ``output`` (the batch's mean tokens on this model)
    stand in for the deployment's means until it has served anything. ``groups=False`` skips the
    per-queue listing only :func:`slo_capacity` reads (the per-query recording path)."""
    served = group.served
    if not served:  # 0 instances (listed, not served): nothing can be predicted, and capacity is 0
        return UNSERVED
    d = group.least_loaded([dep for dep in served if dep.up] or served) if len(served) > 1 else served[0]
    prof = d.profile
    st = _static(d, prompt, output)
    p, kv_mean, ctx, dec, s, prefill, pause_s, sat_step, service, _o = st
    paged = d.scheduler.kind == "paged"
    up = d.up or d.instances  # (a model with every instance down gets capacity 0: estimates unused)
    if d.queue is not None:
        (free, idle), q, k = _free(d, up, kv_mean), len(d.queue), s * len(up)
        running = d.running / len(up)
    else:
        inst = d.next_instance()
        (free, idle), q, k = _free(d, [inst], kv_mean), inst.queue_len, s
        running = float(inst.running)
    if q >= free:
        wait, b = (q - free + 1) * service / k, s
        share = s * pause_s / service if service > 0 else 0.0  # instance time spent on admissions
        step = sat_step / max(1.0 - share, 0.1)
    else:
        wait = 0.0
        lam = d.recent_rate() / len(up)
        b, step = _unsaturated(prof, paged, p, prefill, ctx, dec, lam, math.ceil(running) + 1, s)
        if not idle:  # admitted at the end of the step in progress (an idle instance takes it at once)
            wait = _residual_step(prof.iteration_time(b, int(b * ctx)), _pause(prof, paged, p, prefill, b, ctx), lam)
    if service <= 0:
        service = prefill + dec * step
    all_groups = (
        tuple(g for dep in group.deployments for g in _groups(dep, kv_mean, _slots(dep, kv_mean)))
        if groups else ()
    )
    return ModelState(wait, b, step, prof, service, prefill, all_groups, prefill + dec * step)


UNSERVED = ModelState(math.inf, 1, 0.0, LatencyProfile(), math.inf, math.inf, (), math.inf)
"""The state of a model with no instance at all: an infinite wait (so infinite TTFT and end to end; a 0
decode step keeps (o − 1) × step finite), no queue group (SLO capacity 0)."""


def _residual_step(step: float, pause: float, lam: float) -> float:
    """Mean time to the end of the step in progress, seen by a random arrival (length-biased: E[T²]/2E[T]):
    per second, ``lam`` steps carry an admission (``step + pause`` long), the rest of the time is decode
    steps of ``step``."""
    long = step + pause
    share = min(lam * long, 1.0)  # fraction of time in admission steps
    mean_sq_over_mean = share * long + (1.0 - share) * step
    return mean_sq_over_mean / 2.0


def _unsaturated(
    prof: LatencyProfile, paged: bool, p: float, prefill: float, ctx: float, dec: float, lam: float,
    b0: int, s: int,
) -> tuple[int, float]:
    """Batch size and effective decode step of an instance with free slots admitting ``lam`` requests a
    second: Little's law, b = λ · (time in the batch), at least the sequences running now plus this one;
    decode steps stretched by the instance time admissions take (λ · pause)."""
    b = max(1, min(s, b0))
    step = prof.iteration_time(b, int(b * ctx))
    for _ in range(3):
        share = min(lam * _pause(prof, paged, p, prefill, b, ctx), 0.9)
        step = prof.iteration_time(b, int(b * ctx)) / (1.0 - share)
        little = math.ceil(lam * (prefill + dec * step))
        nb = max(1, min(s, max(b0, little)))
        if nb == b:
            break
        b = nb
    return b, step


class LatencyEstimator:
    """Predicted TTFT and end-to-end seconds of queries on every model, from the live cluster state."""

    def __init__(self, models: list[ModelGroup]) -> None:
        self.models = models

    def states(self, prompt: np.ndarray, output: np.ndarray) -> list[ModelState]:
        """One :class:`ModelState` per model; ``prompt`` (n,) and ``output`` (n, m) give the fallback means."""
        mp = float(np.mean(prompt)) if len(prompt) else 0.0
        mo = np.mean(output, axis=0) if len(output) else np.zeros(len(self.models))
        return [model_state(g, mp, float(mo[j]), ) for j, g in enumerate(self.models)]

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
        p, o = float(prompt), max(float(output), 1.0)
        st = model_state(self.models[j], p, o, groups=False)
        prof = st.profile
        # the same operations in the same order as predict(), so both paths record identical floats
        ttft = st.wait_s + (prof.prefill_base_s + prof.step_overhead_s) + prof.prefill_per_token_s * p \
            + prof.prefill_per_token2_s * p * p
        return ttft, ttft + (o - 1.0) * st.decode_step_s


def slo_capacity(states: list[ModelState], slo: float, route_on: str) -> np.ndarray:
    """Queries each model can take in this batch and still meet ``slo`` (the dispatcher's capacity rule).

    Per queue group (free slots ``f``, ``q`` queued, ``K`` slots): the first ``f − q`` extra queries start
    at once and need the service of the current load ``s₀`` (end to end, or the mean prefill for TTFT);
    the k-th one after them waits ``k·S̄/K`` (``S̄`` the slot residence at saturation) and needs ``S̄`` (or
    the prefill), so ``⌊(slo − S̄)·K/S̄⌋`` more meet the SLO (with a queue already, ``q − f`` of those
    places are taken). The model's capacity is the sum over its queue groups (a query goes to the
    least-loaded one, which keeps them balanced). A model with no service time is unlimited.
    """
    caps = np.zeros(len(states))
    for j, st in enumerate(states):
        sat = st.mean_service_s
        if sat <= 0:
            caps[j] = np.inf
            continue
        own_now = st.now_service_s if route_on == "e2e" else st.mean_prefill_s
        own_sat = sat if route_on == "e2e" else st.mean_prefill_s
        total = 0
        for free, queued, k in st.groups:
            behind = math.floor((slo - own_sat) * k / sat) if own_sat <= slo else 0
            if free >= queued:
                total += (free - queued if own_now <= slo else 0) + behind
            else:
                total += max(0, free - queued + behind)
        caps[j] = total
    return caps
