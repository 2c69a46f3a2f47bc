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
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sim import __version__
from sim.config.load import Override, parse_scenario, read_scenario_text
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


def _data_stamps(sc: Scenario) -> list[list[Any]]:
    """(path, size, mtime) of every data file the scenario reads: an edited trace or dataset is a new run."""
    wl = sc.workload
    paths = [getattr(wl.arrivals, "path", None), *getattr(wl.pool, "paths", []), sc.prices_file]
    stamps = []
    for p in filter(None, paths):
        try:
            st = Path(p).stat()
            stamps.append([str(p), st.st_size, st.st_mtime_ns])
        except OSError:
            stamps.append([str(p), None, None])
    return stamps


def run_id(sc: Scenario) -> str:
    """Stable id of a run: its fully resolved scenario (seed included), its data files' size and
    modification time, and the llmsim version."""
    text = json.dumps({"scenario": sc.model_dump(mode="json"), "data": _data_stamps(sc), "llmsim": __version__},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_")[:60] or "policy"


def _set(path: str, value: Any) -> str:
    return f"{path}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"


#: Fields a grid may not vary: each has its own flag, which keeps run labels and pairing by seed right.
RESERVED = {"seed": "--seeds", "router.policy": "--policies", "router.params": "--policies NAME:key=value"}


def _check_sizes(grid: dict[str, list[Any]], policies: list[PolicySpec], seeds: int) -> None:
    if seeds < 1:
        raise InputError(f"--seeds must be at least 1, got {seeds}", where="--seeds")
    if seeds > MAX_RUNS:
        raise InputError(f"{seeds:,} seeds; at most {MAX_RUNS:,} runs in all", where="--seeds")
    for path in grid:
        if path in RESERVED:
            raise InputError(f"{path} cannot be swept with --grid; use {RESERVED[path]}", where="--grid")
    total = math.prod(len(v) for v in grid.values()) * len(policies) * seeds
    if total > MAX_RUNS:
        raise InputError(f"{total:,} runs (grid points × policies × seeds); at most {MAX_RUNS:,}",
                         where="--grid" if grid else "--seeds")


def plan_experiment(
    kind: str,
    source: Source,
    policies: list[PolicySpec],
    seeds: int,
    grid: dict[str, list[Any]] | None = None,
    sets: list[str] | None = None,
) -> Experiment:
    """Resolve and validate every run of the experiment; raise InputError naming the first bad one.

    Overrides apply in this order: the policy (name and inline parameters), then ``--set``, then the
    grid point, then the seed, so a grid over ``router.params.alpha`` varies what the policy sees."""
    grid = grid or {}
    _check_sizes(grid, policies, seeds)
    base = parse_scenario(source.text, file=source.file, base_dir=source.base_dir, overrides=list(sets or []))
    seed_list = [base.seed + k for k in range(seeds)]
    exp = Experiment(kind, base.name, source.file, seed_list, [p.label for p in policies], grid)
    seen: dict[str, str] = {}
    for point in itertools.product(*grid.values()):
        params = dict(zip(grid, point, strict=True))
        grid_sets = [Override(_set(path, value), f"--grid {path}") for path, value in params.items()]
        for pol in policies:
            for seed in seed_list:
                overrides = [*pol.overrides(), *(sets or []), *grid_sets, Override(f"seed={seed}", "--seeds")]
                sc = _resolve(source, overrides, params, pol)
                rid = run_id(sc)
                here = _context(pol, params) + f", seed {seed}"
                if rid in seen:
                    raise InputError(f"{here} and {seen[rid]} resolve to the same scenario (a grid value or "
                                     "parameter that changes nothing?)", where="--grid" if grid else "--policies")
                seen[rid] = here
                exp.runs.append(RunSpec(rid, f"runs/{_slug(pol.label)}-s{seed}-{rid[:10]}", pol.label, seed,
                                        params, sc))
    return exp


def _context(pol: PolicySpec, params: dict[str, Any]) -> str:
    point = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return f"policy {pol.label}" + (f", grid point {point}" if point else "")


def _resolve(source: Source, overrides: list[str], params: dict[str, Any], pol: PolicySpec) -> Scenario:
    try:
        return parse_scenario(source.text, file=source.file, base_dir=source.base_dir, overrides=overrides)
    except InputError as exc:
        raise InputError(f"{exc.detail} ({_context(pol, params)})", file=exc.file, where=exc.where) from None
