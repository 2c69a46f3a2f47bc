"""Offline instance allocation (``routing.md`` (A)): how many instances of which deployment to run.

A pure library step of capacity planning (issue 13, item 1): numpy in, integer instance counts out. No
engine import; the caller (``llmsim plan``) supplies every number the simulator knows.

**Inputs** (:class:`AllocationProblem`):

* candidate deployments d = 1..D, each an (model j(d), GPU type g(d), GPUs per instance = tensor-parallel
  degree tp(d)) triple with a price in $/hour, a sustainable rate r(d) in queries/s at the latency SLO
  (computed by the caller, issue 13 item 2) and ``slots`` s(d): how many queries one instance can take in
  one routing batch (its sequence slots, or r(d) × the batch window — the caller's choice);
* the GPU inventory G_t per type and an optional $/hour cap;
* S representative batches sampled from the workload (sample-average approximation): per batch, predicted
  quality Q_s (n_s × m) and cost C_s (n_s × m), an optional budget per query (batch budget = n_s × it),
  and the arrival rate λ (queries/s) that the batches stand for.

**Model** (one MILP, HiGHS through :func:`scipy.optimize.milp`)::

    max  (1/S) Σ_s (1/n_s) Σ_ij Q_sij y_sij                         mean routed quality (reject = 0)
    s.t. Σ_{d: g(d)=t} tp(d) x_d ≤ G_t                     ∀t       GPU inventory
         Σ_d price_d x_d ≤ cap                                      $/hour cap (optional)
         Σ_j y_sij ≤ 1  (= 1 without rejection)            ∀s,i     each query routed at most once
         Σ_i y_sij ≤ Σ_{d: j(d)=j} s(d) x_d                ∀s,j     per-batch capacity (shared x)
         Σ_ij C_sij y_sij ≤ n_s · budget_per_query         ∀s       per-batch budget (optional)
         λ (1/S) Σ_s (1/n_s) Σ_i y_sij ≤ Σ_{d: j(d)=j} r(d) x_d  ∀j  throughput at the SLO
         x_d ∈ ℤ≥0,  y_sij ∈ [0, 1]  (or {0, 1} with ``integral_routing``)

The batch routing problems share one capacity vector, which is linear in x: that is why a single MILP
holds them all. y is LP-relaxed by default: with one budget row per batch the relaxation is within a
couple of queries per batch of the integral routing (``routing.md`` (N)), and it keeps the MILP's only
integers the D instance counts, so HiGHS solves realistic sizes in seconds. ``integral_routing=True`` makes
y binary (exact, for small cases and tests).

Besides :func:`allocate_milp`: :func:`allocate_greedy` (marginal gain per GPU, for large cases — each step
re-solves the routing LP with x fixed; ``swap_rounds`` adds drop-and-refill moves; on the small random
cases of the tests and ``benchmarks/allocation.py`` it lands 2–5 quality points below the MILP, 1–2 with
swaps), the baselines :func:`allocate_uniform` (each type's GPUs split
evenly over the models that can run on it) and :func:`allocate_proportional` (split in proportion to the
traffic each model would get with unlimited capacity), and :func:`evaluate_allocation`, the routing value
of any fixed allocation (the same model with x fixed: every method is scored by one yardstick).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from policies.batch.milp_model import quiet_stdout
from policies.errors import InvalidProblemError, PolicyError
from policies.problem import FloatArray, IntArray

GAIN_TOL = 1e-9
"""A greedy step must raise the mean quality by more than this (below it the LP's noise decides)."""
QUALITY_TOL = 1e-9
"""Slack of the ``min_quality`` row, so a floor equal to an allocation's exact quality stays feasible."""
COST_TIE_BREAK = 1e-6
"""``objective="cost"``: quality's weight relative to $/hour, so equal-cost allocations route best."""
HEADROOM_COST_WEIGHT = 1e-6
"""Headroom stage: weight of the (normalised) $/hour against the headroom factor."""
MAX_HEADROOM = 1e6
"""Upper bound of the headroom factor (reached only when no model carries traffic)."""


class InvalidAllocationError(InvalidProblemError):
    """An :class:`AllocationProblem` field has a bad shape or value; the message names the field."""


class InfeasibleAllocationError(PolicyError, ValueError):
    """No allocation satisfies the constraints (e.g. the inventory cannot host one instance of any model)."""


@dataclass(frozen=True, eq=False)
class AllocationProblem:
    """Everything the allocation optimiser looks at (see the module docstring for the model).

    Attributes:
        model: (D,) model index j(d) in [0, m) of each candidate deployment.
        gpu_type: (D,) GPU type index g(d) in [0, T).
        gpus: (D,) GPUs one instance takes (tensor-parallel degree), integer >= 1.
        price_per_hour: (D,) $/hour of one instance, >= 0.
        rate: (D,) sustainable queries/s of one instance at the latency SLO, >= 0.
        slots: (D,) queries one instance can take in one routing batch, >= 0.
        inventory: (T,) GPUs available per type, integer >= 0.
        quality: S arrays (n_s, m), predicted quality in [0, 1] of the sampled batches.
        cost: S arrays (n_s, m), predicted cost in USD (>= 0), same shapes as ``quality``.
        arrival_rate: λ, queries/s the batches stand for (>= 0).
        budget_per_query: USD per query (batch budget n_s × it), or ``None`` for no budget row.
        max_cost_per_hour: $/hour cap on the instances, or ``None``.
        allow_reject: whether a query may be left unrouted (quality 0, no load).
        max_instances: optional (D,) upper bound per deployment (e.g. what a node pool allows).
        min_quality: optional floor on the mean routed quality (a row of every solve; with
            ``allocate_milp(objective="cost")`` it is what the cheapest allocation must reach).
        model_names / gpu_names: optional names for messages.
    """

    model: IntArray
    gpu_type: IntArray
    gpus: IntArray
    price_per_hour: FloatArray
    rate: FloatArray
    slots: FloatArray
    inventory: IntArray
    quality: Sequence[FloatArray]
    cost: Sequence[FloatArray]
    arrival_rate: float
    budget_per_query: float | None = None
    max_cost_per_hour: float | None = None
    allow_reject: bool = True
    max_instances: IntArray | None = None
    model_names: tuple[str, ...] | None = None
    gpu_names: tuple[str, ...] | None = None
    min_quality: float | None = None

    def __post_init__(self) -> None:
        for name in ("model", "gpu_type", "gpus", "inventory"):
            object.__setattr__(self, name, _int_array(name, getattr(self, name)))
        for name in ("price_per_hour", "rate", "slots"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        if self.max_instances is not None:
            object.__setattr__(self, "max_instances", _int_array("max_instances", self.max_instances))
        object.__setattr__(self, "quality", tuple(np.asarray(q, dtype=np.float64) for q in self.quality))
        object.__setattr__(self, "cost", tuple(np.asarray(c, dtype=np.float64) for c in self.cost))
        self._check_deployments()
        self._check_batches()

    def _check_deployments(self) -> None:
        """Shapes and ranges of the per-deployment and per-type arrays."""
        d = self.model.shape[0] if self.model.ndim == 1 else -1
        if d <= 0:
            raise InvalidAllocationError(
                f"model must be a non-empty 1-D array of model indices, got shape {self.model.shape}")
        for name in ("gpu_type", "gpus", "price_per_hour", "rate", "slots", "max_instances"):
            v = getattr(self, name)
            if v is not None and v.shape != (d,):
                raise InvalidAllocationError(f"{name} has shape {v.shape}, expected ({d},) like model")
        if self.inventory.ndim != 1 or self.inventory.size == 0 or np.any(self.inventory < 0):
            raise InvalidAllocationError("inventory must be a non-empty 1-D array of GPU counts >= 0")
        if np.any(self.gpu_type < 0) or np.any(self.gpu_type >= self.inventory.size):
            raise InvalidAllocationError(f"gpu_type must index inventory (0..{self.inventory.size - 1})")
        if np.any(self.gpus < 1):
            raise InvalidAllocationError("gpus (per instance) must be integers >= 1")
        for name in ("price_per_hour", "rate", "slots"):
            v = getattr(self, name)
            if not np.all(np.isfinite(v)) or np.any(v < 0):
                raise InvalidAllocationError(f"{name} must be finite and >= 0")
        if self.max_instances is not None and np.any(self.max_instances < 0):
            raise InvalidAllocationError("max_instances must be >= 0")
        _check_number("arrival_rate", self.arrival_rate, allow_none=False)
        _check_number("budget_per_query", self.budget_per_query)
        _check_number("max_cost_per_hour", self.max_cost_per_hour)
        _check_number("min_quality", self.min_quality)
        if self.min_quality is not None and self.min_quality > 1:
            raise InvalidAllocationError(f"min_quality must be within [0, 1], got {self.min_quality!r}")
        if self.gpu_names is not None and len(self.gpu_names) != self.inventory.size:
            raise InvalidAllocationError(
                f"gpu_names has {len(self.gpu_names)} names for {self.inventory.size} types")

    def _check_batches(self) -> None:
        """The sampled batches: at least one, each (n_s >= 1, m), quality in [0, 1], cost >= 0."""
        if len(self.quality) == 0:
            raise InvalidAllocationError("quality: at least one sampled batch is needed")
        if len(self.cost) != len(self.quality):
            raise InvalidAllocationError(f"cost has {len(self.cost)} batches, quality {len(self.quality)}")
        m = self.quality[0].shape[1] if self.quality[0].ndim == 2 else -1
        for s, (q, c) in enumerate(zip(self.quality, self.cost, strict=True)):
            if q.ndim != 2 or q.shape[0] == 0 or q.shape[1] != m or m <= 0:
                raise InvalidAllocationError(f"quality[{s}] has shape {q.shape}, expected (n_s >= 1, {m})")
            if c.shape != q.shape:
                raise InvalidAllocationError(f"cost[{s}] has shape {c.shape}, expected {q.shape}")
            if not np.all(np.isfinite(q)) or np.any(q < 0) or np.any(q > 1):
                raise InvalidAllocationError(f"quality[{s}] must be finite and within [0, 1]")
            if not np.all(np.isfinite(c)) or np.any(c < 0):
                raise InvalidAllocationError(f"cost[{s}] must be finite and >= 0")
        if np.any(self.model < 0) or np.any(self.model >= m):
            raise InvalidAllocationError(f"model must index the batches' columns (0..{m - 1})")
        if self.model_names is not None and len(self.model_names) != m:
            raise InvalidAllocationError(f"model_names has {len(self.model_names)} names for {m} models")

    # ------------------------------------------------------------------ helpers
    @property
    def d(self) -> int:
        return int(self.model.size)

    @property
    def m(self) -> int:
        return int(self.quality[0].shape[1])

    @property
    def s(self) -> int:
        return len(self.quality)

    def upper_bounds(self) -> IntArray:
        """Most instances of each deployment that fit alone (inventory, $/hour cap, ``max_instances``)."""
        ub = self.inventory[self.gpu_type] // self.gpus
        if self.max_cost_per_hour is not None:
            price = self.price_per_hour
            by_cost = np.floor(self.max_cost_per_hour / np.maximum(price, 1e-300) + 1e-9)
            ub = np.where(price > 0, np.minimum(ub, np.minimum(by_cost, ub)), ub)
        if self.max_instances is not None:
            ub = np.minimum(ub, self.max_instances)
        return np.asarray(ub, dtype=np.int64)

    def fits(self, counts: IntArray) -> bool:
        """Whether ``counts`` respects the inventory, the $/hour cap and ``max_instances``."""
        c = np.asarray(counts)
        if np.any(c < 0) or (self.max_instances is not None and np.any(c > self.max_instances)):
            return False
        if np.any(self.gpus_used(c) > self.inventory):
            return False
        cap = self.max_cost_per_hour
        return cap is None or float(self.price_per_hour @ c) <= cap + 1e-9

    def gpus_used(self, counts: IntArray) -> IntArray:
        return np.bincount(self.gpu_type, weights=self.gpus * np.asarray(counts),
                           minlength=self.inventory.size).astype(np.int64)

    def model_label(self, j: int) -> str:
        return self.model_names[j] if self.model_names is not None else f"model {j}"

    def gpu_label(self, t: int) -> str:
        return self.gpu_names[t] if self.gpu_names is not None else f"GPU type {t}"


def _int_array(name: str, v: object) -> IntArray:
    a = np.asarray(v)
    if a.size and (not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.bool_)
                   or not np.all(np.isfinite(a)) or np.any(a != np.round(a))):
        raise InvalidAllocationError(f"{name} must hold integers")
    return a.astype(np.int64)


def _check_number(name: str, v: float | None, allow_none: bool = True) -> None:
    if v is None and allow_none:
        return
    if (isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating)
            or not np.isfinite(v) or v < 0):
        raise InvalidAllocationError(f"{name} must be a finite number >= 0, got {v!r}")


@dataclass
class AllocationResult:
    """An allocation and what the routing model expects of it.

    ``status``: ``optimal`` (MILP proven within its gap), ``limit`` (MILP incumbent at the time limit),
    ``heuristic`` (greedy) or ``baseline``. ``expected_quality`` is the SAA objective (mean routed quality
    per query, rejected = 0); ``routed_share`` (m,) the mean fraction of queries routed to each model.
    """

    counts: IntArray
    expected_quality: float
    cost_per_hour: float
    gpus_used: IntArray
    status: str
    method: str
    solve_time_s: float
    routed_share: FloatArray
    bound: float | None = None


# ---------------------------------------------------------------------- the model
# objective, rows, row bounds, variable bounds, integrality, batch offsets
_Model = tuple[FloatArray, sp.csr_matrix, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray,
               list[int]]


def _build(p: AllocationProblem, x_lb: IntArray, x_ub: IntArray, integral_routing: bool) -> _Model:
    """Objective, rows, bounds and integrality of the model above; x first, then y batch by batch."""
    d, m, s_count = p.d, p.m, p.s
    offsets = [d]
    for q in p.quality:
        offsets.append(offsets[-1] + q.size)
    nv = offsets[-1]
    obj = np.zeros(nv)
    rows: list[IntArray] = []
    cols: list[IntArray] = []
    vals: list[FloatArray] = []
    lo: list[float] = []
    hi: list[float] = []
    r = 0

    def add(cidx: IntArray, coef: FloatArray, lb: float, ub: float) -> None:
        nonlocal r
        rows.append(np.full(len(cidx), r, dtype=np.int64))
        cols.append(np.asarray(cidx, dtype=np.int64))
        vals.append(np.asarray(coef, dtype=np.float64))
        lo.append(lb)
        hi.append(ub)
        r += 1

    def add_assignment(idx: IntArray) -> None:
        """Σ_j y_sij ≤ 1 (= 1 without rejection): one row per query of the batch, in one block."""
        nonlocal r
        n = idx.shape[0]
        rows.append(r + np.repeat(np.arange(n, dtype=np.int64), m))
        cols.append(idx.ravel())
        vals.append(np.ones(idx.size))
        lo.extend([-np.inf if p.allow_reject else 1.0] * n)
        hi.extend([1.0] * n)
        r += n

    for t in range(p.inventory.size):
        on_t = np.nonzero(p.gpu_type == t)[0]
        add(on_t, p.gpus[on_t].astype(np.float64), -np.inf, float(p.inventory[t]))
    if p.max_cost_per_hour is not None:
        add(np.arange(d), p.price_per_hour, -np.inf, float(p.max_cost_per_hour))
    load_w: list[list[FloatArray]] = [[] for _ in range(m)]
    load_c: list[list[IntArray]] = [[] for _ in range(m)]
    for s, (q, c) in enumerate(zip(p.quality, p.cost, strict=True)):
        n = q.shape[0]
        idx = offsets[s] + np.arange(n * m).reshape(n, m)
        obj[idx.ravel()] = q.ravel() / (n * s_count)
        add_assignment(idx)
        for j in range(m):
            dep = np.nonzero(p.model == j)[0]
            add(np.concatenate([idx[:, j], dep]), np.concatenate([np.ones(n), -p.slots[dep]]), -np.inf, 0.0)
            load_c[j].append(idx[:, j])
            load_w[j].append(np.full(n, p.arrival_rate / (n * s_count)))
        if p.budget_per_query is not None:
            add(idx.ravel(), c.ravel(), -np.inf, n * float(p.budget_per_query))
    for j in range(m):
        dep = np.nonzero(p.model == j)[0]
        add(np.concatenate(load_c[j] + [dep]), np.concatenate(load_w[j] + [-p.rate[dep]]), -np.inf, 0.0)
    if p.min_quality is not None:
        add(np.arange(d, nv), obj[d:], float(p.min_quality) - QUALITY_TOL, np.inf)
    a = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(r, nv))
    lb = np.zeros(nv)
    ub = np.ones(nv)
    lb[:d], ub[:d] = x_lb, x_ub
    integ = np.full(nv, 1.0 if integral_routing else 0.0)
    integ[:d] = 1.0
    return obj, a, np.array(lo), np.array(hi), lb, ub, integ, offsets


def _solve(p: AllocationProblem, x_lb: IntArray, x_ub: IntArray, *, integral_routing: bool,
           time_limit: float, mip_rel_gap: float, method: str, status_if_optimal: str,
           objective: str = "quality", headroom_share: FloatArray | None = None,
           max_headroom: float = MAX_HEADROOM, min_headroom: float | None = None) -> AllocationResult:
    """Build and solve; map HiGHS's answer to an :class:`AllocationResult` (raise when infeasible).

    ``objective="quality"`` maximises mean routed quality; ``"cost"`` minimises $/hour (quality breaks
    ties, weighted :data:`COST_TIE_BREAK`), which with ``min_quality`` answers "the cheapest allocation
    that reaches this accuracy"; ``"headroom"`` maximises the load headroom factor (:func:`_with_headroom`),
    or with ``min_headroom`` minimises $/hour among allocations keeping at least that factor."""
    t0 = time.perf_counter()
    obj, a, lo, hi, lb, ub, integ, offsets = _build(p, x_lb, x_ub, integral_routing)
    c = -obj
    if objective == "cost":
        c = -COST_TIE_BREAK * obj
        c[: p.d] += p.price_per_hour
    elif objective == "headroom":
        assert headroom_share is not None
        c, a, lo, hi, lb, ub, integ = _with_headroom(p, obj, a, lo, hi, lb, ub, integ, headroom_share,
                                                     max_headroom, min_headroom)
    with quiet_stdout():
        res = milp(c, integrality=integ, bounds=Bounds(lb, ub), constraints=LinearConstraint(a, lo, hi),
                   options={"time_limit": max(float(time_limit), 1e-3), "mip_rel_gap": float(mip_rel_gap),
                            "presolve": True})
    elapsed = time.perf_counter() - t0
    if res.status == 2:
        raise InfeasibleAllocationError(_infeasible_message(p))
    if res.x is None or res.status not in (0, 1):
        raise InfeasibleAllocationError(f"HiGHS found no allocation: {res.message}")
    x = np.asarray(res.x)[: obj.size]
    counts = np.rint(x[: p.d]).astype(np.int64)
    quality = float(obj @ x)
    share = _routed_share(p, x, offsets)
    bound = getattr(res, "mip_dual_bound", None)
    return AllocationResult(
        counts=counts, expected_quality=quality, cost_per_hour=float(p.price_per_hour @ counts),
        gpus_used=p.gpus_used(counts), status=status_if_optimal if res.status == 0 else "limit",
        method=method, solve_time_s=elapsed, routed_share=share,
        bound=None if objective != "quality" or bound is None or not np.isfinite(bound) else -float(bound))


def _with_headroom(p: AllocationProblem, obj: FloatArray, a: sp.csr_matrix, lo: FloatArray, hi: FloatArray,
                   lb: FloatArray, ub: FloatArray, integ: FloatArray, share: FloatArray,
                   max_headroom: float = MAX_HEADROOM, min_headroom: float | None = None
                   ) -> tuple[FloatArray, sp.csr_matrix, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Append the headroom factor h (one more column) and, per model j with routed share σ_j > 0, the row
    Σ_{d: j(d)=j} r_d x_d − h·λ·σ_j ≥ 0; the objective maximises h (every used model's capacity at the
    SLO is at least h times its traffic), with a tiny $/hour penalty. The quality floor (``min_quality``)
    is already a row of ``a``.

    With ``min_headroom`` the objective is $/hour alone and h ≥ ``min_headroom``: the third stage of
    :func:`allocate_milp`, which drops the instances that add neither headroom nor quality (the tiny
    penalty above sits below HiGHS's tolerances, so it cannot be relied on to do that)."""
    nv = obj.size
    rows, cols, vals = [], [], []
    used = [j for j in range(p.m) if share[j] > 1e-12]
    for r, j in enumerate(used):
        dep = np.nonzero(p.model == j)[0]
        rows += [r] * (dep.size + 1)
        cols += dep.tolist() + [nv]
        vals += p.rate[dep].tolist() + [-p.arrival_rate * float(share[j])]
    extra = sp.csr_matrix((vals, (rows, cols)), shape=(len(used), nv + 1))
    a2 = sp.vstack([sp.hstack([a, sp.csr_matrix((a.shape[0], 1))]), extra]).tocsr()
    c = np.zeros(nv + 1)
    c[:nv] = -COST_TIE_BREAK * obj  # quality the floor does not force is still worth keeping
    c[nv] = -1.0
    price_scale = max(float(p.price_per_hour.sum()), 1e-9)
    c[: p.d] += HEADROOM_COST_WEIGHT * p.price_per_hour / price_scale
    h_lb = 0.0
    if min_headroom is not None:
        c = np.zeros(nv + 1)
        c[: p.d] = p.price_per_hour / price_scale
        h_lb = min(min_headroom, max_headroom)
    return (c, a2, np.concatenate([lo, np.zeros(len(used))]), np.concatenate([hi, np.full(len(used), np.inf)]),
            np.append(lb, h_lb), np.append(ub, max_headroom), np.append(integ, 0.0))


def _infeasible_message(p: AllocationProblem) -> str:
    if p.min_quality is not None:
        return ("no allocation within the GPU inventory"
                + ("" if p.max_cost_per_hour is None else " and max_cost_per_hour")
                + f" reaches a mean routed quality of {p.min_quality:g} under the capacity, throughput "
                + f"(arrival_rate {p.arrival_rate:g}/s) and budget rows")
    if not p.allow_reject:
        return ("the router may not reject queries (allow_reject false) and no allocation within the GPU inventory"
                + ("" if p.max_cost_per_hour is None else " and max_cost_per_hour")
                + " can route every sampled query within capacity, throughput (arrival_rate "
                + f"{p.arrival_rate:g}/s) and budget_per_query")
    return "no allocation satisfies the inventory, max_cost_per_hour and budget_per_query rows"


def check_hostable(p: AllocationProblem) -> None:
    """Raise :class:`InfeasibleAllocationError` when not one instance of any model fits.

    The message lists, per GPU type, the smallest instance it would need against what is there, so the
    user sees whether the inventory or the $/hour cap is the problem.
    """
    if np.any(p.upper_bounds() >= 1):
        return
    parts = []
    for t in range(p.inventory.size):
        on_t = np.nonzero(p.gpu_type == t)[0]
        if on_t.size:
            parts.append(f"{p.gpu_label(t)}: smallest instance needs {int(p.gpus[on_t].min())} GPUs, "
                         f"have {int(p.inventory[t])}")
    msg = "inventory cannot host one instance of any model (" + "; ".join(parts) + ")"
    if p.max_cost_per_hour is not None:
        msg += (f"; or max_cost_per_hour {p.max_cost_per_hour:g} is below the cheapest instance "
                f"({float(p.price_per_hour.min()):g} $/hour)")
    raise InfeasibleAllocationError(msg)


# ---------------------------------------------------------------------- public solvers
def allocate_milp(p: AllocationProblem, *, integral_routing: bool = False, time_limit: float = 60.0,
                  mip_rel_gap: float = 1e-6, objective: str = "quality",
                  headroom: float | None = None, max_headroom: float = MAX_HEADROOM) -> AllocationResult:
    """The joint MILP: instance counts and the routing of every sampled batch at once.

    ``objective``: ``"quality"`` (maximise mean routed quality) or ``"cost"`` (minimise $/hour; set
    ``min_quality`` on the problem, else the answer is the empty allocation when rejection is allowed).

    ``headroom`` (a quality tolerance, e.g. 1e-3; quality objective only): many allocations often reach
    the same expected quality — the optimum leaves GPUs unused or places them arbitrarily. A second
    solve then keeps quality within ``headroom`` of the optimum and maximises the load headroom factor h:
    every model's capacity at the SLO is at least h × its traffic (with the first solve's routing mix).
    Spare GPUs so go where queues would build first, which is what a simulated SLO rewards.
    ``max_headroom`` caps h: beyond it spare GPUs stay idle (a huge inventory is not filled for a small
    load). Then the cheapest allocation keeping that h and quality is taken, and instances that add
    nothing are dropped (:func:`_trim`, :func:`_drop_idle`).

    The result's ``expected_quality`` and ``routed_share`` are those of its counts' best routing, as
    :func:`evaluate_allocation` scores any fixed allocation (also with ``objective="cost"``).
    ``time_limit`` applies to each solve (the headroom mode runs up to four MILPs and a few LPs per
    instance it tries to drop), and ``solve_time_s`` is their total.
    """
    if objective not in ("quality", "cost"):
        raise InvalidAllocationError(f"objective must be 'quality' or 'cost', got {objective!r}")
    check_hostable(p)
    lo, hi = np.zeros(p.d, dtype=np.int64), p.upper_bounds()
    first = _solve(p, lo, hi, integral_routing=integral_routing, time_limit=time_limit, mip_rel_gap=mip_rel_gap,
                   method="milp" if objective == "quality" else "milp-cost", status_if_optimal="optimal",
                   objective=objective)
    if objective == "cost":  # quality sits at its floor there: report what the counts reach
        return _rescored(p, first, integral_routing, time_limit)
    if headroom is None:
        return first
    if headroom < 0 or not np.isfinite(headroom):
        raise InvalidAllocationError(f"headroom must be a finite tolerance >= 0, got {headroom!r}")
    floor = max(0.0, first.expected_quality - headroom)
    q = dataclasses.replace(p, min_quality=floor if p.min_quality is None else max(floor, p.min_quality))
    kw: dict[str, Any] = {"integral_routing": integral_routing, "time_limit": time_limit, "method": "milp+headroom",
          "status_if_optimal": "optimal"}
    try:
        second = _solve(q, lo, hi, mip_rel_gap=mip_rel_gap, objective="headroom", headroom_share=first.routed_share,
                        max_headroom=max_headroom, **kw)
        final = _trim(p, q, second, first.routed_share, max_headroom, mip_rel_gap, kw)
    except InfeasibleAllocationError:  # only HiGHS's tolerances can make the first optimum infeasible here
        return first
    final.bound = first.bound
    final.status = "limit" if "limit" in (first.status, second.status, final.status) else final.status
    final.solve_time_s += first.solve_time_s + second.solve_time_s
    return final


def _trim(p: AllocationProblem, q: AllocationProblem, second: AllocationResult, share: FloatArray,
          max_headroom: float, mip_rel_gap: float, kw: dict[str, Any]) -> AllocationResult:
    """Stages 3 and 4 of :func:`allocate_milp`'s headroom mode.

    3. The cheapest allocation keeping the second stage's headroom factor and the quality its counts
       reach with their best routing: instances that add neither are dropped (a $/hour term small enough
       not to trade against h cannot be weighted into the second stage's objective: HiGHS's tolerances
       swallow it).
    4. The result scored like every fixed allocation (:func:`evaluate_allocation`): the headroom stages
       only hold quality at their floor, so the routing they return is not the counts' best, and the
       reported quality and routed share would be below what the same counts score as a baseline.
    """
    kept = _solve(p, second.counts, second.counts, mip_rel_gap=1e-9, **kw)
    cheap = dataclasses.replace(q, min_quality=max(float(q.min_quality or 0.0), kept.expected_quality))
    h = min(_headroom_factor(p, second.counts, share), max_headroom)
    lo, hi = np.zeros(p.d, dtype=np.int64), p.upper_bounds()
    try:
        third = _solve(cheap, lo, hi, mip_rel_gap=mip_rel_gap, objective="headroom", headroom_share=share,
                       max_headroom=max_headroom, min_headroom=h * (1 - 1e-9), **kw)
    except InfeasibleAllocationError:  # tolerances only: the second stage's counts satisfy every row
        third = second
    spent = kept.solve_time_s + (third.solve_time_s if third is not second else 0.0)
    limited = third.status == "limit"
    if third.cost_per_hour > second.cost_per_hour + 1e-9:  # a time-limited incumbent no better than stage 2
        third = second
    if np.array_equal(third.counts, second.counts):
        final = kept
        final.solve_time_s = spent
    else:
        final = _solve(p, third.counts, third.counts, mip_rel_gap=1e-9, **kw)
        final.solve_time_s += spent
    if limited:
        final.status = "limit"
    return _drop_idle(p, final, max_headroom, kw)


def _drop_idle(p: AllocationProblem, res: AllocationResult, max_headroom: float, kw: dict[str, Any]
               ) -> AllocationResult:
    """Stage 5 of :func:`allocate_milp`'s headroom mode: remove, most expensive first and one at a time,
    every instance whose removal lowers neither the counts' best quality nor their headroom factor with
    the routing that keeps that quality with the most headroom (:func:`balanced_share`).

    Why, after stage 3: stages 2 and 3 measure headroom with the first stage's routing mix, fixed. When
    models tie for some queries, the mix can move to another model, and an instance kept for the fixed
    mix adds nothing to the load the allocation actually sustains. One pass is enough: with fewer
    instances neither measure can rise, so an instance that could not go stays needed after later removals.
    """
    t0 = time.perf_counter()
    counts = res.counts.copy()
    best = res
    h0 = min(_headroom_factor(p, counts, balanced_share(p, counts, res.expected_quality)), max_headroom)
    for d in np.argsort(-p.price_per_hour, kind="stable"):
        while counts[d] > 0:
            trial = counts.copy()
            trial[d] -= 1
            try:
                r = _solve(p, trial, trial, mip_rel_gap=1e-9, **kw)
            except InfeasibleAllocationError:
                break
            if r.expected_quality < res.expected_quality - 10 * QUALITY_TOL:
                break
            if min(_headroom_factor(p, trial, balanced_share(p, trial, r.expected_quality)), max_headroom) < h0 * (1 - 1e-9):
                break
            counts, best = trial, r
    if best is not res:
        best.status, best.bound = res.status, res.bound
        best.solve_time_s = res.solve_time_s
    best.solve_time_s += time.perf_counter() - t0
    return best


def _rescored(p: AllocationProblem, res: AllocationResult, integral_routing: bool, time_limit: float
              ) -> AllocationResult:
    """``res`` with the quality and routed share of its counts' best routing (:func:`evaluate_allocation`'s
    yardstick): a solve whose objective is not quality returns some routing above the floor, not the best."""
    try:
        best = _solve(p, res.counts, res.counts, integral_routing=integral_routing, time_limit=time_limit,
                      mip_rel_gap=1e-9, method=res.method, status_if_optimal=res.status)
    except InfeasibleAllocationError:  # tolerances only: res's own routing satisfies every row
        return res
    best.bound = res.bound
    best.solve_time_s += res.solve_time_s
    return best


def balanced_share(p: AllocationProblem, counts: IntArray, quality: float, *, time_limit: float = 60.0
                   ) -> FloatArray:
    """Routed share (m,) of the LP routing of fixed ``counts`` that keeps mean routed quality at ``quality``
    (e.g. :func:`evaluate_allocation`'s value) and leaves the most load headroom: it minimises the largest
    traffic / capacity-at-the-SLO ratio over the models.

    Why: many routings often reach the same best quality (models of equal predicted quality for some
    queries), and the one HiGHS returns may send every tied query to one model; a sustainable load
    computed from that share would call instances idle that the tied routing can use. Falls back to the
    best routing's share when there is no traffic or HiGHS finds the floor infeasible (tolerances).
    """
    c = _int_array("counts", counts)
    q = dataclasses.replace(p, min_quality=min(max(float(quality), 0.0), 1.0))
    obj, a, lo, hi, lb, ub, integ, offsets = _build(q, c, c, False)
    cap = _capacity(p, c)
    used = [j for j in range(p.m) if cap[j] > 0]
    fallback = dataclasses.replace(p, min_quality=None)
    if p.arrival_rate <= 0 or not used:
        return evaluate_allocation(fallback, c, time_limit=time_limit).routed_share
    nv = obj.size
    rows, cols, vals = [], [], []
    for r, j in enumerate(used):  # λ·share_j(y) − t·cap_j ≤ 0
        for s, qs in enumerate(p.quality):
            n = qs.shape[0]
            rows += [r] * n
            cols += (offsets[s] + np.arange(n) * p.m + j).tolist()
            vals += [p.arrival_rate / (n * p.s)] * n
        rows.append(r)
        cols.append(nv)
        vals.append(-float(cap[j]))
    extra = sp.csr_matrix((vals, (rows, cols)), shape=(len(used), nv + 1))
    a2 = sp.vstack([sp.hstack([a, sp.csr_matrix((a.shape[0], 1))]), extra]).tocsr()
    cost = np.zeros(nv + 1)
    cost[nv] = 1.0
    with quiet_stdout():
        res = milp(cost, integrality=np.append(integ, 0.0), bounds=Bounds(np.append(lb, 0.0), np.append(ub, np.inf)),
                   constraints=LinearConstraint(a2, np.concatenate([lo, np.full(len(used), -np.inf)]),
                                                np.concatenate([hi, np.zeros(len(used))])),
                   options={"time_limit": max(float(time_limit), 1e-3), "presolve": True})
    if res.x is None or res.status not in (0, 1):
        return evaluate_allocation(fallback, c, time_limit=time_limit).routed_share
    return _routed_share(p, np.asarray(res.x), offsets)


def _routed_share(p: AllocationProblem, x: FloatArray, offsets: list[int]) -> FloatArray:
    """(m,) mean fraction of the sampled queries the routing part of a solution ``x`` sends to each model."""
    share = np.zeros(p.m)
    for s, q in enumerate(p.quality):
        share += x[offsets[s]:offsets[s + 1]].reshape(q.shape).sum(axis=0) / (q.shape[0] * p.s)
    return share


def _capacity(p: AllocationProblem, counts: IntArray) -> FloatArray:
    """(m,) queries/s each model sustains at the SLO with ``counts`` instances of each deployment."""
    return np.asarray(np.bincount(p.model, weights=p.rate * counts, minlength=p.m), dtype=np.float64)


def _headroom_factor(p: AllocationProblem, counts: IntArray, share: FloatArray) -> float:
    """min over models with traffic of capacity at the SLO / (λ × share): the second stage's h of ``counts``."""
    cap = _capacity(p, counts)
    used = share > 1e-12
    if not np.any(used) or p.arrival_rate <= 0:
        return MAX_HEADROOM
    return float(np.min(cap[used] / (p.arrival_rate * share[used])))


def evaluate_allocation(p: AllocationProblem, counts: IntArray, *, integral_routing: bool = False,
                        method: str = "fixed", status: str = "optimal", time_limit: float = 60.0
                        ) -> AllocationResult:
    """The best routing of the sampled batches given fixed ``counts`` (the model with x fixed).

    Raises :class:`InvalidAllocationError` when ``counts`` breaks the inventory / cap, and
    :class:`InfeasibleAllocationError` when it cannot route every query without rejection.
    """
    c = _int_array("counts", counts)
    if c.shape != (p.d,) or not p.fits(c):
        raise InvalidAllocationError(f"counts {c.tolist()} does not fit the inventory / max_cost_per_hour")
    return _solve(p, c, c, integral_routing=integral_routing, time_limit=time_limit, mip_rel_gap=1e-9,
                  method=method, status_if_optimal=status)


def allocate_greedy(p: AllocationProblem, *, swap_rounds: int = 0,
                    time_limit: float = 60.0) -> AllocationResult:
    """Marginal gain per GPU: add the instance whose routing LP gains most quality per GPU, until none fits
    or none gains. Each candidate step costs one LP, so a run costs O(D × instances) LPs — no integer
    search, hence its use on cases the MILP cannot close. Its gap to the MILP is reported on small cases.

    ``swap_rounds`` > 0 then makes up to that many best-improving swaps (drop one instance, refill
    greedily: O(D) add phases each): it repairs the myopia of per-GPU scoring (a cheap instance taken
    early that blocks a better tp-2 one). Without rejection, steps are scored on the
    problem where a query may be rejected at a price (quality (q + 1) / 2, rejected = 0), so that the
    first instances, which cannot yet serve everything, still show progress.
    """
    t0 = time.perf_counter()
    check_hostable(p)
    scored = p if p.allow_reject else dataclasses.replace(
        p, quality=tuple((q + 1.0) / 2.0 for q in p.quality), allow_reject=True)
    deadline = t0 + time_limit
    counts, best = _add_phase(scored, np.zeros(p.d, dtype=np.int64), deadline)
    for _ in range(swap_rounds):
        swap = _best_swap(scored, counts, best, deadline)
        if swap is None:
            break
        counts, best = _add_phase(scored, swap[0], deadline)
    res = evaluate_allocation(p, counts, method="greedy", status="heuristic")
    res.solve_time_s = time.perf_counter() - t0
    return res


def _add_phase(p: AllocationProblem, counts: IntArray, deadline: float,
               skip_first: int = -1) -> tuple[IntArray, float]:
    """Add the best-gain-per-GPU instance while one fits and gains (see :func:`allocate_greedy`).

    ``skip_first``: a deployment not to re-add as the first step (the one a swap just dropped).
    """
    counts = counts.copy()
    best = _value(p, counts)
    while time.perf_counter() < deadline:
        step, step_value, step_score = -1, best, 0.0
        for d in range(p.d):
            if d == skip_first:
                continue
            trial = counts.copy()
            trial[d] += 1
            if not p.fits(trial):
                continue
            v = _value(p, trial)
            score = (v - best) / p.gpus[d]
            if v - best > GAIN_TOL and score > step_score:
                step, step_value, step_score = d, v, score
        if step < 0:
            break
        counts[step] += 1
        best = step_value
        skip_first = -1
    return counts, best


def _best_swap(p: AllocationProblem, counts: IntArray, best: float, deadline: float
               ) -> tuple[IntArray, float] | None:
    """The best "drop one instance, then greedily refill" neighbour of ``counts`` if it beats ``best``.

    Refilling (rather than a one-for-one exchange) lets a freed GPU plus a spare one become a tp-2
    instance, the move per-GPU scoring most often misses.
    """
    found: tuple[IntArray, float] | None = None
    for a in np.nonzero(counts > 0)[0]:
        if time.perf_counter() >= deadline:
            break
        trial = counts.copy()
        trial[a] -= 1
        trial, v = _add_phase(p, trial, deadline, skip_first=int(a))
        if v > (best if found is None else found[1]) + GAIN_TOL:
            found = (trial, v)
    return found


def _value(p: AllocationProblem, counts: IntArray) -> float:
    """Routing value of ``counts``; -inf when it cannot route every query (only without rejection)."""
    try:
        return _solve(p, counts, counts, integral_routing=False, time_limit=60.0, mip_rel_gap=1e-9,
                      method="fixed", status_if_optimal="optimal").expected_quality
    except InfeasibleAllocationError:
        return -np.inf


def allocate_uniform(p: AllocationProblem) -> AllocationResult:
    """Baseline: each GPU type's inventory split evenly over the models with a deployment on it."""
    check_hostable(p)
    weights = np.ones(p.m)
    return _baseline(p, weights, "uniform")


def allocate_proportional(p: AllocationProblem, traffic_share: FloatArray | None = None) -> AllocationResult:
    """Baseline: GPUs split in proportion to expected traffic per model.

    ``traffic_share`` (m,) defaults to the share each model gets when the sampled batches are routed
    with unlimited capacity (budget kept): the traffic a deployment would see if it never ran out.
    """
    check_hostable(p)
    if traffic_share is None:
        unlimited = AllocationProblem(
            model=np.arange(p.m), gpu_type=np.zeros(p.m, dtype=np.int64), gpus=np.ones(p.m, dtype=np.int64),
            price_per_hour=np.zeros(p.m), rate=np.full(p.m, max(p.arrival_rate, 1.0)),
            slots=np.full(p.m, float(max(q.shape[0] for q in p.quality))), inventory=np.array([p.m]),
            quality=p.quality, cost=p.cost, arrival_rate=p.arrival_rate, budget_per_query=p.budget_per_query,
            allow_reject=p.allow_reject)
        traffic_share = evaluate_allocation(unlimited, np.ones(p.m, dtype=np.int64)).routed_share
    w = np.asarray(traffic_share, dtype=np.float64)
    if w.shape != (p.m,) or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise InvalidAllocationError(f"traffic_share must be ({p.m},) finite and >= 0")
    if w.sum() <= 0:
        w = np.ones(p.m)
    return _baseline(p, w, "proportional")


def _baseline(p: AllocationProblem, weights: FloatArray, method: str) -> AllocationResult:
    """Split each type's GPUs over its models by ``weights``; each model's share runs its smallest-tp
    deployment on that type. GPUs the rounding leaves over go, one instance at a time, to the model
    furthest below its share whose instance still fits (largest remainder), so a baseline uses the
    inventory as an operator would; then drop the most expensive instances until the $/hour cap holds."""
    t0 = time.perf_counter()
    counts = np.zeros(p.d, dtype=np.int64)
    ub = p.upper_bounds()
    for t in range(p.inventory.size):
        pick: dict[int, int] = {}
        for k in np.nonzero((p.gpu_type == t) & (ub >= 1))[0]:
            j = int(p.model[k])
            if j not in pick or p.gpus[k] < p.gpus[pick[j]]:
                pick[j] = int(k)
        pick = {j: d for j, d in pick.items() if weights[j] > 0}
        total = sum(weights[j] for j in pick)
        if not pick or total <= 0:
            continue
        quota = {j: float(p.inventory[t]) * weights[j] / total for j in pick}
        for j, d in pick.items():
            counts[d] = min(int(quota[j] // p.gpus[d]), int(ub[d]))
        _fill_leftover(p, counts, pick, quota, ub, int(p.inventory[t]))
    while not p.fits(counts):
        live = np.nonzero(counts > 0)[0]
        counts[live[np.argmax(p.price_per_hour[live])]] -= 1
    res = evaluate_allocation(p, counts, method=method, status="baseline")
    res.solve_time_s = time.perf_counter() - t0
    return res


def _fill_leftover(p: AllocationProblem, counts: IntArray, pick: dict[int, int], quota: dict[int, float],
                   ub: IntArray, gpus: int) -> None:
    """Largest remainder: while some picked instance fits the type's free GPUs (and the $/hour cap), add
    one to the model with the largest quota − GPUs used (ties: the lower model index)."""
    def room(d: int) -> bool:
        trial = counts.copy()
        trial[d] += 1
        return p.fits(trial)

    while True:
        free = gpus - sum(int(p.gpus[d] * counts[d]) for d in pick.values())
        fits = [j for j, d in pick.items() if p.gpus[d] <= free and counts[d] < ub[d] and room(d)]
        if not fits:
            return
        j = max(fits, key=lambda m: (quota[m] - p.gpus[pick[m]] * counts[pick[m]], -m))
        counts[pick[j]] += 1
