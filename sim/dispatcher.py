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

from policies import STATUS_INFEASIBLE, Policy, RoutingProblem, check_assignment
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
        self.precomputed: np.ndarray | None = None
        self._precompute_time_s = 0.0
        self._single: tuple[list[int], list[float], list[float], list[int], list[int]] | None = None

    def precompute(self, capacity_never_binds: bool) -> bool:
        """Decide every query up front when that gives the same answer as routing batch by batch.

        True for row-independent per-query rules (see ``Policy.row_independent``) when no model's capacity
        can ever bind; the budget row does not matter since these rules ignore it (violations are still
        counted per batch in :meth:`route`). This turns N small policy calls into one vectorised call,
        which is most of a Δ = 0 run's cost.
        """
        if not (capacity_never_binds and self.policy.row_independent):
            return False
        inp = self.inputs
        problem = RoutingProblem(
            quality=inp.predicted_quality,
            cost=inp.predicted_cost,
            quality_std=inp.predicted_std,
            allow_reject=self.allow_reject,
            model_names=self.model_names,
            validate=False,
        )
        result = self.policy.route(problem)
        ev = check_assignment(problem, result.assignment)
        if ev.violations:  # an invalid assignment (e.g. a rejection that is not allowed): route normally
            return False
        a = np.asarray(result.assignment, dtype=np.int64)
        self.precomputed = a
        self._precompute_time_s = result.solve_time_s
        self._precompute_status = result.status
        rows = np.arange(len(a))
        cols = np.where(a >= 0, a, 0)
        routed = a >= 0
        # Per-query facts of the chosen model as plain lists, for the scalar single-query path.
        self._single = (
            a.tolist(),
            np.where(routed, inp.predicted_cost[rows, cols], 0.0).tolist(),
            np.where(routed, inp.predicted_quality[rows, cols], 0.0).tolist(),
            inp.prompt_tokens.tolist(),
            np.maximum(inp.output_tokens[rows, cols], 1).tolist(),
        )
        return True

    def _route_single(self, rid: int) -> None:
        """One query, decided up front: the same bookkeeping as :meth:`route`, with Python scalars."""
        assert self._single is not None
        choice, pcost, pqual, prompt, output = self._single
        j = choice[rid]
        now = self.env.now
        rec = self.rec
        rec.arrival[rid] = now
        rec.decision[rid] = now
        rec.batch[rid] = len(self.log.time)
        cost, quality = pcost[rid], pqual[rid]
        budget = self.budget_per_query
        violations = ""
        if budget is not None and cost > budget * (1 + 1e-9) + 1e-12:
            self.budget_violations += 1
            self.overspend_usd += cost - budget
            violations = f"budget: cost {cost:.6g} > {budget:.6g}"
        if self.min_quality is not None and quality < self.min_quality - 1e-9:
            self.quality_floor_misses += 1
            violations += ("; " if violations else "") + f"min_quality: mean {quality:.6g} < {self.min_quality:.6g}"
        rejected = 0
        if j < 0:
            rec.status[rid] = STATUS_REJECTED
            rec.reason[rid] = REASON_POLICY
            rejected = 1
        else:
            inp = self.inputs
            req = Request(rid, prompt[rid], output[rid])
            group = self.models[j]
            rec.model[rid] = j
            rec.output_tokens[rid] = output[rid]
            rec.predicted_quality[rid] = quality
            rec.predicted_cost[rid] = cost
            if group.fits(req):
                rec.cost[rid] = inp.cost[rid, j]
                rec.quality[rid] = inp.true_quality[rid, j]
                rec.status[rid] = STATUS_IN_FLIGHT
                group.submit(req)
            else:
                rec.status[rid] = STATUS_REJECTED
                rec.reason[rid] = REASON_TOO_LONG
                rejected = 1
        status = STATUS_INFEASIBLE if violations else self._precompute_status
        self._log(1, status, self._precompute_time_s / len(choice), cost,
                  budget, quality, rejected, violations)

    # -- arrivals ---------------------------------------------------------------
    def arrive(self, start: int, end: int) -> None:
        """Queries ``start .. end-1`` (one arrival group) arrive now."""
        if end - start == 1 and self._single is not None and self.window_s <= 0:
            self._route_single(start)  # the hot path of a Δ = 0 run with precomputed decisions
            return
        ids = np.arange(start, end)
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
        if self.precomputed is not None:
            self._route_precomputed(ids)
            return
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

        rejected = self._enqueue(ids, assignment)
        self._log(n, result.status, result.solve_time_s, ev.total_cost, budget, ev.mean_quality, rejected,
                  "; ".join(ev.violations))

    def _route_precomputed(self, ids: np.ndarray) -> None:
        """Route with the up-front decisions; budget/floor violations are still counted per batch."""
        inp = self.inputs
        n = len(ids)
        assignment = self.precomputed[ids]  # type: ignore[index]
        routed = assignment >= 0
        rows, cols = ids[routed], assignment[routed]
        total_cost = float(inp.predicted_cost[rows, cols].sum())
        mean_quality = float(inp.predicted_quality[rows, cols].sum()) / n
        budget = None if self.budget_per_query is None else self.budget_per_query * n
        violations = []
        if budget is not None and total_cost > budget * (1 + 1e-9) + 1e-12:
            self.budget_violations += 1
            self.overspend_usd += total_cost - budget
            violations.append(f"budget: cost {total_cost:.6g} > {budget:.6g}")
        if self.min_quality is not None and mean_quality < self.min_quality - 1e-9:
            self.quality_floor_misses += 1
            violations.append(f"min_quality: mean {mean_quality:.6g} < {self.min_quality:.6g}")
        rejected = self._enqueue(ids, assignment)
        status = STATUS_INFEASIBLE if violations else self._precompute_status
        self._log(n, status, self._precompute_time_s * n / len(inp.prompt_tokens),
                  total_cost, budget, mean_quality, rejected, "; ".join(violations))

    def _log(self, n: int, status: str, solve_time_s: float, cost: float, budget: float | None,
             mean_quality: float, rejected: int, violations: str) -> None:
        log = self.log
        log.time.append(self.env.now)
        log.size.append(n)
        log.status.append(status)
        log.solve_time_s.append(solve_time_s)
        log.predicted_cost.append(cost)
        log.budget.append(np.nan if budget is None else budget)
        log.predicted_mean_quality.append(mean_quality)
        log.rejected.append(rejected)
        log.violations.append(violations)

    def _enqueue(self, ids: np.ndarray, assignment: np.ndarray) -> int:
        """Record the decision of each query and hand it to its model; returns how many were rejected."""
        inp = self.inputs
        rec = self.rec
        rec.decision[ids] = self.env.now
        rec.batch[ids] = len(self.log.time)
        routed = assignment >= 0
        rows, cols = ids[routed], assignment[routed]
        refused = ids[~routed]
        rec.status[refused] = STATUS_REJECTED
        rec.reason[refused[rec.reason[refused] == 0]] = REASON_POLICY
        rec.model[rows] = cols
        out_tokens = np.maximum(inp.output_tokens[rows, cols], 1)
        rec.output_tokens[rows] = out_tokens
        rec.predicted_quality[rows] = inp.predicted_quality[rows, cols]
        rec.predicted_cost[rows] = inp.predicted_cost[rows, cols]
        rec.cost[rows] = inp.cost[rows, cols]
        rec.quality[rows] = inp.true_quality[rows, cols]
        rec.status[rows] = STATUS_IN_FLIGHT
        rejected = int(refused.size)
        models = self.models
        prompts = inp.prompt_tokens[rows].tolist()
        for rid, j, p, o in zip(rows.tolist(), cols.tolist(), prompts, out_tokens.tolist(), strict=True):
            req = Request(rid, p, o)
            group = models[j]
            if group.fits(req):
                group.submit(req)
                continue
            # Its KV reservation fits no instance of this model: it could never start.
            rec.status[rid] = STATUS_REJECTED
            rec.reason[rid] = REASON_TOO_LONG
            rec.cost[rid] = 0.0
            rec.quality[rid] = 0.0
            rejected += 1
        return rejected

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
