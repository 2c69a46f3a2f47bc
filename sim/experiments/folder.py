"""The experiment folder: ``manifest.json``, ``runs/<run>/`` (one run folder each), ``results.parquet``
and ``results.csv`` (one row per run: ids, policy, seed, ``param.<path>`` per grid field, then every
summary metric flattened with dots), optionally ``matched_spend.parquet``. :mod:`reports` reads it.

llmsim only ever writes these names inside the folder; it never deletes a file it did not write.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from reports.tables import MANIFEST_FILE, RESULTS_FILE, flatten_summary
from sim import __version__
from sim.errors import InputError
from sim.experiments.execute import Executor, execute
from sim.experiments.plan import Experiment, RunSpec

RESULTS_CSV = "results.csv"
MATCHED_FILE = "matched_spend.parquet"


def check_folder(folder: Path) -> None:
    """Refuse a folder that exists with other content: an experiment folder is created or resumed."""
    try:
        if folder.exists() and (not folder.is_dir() or (any(folder.iterdir())
                                                        and not (folder / MANIFEST_FILE).exists())):
            raise InputError("exists and is not an llmsim experiment folder (no manifest.json); choose "
                             "another --out", file=folder)
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the experiment folder: {exc.strerror or exc}", file=folder) from None


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary sibling and rename, so a reader never sees half a table."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_manifest(folder: Path, exp: Experiment, command: str, extra: dict[str, Any]) -> None:
    manifest = {
        "kind": exp.kind,
        "command": command,
        "llmsim_version": __version__,
        "scenario": exp.scenario_name,
        "scenario_file": exp.source,
        "seeds": exp.seeds,
        "policies": exp.policies,
        "grid": exp.grid,
        "runs": len(exp.runs),
        **extra,
    }
    write_atomic(folder / MANIFEST_FILE,
                 lambda p: p.write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8"))


def result_row(spec: RunSpec, summary: dict[str, Any]) -> dict[str, Any]:
    """The run's flattened summary under its ids; ``policy`` is the user's label (inline parameters
    included), not the summary's bare policy name."""
    row: dict[str, Any] = flatten_summary(summary)
    row.update({"run_id": spec.run_id, "run_dir": spec.run_dir, "policy": spec.policy, "seed": spec.seed})
    row.update({f"param.{k}": v for k, v in spec.params.items()})
    return row


def results_frame(rows: list[dict[str, Any]], order: list[str]) -> pd.DataFrame:
    """Rows in the experiment's run order, columns in a fixed order (ids, grid, then metrics sorted), so a
    resumed experiment gives the same table; a column parquet cannot hold as one type becomes text."""
    rank = {rid: k for k, rid in enumerate(order)}
    df = pd.DataFrame(sorted(rows, key=lambda r: rank[r["run_id"]]))
    head = ["run_id", "run_dir", "policy", "seed"]
    params = sorted(c for c in df.columns if c.startswith("param."))
    df = df[head + params + sorted(set(df.columns) - set(head) - set(params))]
    for col in df.columns:
        kinds = {type(v) for v in df[col] if v is not None and not isinstance(v, float | int)}
        if kinds and len({type(v) for v in df[col] if v is not None}) > 1:
            df[col] = df[col].map(lambda v: None if v is None else str(v))
    return df


def write_results(folder: Path, df: pd.DataFrame) -> None:
    write_atomic(folder / RESULTS_FILE, lambda p: df.to_parquet(p, index=False))
    write_atomic(folder / RESULTS_CSV, lambda p: df.to_csv(p, index=False))


def run_experiment(
    folder: Path, exp: Experiment, executor: Executor, *, command: str, extra: dict[str, Any] | None = None,
    on_done: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Run (or resume) every run of ``exp`` into ``folder``; write manifest and results; return results.
    On an interruption the results of the runs finished so far are still written."""
    check_folder(folder)
    write_manifest(folder, exp, command, extra or {})
    rows: list[dict[str, Any]] = []
    try:
        for spec, summary in execute(folder, exp.runs, executor, on_done):
            rows.append(result_row(spec, summary))
    finally:
        if rows:
            write_results(folder, results_frame(rows, [r.run_id for r in exp.runs]))
    return results_frame(rows, [r.run_id for r in exp.runs])


def pending_runs(folder: Path, exp: Experiment) -> int:
    """How many runs of ``exp`` are not yet in ``folder`` (the progress bar's total)."""
    from sim.experiments.execute import completed_summary

    return sum(completed_summary(folder, spec) is None for spec in exp.runs)
