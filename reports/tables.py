"""Read run and experiment folders into plain tables; flatten summaries into one results row.

The folder contract (written by ``llmsim run`` / ``compare`` / ``sweep``) is:

* a run folder holds ``summary.json`` and optionally ``requests.parquet``, ``batches.parquet`` and
  ``occupancy.parquet``;
* an experiment folder holds ``manifest.json`` and ``results.parquet`` (or ``results.csv``): one row per
  run with ``policy``, ``seed``, ``run_dir`` (relative to the folder), ``param.<path>`` columns and the
  flattened summary metrics, plus optionally ``matched_spend.parquet``.

Optional tables are returned as ``None`` so figures can be skipped with a note instead of failing: the
simulator grows new tables over time, and old folders must still be reportable.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from reports.errors import ReportError, os_reason

SUMMARY_FILE = "summary.json"
MANIFEST_FILE = "manifest.json"
RESULTS_FILE = "results.parquet"
RESULTS_CSV = "results.csv"
MATCHED_SPEND_FILE = "matched_spend.parquet"
RUN_TABLES = ("requests", "batches", "occupancy")
EXPERIMENT_KINDS = ("compare", "sweep")
REQUIRED_RESULT_COLUMNS = ("policy", "seed")

Scalar = str | int | float | bool | None


def flatten_summary(summary: dict[str, Any], prefix: str = "") -> dict[str, Scalar]:
    """Nested summary dict -> ``{"latency_s.ttft.p99": 1.2, ...}``.

    Results tables need one column per metric so runs can be grouped and averaged; lists (rare in a
    summary) are kept as JSON text so no information is silently lost.
    """
    flat: dict[str, Scalar] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_summary(value, prefix=f"{name}."))
        elif isinstance(value, list | tuple):
            flat[name] = json.dumps(value, sort_keys=True)
        else:
            flat[name] = value
    return flat


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError("file not found", file=path) from None
    except OSError as exc:  # (permissions: said plainly, the path once)
        raise ReportError(f"cannot read: {os_reason(exc)}", file=path) from None
    except UnicodeDecodeError as exc:
        raise ReportError(f"cannot read: {exc}", file=path) from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"not valid JSON: {exc.msg}", file=path, where=f"line {exc.lineno}") from None
    if not isinstance(data, dict):
        raise ReportError(f"expected a JSON object, got {type(data).__name__}", file=path)
    return data


def read_table(path: Path) -> pd.DataFrame | None:
    """A parquet or CSV table, or ``None`` when the file does not exist (optional tables)."""
    try:
        if not path.exists():
            return None
        return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    except OSError as exc:  # unreadable, or a folder on the path we may not search (also from exists())
        raise ReportError(f"cannot read table: {os_reason(exc)}", file=path) from None
    except Exception as exc:  # pyarrow and pandas raise many types for a corrupt file
        raise ReportError(f"cannot read table: {exc}", file=path) from None


#: Summary fields the report averages, compares or plots: a value there must be a number (or null).
NUMERIC_FIELDS = frozenset({"accuracy", "accuracy_of_completed", "predicted_accuracy", "sim_time_s",
                            "arrivals_end_s"})
#: Summary sections whose leaves are all numbers (flattened names start with ``<section>.``).
NUMERIC_SECTIONS = frozenset({"cost", "latency_s", "budget", "throughput", "scheduler", "slo", "estimator",
                              "queries", "references", "models", "occupancy"})
#: The text leaves inside those sections.
TEXT_METRICS = frozenset({"references.best_single_model"})


def is_metric(name: str) -> bool:
    """Whether a flattened summary field (a results column) must hold numbers: a string there would
    only fail later, deep in a mean or a plot, as a Python error instead of a message naming the field."""
    if name in TEXT_METRICS:
        return False
    return name in NUMERIC_FIELDS or ("." in name and name.split(".", 1)[0] in NUMERIC_SECTIONS)


def _is_number_or_null(x: Any) -> bool:
    """int, float, bool or a numpy number, or a missing value (None, NaN, pd.NA)."""
    return x is None or x is pd.NA or isinstance(x, numbers.Real)


def _not_a_number(x: Any) -> str:
    return f"expected a number, got {type(x).__name__} {str(x)[:40]!r}"


def read_summary(run_folder: Path) -> dict[str, Any]:
    """``summary.json``, checked for the fields every report uses: ``policy`` a string, ``seed`` an
    integer, metrics numbers. A hand-edited or foreign file then fails here with the field named."""
    path = Path(run_folder) / SUMMARY_FILE
    summary = _read_json(path)
    for key in ("policy", "seed"):
        if key not in summary:
            raise ReportError("missing field; expected an llmsim run summary", file=path, where=key)
    if not isinstance(summary["policy"], str):
        raise ReportError(f"expected a policy name, got {summary['policy']!r}", file=path, where="policy")
    seed = summary["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ReportError(f"expected an integer seed, got {seed!r}", file=path, where="seed")
    for name, value in flatten_summary(summary).items():
        if is_metric(name) and not _is_number_or_null(value):
            raise ReportError(_not_a_number(value), file=path, where=name)
    return summary


@dataclass
class RunTables:
    """One run folder: its summary and whichever per-query / per-batch / occupancy tables it has."""

    folder: Path
    summary: dict[str, Any]
    requests: pd.DataFrame | None
    batches: pd.DataFrame | None
    occupancy: pd.DataFrame | None


def read_run(folder: Path) -> RunTables:
    folder = Path(folder)
    tables = {name: read_table(folder / f"{name}.parquet") for name in RUN_TABLES}
    return RunTables(folder=folder, summary=read_summary(folder), **tables)


def run_row(run_folder: Path) -> dict[str, Scalar]:
    """A single run folder as a one-row results table (so one run is reported like an experiment)."""
    summary = read_summary(Path(run_folder))
    row: dict[str, Scalar] = {"run_id": Path(run_folder).resolve().name, "run_dir": "."}
    row.update(flatten_summary(summary))
    return row


def read_manifest(folder: Path) -> dict[str, Any]:
    """``manifest.json`` with its optional fields filled, checked enough that the report can trust it."""
    path = Path(folder) / MANIFEST_FILE
    manifest = _read_json(path)
    kind = manifest.get("kind")
    if kind not in EXPERIMENT_KINDS:
        raise ReportError(f"expected one of {', '.join(EXPERIMENT_KINDS)}, got {kind!r}", file=path, where="kind")
    _check_manifest_fields(manifest, path)
    defaults: dict[str, Any] = {"command": "", "llmsim_version": "", "scenario": "", "seeds": [],
                                "policies": [], "baseline": None, "grid": {}, "match_spend": None}
    return {**defaults, **manifest}


#: Manifest fields of a fixed JSON type (a missing field or null gets its default).
MANIFEST_TYPES: tuple[tuple[str, type], ...] = (("seeds", list), ("policies", list), ("grid", dict),
                                                ("baseline", str), ("match_spend", str), ("whatif", dict),
                                                ("plan", dict))


def _check_manifest_fields(manifest: dict[str, Any], path: Path) -> None:
    """The fields the report computes with, so a hand-edited manifest fails with the field named rather
    than as a Python error in the middle of building the report."""
    for key, typ in MANIFEST_TYPES:
        value = manifest.get(key)
        if value is not None and not isinstance(value, typ):
            raise ReportError(f"expected a {typ.__name__}, got {type(value).__name__}", file=path, where=key)
    for name, values in (manifest.get("grid") or {}).items():
        if not isinstance(values, list):
            raise ReportError(f"expected a list of the values swept, got {type(values).__name__}", file=path,
                              where=f"grid.{name}")
    spend = manifest.get("at_spend")
    if spend is not None and not (is_finite(spend) and spend >= 0):
        raise ReportError(f"expected a spend in USD (a number >= 0), got {spend!r}", file=path, where="at_spend")
    changes = (manifest.get("whatif") or {}).get("changes")
    if changes is not None and not isinstance(changes, list):
        raise ReportError(f"expected a list of the fields changed, got {type(changes).__name__}", file=path,
                          where="whatif.changes")
    if manifest.get("plan") is not None:
        from reports.plan import check_plan  # (plotly: only for a plan folder, whose report draws it anyway)

        check_plan(manifest["plan"], path)


def check_metric_columns(results: pd.DataFrame, path: Path) -> None:
    """Every metric column holds numbers or missing values: a column of strings (a hand-edited table)
    would otherwise fail inside a mean. Numeric dtypes are accepted without looking at the values."""
    for column in results.columns:
        col = results[column]
        if not is_metric(str(column)) or pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            continue
        for i, value in enumerate(col.to_numpy(dtype=object)):
            if not _is_number_or_null(value):
                raise ReportError(_not_a_number(value), file=path, where=f"row {i}, {column}")


def read_experiment(folder: Path) -> pd.DataFrame:
    """``results.parquet`` (or ``results.csv``), checked for the columns every report needs."""
    folder = Path(folder)
    path = folder / RESULTS_FILE
    if not path.exists() and (folder / RESULTS_CSV).exists():
        path = folder / RESULTS_CSV
    results = read_table(path)
    if results is None:
        raise ReportError(f"file not found (nor {RESULTS_CSV}); expected one row per run", file=path)
    missing = [c for c in REQUIRED_RESULT_COLUMNS if c not in results.columns]
    if missing:
        raise ReportError(f"missing column(s) {', '.join(missing)}", file=path)
    if results.empty:
        raise ReportError("no rows; expected one row per run", file=path)
    bad = pd.to_numeric(results["seed"], errors="coerce").isna()
    if bad.any():
        raise ReportError("expected an integer seed", file=path, where=f"row {int(bad.to_numpy().argmax())}, seed")
    check_metric_columns(results, path)
    results = results.copy()
    results["policy"] = results["policy"].astype(str)
    results["seed"] = pd.to_numeric(results["seed"]).astype(int)
    return results


def is_finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
