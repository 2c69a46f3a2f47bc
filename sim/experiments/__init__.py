"""Experiments over many runs: ``compare`` (policies × seeds on identical workloads) and ``sweep`` (a grid
of scenario fields × policies × seeds), built on :func:`sim.runner.simulate` and written as a folder of
run folders plus one tidy ``results.parquet`` that :mod:`reports` reads."""

from sim.experiments.plan import Experiment, RunSpec, plan_experiment
from sim.experiments.specs import PolicySpec, parse_grid, parse_policies

__all__ = ["Experiment", "PolicySpec", "RunSpec", "parse_grid", "parse_policies", "plan_experiment"]
