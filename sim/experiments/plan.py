"""Expand an experiment (scenario × grid × policies × seeds) into validated runs, before anything runs.

Every run's scenario is resolved and validated here, so an invalid grid path or value stops the whole
experiment with exit 2 and nothing simulated. A run is identified by a hash of its resolved scenario
(which includes the seed) and the package version: rerunning the same command over the same folder
finds the runs that are already there by that id and runs only the missing ones.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sim import __version__
from sim.config.load import parse_scenario, read_scenario_text
from sim.config.schema import Scenario
from sim.errors import InputError
from sim.experiments.specs import PolicySpec

DEFAULT_SCENARIO = "quickstart.yaml"
MAX_RUNS = 100_000


@dataclass(frozen=True)
class RunSpec:
    """One run of an experiment: which policy, seed and grid point, its resolved scenario and its folder."""

    run_id: str
    run_dir: str  # relative to the experiment folder
    policy: str  # the user's label, e.g. "utility_greedy:lam=31.5"
    seed: int
    params: dict[str, Any]  # grid path -> value
    scenario: Scenario


@dataclass
class Experiment:
    kind: str  # "compare" or "sweep"
    scenario_name: str
    source: str  # the scenario file as named on the command line (or the embedded default)
    seeds: list[int]
    policies: list[str]
    grid: dict[str, list[Any]]
    runs: list[RunSpec] = field(default_factory=list)


@dataclass(frozen=True)
class Source:
    text: str
    file: str
    base_dir: Path | None


def read_source(scenario: Path | None) -> Source:
    """The scenario text to expand: a file, or the embedded default when none is named."""
    if scenario is None:
        ref = resources.files("sim").joinpath("scenarios", DEFAULT_SCENARIO)
        return Source(ref.read_text(encoding="utf-8"), f"<embedded {DEFAULT_SCENARIO}>", None)
    return Source(read_scenario_text(scenario), str(scenario), scenario.resolve().parent)


def run_id(sc: Scenario) -> str:
    """Stable id of a run: its fully resolved scenario (seed included) and the llmsim version."""
    text = json.dumps({"scenario": sc.model_dump(mode="json"), "llmsim": __version__},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_")[:60] or "policy"


def _set(path: str, value: Any) -> str:
    return f"{path}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"


def plan_experiment(
    kind: str,
    source: Source,
    policies: list[PolicySpec],
    seeds: int,
    grid: dict[str, list[Any]] | None = None,
    sets: list[str] | None = None,
) -> Experiment:
    """Resolve and validate every run of the experiment; raise InputError naming the first bad one."""
    grid = grid or {}
    if seeds < 1:
        raise InputError(f"--seeds must be at least 1, got {seeds}", where="--seeds")
    base = parse_scenario(source.text, file=source.file, base_dir=source.base_dir, overrides=list(sets or []))
    seed_list = [base.seed + k for k in range(seeds)]
    points = list(itertools.product(*grid.values())) or [()]
    total = len(points) * len(policies) * len(seed_list)
    if total > MAX_RUNS:
        raise InputError(f"{total:,} runs; at most {MAX_RUNS:,}", where="--grid")
    exp = Experiment(kind, base.name, source.file, seed_list, [p.label for p in policies], grid)
    for point in points:
        params = dict(zip(grid, point, strict=True))
        grid_sets = [_set(path, value) for path, value in params.items()]
        for pol in policies:
            for seed in seed_list:
                overrides = [*(sets or []), *grid_sets, *pol.overrides(), f"seed={seed}"]
                sc = _resolve(source, overrides, params, pol)
                rid = run_id(sc)
                exp.runs.append(RunSpec(rid, f"runs/{_slug(pol.label)}-s{seed}-{rid[:10]}", pol.label, seed,
                                        params, sc))
    return exp


def _resolve(source: Source, overrides: list[str], params: dict[str, Any], pol: PolicySpec) -> Scenario:
    try:
        return parse_scenario(source.text, file=source.file, base_dir=source.base_dir, overrides=overrides)
    except InputError as exc:
        point = ", ".join(f"{k}={v!r}" for k, v in params.items())
        context = f"policy {pol.label}" + (f", grid point {point}" if point else "")
        raise InputError(f"{exc.detail} ({context})", file=exc.file, where=exc.where) from None
