"""Node failures and recoveries during a run (scenario ``events``, kind ``node_failure``; docs/events.md).

At a failure the named instances of one deployment go down (:meth:`DeploymentRuntime.fail`): nothing is
routed, queued or admitted to them, and their running requests (and, with per-instance queues, their
queued ones) come back restarted from scratch -- the KV cache was on the failed node, so the prompt is
prefilled again. ``on_failure: requeue`` submits each again to the model (least-loaded surviving
deployment, shortest surviving queue, at the tail: FIFO by re-queue time) and counts a retry;
``on_failure: lose`` marks it lost. A request whose model has no surviving instance that can run it is
held until a recovery of one that can, when one is scheduled later, else lost. At a recovery the
instances come back empty and held requests of the model are submitted again, in the order they were
held.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import simpy

from sim.engine.cluster import DeploymentRuntime, ModelGroup
from sim.engine.request import Request


@dataclass(frozen=True)
class Failure:
    """Instances ``indices`` of deployment ``deployment`` fail at ``at_s`` (and recover at
    ``recover_at_s``, or never); their requests are re-queued, or lost when ``lose``."""

    at_s: float
    deployment: int
    indices: tuple[int, ...]
    recover_at_s: float | None = None
    lose: bool = False


class FaultController:
    """Applies :class:`Failure` s to the cluster at their times and accounts every request they touch.

    ``on_lost(request, instance_id)`` is called once per lost request (``instance_id`` of the failed
    instance it was on, -1 if it never started); re-queued requests get ``retries += 1``, then
    ``on_retry(request)``.
    """

    def __init__(
        self,
        env: simpy.Environment,
        groups: list[ModelGroup],
        deployments: list[DeploymentRuntime],
        failures: list[Failure],
        on_lost: Callable[[Request, int], None],
        on_retry: Callable[[Request], None] | None = None,
    ) -> None:
        self.env = env
        self.groups = groups
        self.deployments = deployments
        self.failures = failures
        self.on_lost = on_lost
        self.on_retry = on_retry
        self.held: list[list[Request]] = [[] for _ in groups]
        self.lost = 0
        self.retried = 0
        # per failure: requests taken off its instances at at_s, and of those re-queued / lost then
        self.stats = [{"requests_hit": 0, "requeued": 0, "lost": 0} for _ in failures]
        for j, g in enumerate(groups):
            g.orphan = self._orphan_cb(j)
        # Recoveries before failures at one instant: an instance may fail again when it comes back.
        plan: list[tuple[float, int, int]] = []
        for k, f in enumerate(failures):
            plan.append((f.at_s, 1, k))
            if f.recover_at_s is not None:
                plan.append((f.recover_at_s, 0, k))
        for t, kind, k in sorted(plan):
            ev = env.timeout(t - env.now)
            ev.callbacks.append(self._recover_cb(k) if kind == 0 else self._fail_cb(k))

    def _orphan_cb(self, j: int) -> Callable[[Request], None]:
        return lambda r: self._orphan(r, j)

    def _fail_cb(self, k: int) -> Callable[[simpy.Event], None]:
        return lambda _ev: self.fail(self.failures[k], self.stats[k])

    def _recover_cb(self, k: int) -> Callable[[simpy.Event], None]:
        return lambda _ev: self.recover(self.failures[k])

    # -- actions --------------------------------------------------------------------
    def fail(self, f: Failure, stats: dict[str, int] | None = None) -> None:
        dep = self.deployments[f.deployment]
        group = self.groups[dep.model_index]
        hit = dep.fail(list(f.indices))
        j = dep.model_index
        if stats is not None:
            stats["requests_hit"] += len(hit)
        for r, iid in hit:
            # requeue only where it can go: a surviving instance now, or one recovering later; else lost
            # (no restart happened, so no retry is counted and it stays on the instance it was on)
            if f.lose or not (group.can_take(r) or self._can_hold(r, j)):
                self._lose(r, iid)
                if stats is not None:
                    stats["lost"] += 1
                continue
            r.retries += 1
            self.retried += 1
            if self.on_retry is not None:
                self.on_retry(r)
            if stats is not None:
                stats["requeued"] += 1
            self._resubmit(group, j, r)

    def recover(self, f: Failure) -> None:
        dep = self.deployments[f.deployment]
        dep.recover(list(f.indices))
        j = dep.model_index
        held, self.held[j] = self.held[j], []
        for r in held:
            self._resubmit(self.groups[j], j, r)

    # -- requests without a home ------------------------------------------------------
    def _resubmit(self, group: ModelGroup, j: int, r: Request) -> None:
        if group.can_take(r):
            group.submit(r)
        else:
            self._orphan(r, j)

    def _can_hold(self, r: Request, j: int) -> bool:
        """Whether a recovery of an instance of model ``j`` that can run ``r`` is scheduled later."""
        now = self.env.now
        return any(
            f.recover_at_s is not None
            and f.recover_at_s > now
            and self.deployments[f.deployment].model_index == j
            and self.deployments[f.deployment].fits(r)
            for f in self.failures
        )

    def _orphan(self, r: Request, j: int) -> None:
        """No surviving instance of model ``j`` can run ``r``: hold it for a later recovery of one that
        can, or lose it when none is scheduled."""
        if self._can_hold(r, j):
            self.held[j].append(r)
        else:
            self._lose(r, -1)

    def _lose(self, r: Request, iid: int) -> None:
        self.lost += 1
        self.on_lost(r, iid)
