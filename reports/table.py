"""A run summary (the plain dict of summary.json) as rows, a Markdown table, or a rich table.

Any summary value may be null (an AUC undefined on one class, a latency with no completed query) and
summaries written by older or newer versions may lack keys, so every lookup here tolerates a missing or
null value and shows it as "n/a" rather than failing after the run folder was written.
"""

from __future__ import annotations

from typing import Any

NA = "n/a"


def _get(d: Any, *path: str) -> Any:
    """``d[path[0]][path[1]]...``, or None when any step is missing, null or not a mapping."""
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _fmt(x: Any, unit: str = "") -> str:
    """A value for display: ``unit`` is "%", "$", "s", a format spec like ".3f", or "" (general)."""
    if x is None:
        return NA
    if not _is_num(x):
        return str(x)
    if unit == "%":
        return f"{100 * x:.1f} %"
    if unit == "$":
        return f"${x:,.4f}" if abs(x) < 100 else f"${x:,.2f}"
    if unit == "s":  # per-token gaps are often a few ms: keep a decimal there
        if abs(x) < 0.01:
            return f"{x * 1000:.1f} ms"
        return f"{x * 1000:.0f} ms" if abs(x) < 1 else f"{x:.2f} s"
    if unit:
        return format(x, unit)
    return f"{x:,.4g}" if isinstance(x, float) else f"{x:,}" if isinstance(x, int) else str(x)


def _budget_row(s: dict[str, Any]) -> str:
    b = _get(s, "budget")
    if _get(b, "per_query_usd") is None:
        return "none set"
    return (f"{_fmt(_get(b, 'per_query_usd'), '$')}/query; batches over: "
            f"{_fmt(_get(b, 'batches_over_budget'))} of {_fmt(_get(b, 'batches'))} predicted "
            f"({_fmt(_get(b, 'overspend_usd'), '$')} over), "
            f"{_fmt(_get(b, 'batches_over_budget_realised'))} realised "
            f"({_fmt(_get(b, 'overspend_realised_usd'), '$')} over)")


def _floor_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    """The quality-floor row, only when the scenario set a floor (``budget.quality_floor``)."""
    b = _get(s, "budget")
    alpha = _get(b, "quality_floor")
    if alpha is None:
        return []
    return [("quality floor", f"{_fmt(alpha)}; batches under floor: {_fmt(_get(b, 'quality_floor_misses'))} "
                              f"of {_fmt(_get(b, 'batches'))} predicted, "
                              f"{_fmt(_get(b, 'quality_floor_misses_realised'))} realised")]


def _latency_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    def pcts(name: str) -> str:
        return " / ".join(_fmt(_get(s, "latency_s", name, k), "s") for k in ("p50", "p95", "p99"))

    def mean_p99(name: str) -> str:
        return f"{_fmt(_get(s, 'latency_s', name, 'mean'), 's')} / {_fmt(_get(s, 'latency_s', name, 'p99'), 's')}"

    return [
        ("TTFT p50 / p95 / p99", pcts("ttft")),
        ("end-to-end p50 / p95 / p99", pcts("e2e")),
        ("batching wait mean / p99", mean_p99("batching_delay")),
        ("queue delay mean / p99", mean_p99("queue_delay")),
        ("TPOT p50 / p95 / p99", pcts("tpot")),
        ("TBT p50 / p95 / p99", f"{pcts('tbt')} (longest step {_fmt(_get(s, 'latency_s', 'tbt', 'max_step'), 's')})"),
        ("throughput", f"{_fmt(_get(s, 'throughput', 'queries_per_s'), '.2f')} queries/s, "
                       f"{_fmt(_get(s, 'throughput', 'output_tokens_per_s'), '.0f')} output tokens/s"),
    ]


SLO_LABELS = (("ttft", "TTFT"), ("e2e", "end-to-end"))


def _slo_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    """SLO attainment per set target (headline: of every query whose outcome is known, rejected ones
    missing it; then of completed ones), and the latency estimator's accuracy; n/a when unset."""
    slo = _get(s, "slo")
    parts = [f"{label} ≤ {_fmt(_get(slo, f'{m}_s'), 's')}: {_fmt(_get(slo, f'attainment_{m}'), '%')} "
             f"({_fmt(_get(slo, f'attainment_{m}_of_completed'), '%')} of completed)"
             for m, label in SLO_LABELS if _get(slo, f"{m}_s") is not None]
    est = _get(s, "estimator")
    n = _get(est, "n")
    estimate = NA + " (no predictions)"
    if _is_num(n) and n > 0:
        estimate = "; ".join(f"{label} MAPE {_fmt(_get(est, f'{m}_mape'), '%')}, "
                             f"bias {_signed(_get(est, f'{m}_bias_s'))}"
                             for m, label in reversed(SLO_LABELS)) + f" (over {_fmt(n)} requests)"
    return [("SLO attainment", ", ".join(parts) if parts else NA + " (no SLO set)"), ("latency estimate", estimate)]


def _signed(x: Any) -> str:
    """Seconds with an explicit sign (+: the estimate was pessimistic)."""
    return f"+{_fmt(x, 's')}" if _is_num(x) and x > 0 else _fmt(x, "s")


def _scheduler_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    """Preemptions and prefix-cache hits: n/a when no deployment is paged / caches prefixes."""
    sc = _get(s, "scheduler")
    return [
        ("preemptions", f"{_fmt(_get(sc, 'preemptions'))} ({_fmt(_get(sc, 'recomputed_tokens'))} tokens recomputed)"),
        ("prefix cache hits", f"{_fmt(_get(sc, 'prefix_cache_hit_rate_tokens'), '%')} of prompt tokens, "
                              f"{_fmt(_get(sc, 'prefix_cache_hit_rate_requests'), '%')} of requests"),
    ]


def _model_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    models = _get(s, "models")
    if not isinstance(models, dict):
        return []
    return [
        (f"  {name}", f"share {_fmt(_get(m, 'share'), '%')}, acc {_fmt(_get(m, 'accuracy'), '%')}, "
                      f"busy {_fmt(_get(m, 'busy_fraction'), '%')}, "
                      f"slots used {_fmt(_get(m, 'slot_utilisation'), '%')}, "
                      f"mean queue {_fmt(_get(m, 'mean_queue'), '.1f')}{_model_slo(s, m)}")
        for name, m in models.items()
    ]


def _model_slo(s: dict[str, Any], m: Any) -> str:
    """``, SLO TTFT x %, e2e y %`` for the targets the run set (nothing without an SLO)."""
    parts = [f"{short} {_fmt(_get(m, 'slo', f'attainment_{k}'), '%')}"
             for k, short in (("ttft", "TTFT"), ("e2e", "e2e")) if _get(s, "slo", f"{k}_s") is not None]
    return f", SLO {', '.join(parts)}" if parts else ""


def _lost(q: Any) -> str:
    """"N lost, M retried, " when a node failure (docs/events.md) touched any request, else nothing."""
    lost, retried = _get(q, "lost"), _get(q, "retried")
    if not lost and not retried:
        return ""
    return f"{_fmt(lost)} lost, {_fmt(retried)} retried, "


def summary_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs in reading order: what a user looks at first."""
    q = _get(s, "queries")
    ref = _get(s, "references")
    rows = [
        ("scenario / policy", f"{_fmt(_get(s, 'scenario'))} / {_fmt(_get(s, 'policy'))} "
                              f"(seed {_fmt(_get(s, 'seed'))})"),
        ("queries", f"{_fmt(_get(q, 'arrived'))} arrived, {_fmt(_get(q, 'completed'))} completed, "
                    f"{_fmt(_get(q, 'rejected'))} rejected, {_lost(q)}{_fmt(_get(q, 'running'))} running"),
        ("accuracy", f"{_fmt(_get(s, 'accuracy'), '%')}  (predicted {_fmt(_get(s, 'predicted_accuracy'), '%')})"),
        ("oracle / best single model",
         f"{_fmt(_get(ref, 'oracle_accuracy'), '%')} / {_fmt(_get(ref, 'best_single_model_accuracy'), '%')} "
         f"({_fmt(_get(ref, 'best_single_model'))})"),
        ("cost (tokens)", f"{_fmt(_get(s, 'cost', 'total_usd'), '$')} total, "
                          f"{_fmt(_get(s, 'cost', 'per_query_usd'), '$')} per query"),
        ("cost (GPU time)", _fmt(_get(s, "cost", "gpu_usd"), "$")),
        ("budget", _budget_row(s)),
        *_floor_rows(s),
        *_latency_rows(s),
        *_slo_rows(s),
        *_scheduler_rows(s),
    ]
    data = _get(s, "data")
    if isinstance(data, dict) and any(isinstance(v, int) and v > 0 for v in data.values()):
        rows.append(("dataset rows dropped", f"{_fmt(_get(data, 'rows_dropped_duplicate'))} duplicate ids "
                                             f"(on_duplicate), {_fmt(_get(data, 'rows_dropped_missing_score'))} "
                                             "missing scores (on_missing_score)"))
    scores = _get(s, "predictor_scores")
    if isinstance(scores, dict) and scores:
        rows.append(("predictor", f"{_fmt(_get(s, 'predictor'))}: Brier {_fmt(_get(scores, 'brier'), '.3f')}, "
                                  f"AUC {_fmt(_get(scores, 'auc'), '.3f')}"))
    return rows + _model_rows(s)


def summary_markdown(s: dict[str, Any]) -> str:
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {k.strip()} | {v} |" for k, v in summary_rows(s)]
    return "\n".join(lines) + "\n"
