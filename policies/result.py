"""Result of a policy on one batch, and the independent constraint checker.

``RoutingResult`` mirrors scipy's ``OptimizeResult``: the assignment plus the numbers a caller wants
without recomputing them. ``check_assignment`` is the single place that decides whether an assignment
satisfies a problem; the dispatcher and the tests both call it, so a policy cannot grade itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from policies.problem import REJECT, SLO_TOL, IntArray, ProblemForm, RoutingProblem

# Absolute slack when comparing sums of floats against budget / alpha rows.
TOL = 1e-9

STATUS_OPTIMAL = "optimal"  # proven optimal (exact solvers)
STATUS_FEASIBLE = "feasible"  # satisfies every constraint, optimality not proven
STATUS_INFEASIBLE = "infeasible"  # no assignment satisfies the constraints; ``assignment`` may be best effort
STATUS_UNCONSTRAINED = "feasible"  # alias used by per-query rules


@dataclass
class Evaluation:
    """Objective terms and constraint violations of an assignment (see :func:`check_assignment`)."""

    total_cost: float
    total_quality: float
    mean_quality: float
    loads: IntArray
    violations: list[str]
    slo_misses: int = 0  # chosen pairs predicted over the SLO (counted in constraint mode only)

    @property
    def feasible(self) -> bool:
        return not self.violations


def check_assignment(problem: RoutingProblem, assignment: np.ndarray, tol: float = TOL) -> Evaluation:
    """Evaluate ``assignment`` against every constraint of ``problem``.

    Returns the objective terms and a list of human-readable violations (empty when feasible).
    Mean quality is over all n queries, rejected ones counting as 0 (the same convention as the
    simulator's accuracy). In SLO constraint mode every chosen pair predicted over the SLO (beyond
    ``SLO_TOL`` seconds) is a violation: they are counted in ``slo_misses`` and named (the first few)
    in one ``slo:`` entry, so a batch with many misses still gives a readable message.
    """
    a = np.asarray(assignment)
    n, m = problem.n, problem.m
    violations: list[str] = []
    if a.shape != (n,):
        return Evaluation(float("nan"), float("nan"), float("nan"), np.zeros(m, np.int64),
                          [f"assignment has shape {a.shape}, expected ({n},)"])
    if a.dtype.kind not in "iu":
        if not np.all(np.equal(np.mod(a, 1), 0)):
            return Evaluation(float("nan"), float("nan"), float("nan"), np.zeros(m, np.int64),
                              ["assignment has non-integer entries"])
        a = a.astype(np.int64)
    if n == 1:  # the simulator's most frequent case (one query per decision): plain Python, same result
        j = int(a[0])
        if j < REJECT or j >= m:
            return Evaluation(float("nan"), float("nan"), float("nan"), np.zeros(m, np.int64),
                              [f"assignment has 1 entries outside [-1, {m - 1}]"])
        loads = np.zeros(m, dtype=np.int64)
        if j >= 0:
            loads[j] = 1
            total_cost, total_quality = float(problem.cost[0, j]), float(problem.quality[0, j])
        else:
            total_cost = total_quality = 0.0
        mean_quality = total_quality
        n_rej = int(j < 0)
    else:
        bad = (a < REJECT) | (a >= m)
        if np.any(bad):
            return Evaluation(float("nan"), float("nan"), float("nan"), np.zeros(m, np.int64),
                              [f"assignment has {int(bad.sum())} entries outside [-1, {m - 1}]"])
        routed = a >= 0
        rows = np.nonzero(routed)[0]
        cols = a[routed]
        total_cost = float(problem.cost[rows, cols].sum())
        total_quality = float(problem.quality[rows, cols].sum())
        mean_quality = total_quality / n if n else 1.0
        loads = np.bincount(cols, minlength=m).astype(np.int64)
        n_rej = int(n - routed.sum())
    if n_rej and not problem.allow_reject:
        violations.append(f"{n_rej} queries rejected but allow_reject is False")
    cap = problem.capacity
    assert cap is not None
    over = np.nonzero(loads > cap + tol)[0]
    for k in over.tolist():
        violations.append(f"capacity of {problem.model_label(k)}: load {loads[k]} > {cap[k]:g}")
    if problem.budget is not None and total_cost > problem.budget + tol * max(1.0, problem.budget):
        violations.append(f"budget: cost {total_cost:.6g} > {problem.budget:.6g}")
    if problem.min_quality is not None and n and mean_quality < problem.min_quality - tol:
        violations.append(f"min_quality: mean {mean_quality:.6g} < {problem.min_quality:.6g}")
    misses = _slo_misses(problem, a) if problem.slo_mode == "constraint" and problem.has_slo else 0
    if misses:
        violations.append(_slo_message(problem, a))
    return Evaluation(total_cost, total_quality, mean_quality, loads, violations, misses)


SLO_NAMED = 3  # pairs named in an SLO violation message


def _missing_rows(problem: RoutingProblem, a: np.ndarray) -> np.ndarray:
    """Queries whose chosen model is predicted over the SLO (constraint mode, SLO set)."""
    assert problem.latency is not None and problem.slo is not None
    routed = np.nonzero(a >= 0)[0]
    lat = problem.latency[routed, a[routed]]
    return routed[lat > float(problem.slo) + SLO_TOL]


def _slo_misses(problem: RoutingProblem, a: np.ndarray) -> int:
    return int(_missing_rows(problem, a).size)


def _slo_message(problem: RoutingProblem, a: np.ndarray) -> str:
    rows = _missing_rows(problem, a)
    assert problem.latency is not None
    named = ", ".join(f"query {i} on {problem.model_label(int(a[i]))} ({problem.latency[i, a[i]]:.4g} s)"
                      for i in rows[:SLO_NAMED].tolist())
    more = f" and {rows.size - SLO_NAMED} more" if rows.size > SLO_NAMED else ""
    return f"slo: {rows.size} queries on models predicted over the SLO {problem.slo:g} s: {named}{more}"


@dataclass
class RoutingResult:
    """What :func:`policies.solve` returns.

    ``objective`` is Σ quality for max-quality problems and Σ cost for min-cost problems, evaluated by
    :func:`check_assignment` (never by the solver itself). ``status`` is ``optimal``, ``feasible`` or
    ``infeasible``; when infeasible, ``assignment`` is the best-effort one and ``violations`` names each
    violated constraint, and ``message`` says why.
    """

    assignment: IntArray
    objective: float
    total_cost: float
    mean_quality: float
    status: str
    solve_time_s: float = 0.0
    message: str = ""
    violations: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    #: :func:`check_assignment` of ``assignment`` on ``evaluated`` (both set by :meth:`build`), so a
    #: caller checking the same assignment on the same problem (the simulator's dispatcher) need not redo it
    evaluation: Evaluation | None = field(default=None, repr=False, compare=False)
    evaluated: RoutingProblem | None = field(default=None, repr=False, compare=False)

    @property
    def success(self) -> bool:
        return self.status != STATUS_INFEASIBLE

    @classmethod
    def build(
        cls,
        problem: RoutingProblem,
        assignment: np.ndarray,
        status: str,
        *,
        solve_time_s: float = 0.0,
        message: str = "",
        info: dict[str, Any] | None = None,
    ) -> RoutingResult:
        """Evaluate ``assignment`` and downgrade a claimed success to ``infeasible`` if it violates anything."""
        a = np.asarray(assignment, dtype=np.int64)
        ev = check_assignment(problem, a)
        if ev.violations and status != STATUS_INFEASIBLE:
            status = STATUS_INFEASIBLE
            message = message or "assignment violates: " + "; ".join(ev.violations)
        objective = ev.total_cost if problem.form is ProblemForm.MIN_COST else ev.total_quality
        return cls(
            assignment=a,
            objective=objective,
            total_cost=ev.total_cost,
            mean_quality=ev.mean_quality,
            status=status,
            solve_time_s=solve_time_s,
            message=message,
            violations=ev.violations,
            info=dict(info or {}),
            evaluation=ev,
            evaluated=problem,
        )
