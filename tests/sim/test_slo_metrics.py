"""SLO attainment and latency-estimator accuracy (issue 12, item 4) on hand-built recorder arrays, no
engine: every request's outcome is labelled by hand below, the shares and errors are counted from those
labels (and, for random records, from a per-request brute-force loop); then the console rows, n/a without
an SLO, and the compare report / console with and without SLO runs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from reports.build import comparison, slo_attainment, write_report
from reports.table import summary_rows
from sim.experiments.cli import console_metrics
from sim.metrics.recorder import (
    STATUS_DONE,
    STATUS_IN_FLIGHT,
    STATUS_PENDING,
    STATUS_REJECTED,
    RequestRecorder,
)
from sim.metrics.slo import estimator_section, slo_section
from sim.metrics.summary import DeploymentStats, summarize
from sim.output import dumps_summary
from sim.results import finite, slo_targets

MODELS = ("small", "big")
END = 20.0  # the run's end (a cut-off: drain false)
WARMUP = 1.0
SLO = {"ttft": 1.0, "e2e": 5.0}
NAN = math.nan

# rid: (arrival, model, status, first token, finish, predicted TTFT, predicted e2e)
#      and by hand, (TTFT outcome, e2e outcome): + met, - missed, . not judged (unknown at the cut-off)
ROWS: dict[int, tuple[tuple[float, int, int, float, float, float, float], str]] = {
    0: ((0.5, 0, STATUS_DONE, 3.5, 10.5, 1.0, 1.0), "--"),  # warm-up: in neither share (unless warmup 0)
    1: ((1.0, 0, STATUS_DONE, 1.5, 4.0, 0.375, 3.125), "++"),  # TTFT 0.5, e2e 3
    2: ((2.0, 0, STATUS_DONE, 3.5, 6.0, 1.5, 3.0), "-+"),  # TTFT 1.5, e2e 4
    3: ((3.0, 1, STATUS_DONE, 3.75, 7.5, 1.0, NAN), "++"),  # TTFT 0.75, e2e 4.5; no e2e prediction
    4: ((4.0, 1, STATUS_DONE, 5.0, 9.0, NAN, 6.0), "++"),  # exactly on both SLOs: met
    5: ((5.0, -1, STATUS_REJECTED, NAN, NAN, NAN, NAN), "--"),  # the policy refused it: no model
    6: ((6.0, 1, STATUS_REJECTED, NAN, NAN, NAN, NAN), "--"),  # too long for "big"
    7: ((10.0, 1, STATUS_IN_FLIGHT, NAN, NAN, 0.5, 2.0), ".-"),  # e2e deadline 15 ≤ 20; TTFT unknown
    8: ((17.0, 1, STATUS_IN_FLIGHT, NAN, NAN, 0.5, 2.0), ".."),  # e2e deadline 22 > 20
    9: ((19.5, -1, STATUS_PENDING, NAN, NAN, NAN, NAN), ".."),  # TTFT deadline 20.5 > 20
    10: ((18.0, -1, STATUS_PENDING, NAN, NAN, NAN, NAN), "-."),  # no token by 19 ≤ 20
    11: ((7.0, 0, STATUS_DONE, 8.5, 14.0, 0.5, 7.0), "--"),  # TTFT 1.5, e2e 7
}


def recorder(with_predictions: bool = True) -> RequestRecorder:
    rec = RequestRecorder(len(ROWS))
    pred = {m: np.full(rec.n, np.nan, dtype=np.float32) for m in ("ttft", "e2e")}
    for rid, ((arrival, model, status, first, finish, p_ttft, p_e2e), _) in ROWS.items():
        rec.arrival[rid], rec.decision[rid], rec.model[rid], rec.status[rid] = arrival, arrival, model, status
        rec.first_token[rid], rec.finish[rid], rec.start[rid] = first, finish, first
        rec.output_tokens[rid] = 10 if model >= 0 else 0
        pred["ttft"][rid], pred["e2e"][rid] = p_ttft, p_e2e
    if with_predictions:  # the dispatcher's arrays (float32, NaN = no estimate), set as it will
        rec.pred_ttft, rec.pred_e2e = pred["ttft"], pred["e2e"]  # type: ignore[attr-defined]
    return rec


def share(rids: list[int], metric: int, warm: bool = False) -> float | None:
    """Met over judged, from the hand labels (metric 0: TTFT, 1: e2e)."""
    labels = [ROWS[r][1][metric] for r in rids if warm or ROWS[r][0][0] >= WARMUP]
    judged = [x for x in labels if x != "."]
    return judged.count("+") / len(judged) if judged else None


def completed_share(rids: list[int], metric: int) -> float:
    labels = [ROWS[r][1][metric] for r in rids if ROWS[r][0][2] == STATUS_DONE and ROWS[r][0][0] >= WARMUP]
    return labels.count("+") / len(labels)


def summary(rec: RequestRecorder, slo: dict[str, float | None] | None, warmup_s: float = WARMUP) -> dict[str, Any]:
    deps = [DeploymentStats(name=f"{m}-dep", model_index=j, instances=1, max_seqs=8, gpus=1, gpu_cost_per_hour=1.0,
                            busy_time_s=1.0) for j, m in enumerate(MODELS)]
    batches = {"sizes": [], "budget_per_query": None, "count": 0, "over_budget": 0, "overspend_usd": 0.0,
               "infeasible": 0, "floor_misses": 0, "capacity_refusals": 0, "mean_size": 0.0}
    empty = np.zeros((0, len(deps)))
    return finite(summarize(rec=rec, model_names=MODELS, deployments=deps, sample_t=np.zeros(0), sample_queued=empty,
                            sample_running=empty, end_time=END, arrivals_end=19.5, warmup_s=warmup_s,
                            batches=batches, references={}, slo=slo))


BY_MODEL = {"small": [r for r in ROWS if ROWS[r][0][1] == 0], "big": [r for r in ROWS if ROWS[r][0][1] == 1]}


def test_attainment_overall_and_per_model_from_hand_labels() -> None:
    s = summary(recorder(), SLO)["slo"]
    assert s["ttft_s"] == 1.0 and s["e2e_s"] == 5.0
    assert s["attainment_ttft"] == pytest.approx(3 / 8) == pytest.approx(share(list(ROWS), 0))
    assert s["attainment_e2e"] == pytest.approx(4 / 8) == pytest.approx(share(list(ROWS), 1))
    assert s["attainment_ttft_of_completed"] == pytest.approx(3 / 5) == pytest.approx(completed_share(list(ROWS), 0))
    assert s["attainment_e2e_of_completed"] == pytest.approx(4 / 5) == pytest.approx(completed_share(list(ROWS), 1))
    models = summary(recorder(), SLO)["models"]
    for name, rids in BY_MODEL.items():
        m = models[name]["slo"]
        assert m["e2e_s"] == 5.0
        assert m["attainment_ttft"] == pytest.approx(share(rids, 0))
        assert m["attainment_e2e"] == pytest.approx(share(rids, 1))
        assert m["attainment_ttft_of_completed"] == pytest.approx(completed_share(rids, 0))
    # spelled out: small = requests 1, 2, 11; big = 3, 4, 6 (rejected: a miss), 7 (e2e miss), 8 (open)
    assert models["small"]["slo"]["attainment_e2e"] == pytest.approx(2 / 3)
    assert models["big"]["slo"]["attainment_ttft"] == pytest.approx(2 / 3)
    assert models["big"]["slo"]["attainment_e2e"] == pytest.approx(2 / 4)
    assert models["big"]["slo"]["attainment_e2e_of_completed"] == 1.0


def test_warmup_is_the_latency_stats_rule() -> None:
    s = summary(recorder(), SLO, warmup_s=0.0)["slo"]  # request 0 (both missed) now counts
    assert s["attainment_ttft"] == pytest.approx(share(list(ROWS), 0, warm=True)) == pytest.approx(3 / 9)
    assert s["attainment_e2e"] == pytest.approx(4 / 9)
    assert s["attainment_e2e_of_completed"] == pytest.approx(4 / 6)


def test_unset_slo_is_null_everywhere_and_one_set_slo_alone() -> None:
    for slo in (None, {}, {"ttft": None, "e2e": None}):
        s = summary(recorder(), slo)
        assert all(v is None for v in s["slo"].values())
        assert all(v is None for m in s["models"].values() for v in m["slo"].values())
    only = summary(recorder(), {"ttft": None, "e2e": 5.0})["slo"]
    assert only["ttft_s"] is None and only["attainment_ttft"] is None and only["attainment_ttft_of_completed"] is None
    assert only["attainment_e2e"] == pytest.approx(0.5)


def test_rejecting_cannot_raise_the_headline() -> None:
    """Turning a completed request that missed the SLO into a rejection leaves the headline unchanged
    (a miss either way) and raises only the completed-only share."""
    before = summary(recorder(), SLO)["slo"]
    rec = recorder()
    rec.status[11] = STATUS_REJECTED
    after = summary(rec, SLO)["slo"]
    assert after["attainment_e2e"] == before["attainment_e2e"]
    assert after["attainment_e2e_of_completed"] == 1.0 > before["attainment_e2e_of_completed"]


def test_estimator_mape_and_bias_from_hand_errors() -> None:
    e = summary(recorder(), SLO)["estimator"]
    # e2e pairs (completed, steady, predicted): 1 (3.125 vs 3), 2 (3 vs 4), 4 (6 vs 5), 11 (7 vs 7)
    errs, real = np.array([0.125, -1.0, 1.0, 0.0]), np.array([3.0, 4.0, 5.0, 7.0])
    assert e["n"] == 4
    assert e["e2e_bias_s"] == pytest.approx(errs.mean())
    assert e["e2e_mape"] == pytest.approx((0.125 / 3 + 1 / 4 + 1 / 5 + 0) / 4)
    # TTFT pairs: 1 (0.375 vs 0.5), 2 (1.5 vs 1.5), 3 (1 vs 0.75), 11 (0.5 vs 1.5); 7, 8 never finished
    assert e["ttft_bias_s"] == pytest.approx((-0.125 + 0 + 0.25 - 1.0) / 4)
    assert e["ttft_mape"] == pytest.approx((0.25 + 0 + 1 / 3 + 2 / 3) / 4)
    assert np.abs(errs / real).mean() == pytest.approx(e["e2e_mape"])
    big = summary(recorder(), SLO)["models"]["big"]["estimator"]
    assert big["n"] == 1 and big["e2e_bias_s"] == pytest.approx(1.0) and big["e2e_mape"] == pytest.approx(0.2)


def test_estimator_null_without_predictions() -> None:
    for rec in (recorder(with_predictions=False), recorder()):
        if getattr(rec, "pred_e2e", None) is not None:  # all NaN, as none kept (None) reads
            rec.pred_e2e[:] = np.nan  # type: ignore[attr-defined]
            rec.pred_ttft[:] = np.nan  # type: ignore[attr-defined]
        e = summary(rec, None)["estimator"]
        assert e == {"e2e_mape": None, "e2e_bias_s": None, "ttft_mape": None, "ttft_bias_s": None, "n": 0}


def test_zero_realised_latency_is_in_the_bias_not_the_mape() -> None:
    rec = RequestRecorder(2)
    rec.arrival[:] = rec.first_token[:] = [0.0, 1.0]  # first token at arrival: TTFT 0
    rec.finish[:] = [2.0, 3.0]
    rec.status[:] = STATUS_DONE
    rec.pred_ttft = np.array([0.5, 0.25], dtype=np.float32)  # type: ignore[attr-defined]
    rec.pred_e2e = np.array([2.0, 2.0], dtype=np.float32)  # type: ignore[attr-defined]
    lat = {"ttft": rec.first_token - rec.arrival, "e2e": rec.finish - rec.arrival}
    e = estimator_section(rec, np.ones(2, dtype=bool), lat)
    assert e["ttft_bias_s"] == pytest.approx(0.375) and e["ttft_mape"] is None
    assert e["e2e_mape"] == 0.0 and e["e2e_bias_s"] == 0.0 and e["n"] == 2


def test_estimates_are_judged_from_the_decision_and_slos_from_arrival() -> None:
    """A batching window delays request 1's decision by 0.5 s: the estimator (which predicts from the
    decision) is judged on 2.5 s, not 3 s; the SLO still on the user's 3 s from arrival."""
    rec = recorder()
    rec.decision[1] = 1.5
    rec.pred_e2e[1] = 2.5  # type: ignore[attr-defined]
    s = summary(rec, SLO)
    small = s["models"]["small"]["estimator"]  # pairs 1 (2.5 vs 2.5), 2 (3 vs 4), 11 (7 vs 7)
    assert small["e2e_bias_s"] == pytest.approx(-1 / 3) and small["e2e_mape"] == pytest.approx(0.25 / 3)
    assert small["ttft_bias_s"] == pytest.approx((0.375 - 0.0 + 0 - 1.0) / 3)  # TTFT from decision: 0 s
    assert s["slo"]["attainment_e2e"] == pytest.approx(4 / 8)
    rec.finish[1] = 6.25  # 4.75 s after the decision, 5.25 s after arrival: a miss
    assert summary(rec, SLO)["slo"]["attainment_e2e"] == pytest.approx(3 / 8)


def brute_force(arrival: np.ndarray, status: np.ndarray, lat: np.ndarray, slo: float, end: float,
                in_flight_known: bool) -> tuple[float | None, float | None]:
    """(headline, of completed), one request at a time."""
    met = judged = done = done_met = 0
    for a, st, x in zip(arrival.tolist(), status.tolist(), lat.tolist(), strict=True):
        if st == STATUS_DONE:
            ok = x <= slo
            met, judged, done, done_met = met + ok, judged + 1, done + 1, done_met + ok
        elif st == STATUS_REJECTED:
            judged += 1
        elif (st == STATUS_PENDING or in_flight_known) and a + slo <= end:
            judged += 1
    return (met / judged if judged else None), (done_met / done if done else None)


@pytest.mark.parametrize("seed", range(20))
def test_random_records_match_a_per_request_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 40))
    rec = RequestRecorder(n)
    rec.arrival[:] = np.round(rng.uniform(0, 10, n), 1)
    rec.status[:] = rng.choice([STATUS_PENDING, STATUS_IN_FLIGHT, STATUS_DONE, STATUS_REJECTED], n)
    done = rec.status == STATUS_DONE
    rec.first_token[done] = rec.arrival[done] + np.round(rng.exponential(1.0, done.sum()), 1)
    rec.finish[done] = rec.first_token[done] + np.round(rng.exponential(3.0, done.sum()), 1)
    lat = {"ttft": rec.first_token - rec.arrival, "e2e": rec.finish - rec.arrival}
    targets = {"ttft": float(rng.choice([0.5, 1.0])), "e2e": float(rng.choice([2.0, 4.0]))}
    end = float(rng.choice([8.0, 12.0]))
    s = slo_section(rec, np.ones(n, dtype=bool), lat, targets, end)
    for m in ("ttft", "e2e"):
        head, comp = brute_force(rec.arrival, rec.status, lat[m], targets[m], end, m == "e2e")
        assert s[f"attainment_{m}"] == pytest.approx(head)
        assert s[f"attainment_{m}_of_completed"] == pytest.approx(comp)
    if not ((rec.status == STATUS_PENDING) | (rec.status == STATUS_IN_FLIGHT)).any() and n:
        # drained: the headline is the completed-only share rescaled by completed / (completed + rejected)
        served = done.sum() / n
        assert s["attainment_e2e"] == pytest.approx((s["attainment_e2e_of_completed"] or 0.0) * served)


def test_summary_json_and_scenario_targets() -> None:
    json.loads(dumps_summary(summary(recorder(), SLO)))
    assert slo_targets(SimpleNamespace(router=SimpleNamespace())) == {"ttft": None, "e2e": None}  # type: ignore[arg-type]
    sc = SimpleNamespace(router=SimpleNamespace(slo=SimpleNamespace(ttft_s=None, e2e_s=8.0)))
    assert slo_targets(sc) == {"ttft": None, "e2e": 8.0}  # type: ignore[arg-type]


def test_console_rows() -> None:
    rows = dict(summary_rows(summary(recorder(), SLO)))
    assert rows["SLO attainment"] == ("TTFT ≤ 1.00 s: 37.5 % (60.0 % of completed), "
                                      "end-to-end ≤ 5.00 s: 50.0 % (80.0 % of completed)")
    # e2e bias 0.03125 s, MAPE 12.29 %; TTFT bias -0.21875 s, MAPE 31.25 %
    assert rows["latency estimate"] == ("end-to-end MAPE 12.3 %, bias +31 ms; TTFT MAPE 31.2 %, bias -219 ms "
                                        "(over 4 requests)")
    assert rows["  small"].endswith(", SLO TTFT 33.3 %, e2e 66.7 %")
    assert rows["  big"].endswith(", SLO TTFT 66.7 %, e2e 50.0 %")


def test_console_rows_na_without_slo_or_predictions() -> None:
    rows = dict(summary_rows(summary(recorder(with_predictions=False), None)))
    assert rows["SLO attainment"] == "n/a (no SLO set)"
    assert rows["latency estimate"] == "n/a (no predictions)"
    assert "SLO" not in rows["  big"]
    only = dict(summary_rows(summary(recorder(), {"e2e": 5.0})))
    assert only["SLO attainment"] == "end-to-end ≤ 5.00 s: 50.0 % (80.0 % of completed)"
    assert only["  big"].endswith(", SLO e2e 50.0 %")
    old = dict(summary_rows({"latency_s": {}}))  # a summary written before these sections existed
    assert old["SLO attainment"] == "n/a (no SLO set)" and old["latency estimate"] == "n/a (no predictions)"


def results(with_slo: tuple[str, ...]) -> pd.DataFrame:
    """Two configurations × 3 seeds; the ones in ``with_slo`` ran with an e2e SLO of 10 s."""
    rows = []
    for k, cfg in enumerate(("blind", "aware")):
        for seed in (1, 2, 3):
            att = 0.5 + 0.2 * k + seed / 100 if cfg in with_slo else None
            rows.append({"policy": cfg, "config": cfg, "seed": seed, "accuracy": 0.8 - seed / 100,
                         "cost.total_usd": 1.0, "slo.e2e_s": 10.0 if cfg in with_slo else None,
                         "slo.ttft_s": None, "slo.attainment_e2e": att, "slo.attainment_ttft": None,
                         "slo.attainment_e2e_of_completed": None if att is None else att + 0.1,
                         "estimator.e2e_mape": 0.25 if cfg in with_slo else None})
    return pd.DataFrame(rows)


def test_compare_report_with_and_without_slo_runs() -> None:
    exp = SimpleNamespace(results=results(("aware",)), manifest={"baseline": "blind"}, notes=[])
    table, section = comparison(exp)  # type: ignore[arg-type]
    cells = {(r[0], r[1]): r[3] for r in section.tables[0].rows}
    assert cells[("aware", "slo.attainment_e2e")] == "72.00 %" and cells[("blind", "slo.attainment_e2e")] == "n/a"
    assert "slo.attainment_ttft" not in set(table["metric"])  # no run set a TTFT SLO
    att = slo_attainment(exp)  # type: ignore[arg-type]
    assert att is not None
    t = att.tables[0]
    assert t.headers[:6] == ["configuration", "seeds", "end-to-end SLO", "attained", "95 % CI", "of completed"]
    assert "TTFT SLO" not in t.headers
    by = {r[0]: r for r in t.rows}
    half = 0.01 * 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) × sd 0.01 / √3
    assert by["aware"][2:6] == ["10.000 s", "72.00 %", f"[{100 * (0.72 - half):.2f} %, {100 * (0.72 + half):.2f} %]",
                                "82.00 %"]
    assert by["aware"][-1] == "25.00 %"
    assert by["blind"][2:] == ["n/a", "n/a", "—", "n/a", "n/a"]
    none = SimpleNamespace(results=results(()), manifest={"baseline": "blind"}, notes=[])
    assert slo_attainment(none) is None  # type: ignore[arg-type]
    table, section = comparison(none)  # type: ignore[arg-type]
    assert not any(m.startswith("slo.") for m in table["metric"])
    assert "No run set an SLO (router.slo): attainment not compared." in section.paragraphs


def test_console_metrics_gain_the_slo_column_only_when_present() -> None:
    assert "slo.attainment_e2e" in console_metrics(results(("aware",)))
    assert "slo.attainment_e2e" not in console_metrics(results(()))
    assert "slo.attainment_e2e" not in console_metrics(results(()).drop(columns="slo.attainment_e2e"))
    assert "accuracy" in console_metrics(results(()))


def test_report_files_show_the_slo_table(tmp_path: Path) -> None:
    """A compare folder (no run folders: figures are skipped with a note) reports end to end."""
    res = results(("aware",)).drop(columns="config").assign(run_dir="runs/missing")
    res.to_parquet(tmp_path / "results.parquet", index=False)
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "compare", "baseline": "blind"}), encoding="utf-8")
    write_report(tmp_path)
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "SLO attainment" in md and "72.00 %" in md
    assert "slo.attainment_e2e" in (tmp_path / "comparison.csv").read_text(encoding="utf-8")
