"""Batch-level policies: route a whole batch jointly (issue 4). Importing registers them.

* ``milp`` — exact (HiGHS); the only one modelling a budget and a quality floor together;
* ``lagrangian`` — dual decomposition with an auction inner step; fast, certified gap in ``info``;
* ``min_cost_flow`` — network simplex; exact without a side row;
* ``robust`` — box (lower confidence bound) or Bertsimas–Sim budgeted uncertainty;
* ``oracle`` — ``milp`` on the true quality (an upper bound for reports).

The shared machinery: :mod:`~policies.batch.linear_form` (normal form), :mod:`~policies.batch.transport`
(capacity-only assignment), :mod:`~policies.batch.multiplier` (side-row multiplier search),
:mod:`~policies.batch.repair`, :mod:`~policies.batch.feasibility`, :mod:`~policies.batch.milp_model`.
"""

from policies.batch import lagrangian, milp, min_cost_flow, oracle, robust

__all__ = ["lagrangian", "milp", "min_cost_flow", "oracle", "robust"]
