"""The what-if table and report section: baseline vs changed scenario, each metric's mean ± 95 % interval
over seeds and the seed-paired delta (changed − baseline) with its interval.

It reads only a results table (``policy`` ``baseline`` / ``changed``, ``seed``, flattened metrics) and the
manifest's ``whatif`` entry, as every report does; the statistics are :func:`reports.stats.compare_table`'s.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from reports.document import Section, Table

BASELINE, CHANGED = "baseline", "changed"
#: Metric → label, in the table's order. Rows no run has a value for (TBT under ``reserve``, SLO
#: attainment without ``router.slo``) are left out rather than shown as n/a.
WHATIF_METRICS = {
    "accuracy": "accuracy", "cost.total_usd": "token cost", "cost.gpu_usd": "GPU cost",
    "latency_s.ttft.p95": "TTFT p95", "latency_s.ttft.p99": "TTFT p99",
    "latency_s.e2e.p95": "e2e p95", "latency_s.e2e.p99": "e2e p99",
    "latency_s.queue_delay.mean": "queueing delay mean", "latency_s.tbt.p99": "TBT p99",
    "throughput.queries_per_s": "throughput (queries/s)",
    "slo.attainment_ttft": "TTFT SLO attained", "slo.attainment_e2e": "e2e SLO attained",
    "queries.rejected": "rejected", "queries.lost": "lost (node failures)", "queries.retried": "retried (re-queued)",
}
#: Rows shown only when some run has a non-zero value: without events, "lost 0 → 0" says nothing.
WHEN_NONZERO = frozenset({"queries.lost", "queries.retried"})
LEVEL = 0.95
COLUMNS = ["metric", "label", "baseline_mean", "baseline_ci_lo", "baseline_ci_hi", "changed_mean",
           "changed_ci_lo", "changed_ci_hi", "delta", "delta_ci_lo", "delta_ci_hi", "pairs"]


def whatif_table(results: pd.DataFrame, level: float = LEVEL) -> pd.DataFrame:
    """One row per metric: both configurations' mean and interval, and the mean of the per-seed
    differences changed − baseline with its Student-t interval (pairs: seeds present in both)."""
    from reports.stats import compare_table

    stats = compare_table(results, list(WHATIF_METRICS), BASELINE, group="policy", level=level)
    rows = []
    for metric, g in stats.groupby("metric", sort=False):
        by = g.set_index("policy")
        if BASELINE not in by.index or CHANGED not in by.index or not (by["n"] > 0).any():
            continue
        if metric in WHEN_NONZERO and not (by["mean"].fillna(0) != 0).any():
            continue
        b, c = by.loc[BASELINE], by.loc[CHANGED]
        rows.append([metric, WHATIF_METRICS[str(metric)], b["mean"], b["ci_lo"], b["ci_hi"], c["mean"],
                     c["ci_lo"], c["ci_hi"], c["diff_vs_baseline"], c["diff_ci_lo"], c["diff_ci_hi"],
                     int(c["pairs"])])
    return pd.DataFrame(rows, columns=COLUMNS)


def pm(metric: str, mean: float, lo: float, hi: float, signed: bool = False) -> str:
    """``mean ± half-width`` in the metric's unit (widths of percentages in points); the mean alone with
    one seed (no interval)."""
    from reports.build import fmt

    text = fmt(metric, mean, signed)
    half = hi - mean
    if not math.isfinite(half) or not math.isfinite(mean):
        return text
    return f"{text} ± {fmt(metric, half, signed=True).lstrip('+')}"  # signed: percentages in points


def whatif_rows(table: pd.DataFrame) -> list[list[str]]:
    """The table's formatted cells: metric | baseline | changed | delta (each ± its 95 % half-width)."""
    return [[r.label, pm(r.metric, r.baseline_mean, r.baseline_ci_lo, r.baseline_ci_hi),
             pm(r.metric, r.changed_mean, r.changed_ci_lo, r.changed_ci_hi),
             pm(r.metric, r.delta, r.delta_ci_lo, r.delta_ci_hi, signed=True)] for r in table.itertuples()]


HEADERS = ["metric", "baseline (mean ± 95 % CI)", "changed (mean ± 95 % CI)", "delta (± paired 95 % CI)"]


def _show(value: Any) -> str:
    return "—" if value is None else str(value)


def whatif_section(manifest: dict[str, Any], results: pd.DataFrame) -> tuple[Section, pd.DataFrame]:
    """The what-if section: which fields changed, and the paired table."""
    info = manifest.get("whatif") or {}
    changes = [c for c in info.get("changes", []) if isinstance(c, dict)]
    table = whatif_table(results)
    seeds = sorted(set(results["seed"]))
    text = [f"The scenario as given (baseline) against it with every change applied (changed), on the same "
            f"{len(seeds)} seed(s) ({', '.join(map(str, seeds))}): each seed's two runs see the same arrivals "
            "and queries, so the delta is the mean of the per-seed differences changed − baseline and its "
            "interval is a paired Student-t interval (tighter than comparing the two intervals)."]
    tables = [Table(["field", "baseline", "changed"],
                    [[_show(c.get("field")), _show(c.get("baseline")), _show(c.get("changed"))] for c in changes]),
              Table(HEADERS, whatif_rows(table))]
    return Section("What-if", text, tables), table


def write_whatif_report(folder: Path) -> list[Path]:
    """The report of a what-if folder: :func:`reports.build.write_report` adds the what-if section and
    ``whatif.csv`` whenever the manifest has a ``whatif`` entry, so ``llmsim report`` keeps them too."""
    from reports.build import write_report

    return write_report(Path(folder))
