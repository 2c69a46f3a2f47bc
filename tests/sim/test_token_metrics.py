"""Per-token metrics (issue 10, item 6) on hand-built records and step logs, no engine needed: TPOT per
request and in the summary, TBT from merged step logs against the brute-force token sample, preemption
and prefix-cache counters, n/a where a metric does not apply, and how the console / report show them."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from reports.build import comparison
from reports.table import summary_rows
from sim.engine.request import Request
from sim.engine.steplog import StepLog, step_log_of
from sim.metrics.recorder import STATUS_DONE, STATUS_IN_FLIGHT, RequestRecorder
from sim.metrics.summary import DeploymentStats, summarize
from sim.output import dumps_summary
from sim.results import finite
from sim.tables import frame

MODELS = ("small", "big")


def finished(rec: RequestRecorder, rid: int, *, model: int, arrival: float, first: float, finish: float,
             out: int, preemptions: int = 0, recomputed: int = 0, cached: int = 0,
             max_gap: float = math.nan, prompt: int = 100) -> Request:
    """Route request ``rid`` to ``model`` and finish it through the recorder, as the engine would."""
    rec.arrival[rid] = rec.decision[rid] = arrival
    rec.model[rid] = model
    rec.output_tokens[rid] = out
    rec.status[rid] = STATUS_IN_FLIGHT
    req = Request(rid, prompt, out)
    req.instance, req.start_time, req.first_token_time, req.finish_time = model, arrival, first, finish
    req.preemptions, req.recomputed_tokens, req.cached_tokens, req.max_gap = preemptions, recomputed, cached, max_gap
    rec.on_finish(req)
    return req


def deployment(name: str, model: int, log: StepLog | None, prefix_cache: bool = False) -> DeploymentStats:
    return DeploymentStats(name=name, model_index=model, instances=1, max_seqs=8, gpus=1, gpu_cost_per_hour=1.0,
                           busy_time_s=1.0, step_log=log, prefix_cache=prefix_cache)


def run_summary(rec: RequestRecorder, deps: list[DeploymentStats], prompt: np.ndarray | None,
                warmup_s: float = 0.0) -> dict[str, Any]:
    batches = {"sizes": [], "budget_per_query": None, "count": 0, "over_budget": 0, "overspend_usd": 0.0,
               "infeasible": 0, "floor_misses": 0, "capacity_refusals": 0, "mean_size": 0.0}
    empty = np.zeros((0, len(deps)))
    return summarize(rec=rec, model_names=MODELS, deployments=deps, sample_t=np.zeros(0), sample_queued=empty,
                     sample_running=empty, end_time=100.0, arrivals_end=50.0, warmup_s=warmup_s, batches=batches,
                     references={}, prompt_tokens=prompt)


def expand(entries: list[tuple[float, float, int, int]], gaps: list[float]) -> np.ndarray:
    parts = [np.repeat(a + s * np.arange(k, dtype=np.float64), n) for a, s, k, n in entries]
    return np.concatenate([*parts, np.asarray(gaps, dtype=np.float64)])


def logs() -> tuple[StepLog, StepLog, list[tuple[float, float, int, int]], list[float]]:
    """Two instances' logs of model "big" (merged per deployment by step_log_of) and their raw entries."""
    e1 = [(0.02, 1e-4, 30, 4), (0.5, 0.0, 1, 0), (0.03, 0.0, 10, 2)]  # a 0.5 s prefill-only step, no token
    e2 = [(0.021, 2e-4, 50, 1), (0.04, 1e-3, 5, 7)]
    g1, g2 = [0.9], [0.07, 0.2]  # tokens delayed by a preemption / a long prefill
    a, b = StepLog(), StepLog()
    for log, ents, gaps in ((a, e1, g1), (b, e2, g2)):
        for e in ents:
            log.add_steps(*e)
        for g in gaps:
            log.add_gap(g)
    return a, b, e1 + e2, g1 + g2


@pytest.fixture()
def case() -> tuple[RequestRecorder, np.ndarray, dict[str, Any]]:
    """Model 0 ("small") on a reserve deployment; model 1 ("big") on a paged, prefix-caching one with two
    instances. Request 5 is still running, request 6 was rejected: neither counts anywhere."""
    rec = RequestRecorder(7)
    prompt = np.array([100, 200, 400, 300, 800, 50, 60])
    finished(rec, 0, model=0, arrival=0.0, first=1.0, finish=3.0, out=5, prompt=100)  # TPOT 0.5
    finished(rec, 1, model=0, arrival=1.0, first=2.0, finish=2.0, out=1, prompt=200)  # one token: no TPOT
    finished(rec, 2, model=1, arrival=2.0, first=2.5, finish=4.5, out=11, preemptions=2, recomputed=430,
             cached=0, max_gap=0.9, prompt=400)  # TPOT 0.2
    finished(rec, 3, model=1, arrival=3.0, first=3.5, finish=4.0, out=6, cached=256, max_gap=0.12,
             prompt=300)  # TPOT 0.1
    finished(rec, 4, model=1, arrival=4.0, first=4.2, finish=6.2, out=41, preemptions=1, recomputed=810,
             cached=512, max_gap=0.3, prompt=800)  # TPOT 0.05
    rec.arrival[5], rec.model[5], rec.status[5], rec.output_tokens[5] = 5.0, 1, STATUS_IN_FLIGHT, 9
    rec.arrival[6], rec.model[6], rec.status[6] = 6.0, -1, 3
    a, b, entries, gaps = logs()
    big = step_log_of([SimpleNamespace(step_log=a), SimpleNamespace(step_log=b)])
    deps = [deployment("small-a100", 0, step_log_of([SimpleNamespace()])), deployment("big-h100", 1, big, True)]
    return rec, prompt, {"deps": deps, "sample": expand(entries, gaps), "entries": entries}


def test_request_table_has_tpot_and_scheduler_columns(case: Any) -> None:
    rec, prompt, _ = case
    df = frame(rec.columns(query_ids=np.arange(7), task=np.zeros(7, dtype=int), task_names=("t",), prompt_tokens=prompt,
                           model_names=MODELS))
    tpot = df["tpot_s"].to_numpy()
    np.testing.assert_allclose(tpot[[0, 2, 3, 4]], [0.5, 0.2, 0.1, 0.05], rtol=1e-12)
    assert np.isnan(tpot[[1, 5, 6]]).all()  # one-token output, running, rejected
    assert list(df["preemptions"]) == [0, 0, 2, 0, 1, 0, 0]
    assert list(df["recomputed_tokens"]) == [0, 0, 430, 0, 810, 0, 0]
    assert list(df["cached_tokens"]) == [0, 0, 0, 256, 512, 0, 0]
    np.testing.assert_allclose(df["max_tbt_s"].to_numpy()[2:5], [0.9, 0.12, 0.3], rtol=1e-6)
    assert np.isnan(df["max_tbt_s"].to_numpy()[[0, 1, 5, 6]]).all()  # reserve leaves it NaN; never finished
    assert {c: str(df[c].dtype) for c in ("preemptions", "recomputed_tokens", "cached_tokens", "max_tbt_s")} == {
        "preemptions": "int32", "recomputed_tokens": "int32", "cached_tokens": "int32", "max_tbt_s": "float32"}
    assert rec.status[4] == STATUS_DONE


def test_summary_tpot_tbt_and_counters(case: Any) -> None:
    rec, prompt, c = case
    s = run_summary(rec, c["deps"], prompt)
    tp = s["latency_s"]["tpot"]
    expected = np.array([0.5, 0.2, 0.1, 0.05])
    assert tp["mean"] == pytest.approx(expected.mean())
    assert [tp[f"p{p}"] for p in (50, 95, 99)] == pytest.approx(np.percentile(expected, [50, 95, 99]).tolist())
    tbt = s["latency_s"]["tbt"]
    sample = c["sample"]  # the reserve deployment has no step log: only model "big" contributes tokens
    for p in (50, 95, 99):
        assert tbt[f"p{p}"] == np.quantile(sample, p / 100, method="inverted_cdf")
    assert tbt["mean"] == pytest.approx(sample.mean(), rel=1e-12)
    assert tbt["max_step"] == 0.5  # the token-less prefill step still is the longest step
    assert tbt["p99"] <= max(tbt["max_step"], max(sample))
    sched = s["scheduler"]
    assert sched["preemptions"] == 3 and sched["recomputed_tokens"] == 430 + 810
    # hit rates over the caching model's admitted requests 2, 3, 4 (not the reserve model's, not 5)
    assert sched["prefix_cache_hit_rate_tokens"] == pytest.approx((256 + 512) / (400 + 300 + 800))
    assert sched["prefix_cache_hit_rate_requests"] == pytest.approx(2 / 3)


def test_per_model_sections_and_not_applicable(case: Any) -> None:
    rec, prompt, c = case
    s = run_summary(rec, c["deps"], prompt)
    small, big = s["models"]["small"], s["models"]["big"]
    assert small["latency_s"]["tpot"]["mean"] == pytest.approx(0.5)  # TPOT exists under reserve too
    assert all(v is None for v in small["latency_s"]["tbt"].values())
    assert all(v is None for v in small["scheduler"].values())
    assert big["latency_s"]["tbt"] == s["latency_s"]["tbt"]  # the only paged model carries all tokens
    assert big["latency_s"]["tpot"]["p50"] == pytest.approx(np.percentile([0.2, 0.1, 0.05], 50))
    assert big["scheduler"] == s["scheduler"]
    # without the prompt tokens the token hit rate cannot be computed; the request rate still can
    s2 = run_summary(rec, c["deps"], None)
    assert s2["scheduler"]["prefix_cache_hit_rate_tokens"] is None
    assert s2["scheduler"]["prefix_cache_hit_rate_requests"] == pytest.approx(2 / 3)


def test_reserve_only_run_reports_na_and_serialises(case: Any) -> None:
    rec, prompt, c = case
    deps = [deployment("small-a100", 0, None), deployment("big-h100", 1, None)]
    s = finite(run_summary(rec, deps, prompt))
    assert all(v is None for v in s["latency_s"]["tbt"].values())
    assert all(v is None for v in s["scheduler"].values())
    assert s["latency_s"]["tpot"]["p50"] is not None
    json.loads(dumps_summary(s))  # no NaN reaches summary.json
    rows = dict(summary_rows(s))
    assert rows["TBT p50 / p95 / p99"] == "n/a / n/a / n/a (longest step n/a)"
    assert rows["preemptions"] == "n/a (n/a tokens recomputed)"
    assert rows["prefix cache hits"] == "n/a of prompt tokens, n/a of requests"
    assert "n/a" not in rows["TPOT p50 / p95 / p99"]


def test_warmup_excludes_tpot_but_not_counters(case: Any) -> None:
    rec, prompt, c = case
    s = run_summary(rec, c["deps"], prompt, warmup_s=3.5)  # only request 4 arrives after warm-up
    assert s["latency_s"]["tpot"]["p99"] == pytest.approx(0.05)
    assert s["scheduler"]["preemptions"] == 3


def test_console_rows_show_the_values(case: Any) -> None:
    rec, prompt, c = case
    rows = dict(summary_rows(finite(run_summary(rec, c["deps"], prompt))))
    assert rows["TPOT p50 / p95 / p99"].startswith("150 ms / ")
    assert rows["TBT p50 / p95 / p99"].endswith("(longest step 500 ms)")
    assert rows["preemptions"] == "3 (1,240 tokens recomputed)"
    assert rows["prefix cache hits"] == f"{100 * 768 / 1500:.1f} % of prompt tokens, 66.7 % of requests"


def test_steplog_of_merges_instances_and_is_none_for_reserve() -> None:
    a, b, entries, gaps = logs()
    merged = step_log_of([SimpleNamespace(step_log=a), SimpleNamespace(step_log=None), SimpleNamespace(step_log=b)])
    assert merged is not None and merged.tokens == expand(entries, gaps).size
    assert step_log_of([SimpleNamespace(), SimpleNamespace(step_log=None)]) is None


def test_compare_table_shows_na_or_leaves_out_inapplicable_metrics() -> None:
    """A paged and a reserve configuration: TBT rows exist, n/a for the reserve one; hit rates, which
    neither has, are left out with a note."""
    rows = [{"policy": cfg, "config": cfg, "seed": seed, "accuracy": 0.5 + seed / 100, "latency_s.tpot.p99": 0.03,
             "latency_s.tbt.p99": 0.02 + seed / 1000 if cfg == "paged" else None,
             "scheduler.preemptions": 4.0 if cfg == "paged" else None,
             "scheduler.prefix_cache_hit_rate_tokens": None}
            for cfg in ("paged", "reserve") for seed in (1, 3)]
    exp = SimpleNamespace(results=pd.DataFrame(rows), manifest={"baseline": "paged"}, notes=[])
    table, section = comparison(exp)  # type: ignore[arg-type]
    assert "scheduler.prefix_cache_hit_rate_tokens" not in set(table["metric"])
    assert any("not compared: scheduler.prefix_cache_hit_rate_tokens" in p for p in section.paragraphs)
    cells = {(r[0], r[1]): r[3] for r in section.tables[0].rows}
    assert cells[("reserve", "latency_s.tbt.p99")] == "n/a" and cells[("reserve", "scheduler.preemptions")] == "n/a"
    assert cells[("paged", "latency_s.tbt.p99")] == "0.022 s"
    assert cells[("paged", "scheduler.preemptions")] == "4"


def test_tbt_cache_gives_the_uncached_statistics_once_per_union_and_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    """A summary computes each union's TBT once (a one-model cluster's per-model TBT is the overall one)
    and each part's sorted sample once (a part is in its model's union and the cluster's): cached answers
    equal fresh ones, differ for another union or order, and a caller cannot alter them."""
    from sim.engine import steplog
    from sim.metrics.tokens import TbtCache, tbt_stats

    a, b, c = StepLog(), StepLog(), StepLog()
    a.add_steps(0.01, 0.001, 50, 3)
    a.add_gap(0.2, 2)
    b.add_steps(0.02, 0.0, 10, 4)
    c.add_steps(0.005, 0.002, 30, 2)
    calls: list[str] = []
    real_q, real_sample = steplog.StepLogs.quantiles, steplog._Sample.__init__
    monkeypatch.setattr(steplog.StepLogs, "quantiles",
                        lambda self, qs, samples=None: calls.append("q") or real_q(self, qs, samples))

    def sample(self: Any, log: StepLog) -> None:
        calls.append("s")
        real_sample(self, log)

    monkeypatch.setattr(steplog._Sample, "__init__", sample)
    fresh = {key: tbt_stats(logs) for key, logs in (("ab", [a, b]), ("ba", [b, a]), ("a", [a]), ("abc", [a, b, c]))}
    calls.clear()
    cache = TbtCache()
    first = tbt_stats([a, b, None], cache)
    again = tbt_stats([a, None, b], cache)
    assert again == first == fresh["ab"] and calls == ["q", "s", "s"]  # one union, two samples
    again["p50"] = -1.0
    assert tbt_stats([a, b], cache)["p50"] == first["p50"]
    assert tbt_stats([b, a], cache) == fresh["ba"] and tbt_stats([a], cache) == fresh["a"]
    assert tbt_stats([a, b, c], cache) == fresh["abc"]
    assert calls.count("q") == 4 and calls.count("s") == 3  # every part's sample built once
