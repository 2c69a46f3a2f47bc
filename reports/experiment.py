"""Load a folder to report — a single run, a compare or a sweep — into one :class:`Experiment`.

A single run becomes a one-row results table (:func:`reports.tables.run_row`), so every folder kind
goes through the same tables and figures. Each results row gets a ``config`` label (policy plus swept
parameter values: one point of a curve) and a ``family`` (the policy a curve belongs to).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from reports.errors import ReportError, os_reason
from reports.tables import (
    MANIFEST_FILE,
    MATCHED_SPEND_FILE,
    RESULTS_FILE,
    RUN_TABLES,
    SUMMARY_FILE,
    read_experiment,
    read_manifest,
    read_summary,
    read_table,
    run_row,
)

MAX_RUN_FIGURES = 8  # per-run figures for at most this many configurations (one seed each)


@dataclass
class Experiment:
    kind: str  # "run", "compare" or "sweep"
    folder: Path
    manifest: dict[str, Any]
    results: pd.DataFrame
    matched_spend: pd.DataFrame | None = None
    summary: dict[str, Any] | None = None  # the run's summary when kind == "run"
    picked: dict[str, int] = field(default_factory=dict)  # config -> seed whose run is drawn
    runs: dict[str, dict[str, pd.DataFrame | None]] = field(default_factory=dict)  # table -> config -> df
    notes: list[str] = field(default_factory=list)


def param_columns(results: pd.DataFrame) -> list[str]:
    return [c for c in results.columns if c.startswith("param.")]


def _config_labels(results: pd.DataFrame) -> pd.Series:
    """``policy (alpha=0.7, max_seqs=32)``; the last path component names a parameter unless two share it."""
    params = param_columns(results)
    short = [p.rsplit(".", 1)[-1] for p in params]
    names = [s if short.count(s) == 1 else p.removeprefix("param.") for p, s in zip(params, short, strict=True)]
    if not params:
        return results["policy"].astype(str)
    values = [", ".join(f"{n}={row[p]}" for n, p in zip(names, params, strict=True))
              for _, row in results.iterrows()]
    return results["policy"].astype(str) + " (" + pd.Series(values, index=results.index) + ")"


def _labelled(results: pd.DataFrame, kind: str) -> pd.DataFrame:
    out = results.copy()
    out["config"] = _config_labels(out)
    # a sweep's curve may vary a policy's inline parameter (utility_greedy:lam=31.5): group by base name
    out["family"] = out["policy"].str.split(":").str[0] if kind == "sweep" else out["policy"]
    return out


def _check_unique(results: pd.DataFrame, folder: Path) -> None:
    """Seed pairing and per-seed means need one run per (configuration, seed)."""
    dup = results.duplicated(["config", "seed"])
    if dup.any():
        row = results[dup].iloc[0]
        raise ReportError(f"two runs of {row['config']} with seed {row['seed']}; expected one per policy, "
                          "parameter values and seed", file=folder / RESULTS_FILE, where=f"row {int(dup.to_numpy().argmax())}")


def _run_manifest(folder: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """What a run folder says about reproducing it (run_info.json is optional)."""
    info_path = folder / "run_info.json"
    try:
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
    except (OSError, ValueError):
        info = {}
    return {"kind": "run", "command": f"llmsim run {folder / 'scenario.yaml'} --seed {summary['seed']}",
            "llmsim_version": info.get("llmsim_version", "") if isinstance(info, dict) else "",
            "scenario": summary.get("scenario", ""), "seeds": [summary["seed"]],
            "policies": [summary["policy"]], "baseline": None, "grid": {}, "match_spend": None}


def load(folder: Path) -> Experiment:
    folder = Path(folder)
    try:
        if not folder.is_dir():
            raise ReportError("not a folder; expected an llmsim run or experiment folder", file=folder)
        has_manifest, has_summary = (folder / MANIFEST_FILE).exists(), (folder / SUMMARY_FILE).exists()
    except OSError as exc:  # a folder (or one on its path) we may not search: exists() raises
        raise ReportError(f"cannot read the folder: {os_reason(exc)}", file=folder) from None
    if has_manifest:
        manifest = read_manifest(folder)
        results = _labelled(read_experiment(folder), manifest["kind"])
        # a matched-spend table left by an earlier command over this folder is not this experiment's
        matched = read_table(folder / MATCHED_SPEND_FILE) if manifest.get("match_spend") else None
        exp = Experiment(manifest["kind"], folder, manifest, results, matched_spend=matched)
        _check_unique(results, folder)
    elif has_summary:
        summary = read_summary(folder)
        results = _labelled(pd.DataFrame([run_row(folder)]), "run")
        exp = Experiment("run", folder, _run_manifest(folder, summary), results, summary=summary)
    else:
        raise ReportError(f"neither {MANIFEST_FILE} nor {SUMMARY_FILE} found; expected an llmsim run folder "
                          "or a compare/sweep folder", file=folder)
    _load_runs(exp)
    return exp


def _load_runs(exp: Experiment) -> None:
    """Per configuration, the run tables of its lowest seed (per-run figures show one run each)."""
    res = exp.results
    first = res.sort_values("seed").drop_duplicates("config")
    if len(first) > MAX_RUN_FIGURES:
        exp.notes.append(f"Per-run figures show the first {MAX_RUN_FIGURES} of {len(first)} configurations.")
        first = first.iloc[:MAX_RUN_FIGURES]
    exp.runs = {name: {} for name in RUN_TABLES}
    for _, row in first.iterrows():
        run_dir = str(row["run_dir"]) if "run_dir" in res.columns and pd.notna(row["run_dir"]) else None
        path = exp.folder / run_dir if run_dir else None
        if path is None or not path.is_dir():
            exp.notes.append(f"Run folder of {row['config']} (seed {row['seed']}) not found"
                             f"{f': {run_dir}' if run_dir else ''}; its per-run figures are missing.")
        exp.picked[row["config"]] = int(row["seed"])
        for name in RUN_TABLES:
            exp.runs[name][row["config"]] = read_table(path / f"{name}.parquet") if path and path.is_dir() else None
