"""``llmsim whatif``: the scenario as it is (the baseline) against the scenario with every ``--set`` applied
(the changed one), on the same seeds, paired by seed.

A what-if is a two-configuration compare: it is planned into the same :class:`~sim.experiments.plan.Experiment`
(run ids, resolved scenarios, run folders) and run by the same :func:`~sim.experiments.folder.run_experiment`,
so it resumes, keeps finished runs on Ctrl-C and is reported like a compare. The two configurations are
labelled ``baseline`` and ``changed`` in the ``policy`` column (a change may be the policy itself); the
manifest says which fields changed from what to what. Both runs of a seed share its workload draws
(common random numbers), so the paired deltas cancel most of the workload's noise.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from reports.whatif import BASELINE, CHANGED
from sim.config.load import parse_scenario
from sim.config.schema import Scenario
from sim.errors import InputError
from sim.experiments.execute import Executor
from sim.experiments.plan import MAX_RUNS, Experiment, RunSpec, Source, run_id

KIND = "compare"  # the folder and report contract (reports.tables.EXPERIMENT_KINDS); "whatif" in the manifest
#: Fields a what-if may not change: the seed is what pairs the two runs of a seed.
RESERVED = {"seed": "--seeds"}


@dataclass
class WhatIf:
    """A planned what-if: the experiment (baseline and changed runs per seed) and what changed."""

    exp: Experiment
    sets: list[str]
    changes: list[dict[str, Any]] = field(default_factory=list)  # field, baseline value, changed value

    def manifest_extra(self) -> dict[str, Any]:
        """Manifest fields: the baseline the report pairs against, and the what-if's changes."""
        return {"baseline": BASELINE, "whatif": {"sets": self.sets, "changes": self.changes}}


def _key(item: str) -> str:
    """The field path of a ``--set KEY=VALUE`` (refused when malformed, naming the item)."""
    key, sep, _ = item.partition("=")
    if not sep or not key.strip():
        raise InputError(f"expected KEY.PATH=VALUE, got {item!r}", where="--set")
    return key.strip()


def _culprit(detail: str, sets: list[str]) -> str | None:
    """The ``--set`` whose field an error message names (``deployments.0.tp`` is written
    ``deployments[0].tp`` there), so a bad change is reported as the user typed it."""
    for item in sets:
        key = _key(item)
        shown = re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", key)
        if key in detail or shown in detail:
            return item
    return None


def _changed(source: Source, overrides: list[str], sets: list[str]) -> Scenario:
    """The scenario with the changes applied; an invalid change names the ``--set`` that caused it."""
    try:
        return parse_scenario(source.text, file=source.file, base_dir=source.base_dir, overrides=overrides)
    except InputError as exc:
        detail = f"{exc.where}: {exc.detail}" if exc.where else exc.detail
        item = _culprit(detail, sets)
        where = f"--set {item}" if item else "--set " + " --set ".join(sets)
        raise InputError(f"{detail} (in the changed scenario)", file=exc.file, where=where) from None


def _value(data: Any, path: str) -> Any:
    """The resolved value at a dotted path (list items by index), or None when the path does not reach."""
    for part in path.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return None
    return data


def _check(sets: list[str], seeds: int) -> None:
    if not sets:
        raise InputError("nothing to compare: give at least one --set KEY.PATH=VALUE to change", where="--set")
    if seeds < 1:
        raise InputError(f"--seeds must be at least 1, got {seeds}", where="--seeds")
    if 2 * seeds > MAX_RUNS:
        raise InputError(f"{seeds:,} seeds; at most {MAX_RUNS // 2:,} (two runs per seed)", where="--seeds")
    keys = [_key(s) for s in sets]
    for key in keys:
        if key in RESERVED:
            raise InputError(f"{key} cannot be changed in a what-if: it pairs the runs; use {RESERVED[key]}",
                             where=f"--set {key}")
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise InputError(f"{', '.join(dupes)} is set twice", where="--set")


def plan_whatif(source: Source, sets: list[str], seeds: int) -> WhatIf:
    """Resolve and validate every run (baseline and changed, per seed) before anything runs; raise
    InputError naming the bad ``--set``, or saying the changes change nothing."""
    _check(sets, seeds)
    base = parse_scenario(source.text, file=source.file, base_dir=source.base_dir)
    changed = _changed(source, sets, sets)
    seed_list = [base.seed + k for k in range(seeds)]
    exp = Experiment(KIND, base.name, source.file, seed_list, [BASELINE, CHANGED], {})
    for label, overrides in ((BASELINE, []), (CHANGED, sets)):
        for seed in seed_list:
            sc = (_changed(source, [*sets, f"seed={seed}"], sets) if overrides else
                  parse_scenario(source.text, file=source.file, base_dir=source.base_dir, overrides=[f"seed={seed}"]))
            rid = run_id(sc)
            exp.runs.append(RunSpec(rid, f"runs/{label}-s{seed}-{rid[:10]}", label, seed, {}, sc))
    if exp.runs[0].run_id == exp.runs[seeds].run_id:
        raise InputError("the changed scenario is the baseline: " + " ".join(f"--set {s}" for s in sets)
                         + " changes nothing", where="--set")
    before, after = base.model_dump(mode="json"), changed.model_dump(mode="json")
    changes = [{"field": _key(s), "baseline": _value(before, _key(s)), "changed": _value(after, _key(s))}
               for s in sets]
    return WhatIf(exp, list(sets), changes)


def check_whatif_folder(folder: Path) -> None:
    """Refuse a folder of another experiment (a what-if is written as a compare with a ``whatif`` manifest
    entry): a what-if must not take over another experiment's runs."""
    from sim.experiments.folder import refuse_other

    refuse_other(folder, "whatif")


def run_whatif(
    folder: Path, plan: WhatIf, executor: Executor, *, command: str,
    on_start: Callable[[int], None] | None = None, on_done: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Run (or resume) the what-if into ``folder`` and write its report; return the results table."""
    from reports.whatif import write_whatif_report
    from sim.experiments.folder import run_experiment

    check_whatif_folder(folder)
    results = run_experiment(folder, plan.exp, executor, command=command, extra=plan.manifest_extra(),
                             on_start=on_start, on_done=on_done)
    write_whatif_report(folder)
    return results
