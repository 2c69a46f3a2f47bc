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

from reports.atomic import write_atomic
from reports.tables import MANIFEST_FILE, MATCHED_SPEND_FILE, RESULTS_FILE, flatten_summary
from sim import __version__
from sim.errors import InputError, os_reason
from sim.experiments.execute import Executor, completed_summary, execute
from sim.experiments.plan import Experiment, RunSpec
from sim.output import nearest_existing, writable_dir

RESULTS_CSV = "results.csv"
#: Every file llmsim writes directly in an experiment folder (report files included): what a run that
#: fails on bad input removes from a folder it created (sim.experiments.cli.no_partial_output).
EXPERIMENT_FILES = (MANIFEST_FILE, RESULTS_FILE, RESULTS_CSV, MATCHED_SPEND_FILE, "report.html", "report.md",
                    "comparison.csv", "aiq.csv", "whatif.csv", "plan.csv", "rates.json")


def role(manifest: dict[str, Any], kind: str | None = None) -> str:
    """The command an experiment folder belongs to: a plan and a what-if are compare folders (the same
    report contract) with a ``plan`` / ``whatif`` manifest entry, but only their own command may resume
    them."""
    return "plan" if manifest.get("plan") else "whatif" if manifest.get("whatif") else str(kind or manifest.get("kind"))


def refuse_other(folder: Path, command: str) -> None:
    """Before anything is computed: refuse a folder whose manifest belongs to another command (a what-if
    or plan must not take over a compare's runs, nor the reverse). An absent folder or manifest passes."""
    path = folder / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except OSError as exc:  # not "holds a None experiment": the user needs to hear about the permission
        raise InputError(f"cannot use the experiment folder: cannot read {path} ({os_reason(exc)})",
                         file=folder) from None
    except ValueError:
        manifest = {}
    if manifest is None:
        return
    old = role(manifest) if isinstance(manifest, dict) else "unknown"
    if old != command:
        raise InputError(f"holds a {old} experiment, not a {command}; choose another --out", file=folder)


def check_folder(folder: Path, kind: str, command: str | None = None) -> None:
    """Refuse a folder that exists with other content, or that holds another kind of experiment: an
    experiment folder is created, or resumed by the same command (``command``: compare, sweep, whatif
    or plan; default ``kind``)."""
    command = command or kind
    shown, folder = folder, Path(os.path.abspath(folder))  # checked as it resolves: 'missing/..' is '.'
    try:
        if folder.exists() and (not folder.is_dir() or (any(folder.iterdir())
                                                        and not (folder / MANIFEST_FILE).exists())):
            raise InputError("exists and is not an llmsim experiment folder (no manifest.json); choose "
                             "another --out", file=shown)
        if (folder / MANIFEST_FILE).exists():
            manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
            if not isinstance(manifest, dict) or "llmsim_version" not in manifest:  # llmsim writes it always
                raise InputError("holds a manifest.json that llmsim did not write; choose another --out",
                                 file=shown)
            old = role(manifest)
            if old != command:
                raise InputError(f"holds a {old} experiment, not a {command}; choose another --out", file=shown)
        check_writable(folder, shown)
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as exc:
        name = getattr(exc, "filename", None)  # e.g. a manifest.json we may not read: say which file
        where = f" ({name})" if name and Path(name) != folder else ""
        raise InputError(f"cannot use the experiment folder: {getattr(exc, 'strerror', None) or exc}{where}",
                         file=shown) from None


def check_writable(folder: Path, shown: Path) -> None:
    """Refuse, before anything is simulated or written, a folder (or its ``runs/``) that we may not write,
    or a new one whose nearest existing parent we may not write: found only at the first write, the
    manifest would already be replaced, or every run simulated for nothing. ``folder`` is absolute."""
    for where, label in ((folder, "is"), (folder / "runs", "has a runs/ folder that is")):
        if where.is_dir() and not writable_dir(where):
            raise InputError(f"{label} not writable (permission denied); choose another --out", file=shown)
    parent = nearest_existing(folder)
    if parent != folder and not writable_dir(parent):
        raise InputError(f"cannot create the experiment folder here ({parent} is not a writable directory)",
                         file=shown)


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


def results_frame(rows: list[dict[str, Any]], order: list[str], params: list[str]) -> pd.DataFrame:
    """Rows in the experiment's run order, columns in a fixed order (ids, grid fields in ``--grid`` order,
    then metrics sorted), so a resumed experiment gives the same table; a column parquet cannot hold as
    one type becomes text."""
    rank = {rid: k for k, rid in enumerate(order)}
    df = pd.DataFrame(sorted(rows, key=lambda r: rank[r["run_id"]]))
    head = ["run_id", "run_dir", "policy", "seed", *(f"param.{p}" for p in params)]
    df = df[head + sorted(set(df.columns) - set(head))]
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
    on_start: Callable[[int], None] | None = None, on_done: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Run (or resume) every run of ``exp`` into ``folder``; write manifest and results; return results.
    ``on_start`` gets the number of runs still to simulate. On an interruption the results of every run
    whose folder is complete (also those a worker wrote but had not reported yet) are still written."""
    check_folder(folder, exp.kind, role(extra or {}, exp.kind))
    if not (extra or {}).get("match_spend"):
        (folder / MATCHED_SPEND_FILE).unlink(missing_ok=True)  # an earlier compare's; llmsim wrote it
    write_manifest(folder, exp, command, extra or {})
    done = scan_completed(folder, exp.runs)
    if on_start:
        on_start(len(exp.runs) - len(done))
    rows = {rid: result_row(spec, done[rid]) for spec in exp.runs if (rid := spec.run_id) in done}
    table = lambda: results_frame(list(rows.values()), [r.run_id for r in exp.runs], list(exp.grid))  # noqa: E731
    try:
        for spec, summary in execute(folder, [r for r in exp.runs if r.run_id not in done], executor, on_done):
            rows[spec.run_id] = result_row(spec, summary)
    except BaseException:
        late = scan_completed(folder, [r for r in exp.runs if r.run_id not in rows])  # written, not reported
        rows.update({spec.run_id: result_row(spec, late[spec.run_id]) for spec in exp.runs if spec.run_id in late})
        if rows:
            write_results(folder, table())
        raise
    df = table()
    write_results(folder, df)
    return df


def scan_completed(folder: Path, runs: list[RunSpec]) -> dict[str, dict[str, Any]]:
    """Run id → summary of every run of the experiment already complete in ``folder`` (resume)."""
    return {spec.run_id: s for spec in runs if (s := completed_summary(folder, spec)) is not None}
