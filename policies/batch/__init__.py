"""Batch-level policies: route a whole batch jointly (issue 4). Importing registers them.

* ``milp`` — exact (HiGHS); the only one modelling a budget and a quality floor together;
* ``lagrangian`` — dual decomposition with an auction inner step; fast, certified gap in ``info``;
* ``min_cost_flow`` — network simplex; exact without a side row;
* ``robust`` — box (lower confidence bound) or Bertsimas–Sim budgeted uncertainty;
* ``oracle`` — ``milp`` on the true quality (an upper bound for reports).

A latency SLO (``RoutingProblem.latency`` / ``slo``) reaches all of them through the normal form
(:mod:`~policies.batch.linear_form`): in constraint mode a pair over the SLO is infeasible (rejected
when ``allow_reject``; otherwise used only where capacity forces it, and the result is ``infeasible``);
in penalty mode ``μ·(latency − slo)+`` enters the objective — quality points per second over the SLO
when maximising quality (``milp``/``lagrangian``/``min_cost_flow``/``robust``/``oracle`` with a budget
or no side row), USD per second when minimising cost under a quality floor. ``robust`` charges it
against its lower-bound quality, ``oracle`` against the true quality; the budget and floor rows always
use the true cost and quality.

The shared machinery: :mod:`~policies.batch.linear_form` (normal form), :mod:`~policies.batch.transport`
(capacity-only assignment), :mod:`~policies.batch.multiplier` (side-row multiplier search),
:mod:`~policies.batch.repair`, :mod:`~policies.batch.feasibility`, :mod:`~policies.batch.milp_model`.
"""

from policies.batch import lagrangian, milp, min_cost_flow, oracle, robust

__all__ = ["lagrangian", "milp", "min_cost_flow", "oracle", "robust"]
