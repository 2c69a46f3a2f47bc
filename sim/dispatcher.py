"""The dispatcher: batch → RoutingProblem → policy → independent check → enqueue.

A batch is an arrival group (a batch arrival, or a single query) when the window Δ is 0, or every query
arriving within Δ seconds of the first pending one. The dispatcher never trusts a policy's own account:
it re-checks every assignment with :func:`policies.check_assignment`, refuses surplus queries on a model
whose capacity was exceeded or that can never fit a model's KV cache, and counts (but does not hide)
budget and quality-floor violations of what is actually served, on predicted cost and quality (what the
router knew; realised spend and quality per batch are in the summary too).

**Latency (issue 12).** Every batch gets the latency estimator's predicted TTFT and end-to-end seconds
per (query, model) from the live cluster state (:mod:`sim.engine.estimate`), before any of it is
submitted; the chosen model's prediction is recorded per served request (``rec.pred_ttft`` /
``rec.pred_e2e``) when an SLO is set or ``outputs.latency_estimates`` asks for it (without an SLO only
the chosen model is estimated; still about a third more time on the Δ = 0 hot path, hence opt-in). With ``router.slo`` the
problem carries the routed-on metric from arrival (the window's wait so far plus the prediction), the SLO,
its mode and penalty; in constraint mode each model's capacity is also capped by the queries it can
finish within the SLO (:func:`sim.engine.estimate.slo_capacity`), unless the models together cannot take
the batch that way. Without ``router.slo`` nothing the policy sees changes.

A policy that routes on the true quality (``needs_true_quality``: the oracle) is given it as its
``quality`` and is judged on it: its floor, status and batch mean are those of the quality it routes on
(judged on predictions it never used, an oracle meeting the floor was flagged infeasible in every batch).
"""

from __future__ import annotations

import bisect
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from policies import STATUS_FEASIBLE, STATUS_INFEASIBLE, Policy, RoutingProblem, check_assignment
from policies.one_query import OneQuery
from sim.engine.cluster import ModelGroup
from sim.engine.estimate import LatencyEstimator, slo_capacity
from sim.engine.request import Request
from sim.metrics.recorder import (
    REASON_CAPACITY,
    REASON_NONE,
    REASON_POLICY,
    REASON_TOO_LONG,
    STATUS_IN_FLIGHT,
    STATUS_REJECTED,
    RequestRecorder,
)
from sim.workload.prefix import PrefixHashes

TOL = 1e-9


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
    prefix: PrefixHashes | None = None  # prompt prefix-block hashes per query (Mooncake), or None
    # (N, m) the predictor's output lengths, what the latency estimator decodes; None = output_tokens
    predicted_output_tokens: np.ndarray | None = None

    def request(self, rid: int, prompt: int, output: int) -> Request:
        """The engine's view of query ``rid``: its tokens and, when known, its prompt's prefix hashes
        (a tuple built only here, when the request is created, so the workload stays ragged arrays)."""
        return Request(rid, prompt, output, prefix=None if self.prefix is None else self.prefix.row(rid))


@dataclass(frozen=True)
class SloRouting:
    """The router's latency target (scenario ``router.slo``): which SLO it routes on, in which mode."""

    slo_s: float  # seconds, of the route_on metric
    route_on: str = "e2e"  # "e2e" | "ttft"
    mode: str = "constraint"  # "constraint" | "penalty"
    penalty: float = 0.0  # objective units per second over the SLO


def _floats() -> array:  # type: ignore[type-arg]
    return array("d")


def _ints() -> array:  # type: ignore[type-arg]
    return array("q")


@dataclass
class BatchLog:
    """One row per routed batch (batches.parquet). Costs and qualities are predicted, of served queries.

    A row is stored in one of two ways (:meth:`columns` gives the table either way):

    * whole: a batch routed by :meth:`Dispatcher.route` or a one-query path that logs through
      :meth:`Dispatcher._account` (a violation to report) — every column, plus its row number in ``at``;
    * by its query: a one-query batch decided up front with nothing to report (the common case of
      :meth:`Dispatcher._route_single`, so nearly every row of a Δ = 0 run). Its columns are its query's
      arrival time, size 1, "feasible", the up-front call's share of solve time, the budget, the predicted
      cost and quality of the chosen model (0 when not served; the recorder holds them), 0 / 1 rejected,
      no violations: only the query (``one``: its id, ``~id`` when not served) and the wall-clock routing
      time are kept, 16 bytes a row instead of 80 (a million-query run has a million rows, issue 14).

    Numbers are kept in typed arrays (8 bytes a row each, where a list holds a 32-byte float object per
    row); the two text columns hold shared strings."""

    routing_time_s: array = field(default_factory=_floats)  # type: ignore[type-arg]  # every row, in order
    # whole rows
    at: array = field(default_factory=_ints)  # type: ignore[type-arg]
    time: array = field(default_factory=_floats)  # type: ignore[type-arg]
    size: array = field(default_factory=_ints)  # type: ignore[type-arg]
    status: list[str] = field(default_factory=list)
    # the policy call (its share when decided up front)
    solve_time_s: array = field(default_factory=_floats)  # type: ignore[type-arg]
    predicted_cost: array = field(default_factory=_floats)  # type: ignore[type-arg]
    budget: array = field(default_factory=_floats)  # type: ignore[type-arg]
    predicted_mean_quality: array = field(default_factory=_floats)  # type: ignore[type-arg]
    rejected: array = field(default_factory=_ints)  # type: ignore[type-arg]
    violations: list[str] = field(default_factory=list)
    # rows kept by their query, and where their other columns come from (set with the first of them)
    one: array = field(default_factory=_ints)  # type: ignore[type-arg]
    one_source: _OneRows | None = None

    def __len__(self) -> int:
        return len(self.routing_time_s)

    def add(self, time_s: float, size: int, status: str, solve_time_s: float, routing_time_s: float,
            predicted_cost: float, budget: float | None, predicted_mean_quality: float, rejected: int,
            violations: str) -> None:
        """Append a whole row."""
        self.at.append(len(self.routing_time_s))
        self.routing_time_s.append(routing_time_s)
        self.time.append(time_s)
        self.size.append(size)
        self.status.append(status)
        self.solve_time_s.append(solve_time_s)
        self.predicted_cost.append(predicted_cost)
        self.budget.append(np.nan if budget is None else budget)
        self.predicted_mean_quality.append(predicted_mean_quality)
        self.rejected.append(rejected)
        self.violations.append(violations)

    def sizes(self) -> np.ndarray:
        """The size column (int64), without building the others."""
        out = np.ones(len(self), dtype=np.int64)
        out[np.frombuffer(self.at, dtype=np.int64)] = np.frombuffer(self.size, dtype=np.int64)
        return out

    def infeasible(self) -> int:
        """Rows whose status is "infeasible" (rows kept by their query are "feasible")."""
        return sum(st == STATUS_INFEASIBLE for st in self.status)

    def columns(self) -> dict[str, Any]:
        """Every column, one entry per row in order (numbers as numpy arrays, text as lists)."""
        n = len(self)
        whole = np.frombuffer(self.at, dtype=np.int64)
        by_query = np.ones(n, dtype=bool)
        by_query[whole] = False
        ones = np.frombuffer(self.one, dtype=np.int64)
        served = ones >= 0
        rid = np.where(served, ones, ~ones)
        src = self.one_source
        if ones.size:
            assert src is not None and int(by_query.sum()) == ones.size
        cols: dict[str, Any] = {}
        for name, dtype, fill in (("time", np.float64, None), ("size", np.int64, 1),
                                  ("solve_time_s", np.float64, None), ("predicted_cost", np.float64, None),
                                  ("budget", np.float64, None), ("predicted_mean_quality", np.float64, None),
                                  ("rejected", np.int64, None)):
            col = np.empty(n, dtype=dtype)
            col[whole] = np.frombuffer(getattr(self, name), dtype=dtype)
            if ones.size:
                assert src is not None
                col[by_query] = fill if fill is not None else src.column(name, rid, served)
            cols[name] = col
        cols["routing_time_s"] = np.frombuffer(self.routing_time_s, dtype=np.float64).copy()
        for name, default in (("status", STATUS_FEASIBLE), ("violations", "")):
            text = [default] * n
            for k, value in zip(whole.tolist(), getattr(self, name), strict=True):
                text[k] = value
            cols[name] = text
        return cols


@dataclass(frozen=True)
class _OneRows:
    """Where the columns of :class:`BatchLog`'s rows kept by their query come from: the recorder's
    arrival time, predicted cost and quality of the query (what :meth:`Dispatcher._route_single` logged:
    the decision is made at arrival, and those columns hold the chosen model's predictions, written up
    front by :meth:`Dispatcher._record_decisions`), and the constants of the run."""

    rec: RequestRecorder
    solve_time_s: float
    budget: float | None

    def column(self, name: str, rid: np.ndarray, served: np.ndarray) -> np.ndarray | float:
        rec = self.rec
        if name == "time":
            return rec.arrival[rid]
        if name == "solve_time_s":
            return self.solve_time_s
        if name == "budget":
            return np.nan if self.budget is None else self.budget
        if name == "rejected":
            return np.where(served, 0, 1)
        values = rec.predicted_cost if name == "predicted_cost" else rec.predicted_quality
        return np.where(served, values[rid], 0.0)


def _compact(x: np.ndarray) -> array:  # type: ignore[type-arg]
    """Integers as a typed array of 4-byte ints when they fit (every model index and token count in
    practice: half the memory of 8), else 8-byte ones."""
    x = np.asarray(x, dtype=np.int64)
    if x.size == 0 or (int(x.min()) >= -(2**31) and int(x.max()) < 2**31):
        return array("i", x.astype(np.int32).tobytes())
    return array("q", x.tobytes())


def _misses_rows(cost: float, quality: float, budget: float | None, floor: float | None) -> bool:
    """:func:`check_assignment`'s budget and floor tests for a batch of one query (its cost and quality),
    in Python scalars for the one-query paths."""
    return (budget is not None and cost > budget + TOL * max(1.0, budget)) or (
        floor is not None and quality < floor - TOL)


@dataclass(frozen=True)
class _Single:
    """Every query's decision made up front (:meth:`Dispatcher.precompute`) and the chosen model's tokens
    (1 output token for rejected queries), for :meth:`Dispatcher._route_single`. The chosen model's
    predicted cost and quality are the recorder's (written up front, 0 for rejected queries)."""

    choice: array  # type: ignore[type-arg]  # model index, -1 = rejected
    output: array  # type: ignore[type-arg]  # output tokens, >= 1
    prompt: array  # type: ignore[type-arg]  # prompt tokens
    share: float  # the vectorised policy call's time per query


class Dispatcher:
    #: Route one-query batches through :meth:`Policy.route_one` when the policy has that path; tests switch
    #: it off to compare with the straightforward RoutingProblem path (``test_one_query_path``).
    scalar_one_query: bool = True
    #: Keep each model's work in flight (running + queued) as a counter, +1 per submission and -1 per
    #: finish (:meth:`finished`), instead of summing it over instances per decision; only without node
    #: failures (a failure hands requests back). Tests switch it off to compare (``test_in_flight_counter``).
    count_in_flight: bool = True
    #: With no batching window every decision is made at arrival: the recorder keeps one column for both
    #: (:meth:`RequestRecorder.decide_at_arrival`); tests switch it off to compare (``test_decision_column``).
    decisions_at_arrival: bool = True
    #: Keep a one-query batch decided up front with nothing to report by its query in the batch log
    #: (:class:`BatchLog`); tests switch it off to compare with whole rows (``test_batch_log_rows``).
    rows_by_query: bool = True

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
        on_reject: Callable[[int], None] | None = None,
        capacity_never_binds: bool = False,
        slo: SloRouting | None = None,
        record_estimates: bool = False,
        price_changes: list[tuple[float, int, float]] | None = None,
        failures: bool = False,
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
        self.on_reject = on_reject
        self.pass_truth = policy.needs_true_quality
        # The quality the policy routes on, and is judged on (module docstring).
        self._judged_quality = inputs.true_quality if self.pass_truth else inputs.predicted_quality
        self.log = BatchLog()
        self._pending: list[np.ndarray] = []
        self._window_open = False
        self.budget_violations = 0
        self.overspend_usd = 0.0
        self.quality_floor_misses = 0
        self.capacity_refusals = 0
        self.rejected = 0
        self.precomputed: np.ndarray | None = None
        self._precompute_time_s = 0.0
        self._single: _Single | None = None
        self._judge_single = True  # set by precompute
        # When no model's capacity can ever bind (unlimited queues), capacity is a constant: skip the sums.
        # A model listed without instances (``instances: 0``) has none, for the whole run.
        self.capacity_never_binds = capacity_never_binds
        self._fixed_capacity = (np.array([np.inf if g.served else 0.0 for g in models])
                                if capacity_never_binds else None)
        # Latency estimates: routed on when an SLO is set; otherwise recorded for the chosen model only
        # when asked (``outputs.latency_estimates``: it costs about a third more run time at Δ = 0).
        self.slo = slo
        self.record_estimates = record_estimates or slo is not None
        if self.record_estimates or policy.needs_latency:  # latency-based routing records what it routed on
            recorder.keep_estimates()
        if window_s <= 0 and self.decisions_at_arrival:
            recorder.decide_at_arrival()
        self.estimator = LatencyEstimator(models)
        # Price changes (scenario events, docs/events.md): (time, per-model factor on the base prices)
        # steps, looked up at each decision's time; empty = base prices, and nothing is multiplied.
        self._price_t: list[float] = []
        self._price_f: list[np.ndarray] = []
        factor = np.ones(len(models))
        for t, j, mult in sorted(price_changes or [], key=lambda c: c[0]):
            factor = factor.copy()
            factor[j] = mult
            if self._price_t and self._price_t[-1] == t:
                self._price_f[-1] = factor
            else:
                self._price_t.append(t)
                self._price_f.append(factor)
        out = inputs.predicted_output_tokens
        self._est_output = inputs.output_tokens if out is None else out
        # One-query batches through Policy.route_one (Python scalars) where it gives what route gives:
        # no SLO, latencies, estimates to record, true quality or prices in the problem.
        self._one = self.scalar_one_query and type(policy).route_one is not Policy.route_one and not (
            slo is not None or policy.needs_latency or self.record_estimates or self.pass_truth or self._price_t)
        self._capacity_list = None if self._fixed_capacity is None else self._fixed_capacity.tolist()
        self._in_flight: list[int] | None = (
            [0] * len(models) if self.count_in_flight and policy.needs_load and not failures else None)

    # -- deciding up front ------------------------------------------------------
    def precompute(self) -> bool:
        """Decide every query up front when that gives the same answer as routing batch by batch.

        True for row-independent per-query rules (see ``Policy.row_independent``) when no model's capacity
        can ever bind. The problem carries the quality floor (threshold_greedy's default α) but no budget:
        these rules ignore it, and violations are still counted per batch. This turns N small policy calls
        into one vectorised call, which is most of a Δ = 0 run's cost.
        """
        if self._price_t or self.slo is not None or self.policy.needs_latency or not (
            self.capacity_never_binds and self.policy.row_independent
        ):
            # with an SLO, or latency-based routing, every decision depends on the queues; with price
            # changes, on the time
            return False
        inp = self.inputs
        fixed = self._fixed_capacity
        problem = RoutingProblem(
            quality=inp.predicted_quality,
            cost=inp.predicted_cost,
            # an unserved model's 0 applies to every row alike, so deciding up front stays exact
            capacity=None if fixed is None or np.isinf(fixed).all() else fixed,
            min_quality=self.min_quality,
            quality_std=inp.predicted_std,
            allow_reject=self.allow_reject,
            model_names=self.model_names,
            validate=False,
        )
        result = self.policy.route(problem)
        a = np.asarray(result.assignment, dtype=np.int64)
        # Only structural validity matters here (the floor is judged per batch, as in route()).
        structural = RoutingProblem(quality=problem.quality, cost=problem.cost,
                                    allow_reject=self.allow_reject, validate=False)
        if check_assignment(structural, a).violations:
            return False
        self.precomputed = a
        self._precompute_time_s = result.solve_time_s
        rows = np.arange(len(a))
        cols = np.where(a >= 0, a, 0)
        routed = a >= 0
        # Per-query facts of the chosen model, for the scalar single-query path: typed arrays (indexing
        # gives the same Python scalars as lists, at 4-8 bytes a query, not 32), read once per query
        # instead of indexing (N, m) numpy arrays.
        output = np.maximum(np.where(routed, inp.output_tokens[rows, cols], 1), 1).astype(np.int64)
        self._single = _Single(
            choice=_compact(a),
            output=_compact(output),
            prompt=_compact(np.asarray(inp.prompt_tokens)),
            share=self._precompute_time_s / len(a),
        )
        # the batch path reads the same decisions, as a view of the typed array (no second copy)
        self.precomputed = np.frombuffer(self._single.choice, dtype=np.int32 if self._single.choice.itemsize == 4
                                         else np.int64)
        self._record_decisions(a, output)
        # a batch of one decided up front has a budget or floor to judge, else nothing to report
        self._judge_single = self.budget_per_query is not None or self.min_quality is not None or not self.rows_by_query
        self.log.one_source = _OneRows(self.rec, self._single.share, self.budget_per_query)
        return True

    def _precomputed_status(self, ids: np.ndarray, assignment: np.ndarray, budget: float | None) -> str:
        """The status the policy's own check gives its answer for this batch (as ``route(problem)``
        would: ``infeasible`` when its choices overspend the budget or miss the floor, even if a refusal
        later leaves what is served within them). Structural violations cannot occur (see precompute)."""
        problem = RoutingProblem(quality=self._judged_quality[ids], cost=self.inputs.predicted_cost[ids],
                                 budget=budget, min_quality=self.min_quality, allow_reject=self.allow_reject,
                                 validate=False)
        return STATUS_INFEASIBLE if check_assignment(problem, assignment).violations else STATUS_FEASIBLE

    def _record_decisions(self, a: np.ndarray, output: np.ndarray) -> None:
        """Write every query's decision columns at once, as :meth:`_serve_one` would when it arrives:
        every query arrives before a run ends (the runner waits for the last arrival), so each of
        these rows is written anyway, with these values; per query only its times, batch and a
        too-long refusal are left (:meth:`_route_single`). No price changes on this path (precompute)."""
        inp, rec = self.inputs, self.rec
        routed = a >= 0
        r, c = np.flatnonzero(routed), a[routed]
        rec.model[r] = c
        rec.output_tokens[r] = output[r]
        rec.predicted_quality[r] = inp.predicted_quality[r, c]
        rec.predicted_cost[r] = inp.predicted_cost[r, c]
        rec.cost[r] = inp.cost[r, c]
        rec.quality[r] = inp.true_quality[r, c]
        rec.status[r] = STATUS_IN_FLIGHT
        refused = np.flatnonzero(~routed)
        rec.status[refused] = STATUS_REJECTED
        rec.reason[refused[rec.reason[refused] == REASON_NONE]] = REASON_POLICY

    # -- arrivals ---------------------------------------------------------------
    def arrive(self, start: int, end: int) -> None:
        """Queries ``start .. end-1`` (one arrival group) arrive now."""
        if end - start == 1 and self._single is not None and self.window_s <= 0:
            self._route_single(start)  # the hot path of a Δ = 0 run with precomputed decisions
            return
        if end - start == 1 and self._one and self.window_s <= 0:
            self.rec.arrival[start] = self.env.now
            if not self._route_one(start):  # no scalar path for this one: the general path
                self.route(np.arange(start, end))
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
        self.flush()

    def flush(self) -> None:
        """Route whatever is pending (at a window's end, or when the run is cut off mid-window)."""
        if self._pending:
            ids = np.concatenate(self._pending)
            self._pending.clear()
            self.route(ids)

    # -- routing ------------------------------------------------------------------
    def route(self, ids: np.ndarray) -> None:
        """Decide a batch and hand it to the models. The batch log's ``routing_time_s`` is the wall time
        of this whole path — capacities, latency estimates, the problem object, the policy, the checks,
        refusals and submission — since that, not the policy call alone, is what a router costs."""
        t0 = time.perf_counter()
        n = len(ids)
        budget = None if self.budget_per_query is None else self.budget_per_query * n
        if self.precomputed is not None:
            assignment = self.precomputed[ids].astype(np.int64)
            status = self._precomputed_status(ids, assignment, budget)
            solve_time = self._precompute_time_s * n / len(self.precomputed)
            policy_violations: list[str] = []
        else:
            inp = self.inputs
            capacity = (
                self._fixed_capacity
                if self._fixed_capacity is not None
                else np.array([g.capacity(self.capacity_mode) for g in self.models], dtype=np.float64)
            )
            latency, route_capacity = self._slo_inputs(ids, capacity)
            slo = self.slo
            problem = RoutingProblem(
                quality=self._judged_quality[ids],
                cost=self._scaled(inp.predicted_cost[ids]),
                capacity=route_capacity,
                budget=budget,
                min_quality=self.min_quality,
                quality_std=inp.predicted_std[ids],
                allow_reject=self.allow_reject,
                true_quality=inp.true_quality[ids] if self.pass_truth else None,
                load=np.array(self._load(), dtype=np.float64) if self.policy.needs_load else None,
                model_names=self.model_names,
                validate=False,
                latency=latency,
                slo=None if slo is None else slo.slo_s,
                slo_mode="constraint" if slo is None else slo.mode,
                slo_penalty=0.0 if slo is None else slo.penalty,
            )
            result = self.policy.route(problem)
            assignment = np.asarray(result.assignment, dtype=np.int64)
            # the policy's own check of this very assignment on this very problem, when it made one
            ev = result.evaluation
            if ev is None or assignment is not result.assignment or result.evaluated is not problem:
                ev = check_assignment(problem, assignment)
            # Only today's capacity is enforced by refusing queries: beyond the SLO capacity a query is
            # predicted to miss its SLO, not unable to run (check_assignment reports it as a violation).
            if ev.loads.size and np.any(ev.loads > capacity):
                assignment = self._refuse_surplus(assignment, capacity, ids)
            status, solve_time = result.status, result.solve_time_s
            # budget and quality floor are judged on what is served (after refusals), in _account
            policy_violations = [v for v in ev.violations if not v.startswith(("budget", "min_quality"))]
        if self.record_estimates and self._estimates is None:
            self._estimates = self._predict(ids)
        served = self._enqueue(ids, assignment)
        self._record_estimates(ids, served)
        rows, cols = ids[served >= 0], served[served >= 0]
        cost = float(self.rec.predicted_cost[rows].sum()) if self._price_t else float(
            self.inputs.predicted_cost[rows, cols].sum())
        quality = float(self._judged_quality[rows, cols].sum()) / n
        self._account(n, status, solve_time, cost, quality, budget, int(n - rows.size), policy_violations,
                      time.perf_counter() - t0)

    # -- prices ---------------------------------------------------------------------
    def price_factor(self) -> np.ndarray | None:
        """Per-model factor on the base prices for a decision now (the latest change at or before now),
        or None when there is none."""
        if not self._price_t:
            return None
        k = bisect.bisect_right(self._price_t, self.env.now) - 1
        return self._price_f[k] if k >= 0 else None

    def _scaled(self, cost: np.ndarray) -> np.ndarray:
        f = self.price_factor()
        return cost if f is None else cost * f[None, :]

    # -- latency estimates ----------------------------------------------------------
    _estimates: tuple[np.ndarray, np.ndarray] | None = None

    def _predict(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted (ttft, e2e), (n, m), of the batch's queries on every model, before any is submitted."""
        return self.estimator.predict(self.inputs.prompt_tokens[ids], self._est_output[ids])

    def _slo_inputs(self, ids: np.ndarray, capacity: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """The batch's predicted latency of the routed-on metric from arrival (None without an SLO; the
        window's wait so far plus the estimate from now) and the capacity
        the policy sees: in constraint mode min'd with the SLO capacity
        (:func:`sim.engine.estimate.slo_capacity`: queries each model can finish within the SLO given its
        queue) — unless the models together cannot take the whole batch within the SLO and the policy
        may not reject: then some query misses it whatever the choice, so the capacity stays today's
        and the latency matrix alone steers the policy."""
        slo = self.slo
        if slo is None and not self.policy.needs_latency:
            return None, capacity
        p = self.inputs.prompt_tokens[ids]
        o = np.maximum(self._est_output[ids].astype(np.float64), 1.0)
        states = self.estimator.states(p, o)
        ttft, e2e = self.estimator.predict(p, o, states)
        self._estimates = (ttft, e2e)
        # The SLO counts from arrival (what the user waits): add the time already spent in the window.
        elapsed = self.env.now - self.rec.arrival[ids]
        if slo is None:  # latency-based routing without an SLO: end-to-end latency from arrival
            return e2e + elapsed[:, None], capacity
        latency = (e2e if slo.route_on == "e2e" else ttft) + elapsed[:, None]
        if slo.mode != "constraint":
            return latency, capacity
        left = slo.slo_s - float(elapsed.mean())
        within = np.minimum(capacity, slo_capacity(states, left, slo.route_on))
        if not self.allow_reject and within.sum() < len(ids):
            return latency, capacity
        return latency, within

    def _record_estimates(self, ids: np.ndarray, served: np.ndarray) -> None:
        """Store the chosen model's predictions of every served query (then forget the batch's)."""
        est, self._estimates = self._estimates, None
        if est is None:
            return
        pos = np.flatnonzero(served >= 0)
        cols = served[pos]
        rec = self.rec
        assert rec.pred_ttft is not None and rec.pred_e2e is not None  # (keep_estimates)
        rec.pred_ttft[ids[pos]] = est[0][pos, cols]
        rec.pred_e2e[ids[pos]] = est[1][pos, cols]

    def _route_single(self, rid: int) -> None:
        """One query, decided up front: the bookkeeping of :meth:`route` → :meth:`_serve_one` →
        :meth:`_account` for a batch of one, with the chosen model's facts read from :class:`_Single`
        (the hot path of a Δ = 0 run; ``test_single_path_matches_batch_path`` compares the two)."""
        t0 = time.perf_counter()
        sg = self._single
        assert sg is not None
        rec = self.rec
        log = self.log
        now = self.env.now
        rec.arrival[rid] = now
        rec.decision[rid] = now
        rec.batch[rid] = len(log.routing_time_s)
        j = sg.choice[rid]
        served = False
        if j >= 0:  # its decision columns are written already (_record_decisions)
            prefix = self.inputs.prefix  # RoutingInputs.request, inlined (hot path)
            req = Request(rid, sg.prompt[rid], sg.output[rid], None if prefix is None else prefix.row(rid))
            group = self.models[j]
            if group.fits(req):
                if self.record_estimates:
                    self._estimate_one(rid, j, req)
                group.submit(req)
                if self._in_flight is not None:  # (_submit, inlined)
                    self._in_flight[j] += 1
                served = True
            else:  # its KV reservation fits no instance of this model: it could never start
                rec.status[rid] = STATUS_REJECTED
                rec.reason[rid] = REASON_TOO_LONG
                rec.cost[rid] = 0.0
                rec.quality[rid] = 0.0
        if not served:
            self._rejected(1)
        if self._judge_single and self._judged_single(rid, served, t0):
            return
        log.one.append(rid if served else ~rid)  # the row, kept by its query (BatchLog)
        log.routing_time_s.append(sg.share + time.perf_counter() - t0)

    def _judged_single(self, rid: int, served: bool, t0: float) -> bool:
        """:meth:`_route_single`'s budget and floor checks (True: a whole row was logged through
        :meth:`_account`; False: nothing to report, the caller keeps the row by its query)."""
        sg = self._single
        assert sg is not None
        budget, floor = self.budget_per_query, self.min_quality
        # the policy's own check of its choice (check_assignment on a batch of one; see _precomputed_status);
        # the recorder holds the chosen model's predictions (0 when rejected), written up front
        chosen_cost, chosen_quality = self.rec.predicted_cost.item(rid), self.rec.predicted_quality.item(rid)
        policy_ok = not _misses_rows(chosen_cost, chosen_quality, budget, floor)
        cost = chosen_cost if served else 0.0
        quality = chosen_quality if served else 0.0
        if policy_ok and self.rows_by_query and not (budget is not None and cost > budget * (1 + TOL) + 1e-12) and not (
                floor is not None and quality < floor - TOL):
            return False
        self._account(1, STATUS_FEASIBLE if policy_ok else STATUS_INFEASIBLE, sg.share, cost, quality, budget,
                      0 if served else 1, [], sg.share + time.perf_counter() - t0)
        return True

    def _estimate_one(self, rid: int, j: int, req: Request) -> None:
        """Record the latency estimate of query ``rid`` on its chosen model ``j`` (one-query paths)."""
        rec = self.rec
        assert rec.pred_ttft is not None and rec.pred_e2e is not None  # (keep_estimates)
        rec.pred_ttft[rid], rec.pred_e2e[rid] = self.estimator.predict_one(
            j, req.prompt_tokens, max(int(self._est_output[rid, j]), 1))

    def _route_one(self, rid: int) -> bool:
        """:meth:`route` for a batch of one query, with the policy's scalar path (False, having done
        nothing, when the policy has none): the same capacities, checks, refusal and batch row."""
        t0 = time.perf_counter()
        capacity = self._capacity_list
        if capacity is None:
            capacity = [g.capacity(self.capacity_mode) for g in self.models]
        n_budget = self.budget_per_query
        query = OneQuery(
            quality=self._judged_quality[rid].tolist(),
            cost=self.inputs.predicted_cost[rid].tolist(),
            capacity=capacity,
            load=[float(x) for x in self._load()] if self.policy.needs_load else None,
            budget=n_budget,
            min_quality=self.min_quality,
            allow_reject=self.allow_reject,
        )
        ts = time.perf_counter()
        j = self.policy.route_one(query)
        solve_time = time.perf_counter() - ts
        if j is None:
            return False
        violations, infeasible = self._check_one(query, j)
        if j >= 0 and 1 > capacity[j]:  # refused: the model is full (as _refuse_surplus)
            j = -1
            self.rec.reason[rid] = REASON_CAPACITY
            self.capacity_refusals += 1
        served = self._serve_one(rid, j)
        self._rejected(0 if served else 1)
        cost = float(self.inputs.predicted_cost[rid, j]) if served else 0.0
        quality = float(self._judged_quality[rid, j]) if served else 0.0
        self._account(1, STATUS_INFEASIBLE if infeasible else self.policy.one_query_status, solve_time, cost, quality,
                      n_budget, 0 if served else 1, violations, time.perf_counter() - t0)
        return True

    def _check_one(self, query: OneQuery, j: int) -> tuple[list[str], bool]:
        """:func:`check_assignment` of choice ``j`` on the one-query problem, as :meth:`route` uses it:
        the violations kept (rejection, capacity; budget and floor are judged on what is served) and
        whether there is any (the policy's result is then ``infeasible``)."""
        kept: list[str] = []
        if j < 0:
            if not query.allow_reject:
                kept.append("1 queries rejected but allow_reject is False")
            cost = quality = 0.0
        else:
            cap = query.capacity[j]
            if 1 > cap + TOL:
                label = self.model_names[j] if self.model_names is not None else f"model {j}"
                kept.append(f"capacity of {label}: load 1 > {cap:g}")
            cost, quality = query.cost[j], query.quality[j]
        budget, floor = query.budget, query.min_quality
        other = _misses_rows(cost, quality, budget, floor)
        return kept, bool(kept) or other

    def _load(self) -> list[int]:
        """Each model's requests running or queued now."""
        if self._in_flight is not None:
            return self._in_flight
        return [g.in_flight for g in self.models]

    def finished(self, req: Request) -> None:
        """A request finished (the runner's ``on_finish``): one less in flight on its model."""
        if self._in_flight is not None:
            self._in_flight[int(self.rec.model[req.rid])] -= 1

    def _submit(self, group: ModelGroup, j: int, req: Request) -> None:
        group.submit(req)
        if self._in_flight is not None:
            self._in_flight[j] += 1

    def _serve_one(self, rid: int, j: int) -> bool:
        """Record the decision for query ``rid`` (model ``j``, -1 = reject) and submit it; False if not served."""
        inp = self.inputs
        rec = self.rec
        rec.decision[rid] = self.env.now
        rec.batch[rid] = len(self.log.routing_time_s)
        if j < 0:
            rec.status[rid] = STATUS_REJECTED
            if rec.reason[rid] == REASON_NONE:
                rec.reason[rid] = REASON_POLICY
            return False
        out = max(int(inp.output_tokens[rid, j]), 1)
        req = inp.request(rid, int(inp.prompt_tokens[rid]), out)
        group = self.models[j]
        rec.model[rid] = j
        rec.output_tokens[rid] = out
        rec.predicted_quality[rid] = inp.predicted_quality[rid, j]
        f = self.price_factor()
        scale = 1.0 if f is None else float(f[j])  # (x * 1.0 is x: no-event runs are unchanged)
        rec.predicted_cost[rid] = inp.predicted_cost[rid, j] * scale
        if not group.fits(req):  # its KV reservation fits no instance of this model: it could never start
            rec.status[rid] = STATUS_REJECTED
            rec.reason[rid] = REASON_TOO_LONG
            rec.cost[rid] = 0.0  # (written up front when decided up front: _record_decisions)
            rec.quality[rid] = 0.0
            return False
        rec.cost[rid] = inp.cost[rid, j] * scale
        rec.quality[rid] = inp.true_quality[rid, j]
        rec.status[rid] = STATUS_IN_FLIGHT
        if self.record_estimates and self._estimates is None:  # the precomputed path: chosen model only
            self._estimate_one(rid, j, req)
        self._submit(group, j, req)
        return True

    def _account(
        self,
        n: int,
        status: str,
        solve_time_s: float,
        cost: float,
        mean_quality: float,
        budget: float | None,
        rejected: int,
        policy_violations: list[str],
        routing_time_s: float,
    ) -> None:
        """Count budget/floor violations of what is served, and log the batch."""
        violations = list(policy_violations)
        if budget is not None and cost > budget * (1 + TOL) + 1e-12:
            self.budget_violations += 1
            self.overspend_usd += cost - budget
            if not any(v.startswith("budget") for v in violations):
                violations.append(f"budget: cost {cost:.6g} > {budget:.6g}")
        if self.min_quality is not None and mean_quality < self.min_quality - TOL:
            self.quality_floor_misses += 1
            if not any(v.startswith("min_quality") for v in violations):
                violations.append(f"min_quality: mean {mean_quality:.6g} < {self.min_quality:.6g}")
        if violations:
            status = STATUS_INFEASIBLE
        self.log.add(self.env.now, n, status, solve_time_s, routing_time_s, cost, budget, mean_quality, rejected,
                     "; ".join(violations))

    def _rejected(self, k: int) -> None:
        self.rejected += k
        if k and self.on_reject is not None:
            self.on_reject(k)

    def _enqueue(self, ids: np.ndarray, assignment: np.ndarray) -> np.ndarray:
        """Record each query's decision and hand it to its model; returns the served assignment
        (``-1`` for every query not served, including those too long for any instance of their model)."""
        if len(ids) == 1:  # scalar path, same bookkeeping
            ok = self._serve_one(int(ids[0]), int(assignment[0]))
            self._rejected(0 if ok else 1)
            return assignment if ok else np.full(1, -1, dtype=np.int64)
        inp = self.inputs
        rec = self.rec
        rec.decision[ids] = self.env.now
        rec.batch[ids] = len(self.log.routing_time_s)
        served = assignment.copy()
        routed = assignment >= 0
        rows, cols = ids[routed], assignment[routed]
        refused = ids[~routed]
        rec.status[refused] = STATUS_REJECTED
        rec.reason[refused[rec.reason[refused] == REASON_NONE]] = REASON_POLICY
        rec.model[rows] = cols
        out_tokens = np.maximum(inp.output_tokens[rows, cols], 1)
        rec.output_tokens[rows] = out_tokens
        rec.predicted_quality[rows] = inp.predicted_quality[rows, cols]
        f = self.price_factor()
        scale = 1.0 if f is None else f[cols]
        rec.predicted_cost[rows] = inp.predicted_cost[rows, cols] * scale
        rec.cost[rows] = inp.cost[rows, cols] * scale
        rec.quality[rows] = inp.true_quality[rows, cols]
        rec.status[rows] = STATUS_IN_FLIGHT
        rejected = int(refused.size)
        models = self.models
        positions = np.flatnonzero(routed).tolist()
        prompts = inp.prompt_tokens[rows].tolist()
        for pos, rid, j, p, o in zip(positions, rows.tolist(), cols.tolist(), prompts, out_tokens.tolist(),
                                     strict=True):
            req = inp.request(rid, p, o)
            group = models[j]
            if group.fits(req):
                self._submit(group, j, req)
                continue
            # Its KV reservation fits no instance of this model: it could never start.
            rec.status[rid] = STATUS_REJECTED
            rec.reason[rid] = REASON_TOO_LONG
            rec.cost[rid] = 0.0
            rec.quality[rid] = 0.0
            served[pos] = -1
            rejected += 1
        self._rejected(rejected)
        return served

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
