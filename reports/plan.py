"""The capacity-plan table and report section: each allocation's GPUs per model, its $/hour, what the
optimiser expected and what the simulation measured (mean ± 95 % CI over seeds), side by side.

It reads only the results table and the manifest's ``plan`` entry (written by ``llmsim plan``), as every
report does; nothing here imports the engine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from reports.document import FigureItem, Section, Table
from reports.errors import ReportError
from reports.figures import _layout, model_colors
from reports.stats import mean_ci

#: Simulated metric → column label, in the table's order.
PLAN_METRICS = {
    "accuracy": "accuracy", "cost.per_query_usd": "token $/query", "latency_s.ttft.p95": "TTFT p95",
    "latency_s.e2e.p95": "e2e p95", "utilisation": "utilisation", "queries.rejected": "rejected",
}
LEVEL = 0.95


# ---------------------------------------------------------------------- the manifest's plan entry
def _number(x: Any) -> bool:
    """A JSON number the report can compute with: a float, or an int a float holds exactly (10**400 would
    overflow in a mean, 10**30 in a plotly axis)."""
    return isinstance(x, float) or (isinstance(x, int) and not isinstance(x, bool) and abs(x) <= 2**53)


def _count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 2**53


def _text(x: Any) -> bool:
    return isinstance(x, str)


def _maybe(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda x: x is None or check(x)


def _mapping_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda x: isinstance(x, dict) and all(check(v) for v in x.values())


#: What each part of the entry must hold (name → check, what was expected; optional: may be absent).
_PLAN_FIELDS = {"arrival_rate_qps": (_number, "a number of queries/s"), "batches": (_count, "an integer >= 0"),
                "batch_size": (_count, "an integer >= 0"),
                "inventory": (_mapping_of(_number), "an object of GPU type → GPUs")}
_PLAN_OPTIONAL = {"slo": (_mapping_of(_maybe(_number)), "an object of SLO target → seconds or null"),
                  "slo_label": (_maybe(_text), "a string"),
                  "per_model_p95_s": (_mapping_of(_mapping_of(_mapping_of(_maybe(_number)))),
                                      "an object of plan → model → metric → seconds or null")}
_CANDIDATE_FIELDS = {"candidate": (_text, "a string"), "price_per_hour": (_number, "a number"),
                     "kv_tokens": (_count, "an integer >= 0"), "sustainable_rate_qps": (_number, "a number"),
                     "idle_p95_s": (_mapping_of(_number), "an object of metric → seconds"),
                     "p95_at_rate_s": (_mapping_of(_number), "an object of metric → seconds")}
_ALLOCATION_FIELDS = {"label": (_text, "a string"), "method": (_text, "a string"),
                      "cost_per_hour": (_number, "a number"), "expected_accuracy": (_number, "a number"),
                      "sustainable_load_qps": (_number, "a number"),
                      "models": (_mapping_of(lambda m: isinstance(m, dict) and _count(m.get("instances"))
                                             and _count(m.get("gpus"))),
                                 "an object of model → {instances, gpus: integers >= 0}")}
_ALLOCATION_OPTIONAL = {"runs_label": (_maybe(_text), "a string"), "same_as": (_maybe(_text), "a string or null"),
                        "note": (_maybe(_text), "a string")}
_VERDICT_OPTIONAL = {"slo_met": (_mapping_of(_maybe(lambda x: isinstance(x, bool))),
                                 "an object of plan → true, false or null"),
                     "recommended": (_maybe(_text), "a string or null"), "reason": (_maybe(_text), "a string or null")}


def _check_fields(obj: Any, where: str, required: dict[str, Any], optional: dict[str, Any], path: Path) -> None:
    if not isinstance(obj, dict):
        raise ReportError(f"expected an object, got {type(obj).__name__}", file=path, where=where)
    for fields, needed in ((required, True), (optional, False)):
        for name, (check, expected) in fields.items():
            if name not in obj and not needed:
                continue
            if name not in obj or not check(obj[name]):
                got = "nothing" if name not in obj else repr(obj[name])[:60]
                raise ReportError(f"expected {expected}, got {got}", file=path, where=f"{where}.{name}")


def _check_list(obj: dict[str, Any], name: str, path: Path, *, nonempty: bool) -> list[Any]:
    items = obj.get(name)
    if not isinstance(items, list) or (nonempty and not items):
        raise ReportError(f"expected a{' non-empty' if nonempty else ''} list, got "
                          f"{'nothing' if items is None else repr(items)[:60]}", file=path, where=f"plan.{name}")
    return items


def check_plan(plan: dict[str, Any], path: Path) -> None:
    """The manifest's ``plan`` entry (written by ``llmsim plan``), checked where the report computes with
    it, so a hand-edited or damaged manifest fails with its field named instead of as a Python error half
    way through the report. Every allocation must list the same models (the GPU figure stacks them)."""
    _check_fields(plan, "plan", _PLAN_FIELDS, _PLAN_OPTIONAL, path)
    for i, cand in enumerate(_check_list(plan, "candidates", path, nonempty=False)):
        _check_fields(cand, f"plan.candidates.{i}", _CANDIDATE_FIELDS, {}, path)
    allocations = _check_list(plan, "allocations", path, nonempty=True)
    labels: set[str] = set()
    for i, alloc in enumerate(allocations):
        where = f"plan.allocations.{i}"
        _check_fields(alloc, where, _ALLOCATION_FIELDS, _ALLOCATION_OPTIONAL, path)
        if alloc["label"] in labels:
            raise ReportError(f"expected a label no earlier allocation has, got {alloc['label']!r}", file=path,
                              where=f"{where}.label")
        labels.add(alloc["label"])
        if set(alloc["models"]) != set(allocations[0]["models"]):
            raise ReportError(f"expected the models of plan.allocations.0 ({', '.join(allocations[0]['models'])})"
                              f", got {', '.join(alloc['models']) or 'none'}", file=path, where=f"{where}.models")
    if plan.get("verdict") is not None:
        _check_fields(plan["verdict"], "plan.verdict", {}, _VERDICT_OPTIONAL, path)


def _utilisation(results: pd.DataFrame, alloc: dict[str, Any]) -> pd.Series:
    """Per run: busy fraction of the plan's instances (models weighted by their instance counts)."""
    weights = {m: v["instances"] for m, v in alloc["models"].items() if v["instances"] > 0}
    total = sum(weights.values())
    cols = [f"models.{m}.busy_fraction" for m in weights]
    if not total or any(c not in results.columns for c in cols):
        return pd.Series(math.nan, index=results.index)
    return sum(results[f"models.{m}.busy_fraction"].fillna(0.0) * w for m, w in weights.items()) / total


def plan_table(plan: dict[str, Any], results: pd.DataFrame) -> pd.DataFrame:
    """One row per allocation: GPUs per model, $/hour, expected accuracy and sustainable load, then each
    simulated metric's mean and 95 % half-width, and whether the simulated mean meets every SLO target."""
    slo = {k.removesuffix("_p95"): v for k, v in (plan.get("slo") or {}).items() if v is not None}
    met = (plan.get("verdict") or {}).get("slo_met", {})
    rows = []
    for alloc in plan["allocations"]:
        runs = results[results["policy"] == (alloc.get("runs_label") or alloc["label"])].copy()
        runs["utilisation"] = _utilisation(runs, alloc)
        row: dict[str, Any] = {
            "plan": alloc["label"], "method": alloc["method"],
            "gpus": ", ".join(f"{m} {v['gpus']}" for m, v in alloc["models"].items() if v["gpus"]),
            "cost_per_hour": alloc["cost_per_hour"], "expected_accuracy": alloc["expected_accuracy"],
            "sustainable_load_qps": alloc["sustainable_load_qps"], "seeds": len(runs),
        }
        for metric in PLAN_METRICS:
            mean, _, hi = mean_ci(runs[metric], LEVEL) if metric in runs.columns else (math.nan,) * 3
            half = hi - mean
            row[metric] = mean
            row[f"{metric}.ci"] = half
        worst = (plan.get("per_model_p95_s") or {}).get(alloc["label"]) or {}
        for metric in ("ttft", "e2e"):
            vals = [(v[metric], m) for m, v in worst.items() if v.get(metric) is not None and math.isfinite(v[metric])]
            row[f"worst_model_{metric}_p95"] = max(vals)[0] if vals else math.nan
            row[f"worst_model_{metric}"] = max(vals)[1] if vals else ""
        row["slo_met"] = met.get(alloc["label"]) if slo else None
        row["note"] = alloc.get("note", "") or (f"same allocation as {alloc['same_as']}" if alloc.get("same_as") else "")
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(metric: str, mean: float, half: float) -> str:
    from reports.build import fmt

    key = "accuracy" if metric == "utilisation" else metric
    text = fmt(key, mean)
    if math.isfinite(half) and math.isfinite(mean):
        text += f" ± {fmt(key, half).rstrip(' %s$').strip()}"
    return text


HEADERS = ["plan", "GPUs per model", "$/hour", "expected accuracy", "sustainable load", *PLAN_METRICS.values(),
           "worst model TTFT p95", "worst model e2e p95", "SLO met"]


#: The console's columns (the report and plan.csv have all): what fits 80-100 columns.
CONSOLE_COLUMNS = ["plan", "$/hour", "expected accuracy", "accuracy", "TTFT p95", "e2e p95", "SLO met"]


def plan_rows(table: pd.DataFrame, ci: bool = True) -> list[list[str]]:
    """The table's formatted cells, in :data:`HEADERS` order (``ci=False``: means only)."""
    out = []
    for r in table.to_dict("records"):
        met = r["slo_met"]
        out.append([r["plan"], r["gpus"] or "—", f"{r['cost_per_hour']:,.2f}", f"{100 * r['expected_accuracy']:.2f} %",
                    f"{r['sustainable_load_qps']:.3g} q/s",
                    *[_fmt(m, r[m], r[f"{m}.ci"] if ci else math.nan) for m in PLAN_METRICS],
                    *[_worst(r, metric) for metric in ("ttft", "e2e")],
                    "—" if met is None else ("yes" if met else "NO")])
    return out


def _worst(row: dict[str, Any], metric: str) -> str:
    value = row.get(f"worst_model_{metric}_p95", math.nan)
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.3f} s ({row[f'worst_model_{metric}']})"


def _gpus_figure(plan: dict[str, Any]) -> go.Figure:
    labels = [a["label"] for a in plan["allocations"]]
    models = list(plan["allocations"][0]["models"])
    colors = model_colors(models)
    fig = go.Figure([go.Bar(name=m, x=labels, y=[a["models"][m]["gpus"] for a in plan["allocations"]],
                            marker_color=colors[m]) for m in models])
    fig.update_layout(barmode="stack", yaxis_title="GPUs")
    return _layout(fig, "GPUs per model in each plan", height=380)


def _metric_figure(table: pd.DataFrame, metric: str, title: str, scale: float = 1.0,
                   target: float | None = None) -> go.Figure:
    err = [h * scale if math.isfinite(h) else 0.0 for h in table[f"{metric}.ci"]]
    # points, not bars: the axis then zooms on the values, where plans differ by a point or two
    fig = go.Figure(go.Scatter(x=table["plan"], y=table[metric] * scale, mode="markers", marker={"size": 12},
                               error_y={"type": "data", "array": err}))
    if target is not None:
        fig.add_hline(y=target, line_dash="dash", annotation_text="SLO")
    return _layout(fig, title, height=340)


def _load_figure(plan: dict[str, Any], table: pd.DataFrame) -> go.Figure:
    fig = go.Figure(go.Bar(x=table["plan"], y=table["sustainable_load_qps"], name="sustainable load"))
    fig.add_hline(y=plan["arrival_rate_qps"], line_dash="dash", annotation_text="offered load")
    fig.update_layout(yaxis_title="queries/s")
    return _layout(fig, "Load each plan sustains at the SLO (from the sustainable rates)", height=340)


def plan_figures(plan: dict[str, Any], table: pd.DataFrame) -> list[FigureItem]:
    slo = plan.get("slo") or {}
    return [
        FigureItem("plan-gpus", "GPUs per model", "Stacked: each plan's GPUs by the model they serve.",
                   _gpus_figure(plan)),
        FigureItem("plan-accuracy", "Simulated accuracy", "Mean over seeds, 95 % CI.",
                   _metric_figure(table, "accuracy", "Simulated accuracy (%)", 100.0)),
        FigureItem("plan-cost", "GPU cost", "Each plan's $/hour.",
                   _layout(go.Figure(go.Bar(x=table["plan"], y=table["cost_per_hour"])), "GPU $/hour", 340)),
        FigureItem("plan-ttft", "TTFT p95", "Mean over seeds, 95 % CI; dashed: the SLO.",
                   _metric_figure(table, "latency_s.ttft.p95", "TTFT p95 (s)", target=slo.get("ttft_p95"))),
        FigureItem("plan-e2e", "End-to-end p95", "Mean over seeds, 95 % CI; dashed: the SLO.",
                   _metric_figure(table, "latency_s.e2e.p95", "End-to-end p95 (s)", target=slo.get("e2e_p95"))),
        FigureItem("plan-load", "Sustainable load", "Σ over models of instances × sustainable rate, divided "
                   "by each model's routed share; the smallest over models. Dashed: the workload's rate.",
                   _load_figure(plan, table)),
    ]


def _verdict_text(plan: dict[str, Any]) -> list[str]:
    v = plan.get("verdict") or {}
    if not (plan.get("slo") and any(x is not None for x in plan["slo"].values())):
        return ["No latency SLO was given: each deployment's sustainable rate is the knee of its latency "
                "curve (p95 end-to-end at twice its nearly idle value)."]
    if v.get("recommended"):
        return [f"Recommended: {v['recommended']} — the first optimised plan whose simulated p95 meets "
                f"the SLO ({plan.get('slo_label')})."]
    text = [f"No optimised plan met the SLO ({plan.get('slo_label')}) in simulation."]
    if v.get("reason"):
        text.append(str(v["reason"])[:1].upper() + str(v["reason"])[1:] + ".")
    return text


def plan_section(manifest: dict[str, Any], results: pd.DataFrame) -> tuple[Section, pd.DataFrame]:
    """The plan section: verdict, the side-by-side table, the candidates and their rates, figures."""
    plan = manifest["plan"]
    table = plan_table(plan, results)
    inv = ", ".join(f"{k}={v}" for k, v in plan["inventory"].items())
    text = [f"Inventory {inv}; SLO {plan.get('slo_label')}; workload {plan['arrival_rate_qps']:.3g} queries/s. "
            "The optimiser chose instance counts on "
            f"{plan['batches']} sampled batches of {plan['batch_size']} queries; every plan was then simulated "
            "with the scenario's own router on the same seeds.", *_verdict_text(plan)]
    cands = Table(["candidate", "$/hour", "KV tokens", "sustainable rate", "idle p95", "p95 at that rate"],
                  [[c["candidate"], f"{c['price_per_hour']:,.2f}", f"{c['kv_tokens']:,}",
                    f"{c['sustainable_rate_qps']:.3g} q/s",
                    ", ".join(f"{k} {v:.3g}s" for k, v in c["idle_p95_s"].items()),
                    ", ".join(f"{k} {v:.3g}s" for k, v in c["p95_at_rate_s"].items())]
                   for c in plan["candidates"]])
    section = Section("Capacity plan", text, [Table(HEADERS, plan_rows(table)), cands],
                      plan_figures(plan, table))
    return section, table
