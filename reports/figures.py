"""Plotly figures of a results table and of run tables. Each function returns ``(figure, caption)``
and raises :class:`FigureSkipped` (with the reason shown in the report) when its table or column is
absent: older run folders lack some tables, and a report must still be written for them.

Per-run figures take ``runs``: a mapping from a label (policy or configuration) to that run's table
(or ``None`` when the run folder lacks it); the caller says in its caption which seed was picked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reports.stats import mean_ci

COST = "cost.total_usd"
ACCURACY = "accuracy"
ALPHA_COLUMNS = ("param.router.min_quality", "param.router.params.alpha")
MAX_POINTS = 2000  # per trace: keeps the self-contained HTML small without changing the picture
PALETTE = px.colors.qualitative.Plotly

Figure = tuple[go.Figure, str]


class FigureSkipped(Exception):
    """The data a figure needs is missing; the message says what, for the report's note."""


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def model_colors(models: list[str] | pd.Series) -> dict[str, str]:
    """One colour per model, by sorted name, so a model looks the same in every figure."""
    names = sorted({str(m) for m in models})
    return {m: _color(i) for i, m in enumerate(names)}


def _family_colors(results: pd.DataFrame, family: str) -> dict[str, str]:
    """Policy colours in results order, shared by the frontier and the knob figures."""
    return {str(f): _color(i) for i, f in enumerate(dict.fromkeys(results[family]))}


def _layout(fig: go.Figure, title: str, height: int = 450) -> go.Figure:
    fig.update_layout(title=title, height=height, template="plotly_white", legend_title_text="",
                      margin={"t": 70, "l": 70, "r": 30, "b": 60})
    return fig


def _need(df: pd.DataFrame | None, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    if df is None:
        raise FigureSkipped(f"no {what}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise FigureSkipped(f"{what} lacks column(s) {', '.join(missing)}")
    return df


def _thin(df: pd.DataFrame) -> pd.DataFrame:
    step = max(1, int(np.ceil(len(df) / MAX_POINTS)))
    return df.iloc[::step]


def _summaries(results: pd.DataFrame, by: list[str], metrics: tuple[str, ...]) -> pd.DataFrame:
    """Mean and CI half-widths of ``metrics`` over seeds per group (error bars; NaN half-width at n=1)."""
    rows = []
    for key, g in results.groupby(by, sort=False, dropna=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        for m in metrics:
            mean, lo, hi = mean_ci(pd.to_numeric(g[m], errors="coerce"))
            row[m], row[f"{m}:err"] = mean, (hi - lo) / 2
        rows.append(row)
    return pd.DataFrame(rows)


def frontier(results: pd.DataFrame, group: str = "config", family: str = "family") -> Figure:
    """Cost–accuracy points per configuration (mean ± 95 % CI over seeds), joined per policy family,
    with the oracle's accuracy and the best single model for reference."""
    _need(results, (COST, ACCURACY, group, family), "results table")
    pts = _summaries(results, [family, group], (COST, ACCURACY)).sort_values(COST)
    fig, colors = go.Figure(), _family_colors(results, family)
    for fam, g in pts.groupby(family, sort=False):
        fig.add_trace(go.Scatter(
            x=g[COST], y=100 * g[ACCURACY], mode="lines+markers", name=str(fam), text=g[group],
            error_x={"type": "data", "array": g[f"{COST}:err"].fillna(0)},
            error_y={"type": "data", "array": 100 * g[f"{ACCURACY}:err"].fillna(0)},
            marker={"color": colors[str(fam)], "size": 9}, hovertemplate="%{text}<br>$%{x:.4f}, %{y:.1f} %"))
    _reference_points(fig, results)
    fig.update_xaxes(title_text="token cost per run (USD)", rangemode="nonnegative")
    fig.update_yaxes(title_text="accuracy (%)", rangemode="nonnegative")
    caption = ("Each point is one configuration: mean over seeds with 95 % t-intervals (no bar when there is "
               "one seed). Up and to the left is better.")
    return _layout(fig, "Cost–accuracy frontier"), caption


def _reference_points(fig: go.Figure, results: pd.DataFrame) -> None:
    oracle = "references.oracle_accuracy"
    if oracle in results.columns:
        acc = float(pd.to_numeric(results[oracle], errors="coerce").mean())
        fig.add_hline(y=100 * acc, line_dash="dot", line_color="gray",
                      annotation_text=f"oracle {100 * acc:.1f} %", annotation_position="bottom right")
    best = ("references.best_single_model_cost_usd", "references.best_single_model_accuracy")
    if all(c in results.columns for c in best):
        name = results.get("references.best_single_model", pd.Series(["best single model"])).iloc[0]
        fig.add_trace(go.Scatter(
            x=[pd.to_numeric(results[best[0]]).mean()], y=[100 * pd.to_numeric(results[best[1]]).mean()],
            mode="markers", name=f"best single model ({name})",
            marker={"symbol": "star", "size": 14, "color": "black"}))


def controllability_columns(results: pd.DataFrame) -> list[tuple[str, str]]:
    """(column, axis label) of swept knobs OmniRouter plots against: the quality target α and the
    per-model concurrency limit L. Only columns with more than one value qualify."""
    found = [(c, "quality target α") for c in ALPHA_COLUMNS if c in results.columns]
    found += [(c, f"concurrency limit L ({c.removeprefix('param.')})") for c in results.columns
              if c.startswith("param.") and re.search(r"max_seqs", c)]
    return [(c, label) for c, label in found if results[c].nunique(dropna=True) > 1]


def versus_param(results: pd.DataFrame, column: str, label: str, family: str = "family") -> Figure:
    """Accuracy and cost against one swept knob per policy family (other knobs and seeds averaged)."""
    _need(results, (column, COST, ACCURACY, family), "results table")
    pts = _summaries(results, [family, column], (COST, ACCURACY)).sort_values(column)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("accuracy", "token cost"))
    colors = _family_colors(results, family)
    for fam, g in pts.groupby(family, sort=False):
        for col, metric, scale in ((1, ACCURACY, 100.0), (2, COST, 1.0)):
            fig.add_trace(go.Scatter(
                x=g[column], y=scale * g[metric], mode="lines+markers", name=str(fam), legendgroup=str(fam),
                showlegend=col == 1, marker={"color": colors[str(fam)]},
                error_y={"type": "data", "array": scale * g[f"{metric}:err"].fillna(0)}), row=1, col=col)
    fig.update_xaxes(title_text=label)
    fig.update_yaxes(title_text="accuracy (%)", row=1, col=1)
    fig.update_yaxes(title_text="token cost per run (USD)", row=1, col=2)
    caption = (f"Controllability: how accuracy and cost follow {label}; mean over seeds and the other "
               "swept parameters, 95 % t-intervals.")
    return _layout(fig, f"Accuracy and cost vs {label}"), caption


def _difficulty_groups(d: pd.Series) -> pd.Series:
    """Deciles of difficulty; with fewer than 10 distinct values (binary correctness over a few models)
    each value is its own group, since quantile edges would merge or split ties arbitrarily."""
    values = np.sort(d.dropna().unique())
    if values.size <= 10:
        return d.map(lambda v: f"{v:.2f}")
    deciles = pd.qcut(d, 10, duplicates="drop")
    return deciles.map(lambda iv: f"{iv.left:.2f}–{iv.right:.2f}").astype(str)


def share_by_difficulty(runs: Mapping[str, pd.DataFrame | None]) -> Figure:
    """Per policy, which model answered the queries of each difficulty group (routing share)."""
    frames = []
    for label, req in runs.items():
        if req is not None and "difficulty" in req.columns and "model" in req.columns:
            frames.append(req[["difficulty", "model"]].assign(policy=label))
    if not frames:
        raise FigureSkipped("no requests table with a difficulty column")
    df = pd.concat(frames, ignore_index=True)
    df["model"] = df["model"].replace("", "(not routed)").fillna("(not routed)")
    df["group"] = _difficulty_groups(df["difficulty"])
    order = sorted(df["group"].unique(), key=lambda s: float(s.split("–")[0]))
    share = df.groupby(["policy", "group", "model"]).size().rename("n").reset_index()
    share["share"] = 100 * share["n"] / share.groupby(["policy", "group"])["n"].transform("sum")
    fig = px.bar(share, x="group", y="share", color="model", facet_col="policy", facet_col_wrap=3,
                 color_discrete_map=model_colors(share["model"]),
                 category_orders={"group": order, "policy": list(dict.fromkeys(df["policy"]))},
                 labels={"group": "difficulty (1 − mean true quality)", "share": "share of queries (%)"})
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1]))
    caption = ("Routing share per model by query difficulty (1 − mean true quality over models; deciles, or "
               "each value when there are fewer than ten): a good router sends hard queries to strong models.")
    return _layout(fig, "Routing share by query difficulty", height=420 * ((len(frames) + 2) // 3)), caption


def _ecdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most 400 (quantile, probability) points: the CDF's shape without one point per request."""
    p = np.linspace(0.0, 1.0, min(400, values.size))
    return np.quantile(values, p), p


def latency_cdfs(runs: Mapping[str, pd.DataFrame | None]) -> Figure:
    """TTFT and end-to-end latency distributions per policy (completed requests only)."""
    need = ("arrival_s", "first_token_s", "finish_s", "status")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("time to first token", "end-to-end latency"))
    drawn = 0
    for i, (label, req) in enumerate(runs.items()):
        if req is None or any(c not in req.columns for c in need):
            continue
        done = req[req["status"] == "completed"]
        for col, start, end in ((1, "arrival_s", "first_token_s"), (2, "arrival_s", "finish_s")):
            lat = (done[end] - done[start]).to_numpy(dtype=float)
            lat = lat[np.isfinite(lat)]
            if lat.size:
                x, p = _ecdf(lat)
                fig.add_trace(go.Scatter(x=x, y=100 * p, mode="lines", name=label, legendgroup=label,
                                         showlegend=col == 1, line={"color": _color(i)}), row=1, col=col)
                drawn += 1
    if not drawn:
        raise FigureSkipped("no requests table with completed requests")
    fig.update_xaxes(title_text="latency (s)")
    fig.update_yaxes(title_text="requests at or below (%)", row=1, col=1)
    caption = "Empirical CDFs over completed requests; TTFT = first token − arrival, end-to-end = finish − arrival."
    return _layout(fig, "Latency distributions"), caption


def occupancy(label: str, occ: pd.DataFrame | None) -> Figure:
    """Utilisation (running sequences / slots) and queue length over time, per model, for one run."""
    occ = _need(occ, ("time_s", "model", "queued", "running", "slots"), "occupancy table")
    per = occ.groupby(["model", "time_s"], sort=False)[["queued", "running", "slots"]].sum().reset_index()
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("slot utilisation", "queued requests"))
    colors = model_colors(per["model"])
    for model, g in per.groupby("model", sort=True):
        g = _thin(g.sort_values("time_s"))
        util = 100 * g["running"] / g["slots"].where(g["slots"] > 0)
        style = {"color": colors[str(model)]}
        fig.add_trace(go.Scatter(x=g["time_s"], y=util, mode="lines", name=str(model), legendgroup=str(model),
                                 line=style), row=1, col=1)
        fig.add_trace(go.Scatter(x=g["time_s"], y=g["queued"], mode="lines", name=str(model),
                                 legendgroup=str(model), showlegend=False, line=style), row=2, col=1)
    fig.update_xaxes(title_text="simulated time (s)", row=2, col=1)
    fig.update_yaxes(title_text="running / slots (%)", row=1, col=1)
    fig.update_yaxes(title_text="queued (requests)", row=2, col=1)
    caption = (f"{label}: per model, running sequences over slots (instances × max_seqs, all deployments "
               "of the model) and requests waiting for admission, at the simulator's sample times.")
    return _layout(fig, f"Utilisation and queues over time — {label}", height=560), caption


def budget_spend(runs: Mapping[str, pd.DataFrame | None]) -> Figure:
    """Predicted (and realised, when recorded) spend of each routed batch against its budget."""
    fig, budgets = go.Figure(), []
    drawn = False
    for i, (label, b) in enumerate(runs.items()):
        if b is None or any(c not in b.columns for c in ("time_s", "predicted_cost_usd", "budget_usd")):
            continue
        if not pd.to_numeric(b["budget_usd"], errors="coerce").notna().any():
            continue
        b = _thin(b.sort_values("time_s"))
        color = _color(i)
        fig.add_trace(go.Scatter(x=b["time_s"], y=b["predicted_cost_usd"], mode="markers", name=f"{label} predicted",
                                 marker={"color": color, "size": 5}))
        if "realised_cost_usd" in b.columns:
            fig.add_trace(go.Scatter(x=b["time_s"], y=b["realised_cost_usd"], mode="markers",
                                     name=f"{label} realised", marker={"color": color, "size": 5, "symbol": "x"}))
        budget = (tuple(b["time_s"]), tuple(b["budget_usd"]))
        if budget not in budgets:  # policies batching alike share one budget line: draw it once
            budgets.append(budget)
            fig.add_trace(go.Scatter(x=b["time_s"], y=b["budget_usd"], mode="lines", name=f"{label} budget",
                                     line={"color": color, "dash": "dash"}))
        drawn = True
    if not drawn:
        raise FigureSkipped("no batches table with a budget (no run set router.budget_per_query)")
    fig.update_xaxes(title_text="routing time of the batch (s)")
    fig.update_yaxes(title_text="batch spend (USD)")
    caption = ("Spend per routed batch: predicted cost (what the router enforces), realised cost when recorded "
               "(×), and the batch's budget (dashed; drawn once for policies whose batches and budgets coincide). "
               "Points above the dashed line are over budget.")
    return _layout(fig, "Spend per batch against the budget"), caption
