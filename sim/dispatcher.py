"""The dispatcher: batch → RoutingProblem → policy → independent check → enqueue.

A batch is an arrival group (a batch arrival, or a single query) when the window Δ is 0, or every query
arriving within Δ seconds of the first pending one. The dispatcher never trusts a policy's own account:
it re-checks every assignment with :func:`policies.check_assignment`, refuses surplus queries on a model
whose capacity was exceeded, and counts (but does not hide) budget and quality-floor violations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import simpy

from policies import Policy, RoutingProblem, check_assignment
from sim.engine.cluster import ModelGroup
from sim.engine.request import Request
from sim.metrics.recorder import (
    REASON_CAPACITY,
    REASON_POLICY,
    REASON_TOO_LONG,
    STATUS_IN_FLIGHT,
    STATUS_REJECTED,
    RequestRecorder,
)


@dataclass(frozen=True)
class RoutingInputs:
    """Per-query arrays (N queries × m models), fixed before the run starts."""

    predicted_quality: np.ndarray
    predicted_std: np.ndarray
    predicted_cost: np.ndarray
    true_quality: np.ndarray  # realised quality (0/1 correctness or a score)
    cost: np.ndarray  # realised cost of serving query i on model j (USD)
    output_tokens: np.ndarray  # (N, m)
    prompt_tokens: np.ndarray  # (N,)


@dataclass
class BatchLog:
    """One row per routed batch (batches.parquet)."""

    time: list[float] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    solve_time_s: list[float] = field(default_factory=list)
    predicted_cost: list[float] = field(default_factory=list)
    budget: list[float] = field(default_factory=list)
    predicted_mean_quality: list[float] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


class Dispatcher:
    def __init__(
        self,
        env: simpy.Environment,
        models: list[ModelGroup],
        policy: Policy,
        inputs: RoutingInputs,
        recorder: RequestRecorder,
        *,
        window_s: float = 0.0,
        budget_per_query: float | None = None,
        min_quality: float | None = None,
        allow_reject: bool = False,
        capacity_mode: str = "slots_and_queue",
        model_names: tuple[str, ...] | None = None,
    ) -> None:
        self.env = env
        self.models = models
        self.policy = policy
        self.inputs = inputs
        self.rec = recorder
        self.window_s = window_s
        self.budget_per_query = budget_per_query
        self.min_quality = min_quality
        self.allow_reject = allow_reject
        self.capacity_mode = capacity_mode
        self.model_names = model_names
        self.pass_truth = policy.needs_true_quality
        self.log = BatchLog()
        self._pending: list[np.ndarray] = []
        self._window_open = False
        self.budget_violations = 0
        self.overspend_usd = 0.0
        self.quality_floor_misses = 0
        self.capacity_refusals = 0

    # -- arrivals ---------------------------------------------------------------
    def arrive(self, ids: np.ndarray) -> None:
        """Queries ``ids`` (one arrival group) arrive now."""
        self.rec.arrival[ids] = self.env.now
        if self.window_s <= 0:
            self.route(ids)
            return
        self._pending.append(ids)
        if not self._window_open:
            self._window_open = True
            self.env.timeout(self.window_s).callbacks.append(self._close_window)

    def _close_window(self, _event: simpy.Event) -> None:
        self._window_open = False
        if not self._pending:  # already flushed
            return
        ids = np.concatenate(self._pending)
        self._pending.clear()
        self._window_open = False
        self.route(ids)

    def flush(self) -> None:
        """Route whatever is pending (used when the run is cut off mid-window)."""
        if self._pending:
            ids = np.concatenate(self._pending)
            self._pending.clear()
            self.route(ids)

    # -- routing ------------------------------------------------------------------
    def route(self, ids: np.ndarray) -> None:
        inp = self.inputs
        n = len(ids)
        capacity = np.array([g.capacity(self.capacity_mode) for g in self.models], dtype=np.float64)
        budget = None if self.budget_per_query is None else self.budget_per_query * n
        problem = RoutingProblem(
            quality=inp.predicted_quality[ids],
            cost=inp.predicted_cost[ids],
            capacity=capacity,
            budget=budget,
            min_quality=self.min_quality,
            quality_std=inp.predicted_std[ids],
            allow_reject=self.allow_reject,
            true_quality=inp.true_quality[ids] if self.pass_truth else None,
            load=np.array([g.in_flight for g in self.models], dtype=np.float64),
            model_names=self.model_names,
            validate=False,
        )
        result = self.policy.route(problem)
        assignment = np.asarray(result.assignment, dtype=np.int64)
        ev = check_assignment(problem, assignment)
        if ev.loads.size and np.any(ev.loads > capacity):
            assignment = self._refuse_surplus(assignment, capacity, ids)
        if budget is not None and ev.total_cost > budget * (1 + 1e-9) + 1e-12:
            self.budget_violations += 1
            self.overspend_usd += ev.total_cost - budget
        if self.min_quality is not None and ev.mean_quality < self.min_quality - 1e-9:
            self.quality_floor_misses += 1

        batch_id = len(self.log.time)
        now = self.env.now
        rec = self.rec
        rec.decision[ids] = now
        rec.batch[ids] = batch_id
        rejected = 0
        for i, rid in enumerate(ids.tolist()):
            j = int(assignment[i])
            if j < 0:
                rec.status[rid] = STATUS_REJECTED
                if rec.reason[rid] == 0:
                    rec.reason[rid] = REASON_POLICY
                rejected += 1
                continue
            req = Request(rid, int(inp.prompt_tokens[rid]), int(inp.output_tokens[rid, j]))
            group = self.models[j]
            rec.model[rid] = j
            rec.output_tokens[rid] = req.output_tokens
            rec.predicted_quality[rid] = inp.predicted_quality[rid, j]
            rec.predicted_cost[rid] = inp.predicted_cost[rid, j]
            if not group.fits(req):
                rec.status[rid] = STATUS_REJECTED
                rec.reason[rid] = REASON_TOO_LONG
                rejected += 1
                continue
            rec.cost[rid] = inp.cost[rid, j]
            rec.quality[rid] = inp.true_quality[rid, j]
            rec.status[rid] = STATUS_IN_FLIGHT
            group.submit(req)

        log = self.log
        log.time.append(now)
        log.size.append(n)
        log.status.append(result.status)
        log.solve_time_s.append(result.solve_time_s)
        log.predicted_cost.append(ev.total_cost)
        log.budget.append(np.nan if budget is None else budget)
        log.predicted_mean_quality.append(ev.mean_quality)
        log.rejected.append(rejected)
        log.violations.append("; ".join(ev.violations))

    def _refuse_surplus(self, assignment: np.ndarray, capacity: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Reject the queries beyond a model's capacity (the last ones in batch order)."""
        out = assignment.copy()
        for j in range(len(capacity)):
            idx = np.nonzero(out == j)[0]
            cap = int(np.floor(capacity[j])) if np.isfinite(capacity[j]) else len(idx)
            surplus = idx[cap:]
            if surplus.size:
                out[surplus] = -1
                self.rec.reason[ids[surplus]] = REASON_CAPACITY
                self.capacity_refusals += int(surplus.size)
        return out
