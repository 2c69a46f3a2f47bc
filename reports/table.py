"""A run summary (the plain dict of summary.json) as rows, a Markdown table, or a rich table."""

from __future__ import annotations

from typing import Any


def _fmt(x: Any, unit: str = "") -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        if unit == "%":
            return f"{100 * x:.1f} %"
        if unit == "$":
            return f"${x:,.4f}" if abs(x) < 100 else f"${x:,.2f}"
        if unit == "s":
            return f"{x * 1000:.0f} ms" if abs(x) < 1 else f"{x:.2f} s"
        return f"{x:,.4g}"
    return str(x)


def summary_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs in reading order: what a user looks at first."""
    q = s["queries"]
    lat = s["latency_s"]
    ref = s.get("references", {})
    rows = [
        ("scenario / policy", f"{s['scenario']} / {s['policy']} (seed {s['seed']})"),
        ("queries", f"{q['arrived']} arrived, {q['completed']} completed, {q['rejected']} rejected, "
                    f"{q['running']} running"),
        ("accuracy", _fmt(s["accuracy"], "%") + f"  (predicted {_fmt(s['predicted_accuracy'], '%')})"),
        ("oracle / best single model",
         f"{_fmt(ref.get('oracle_accuracy'), '%')} / {_fmt(ref.get('best_single_model_accuracy'), '%')} "
         f"({ref.get('best_single_model', '—')})"),
        ("cost (tokens)", f"{_fmt(s['cost']['total_usd'], '$')} total, "
                          f"{_fmt(s['cost']['per_query_usd'], '$')} per query"),
        ("cost (GPU time)", _fmt(s["cost"]["gpu_usd"], "$")),
        ("budget", "none set" if s["budget"].get("per_query_usd") is None else
                   f"{_fmt(s['budget']['per_query_usd'], '$')}/query; batches over: "
                   f"{s['budget']['batches_over_budget']} of {s['budget']['batches']} predicted "
                   f"({_fmt(s['budget']['overspend_usd'], '$')} over), "
                   f"{s['budget']['batches_over_budget_realised']} realised "
                   f"({_fmt(s['budget']['overspend_realised_usd'], '$')} over)"),
        ("TTFT p50 / p95 / p99", " / ".join(_fmt(lat["ttft"][k], "s") for k in ("p50", "p95", "p99"))),
        ("end-to-end p50 / p95 / p99", " / ".join(_fmt(lat["e2e"][k], "s") for k in ("p50", "p95", "p99"))),
        ("batching wait mean / p99", f"{_fmt(lat['batching_delay']['mean'], 's')} / "
                                     f"{_fmt(lat['batching_delay']['p99'], 's')}"),
        ("queue delay mean / p99", f"{_fmt(lat['queue_delay']['mean'], 's')} / "
                                   f"{_fmt(lat['queue_delay']['p99'], 's')}"),
        ("throughput", f"{s['throughput']['queries_per_s']:.2f} queries/s, "
                       f"{s['throughput']['output_tokens_per_s']:.0f} output tokens/s"),
    ]
    ps = s.get("predictor_scores") or {}
    if ps:
        rows.append(("predictor", f"{s.get('predictor', '—')}: Brier {ps.get('brier', float('nan')):.3f}, "
                                  f"AUC {ps.get('auc', float('nan')):.3f}"))
    for name, m in s["models"].items():
        rows.append(
            (f"  {name}", f"share {_fmt(m['share'], '%')}, acc {_fmt(m['accuracy'], '%')}, "
                          f"busy {_fmt(m['busy_fraction'], '%')}, slots used {_fmt(m['slot_utilisation'], '%')}, "
                          f"mean queue {m['mean_queue']:.1f}")
        )
    return rows


def summary_markdown(s: dict[str, Any]) -> str:
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {k.strip()} | {v} |" for k, v in summary_rows(s)]
    return "\n".join(lines) + "\n"
