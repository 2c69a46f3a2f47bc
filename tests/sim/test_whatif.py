"""``llmsim whatif``: a doubled arrival rate against Erlang C, paired deltas against per-seed differences
computed by hand, determinism, common random numbers, bad input refused before anything is written, and
the folder and report it leaves."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from typer.testing import CliRunner

from reports.whatif import WHATIF_METRICS, whatif_table
from sim.cli import app
from tests.sim.conftest import SCENARIOS, cli
from tests.sim.test_queueing_theory import erlang_c_wait

runner = CliRunner()






def mmc_at(tmp_path: Path, rate: float, queries: int) -> Path:
    """``mmc_validation.yaml`` (M/M/4, mean service 1 s) at another arrival rate and length."""
    data = yaml.safe_load((SCENARIOS / "mmc_validation.yaml").read_text())
    data["workload"]["arrivals"]["rate"] = rate
    data.update(num_queries=queries, warmup_s=200)
    data["outputs"]["latency_estimates"] = False
    path = tmp_path / "mmc.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_doubling_the_arrival_rate_raises_queueing_as_erlang_c_predicts(tmp_path: Path) -> None:
    # M/M/4 with mu = 1: rho 0.4 -> 0.8 multiplies the mean wait by ~20 (Erlang C), not by 2.
    out = tmp_path / "wi"
    res = cli("whatif", str(mmc_at(tmp_path, 1.6, 20_000)), "--set", "workload.arrivals.rate=3.2",
              "--seeds", "3", "--out", str(out), "--jobs", "2")
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "whatif.csv").set_index("metric")
    q = table.loc["latency_s.queue_delay.mean"]
    before, after = erlang_c_wait(1.6, 1.0, 4), erlang_c_wait(3.2, 1.0, 4)
    assert abs(q["baseline_mean"] - before) / before < 0.3, (q["baseline_mean"], before)
    assert abs(q["changed_mean"] - after) / after < 0.2, (q["changed_mean"], after)
    assert q["delta_ci_lo"] > 0  # the rise is significant, not noise
    assert abs(q["delta"] - (after - before)) / (after - before) < 0.2
    # throughput follows the offered load (nothing is lost below saturation)
    thr = table.loc["throughput.queries_per_s"]
    assert thr["changed_mean"] / thr["baseline_mean"] == pytest.approx(2.0, rel=0.03)


def test_paired_deltas_are_the_per_seed_differences(scenario_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "wi"
    res = cli("whatif", str(scenario_file), "--set", "workload.arrivals.rate=8", "--set",
              "deployments.1.max_seqs=4", "--seeds", "4", "--out", str(out), "--jobs", "1")
    assert res.exit_code == 0, res.output
    results = pd.read_parquet(out / "results.parquet")
    table = whatif_table(results).set_index("metric")
    checked = 0
    for metric, row in table.iterrows():
        wide = results.pivot(index="seed", columns="policy", values=metric).astype(float)
        d = (wide["changed"] - wide["baseline"]).to_numpy()
        assert row["pairs"] == len(d) == 4
        assert row["delta"] == pytest.approx(d.mean(), abs=1e-12)
        assert row["baseline_mean"] == pytest.approx(wide["baseline"].mean(), abs=1e-12)
        half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
        assert row["delta_ci_hi"] - row["delta"] == pytest.approx(half, abs=1e-12)
        checked += 1
    assert checked >= 8
    # the CSV the command wrote is this table
    written = pd.read_csv(out / "whatif.csv").set_index("metric")
    assert np.allclose(written["delta"], table["delta"].astype(float), equal_nan=True)


def test_a_whatif_is_deterministic_and_shares_the_workload(scenario_file: Path, tmp_path: Path) -> None:
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        res = cli("whatif", str(scenario_file), "--set", "router.policy=cheapest", "--seeds", "2",
                  "--out", str(out), "--jobs", "1")
        assert res.exit_code == 0, res.output
    a, b = (pd.read_csv(o / "whatif.csv") for o in outs)
    pd.testing.assert_frame_equal(a, b)
    results = pd.read_parquet(outs[0] / "results.parquet")
    for _seed, rows in results.groupby("seed"):
        base, changed = (pd.read_parquet(outs[0] / d / "requests.parquet") for d in rows["run_dir"])
        pd.testing.assert_series_equal(base["arrival_s"], changed["arrival_s"])
        pd.testing.assert_series_equal(base["query_id"], changed["query_id"])
        assert (changed["model"] == "small").all() and not (base["model"] == "small").all()


def test_the_folder_and_report(scenario_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "wi"
    res = cli("whatif", str(scenario_file), "--set", "router.window_s=0", "--seeds", "2", "--out", str(out),
              "--jobs", "1", "-q")
    assert res.exit_code == 0, res.output
    assert res.output.strip() == str(out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["baseline"] == "baseline" and manifest["seeds"] == [3, 4]
    assert manifest["whatif"]["changes"] == [{"field": "router.window_s", "baseline": 1.0, "changed": 0.0}]
    assert "llmsim whatif" in manifest["command"] and "router.window_s=0" in manifest["command"]
    results = pd.read_parquet(out / "results.parquet")
    assert sorted(zip(results["policy"], results["seed"], strict=True)) == [
        ("baseline", 3), ("baseline", 4), ("changed", 3), ("changed", 4)]
    for run_dir in results["run_dir"]:
        assert (out / run_dir / "summary.json").is_file()
    md = (out / "report.md").read_text()
    assert "## What-if" in md and "| router.window_s | 1.0 | 0.0 |" in md and "## Comparison" in md
    assert "What-if" in (out / "report.html").read_text()
    labels = set(pd.read_csv(out / "whatif.csv")["label"])
    assert {"accuracy", "token cost", "GPU cost", "TTFT p95", "e2e p99", "throughput (queries/s)",
            "rejected"} <= labels <= set(WHATIF_METRICS.values())
    assert "e2e SLO attained" not in labels  # no router.slo: no attainment row
    # rerunning the same command resumes: nothing new is simulated, the same table
    before = (out / "whatif.csv").read_text()
    res = cli("whatif", str(scenario_file), "--set", "router.window_s=0", "--seeds", "2", "--out", str(out),
              "--jobs", "1")
    assert res.exit_code == 0 and "delta" in res.output
    assert (out / "whatif.csv").read_text() == before
    # `llmsim report` on the folder later keeps the what-if section and table
    (out / "report.md").unlink()
    (out / "whatif.csv").unlink()
    res = cli("report", str(out))
    assert res.exit_code == 0, res.output
    assert "## What-if" in (out / "report.md").read_text()
    assert (out / "whatif.csv").read_text() == before


def test_slo_attainment_appears_when_a_side_sets_an_slo(scenario_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "wi"
    res = cli("whatif", str(scenario_file), "--set", "router.slo={e2e_s: 30}", "--seeds", "2", "--out", str(out),
              "--jobs", "1")
    assert res.exit_code == 0, res.output
    row = pd.read_csv(out / "whatif.csv").set_index("label").loc["e2e SLO attained"]
    assert math.isnan(row["baseline_mean"]) and math.isnan(row["delta"])  # the baseline has no SLO
    assert 0 <= row["changed_mean"] <= 1


@pytest.mark.parametrize(("sets", "named"), [
    ([], "nothing to compare"),
    (["router.foo=1"], "--set router.foo=1"),
    (["workload.arrivals.rate=abc"], "--set workload.arrivals.rate=abc"),
    (["deployments.1.max_seqs=-3"], "--set deployments.1.max_seqs=-3"),
    (["router.window_s=2", "router.policy=nope"], "--set router.policy=nope"),
    (["nokey"], "--set"),
    (["seed=5"], "--seeds"),
    (["router.window_s=1.0"], "changes nothing"),
    (["router.window_s=0", "router.window_s=2"], "set twice"),
])
def test_bad_changes_are_refused_before_anything_is_written(scenario_file: Path, tmp_path: Path,
                                                            sets: list[str], named: str) -> None:
    out = tmp_path / "wi"
    args = [a for s in sets for a in ("--set", s)]
    res = cli("whatif", str(scenario_file), *args, "--out", str(out), "--jobs", "1")
    assert res.exit_code == 2, res.output
    assert named in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) <= 2
    assert not out.exists()


def test_a_compare_folder_is_not_taken_over(scenario_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    assert cli("compare", str(scenario_file), "--policies", "cheapest", "--seeds", "1", "--out", str(out),
               "--jobs", "1").exit_code == 0
    before = (out / "manifest.json").read_text()
    res = cli("whatif", str(scenario_file), "--set", "router.window_s=0", "--out", str(out), "--jobs", "1")
    assert res.exit_code == 2 and "not a whatif" in res.output
    assert (out / "manifest.json").read_text() == before


def test_compare_does_not_take_over_a_whatif_folder(scenario_file: Path, tmp_path: Path) -> None:
    folder = tmp_path / "wf"
    assert cli("whatif", str(scenario_file), "--set", "workload.arrivals.rate=6", "--seeds", "1", "--out",
               str(folder), "-q").exit_code == 0
    res = runner.invoke(app, ["compare", str(scenario_file), "--policies", "cheapest", "--seeds", "1", "--out",
                              str(folder), "-q"])
    assert res.exit_code == 2 and "holds a whatif experiment, not a compare" in res.output
