"""Experiments over many runs: ``compare`` (policies × seeds on identical workloads) and ``sweep`` (a grid
of scenario fields × policies × seeds), built on :func:`sim.runner.simulate` and written as a folder of
run folders plus one tidy ``results.parquet`` that :mod:`reports` reads.

The names below load on first use: ``sim.cli`` imports :mod:`sim.experiments.cli` to register its
commands, and must not pay for the scenario schema and the solvers before a command runs.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Experiment": "sim.experiments.plan",
    "RunSpec": "sim.experiments.plan",
    "plan_experiment": "sim.experiments.plan",
    "PolicySpec": "sim.experiments.specs",
    "parse_grid": "sim.experiments.specs",
    "parse_policies": "sim.experiments.specs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sim.experiments' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
