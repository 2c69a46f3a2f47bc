"""``write_report(folder)``: turn a run, compare or sweep folder into report.html, report.md and CSVs.

Everything is computed in memory first and the files are then written via temporary names and renamed,
so a folder that cannot be reported (a :class:`~reports.errors.ReportError`) gets no partial output.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from reports import figures as F
from reports.atomic import write_all_atomic
from reports.document import Document, FigureItem, Section, Table
from reports.errors import ReportError, os_reason
from reports.experiment import Experiment, load
from reports.html import render_html
from reports.markdown import render_markdown
from reports.stats import accuracy_at_spend, aiq, compare_table, mean_ci
from reports.table import NA, summary_rows

METRICS = ["accuracy", "cost.total_usd", "cost.gpu_usd", "latency_s.ttft.p99", "latency_s.e2e.p99",
           "budget.batches_over_budget", "budget.batches_over_budget_realised", "throughput.queries_per_s",
           "latency_s.tpot.p50", "latency_s.tpot.p95", "latency_s.tpot.p99",
           "latency_s.tbt.p50", "latency_s.tbt.p95", "latency_s.tbt.p99", "latency_s.tbt.max_step",
           "scheduler.preemptions", "scheduler.recomputed_tokens",
           "scheduler.prefix_cache_hit_rate_tokens", "scheduler.prefix_cache_hit_rate_requests",
           "slo.attainment_e2e", "slo.attainment_ttft", "slo.attainment_e2e_of_completed",
           "slo.attainment_ttft_of_completed", "estimator.e2e_mape", "estimator.e2e_bias_s",
           "estimator.ttft_mape", "estimator.ttft_bias_s"]
#: Metrics that only some schedulers have (null in summary.json otherwise): left out of the comparison,
#: with a note, when no run has them, rather than filling the table with n/a rows.
SCHEDULER_METRICS = frozenset(m for m in METRICS if m.startswith(("latency_s.tbt", "scheduler.")))
#: Metrics that exist only when the scenario sets ``router.slo`` / the dispatcher records latency
#: predictions: treated like the scheduler metrics.
SLO_METRICS = frozenset(m for m in METRICS if m.startswith(("slo.", "estimator.")))
OPTIONAL_METRICS = SCHEDULER_METRICS | SLO_METRICS
LEVEL = 0.95
PAIRING_NOTE = (
    "Intervals are 95 % Student-t intervals over seeds. Paired differences pair each run with the "
    "baseline's run of the same seed (common random numbers: same seed, same arrivals and queries), so "
    "the workload's noise cancels and they are tighter than comparing the two intervals."
)


def fmt(metric: str, x: Any, signed: bool = False) -> str:
    """A value in the metric's unit: % for accuracy and shares, $ for costs, s for latencies."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if not isinstance(x, int | float):
        return str(x)
    sign = "+" if signed else ""
    if "accuracy" in metric or metric.endswith("share") or "hit_rate" in metric or "attainment" in metric \
            or metric.endswith("mape"):
        return f"{100 * x:{sign}.2f}" + (" pp" if signed else " %")
    if "usd" in metric:
        return f"{x:{sign},.4f} $"
    if metric.startswith("latency_s") or metric.endswith("bias_s"):
        return f"{x:{sign}.3f} s"
    return f"{x:{sign},.4g}"


def _interval(metric: str, lo: float, hi: float, signed: bool = False) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "—"
    return f"[{fmt(metric, lo, signed)}, {fmt(metric, hi, signed)}]"


def _baseline(exp: Experiment) -> str | None:
    """The configuration runs are paired against: the manifest's baseline policy, when it names one."""
    base = exp.manifest.get("baseline")
    configs = exp.results.loc[exp.results["policy"] == base, "config"].unique() if base else []
    if len(configs) == 1:
        return str(configs[0])
    if base and base in set(exp.results["config"]):
        return str(base)
    if base:
        exp.notes.append(f"Baseline {base!r} matches {len(configs)} configurations; no paired differences.")
    return None


def _applicable(results: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(metrics to compare, optional metrics no run has): TBT needs a paged deployment, the hit rates
    a prefix-caching one, SLO attainment an SLO, estimator accuracy recorded predictions; a config that
    lacks a metric other configs have shows n/a in its row. (A metric missing from the table, as in a
    folder written before it existed, is skipped by :func:`~reports.stats.compare_table`.)"""
    absent = [m for m in METRICS if m in OPTIONAL_METRICS and m in results.columns
              and not pd.to_numeric(results[m], errors="coerce").notna().any()]
    return [m for m in METRICS if m not in absent], absent


def comparison(exp: Experiment) -> tuple[pd.DataFrame, Section]:
    base = _baseline(exp)
    metrics, absent = _applicable(exp.results)
    table = compare_table(exp.results, metrics, base, group="config", level=LEVEL)
    rows = [[r.config, r.metric, str(r.n), fmt(r.metric, r.mean) if r.n else NA, _interval(r.metric, r.ci_lo, r.ci_hi),
             fmt(r.metric, r.diff_vs_baseline, signed=True), _interval(r.metric, r.diff_ci_lo, r.diff_ci_hi, signed=True),
             str(r.pairs)] for r in table.itertuples()]
    paragraphs = [PAIRING_NOTE, f"Baseline: {base}." if base else "No baseline: no paired differences."]
    if (table["n"] == 1).any():
        paragraphs.append("n = 1 (one seed): no interval can be estimated; shown as —.")
    if (table["n"] == 0).any():
        paragraphs.append("n/a: the metric does not apply to that configuration (e.g. TBT and preemptions "
                          "need the paged scheduler, hit rates a prefix cache, SLO attainment a router.slo).")
    listed = [m for m in absent if m not in SLO_METRICS]  # no SLO anywhere is the common case: no list
    if listed:
        paragraphs.append(f"Not applicable to any run, so not compared: {', '.join(listed)}.")
    attained = [m for m in SLO_METRICS if m.startswith("slo.attainment") and m in exp.results.columns]
    if any(m.startswith("slo.") for m in absent) and all(m in absent for m in attained):
        paragraphs.append("No run set an SLO (router.slo): attainment not compared.")
    headers = ["configuration", "metric", "n", "mean", "95 % CI", "diff vs baseline", "diff 95 % CI", "pairs"]
    return table, Section("Comparison", paragraphs, [Table(headers, rows)])


SLO_COLUMNS = (("e2e", "end-to-end"), ("ttft", "TTFT"))


def slo_attainment(exp: Experiment) -> Section | None:
    """Per configuration, each SLO target and the mean share of queries meeting it (95 % interval over
    seeds; rejected queries count as misses), the share among completed queries, and the estimator's
    end-to-end MAPE: the table that shows a latency-aware policy's gain next to a queue-blind one's.
    None when no run set an SLO (older folders, or scenarios without ``router.slo``)."""
    res = exp.results
    shown = [(m, label) for m, label in SLO_COLUMNS if f"slo.attainment_{m}" in res.columns
             and pd.to_numeric(res[f"slo.attainment_{m}"], errors="coerce").notna().any()]
    if not shown:
        return None
    headers = ["configuration", "seeds"]
    for _, label in shown:
        headers += [f"{label} SLO", "attained", "95 % CI", "of completed"]
    headers.append("end-to-end estimate MAPE")
    rows = []
    for config, g in res.groupby("config", sort=False):
        cells = [str(config), str(len(g))]
        for m, _ in shown:
            target = _mean(g, f"slo.{m}_s")
            att = mean_ci(_numeric(g, f"slo.attainment_{m}"), LEVEL)
            cells += [fmt("latency_s", target) if math.isfinite(target) else NA,
                      fmt("attainment", att[0]) if math.isfinite(att[0]) else NA,
                      _interval("attainment", att[1], att[2]),
                      _fmt_or_na("attainment", _mean(g, f"slo.attainment_{m}_of_completed"))]
        cells.append(_fmt_or_na("estimator.e2e_mape", _mean(g, "estimator.e2e_mape")))
        rows.append(cells)
    text = ["Attainment: share of the queries whose outcome is known that met the SLO (latency from arrival; "
            "a rejected query, or one unfinished past its deadline at a cut-off, missed it), mean over seeds; "
            "of completed: among completed queries only. n/a: the configuration set no such SLO. "
            "Estimate MAPE: the dispatcher's predicted end-to-end latency against the realised one."]
    return Section("SLO attainment", text, [Table(headers, rows)])


def _numeric(g: pd.DataFrame, col: str) -> Any:
    return pd.to_numeric(g[col], errors="coerce").to_numpy(dtype=float) if col in g.columns else []


def _mean(g: pd.DataFrame, col: str) -> float:
    """The column's mean over the finite values (nan when none or no column)."""
    vals = [v for v in _numeric(g, col) if math.isfinite(v)]
    return float(sum(vals) / len(vals)) if vals else float("nan")


def _fmt_or_na(metric: str, x: float) -> str:
    return fmt(metric, x) if math.isfinite(x) else NA


REFERENCE_ROWS = (("oracle (best model per query)", "references.oracle_accuracy", None),
                  ("best single model", "references.best_single_model_accuracy",
                   "references.best_single_model_cost_usd"))


def references_section(exp: Experiment) -> Section | None:
    """What the policies are measured against, on the very queries each seed simulated: the oracle's
    accuracy (an upper bound for any router) and the best single model's accuracy and token cost."""
    res = exp.results.drop_duplicates("seed")
    rows = []
    for label, acc_col, cost_col in REFERENCE_ROWS:
        if acc_col not in res.columns:
            continue
        names = res.get("references.best_single_model")
        if cost_col and names is not None and names.nunique() == 1:
            label = f"{label} ({names.iloc[0]})"
        acc = mean_ci(pd.to_numeric(res[acc_col], errors="coerce").to_numpy(), LEVEL)
        cells = [label, str(len(res)), fmt("accuracy", acc[0]), _interval("accuracy", acc[1], acc[2])]
        if cost_col and cost_col in res.columns:
            cost = mean_ci(pd.to_numeric(res[cost_col], errors="coerce").to_numpy(), LEVEL)
            cells += [fmt("usd", cost[0]), _interval("usd", cost[1], cost[2])]
        else:
            cells += ["—", "—"]
        rows.append(cells)
    if not rows:
        return None
    return Section("References", ["Computed on the same queries as the policies, per seed (the oracle sends "
                                  "each query to a model that answers it correctly when one does)."],
                   [Table(["reference", "seeds", "accuracy", "95 % CI", "token cost", "95 % CI"], rows)])


def aiq_table(exp: Experiment) -> tuple[pd.DataFrame, Section]:
    """AIQ per policy family over its own and over the common cost range, and accuracy at the baseline's
    mean spend (interpolated on the family's configurations; — outside its measured range)."""
    if not {F.COST, F.ACCURACY} <= set(exp.results.columns):
        return pd.DataFrame(), Section("AIQ (area under the cost–accuracy frontier)",
                                       [f"Not computed: the results table has no {F.COST} or {F.ACCURACY} column."])
    pts = exp.results.groupby(["family", "config"], sort=False)[[F.COST, F.ACCURACY]].mean().reset_index()
    common = (float(pts[F.COST].min()), float(pts[F.COST].max()))
    base = _baseline(exp)
    given = exp.manifest.get("at_spend")  # sweep --at-spend / report --at-spend: the user's spend
    spend = float(given) if given is not None else (
        float(exp.results.loc[exp.results["config"] == base, F.COST].mean()) if base else float("nan"))
    at = "the given spend" if given is not None else "the baseline's spend"
    rows = []
    for fam, g in pts.groupby("family", sort=False):
        rows.append({"policy": fam, "points": len(g), "aiq": aiq(g[F.COST], g[F.ACCURACY]),
                     "aiq_common_range": aiq(g[F.COST], g[F.ACCURACY], cost_range=common),
                     "spend_usd": spend,
                     "accuracy_at_spend": accuracy_at_spend(g[F.COST], g[F.ACCURACY], spend)})
    df = pd.DataFrame(rows)
    text = [("AIQ (RouterBench): mean accuracy along the policy's non-decreasing convex hull of (mean cost, "
             "mean accuracy) points, over its own cost range and over the range common to all policies "
             f"({fmt('usd', common[0])} to {fmt('usd', common[1])}; zero below a policy's cheapest point). "
             "A policy with one configuration has one point.")]
    if math.isfinite(spend):
        text.append(f"Accuracy at {at} ({fmt('usd', spend)}) is interpolated along a policy's cost–accuracy "
                    "curve (its configurations' mean cost and accuracy); — when that spend is outside them. "
                    "Give a spend with `llmsim sweep --at-spend USD` or `llmsim report DIR --at-spend USD`.")
    t = Table(["policy", "points", "AIQ", "AIQ (common range)", f"accuracy at {at}"],
              [[str(r["policy"]), str(r["points"]), fmt("accuracy", r["aiq"]), fmt("accuracy", r["aiq_common_range"]),
                fmt("accuracy", r["accuracy_at_spend"])] for r in rows])
    return df, Section("AIQ (area under the cost–accuracy frontier)", text, [t])


def matched_section(exp: Experiment) -> Section | None:
    m = exp.matched_spend
    if m is None or m.empty:
        return None
    cols = [c for c in ("policy", "seed", "knob", "knob_value", "spend_usd", "target_spend_usd", "accuracy",
                        "reached", "note") if c in m.columns]
    rows = [[fmt(c, r[c]) if c in ("spend_usd", "target_spend_usd", "accuracy") else
             ("—" if pd.isna(r[c]) else str(r[c])) for c in cols] for _, r in m.iterrows()]
    ref = exp.manifest.get("match_spend")
    text = [f"Each policy's knob was searched so its mean spend over the seeds matches {ref}'s (within 1 %); "
            "the first table is the mean accuracy there with its 95 % interval and the seed-paired difference "
            f"to {ref}; rows with reached = False could not hit the target and are not comparable."]
    return Section("Matched spend", text, [_matched_summary(m, ref), Table(cols, rows)])


def _matched_summary(m: pd.DataFrame, ref: Any) -> Table:
    table = compare_table(m, ["spend_usd", "accuracy"], ref if ref in set(m["policy"]) else None, level=LEVEL)
    rows = []
    for policy, g in m.groupby("policy", sort=False):
        acc = table[(table["policy"] == policy) & (table["metric"] == "accuracy")].iloc[0]
        spend = table[(table["policy"] == policy) & (table["metric"] == "spend_usd")].iloc[0]
        knob = g["knob_value"].iloc[0]
        rows.append([str(policy), "—" if pd.isna(knob) else f"{g['knob'].iloc[0]} = {knob:.4g}",
                     fmt("usd", spend["mean"]), fmt("accuracy", acc["mean"]),
                     _interval("accuracy", acc["ci_lo"], acc["ci_hi"]),
                     fmt("accuracy", acc["diff_vs_baseline"], signed=True),
                     _interval("accuracy", acc["diff_ci_lo"], acc["diff_ci_hi"], signed=True),
                     "yes" if g["reached"].all() else "no"])
    return Table(["policy", "knob", "mean spend", "accuracy", "95 % CI", f"diff vs {ref}", "diff 95 % CI",
                  "reached"], rows)


def _figure(name: str, title: str, make: Callable[[], F.Figure], suffix: str = "") -> FigureItem:
    try:
        fig, caption = make()
    except F.FigureSkipped as exc:
        return FigureItem(name, title, str(exc))
    return FigureItem(name, title, caption + suffix, fig)


def figure_items(exp: Experiment) -> list[FigureItem]:
    res, runs = exp.results, exp.runs
    shown = "; ".join(f"{c}: seed {s}" for c, s in exp.picked.items())
    per_run = f" Runs shown (lowest seed per configuration): {shown}."
    items = [_figure("frontier", "Cost–accuracy frontier", lambda: F.frontier(res))]
    for i, (col, label) in enumerate(F.controllability_columns(res)):
        items.append(_figure(f"versus-{i}", f"Accuracy and cost vs {label}",
                             partial(F.versus_param, res, col, label)))
    items += [
        _figure("share-by-difficulty", "Routing share by difficulty",
                lambda: F.share_by_difficulty(runs["requests"]), per_run),
        _figure("latency-cdf", "Latency distributions", lambda: F.latency_cdfs(runs["requests"]), per_run),
        _figure("budget-spend", "Spend per batch against the budget",
                lambda: F.budget_spend(runs["batches"]), per_run),
    ]
    for i, (config, occ) in enumerate(runs["occupancy"].items()):
        items.append(_figure(f"occupancy-{i}", f"Utilisation and queues — {config}",
                             partial(F.occupancy, config, occ), f" Seed {exp.picked[config]}."))
    return items


def reproducibility(exp: Experiment) -> Section:
    m = exp.manifest
    kind = "plan" if m.get("plan") else "whatif" if m.get("whatif") else exp.kind
    rows = [["kind", kind], ["command", str(m.get("command") or "—")],
            ["llmsim version", str(m.get("llmsim_version") or "—")], ["scenario", str(m.get("scenario") or "—")],
            ["seeds", ", ".join(map(str, m.get("seeds") or sorted(exp.results["seed"].unique())))],
            ["policies", ", ".join(map(str, m.get("policies") or exp.results["policy"].unique()))],
            ["baseline", str(m.get("baseline") or "—")], ["match spend", str(m.get("match_spend") or "—")]]
    rows += [[f"grid: {k}", ", ".join(map(str, v))] for k, v in (m.get("grid") or {}).items()]
    return Section("Reproducibility", ["Rerun the command to regenerate every run of this folder."],
                   [Table(["field", "value"], rows)])


def build_document(exp: Experiment) -> tuple[Document, dict[str, pd.DataFrame]]:
    sections = [reproducibility(exp)]
    if exp.summary is not None:
        sections.append(Section("Summary", [], [Table(["metric", "value"],
                                                      [[k.strip(), v] for k, v in summary_rows(exp.summary)])]))
    comp, comp_section = comparison(exp)
    aiq_df, aiq_section = aiq_table(exp)
    sections += [comp_section, *filter(None, [slo_attainment(exp), references_section(exp), matched_section(exp)]),
                 aiq_section]
    sections.append(Section("Figures", [], [], figure_items(exp)))
    if exp.notes:
        sections.append(Section("Notes", list(dict.fromkeys(exp.notes))))
    tables = {"comparison.csv": comp, "aiq.csv": aiq_df}
    kind = exp.kind
    if exp.manifest.get("whatif"):  # a what-if is a two-config compare: its paired table comes first
        from reports.whatif import whatif_section

        section, tables["whatif.csv"] = whatif_section(exp.manifest, exp.results)
        sections.insert(1, section)
        kind = "whatif"
    if exp.manifest.get("plan"):  # a plan is a compare of allocations: its side-by-side table comes first
        from reports.plan import plan_section

        section, tables["plan.csv"] = plan_section(exp.manifest, exp.results)
        sections.insert(1, section)
        kind = "plan"
    title = f"llmsim {kind} report — {exp.manifest.get('scenario') or exp.folder.name}"
    return Document(title, sections), tables


def _written_by_report(path: Path, new_text: str) -> bool:
    """Whether the existing ``path`` looks like a file this module wrote: a Markdown or HTML report whose
    title starts with ``llmsim``, a CSV whose first three header cells are the ones it would write now, or
    a file holding exactly what it would write now. Why a signature and not a record of what was written:
    a report must stay regenerable by a rerun, and adding a bookkeeping file to every folder would be one
    more file the user did not ask for."""
    try:
        with path.open(encoding="utf-8") as f:
            head = f.read(4096)
            if len(head) == len(new_text[:4096]) and head == new_text[:4096] and f.read(len(new_text)) == \
                    new_text[4096:]:
                return True  # what it would write now, byte for byte (an empty table's CSV included)
    except PermissionError as exc:  # ours or not, it cannot be told: say why it is refused
        raise ReportError(f"exists and cannot be read ({os_reason(exc)}), so it cannot be told to be a file "
                          "llmsim report wrote; make it readable or move it away (nothing was written)",
                          file=path) from None
    except (OSError, UnicodeDecodeError):  # a directory, a device, another encoding: not ours
        return False
    if path.suffix == ".md":
        return head.startswith("# llmsim ")
    if path.suffix == ".html":
        return "<title>llmsim " in head

    def leading_columns(text: str) -> list[str]:  # the first three header cells (fixed for each CSV it writes)
        return [c.strip() for c in text.split("\n", 1)[0].split(",")[:3]]

    lead = leading_columns(new_text)
    return any(lead) and leading_columns(head) == lead


def _check_replaceable(path: Path, new_text: str) -> None:
    """Refuse to replace a file of a report name that llmsim did not write (it never deletes one)."""
    if (path.exists() or path.is_symlink()) and not _written_by_report(path, new_text):
        raise ReportError("exists and is not a file llmsim report wrote; move it away to write the report "
                          "(nothing was written)", file=path)


def write_report(folder: Path, at_spend: float | None = None) -> list[Path]:
    """Write report.html, report.md, comparison.csv and aiq.csv into ``folder``; return their paths.
    ``at_spend`` (USD) sets the spend at which each policy's accuracy is interpolated (default: the
    manifest's, else the baseline's mean spend)."""
    folder = Path(folder)
    exp = load(folder)
    if at_spend is not None:
        exp.manifest["at_spend"] = float(at_spend)
    doc, tables = build_document(exp)
    contents = {"report.html": render_html(doc), "report.md": render_markdown(doc)}
    contents.update({name: df.to_csv(index=False) for name, df in tables.items()})
    for name, text in contents.items():  # all checked before anything is written: no half-written report
        _check_replaceable(folder / name, text)
    try:  # all or none: a failure half way puts the previous report's files back
        write_all_atomic({folder / name: partial(Path.write_text, data=text, encoding="utf-8")
                          for name, text in contents.items()})
    except OSError as exc:  # a directory in the way, a full disk: one error, and no temp file left
        raise ReportError(f"cannot write: {os_reason(exc)}", file=exc.filename or folder) from None
    return [folder / name for name in contents]
