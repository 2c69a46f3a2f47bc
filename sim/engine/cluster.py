"""Deployments (instances of one model on one GPU type) and the cluster that groups them by model.

The dispatcher talks to models, not instances: it asks a model for its free capacity and hands it
requests; the model's deployments pick the instance (join-the-shortest-queue for per-instance queues,
or one FIFO queue shared by all instances of the deployment, from which free instances pull).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import simpy

from sim.engine.instance import Instance
from sim.engine.latency import LatencyProfile
from sim.engine.paged import PagedGroup, PagedInstance, fit_limit
from sim.engine.request import Request
from sim.engine.scheduler import RESERVE, SchedulerConfig

RATE_TAU_S = 30.0
"""Time constant of :meth:`DeploymentRuntime.recent_rate`: long enough to average a few dozen arrivals,
short enough to follow a load shift within a minute."""


class DeploymentRuntime:
    """Runtime state of one scenario deployment."""

    def __init__(
        self,
        env: simpy.Environment,
        *,
        name: str,
        model_index: int,
        gpu: str,
        tp: int,
        gpu_cost_per_hour: float,
        profile: LatencyProfile,
        n_instances: int,
        max_seqs: int,
        kv_capacity_tokens: int,
        shared_queue: bool,
        max_queue: int | None,
        first_iid: int,
        on_finish: Callable[[Request], None],
        scheduler: SchedulerConfig = RESERVE,
    ) -> None:
        self.name = name
        self.env = env
        self.profile = profile
        self.scheduler = scheduler
        self.model_index = model_index
        self.gpu = gpu
        self.tp = tp
        self.gpu_cost_per_hour = gpu_cost_per_hour
        self.max_seqs = max_seqs
        self.kv_capacity_tokens = kv_capacity_tokens
        self.max_queue = max_queue
        self.queue: deque[Request] | None = deque() if shared_queue else None
        # Token totals of every request ever submitted here: an unbiased sample of this deployment's
        # requests (the ones running now are length-biased), read by the latency estimator
        # (sim/engine/estimate.py) for the mean service time. Bookkeeping only; no engine decision reads it.
        self.submitted = 0
        self.submitted_prompt = 0
        self.submitted_prompt_sq = 0
        self.submitted_output = 0
        # Recent arrival rate: a count of submissions decaying as e^(−age/τ), kept at each submission so
        # it depends on the submission times only (not on when someone looks); see :meth:`recent_rate`.
        self._rate_t = 0.0
        self._rate_r = 0.0
        self.instances: list[Instance | PagedInstance]
        if scheduler.kind == "paged":
            group = PagedGroup(self.queue) if shared_queue else None
            self.instances = [
                PagedInstance(
                    env, first_iid + k, profile, max_seqs, kv_capacity_tokens, scheduler,
                    group=group if group is not None else PagedGroup(), on_finish=on_finish,
                )
                for k in range(n_instances)
            ]
        else:
            self.instances = [
                Instance(
                    env,
                    first_iid + k,
                    profile,
                    max_seqs,
                    kv_capacity_tokens,
                    queue=self.queue,
                    on_finish=on_finish,
                )
                for k in range(n_instances)
            ]
        # Instances not failed (sim/engine/faults.py), in construction order: routing and capacity see
        # only these. Equal to ``instances`` as long as nothing fails, so no-event runs are unchanged.
        self.up: list[Instance | PagedInstance] = list(self.instances)
        # fits() is one comparison against the largest ``prompt + output`` the scheduler accepts (reserve:
        # the KV capacity; paged: found once, see fit_limit); -1: never fits (no instance)
        self.fit_tokens = -1
        if self.instances:
            self.fit_tokens = (kv_capacity_tokens if scheduler.kind == RESERVE.kind
                               else fit_limit(scheduler, kv_capacity_tokens))

    # -- state -----------------------------------------------------------------
    # (plain loops rather than sum() over generators: read per query by per-query routing and the sampler)
    @property
    def running(self) -> int:
        total = 0
        for inst in self.instances:
            total += inst.running
        return total

    @property
    def queued(self) -> int:
        if self.queue is not None:
            return len(self.queue)
        total = 0
        for inst in self.instances:
            total += len(inst.queue)
        return total

    def capacity(self, mode: str) -> float:
        """Queries this deployment can take now: free slots (net of the queue), plus queue room."""
        up = self.up
        if not up:  # every instance failed: nothing can be taken, whatever the mode
            return 0.0
        if mode == "unlimited":
            return math.inf
        free = 0
        for inst in up:
            free += inst.free_slots
        queued = self.queued
        slots = max(0, free - queued)
        if mode == "slots":
            return float(slots)
        if self.max_queue is None:
            return math.inf
        waiting_beyond_slots = max(0, queued - free)
        return float(slots + max(0, self.max_queue * len(up) - waiting_beyond_slots))

    def fits(self, req: Request) -> bool:
        """Whether the request can ever complete here (see :meth:`SchedulerConfig.fits`); never on a
        deployment of 0 instances (listed, not served). Per submitted request, so one comparison with
        :attr:`fit_tokens` (exact: ``fits`` depends on ``prompt + output`` only, monotonically)."""
        return req.prompt_tokens + req.output_tokens <= self.fit_tokens

    # -- actions ----------------------------------------------------------------
    def submit(self, req: Request) -> None:
        p = req.prompt_tokens
        self.submitted += 1
        self.submitted_prompt += p
        self.submitted_prompt_sq += p * p
        self.submitted_output += req.output_tokens
        now = self.env.now
        self._rate_r = self._rate_r * math.exp((self._rate_t - now) / RATE_TAU_S) + 1.0 / RATE_TAU_S
        self._rate_t = now
        if self.queue is not None and self.scheduler.kind == "paged":
            self.instances[0].submit(req)  # the group hands the head to whichever member takes it
            return
        if self.queue is not None:
            # Hand it to the instance with most free slots; poke the others too, since with a shared
            # queue whichever instance reaches an iteration boundary first takes it.
            best = max(self.up, key=lambda inst: inst.free_slots)
            best.submit(req)
            for inst in self.up:
                if inst is not best and inst.free_slots > 0:
                    inst.poke()
            return
        self.next_instance().submit(req)

    def recent_rate(self) -> float:
        """Arrivals per second here lately: Σ e^(−age/τ)/τ over submissions (τ = :data:`RATE_TAU_S`),
        divided by 1 − e^(−t/τ) so the run's start does not read as a lull. Read by the latency estimator."""
        now = self.env.now
        warm = -math.expm1(-now / RATE_TAU_S)
        if warm <= 0:
            return 0.0
        return self._rate_r * math.exp((self._rate_t - now) / RATE_TAU_S) / warm

    def next_instance(self) -> Instance | PagedInstance:
        """With per-instance queues, the instance the next request joins (fewest running + queued per slot,
        first on ties); read by the latency estimator, so it predicts the queue a query will really join."""
        insts = self.up or self.instances
        best = insts[0]
        if len(insts) > 1:  # min() with a key, unrolled: this runs once per submitted request
            # per slot, every instance having max_seqs of them: the same order as the integer counts
            best_v = best.running + len(best.queue)
            for inst in insts:
                v = inst.running + len(inst.queue)
                if v < best_v:
                    best, best_v = inst, v
        return best

    # -- failures (sim/engine/faults.py) -----------------------------------------
    def fail(self, indices: list[int]) -> list[tuple[Request, int]]:
        """Instances ``indices`` (0-based within this deployment) go down; returns their running and
        privately queued requests, restarted, each with the id of the instance it was running on (-1:
        queued). A shared queue stays while any instance survives (the survivors pull from it); when none
        does, it is emptied into the result too."""
        out: list[tuple[Request, int]] = []
        for k in indices:
            inst = self.instances[k]
            if not inst.down:
                out += inst.fail(drain_queue=self.queue is None)
        self.up = [inst for inst in self.instances if not inst.down]
        if self.queue is not None and not self.up and self.queue:
            held = list(self.queue)
            self.queue.clear()
            for r in held:
                r.restart()
            out += [(r, -1) for r in held]
        return out

    def recover(self, indices: list[int]) -> None:
        """Instances ``indices`` come back empty and take work again."""
        for k in indices:
            self.instances[k].recover()
        self.up = [inst for inst in self.instances if not inst.down]


class ModelGroup:
    """All deployments serving one model (the router's column j)."""

    def __init__(self, name: str, deployments: list[DeploymentRuntime]) -> None:
        self.name = name
        self.deployments = deployments
        # deployments with at least one instance (``instances: 0`` lists a model without serving it);
        # fixed for the run: failures change which instances are up, not how many there are
        self.served = [d for d in deployments if d.instances]
        self.orphan: Callable[[Request], None] | None = None  # set by sim.engine.faults
        # the largest prompt + output some deployment accepts (see DeploymentRuntime.fit_tokens)
        self._fit_tokens = max((d.fit_tokens for d in deployments), default=-1)

    def capacity(self, mode: str) -> float:
        return sum(d.capacity(mode) for d in self.deployments)

    @property
    def in_flight(self) -> int:
        total = 0
        for d in self.deployments:
            total += d.running + d.queued
        return total

    def fits(self, req: Request) -> bool:
        """Whether the request could ever run on some deployment of this model (failed ones included:
        being down is not the request's fault; see :meth:`submit`). Some deployment accepts it exactly
        when the largest of their limits does (one comparison: read per routed request)."""
        return req.prompt_tokens + req.output_tokens <= self._fit_tokens

    def can_take(self, req: Request) -> bool:
        """Some deployment that is up could run the request."""
        return any(d.up and d.fits(req) for d in self.deployments)

    def submit(self, req: Request) -> None:
        """To the least-loaded deployment that is up and fits it. Only when none is (every instance that
        could run it failed) is it handed to ``orphan`` (sim/engine/faults.py holds or loses it)."""
        if len(self.deployments) == 1:  # the common case, without building a candidate list
            d = self.deployments[0]
            if d.up and d.fits(req):
                d.submit(req)
                return
            candidates = []
        else:
            candidates = [d for d in self.deployments if d.up and d.fits(req)]
        if len(candidates) == 1:
            candidates[0].submit(req)
            return
        if not candidates:
            assert self.orphan is not None, "a request reached a model none of whose instances can run it"
            self.orphan(req)
            return
        self.least_loaded(candidates).submit(req)

    def least_loaded(self, candidates: list[DeploymentRuntime] | None = None) -> DeploymentRuntime:
        """The deployment :meth:`submit` picks among ``candidates`` (default: those with an instance up,
        else all): fewest running + queued per slot of the instances up, first on ties. The latency
        estimator asks the same question."""
        if candidates is None:
            candidates = [d for d in self.deployments if d.up] or self.deployments
        return min(
            candidates,
            key=lambda d: (d.running + d.queued) / (d.max_seqs * max(len(d.up), 1)),
        )
