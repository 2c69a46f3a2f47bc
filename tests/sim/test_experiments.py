"""compare / sweep: argument parsing, common random numbers, validation before running, resume, Dask,
matched spend, and the folder the reports read."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from sim.cli import app
from sim.errors import InputError
from sim.experiments import parse_grid, parse_policies
from tests.sim.conftest import cli

runner = CliRunner()






# --------------------------------------------------------------------------- parsing
def test_parse_policies_inline_parameters() -> None:
    specs = parse_policies("lagrangian,utility_greedy:lam=31.5,robust:kappa=1:gamma=2,threshold_greedy:on_budget=reject")
    assert [(s.name, s.params) for s in specs] == [
        ("lagrangian", {}), ("utility_greedy", {"lam": 31.5}), ("robust", {"kappa": 1, "gamma": 2}),
        ("threshold_greedy", {"on_budget": "reject"})]
    assert specs[1].label == "utility_greedy:lam=31.5"


@pytest.mark.parametrize("bad", ["", "a,,b", "milp:gap", "milp:=3", "milp,milp"])
def test_parse_policies_refuses(bad: str) -> None:
    with pytest.raises(InputError, match="--policies"):
        parse_policies(bad)


def test_parse_grid_lists_and_inclusive_ranges() -> None:
    grid = parse_grid(["router.window_s=0,0.5,2", "router.min_quality=0.6:0.9:0.1", "deployments.0.max_seqs=8:32:8"])
    assert grid["router.window_s"] == [0, 0.5, 2]
    assert grid["router.min_quality"] == pytest.approx([0.6, 0.7, 0.8, 0.9])
    assert grid["deployments.0.max_seqs"] == [8, 16, 24, 32]


@pytest.mark.parametrize("bad", ["noequals", "a=", "a=1:0:1", "a=0:1:0", "a=0:x:1", "a=1,1"])
def test_parse_grid_refuses(bad: str) -> None:
    with pytest.raises(InputError, match="--grid"):
        parse_grid([bad])


# --------------------------------------------------------------------------- compare
def test_compare_uses_common_random_numbers_and_writes_its_folder(scenario_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    res = cli("compare", str(scenario_file), "--policies", "threshold_greedy,cheapest,lagrangian",
              "--seeds", "2", "--out", str(out), "--jobs", "1")
    assert res.exit_code == 0, res.output
    results = pd.read_parquet(out / "results.parquet")
    assert len(results) == 6 and set(results["seed"]) == {3, 4}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "compare" and manifest["baseline"] == "threshold_greedy"
    assert "llmsim compare" in manifest["command"] and manifest["seeds"] == [3, 4]
    for _seed, rows in results.groupby("seed"):
        frames = [pd.read_parquet(out / d / "requests.parquet") for d in rows["run_dir"]]
        for other in frames[1:]:  # same arrivals, same queries, whatever the policy
            pd.testing.assert_series_equal(frames[0]["arrival_s"], other["arrival_s"])
            pd.testing.assert_series_equal(frames[0]["query_id"], other["query_id"])
    # different seeds are different workloads
    a, b = (pd.read_parquet(out / d / "requests.parquet") for d in results["run_dir"][:2])
    assert not a["arrival_s"].equals(b["arrival_s"])
    for name in ("report.html", "report.md", "results.csv"):
        assert (out / name).is_file()


def test_compare_refuses_unknown_policy_or_baseline_before_running(scenario_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    res = cli("compare", str(scenario_file), "--policies", "cheapest,nope", "--out", str(out))
    assert res.exit_code == 2 and "nope" in res.output and not out.exists()
    res = cli("compare", str(scenario_file), "--policies", "cheapest", "--baseline", "milp", "--out", str(out))
    assert res.exit_code == 2 and "--baseline" in res.output and not out.exists()
    res = cli("compare", str(scenario_file), "--policies", "utility_greedy:lam=abc", "--out", str(out))
    assert res.exit_code == 2 and not out.exists()


def test_matched_spend_bisects_to_the_reference_spend(scenario_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    res = cli("compare", str(scenario_file), "--policies", "utility_greedy:lam=300,lagrangian,cheapest",
              "--seeds", "2", "--out", str(out), "--jobs", "1", "--match-spend", "utility_greedy:lam=300")
    assert res.exit_code == 0, res.output
    m = pd.read_parquet(out / "matched_spend.parquet")
    labels = pd.read_parquet(out / "results.parquet")["policy"]
    assert list(dict.fromkeys(labels)) == ["utility_greedy:lam=300", "lagrangian", "cheapest"]
    lag = m[m["policy"] == "lagrangian"]
    assert lag["reached"].all() and (lag["knob"] == "router.budget_per_query").all()
    assert lag["spend_usd"].mean() == pytest.approx(lag["target_spend_usd"].mean(), rel=0.01)
    assert not m.loc[m["policy"] == "cheapest", "reached"].any()  # no knob: said, not hidden
    ref = m[m["policy"] == "utility_greedy:lam=300"]
    assert (ref["spend_usd"] == ref["target_spend_usd"]).all()


# --------------------------------------------------------------------------- sweep
def test_sweep_refuses_an_invalid_point_before_running_anything(scenario_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "sw"
    res = cli("sweep", str(scenario_file), "--grid", "router.window_s=0,1,-3", "--out", str(out))
    assert res.exit_code == 2 and "router.window_s" in res.output and "-3" in res.output
    assert not out.exists()
    res = cli("sweep", str(scenario_file), "--grid", "router.no_such_field=1", "--out", str(out))
    assert res.exit_code == 2 and "no_such_field" in res.output and not out.exists()


def test_sweep_resumes_only_missing_runs_with_identical_results(scenario_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "sw"
    args = ["sweep", str(scenario_file), "--grid", "router.window_s=0,2", "--policies", "cheapest,lagrangian",
            "--seeds", "2", "--out", str(out), "--jobs", "1", "-q"]
    assert cli(*args).exit_code == 0
    first = pd.read_parquet(out / "results.parquet")
    assert len(first) == 8 and "param.router.window_s" in first.columns
    stamps = {d: (out / d / "summary.json").stat().st_mtime_ns for d in first["run_dir"]}
    victim = first["run_dir"].iloc[3]
    for f in (out / victim).iterdir():
        f.unlink()
    (out / victim).rmdir()
    assert cli(*args).exit_code == 0
    again = pd.read_parquet(out / "results.parquet")
    pd.testing.assert_frame_equal(first, again)
    for d, stamp in stamps.items():
        assert ((out / d / "summary.json").stat().st_mtime_ns == stamp) == (d != victim)


def test_sweep_keeps_user_files_and_refuses_foreign_folders(scenario_file: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    res = cli("sweep", str(scenario_file), "--grid", "router.window_s=0,1", "--out", str(foreign))
    assert res.exit_code == 2 and (foreign / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_local_workers_and_dask_give_the_results_of_one_process(scenario_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("dask.distributed")
    base = ["sweep", str(scenario_file), "--grid", "router.window_s=0,2", "--policies", "cheapest,milp",
            "--seeds", "2", "-q"]
    frames = {}
    for name, extra in {"one": ["--jobs", "1"], "two": ["--jobs", "2"],
                        "dask": ["--jobs", "2", "--executor", "dask"]}.items():
        res = cli(*base, "--out", str(tmp_path / name), *extra)
        assert res.exit_code == 0, res.output
        frames[name] = pd.read_parquet(tmp_path / name / "results.parquet")
    pd.testing.assert_frame_equal(frames["one"], frames["two"])
    pd.testing.assert_frame_equal(frames["one"], frames["dask"])


def test_an_existing_dask_scheduler_is_used(scenario_file: Path, tmp_path: Path) -> None:
    distributed = pytest.importorskip("dask.distributed")
    base = ["sweep", str(scenario_file), "--grid", "router.window_s=0,2", "--policies", "cheapest", "-q"]
    assert cli(*base, "--out", str(tmp_path / "local"), "--jobs", "1").exit_code == 0
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        res = cli(*base, "--out", str(tmp_path / "remote"), "--scheduler", cluster.scheduler_address)
        assert res.exit_code == 0, res.output
        assert len(client.scheduler_info()["workers"]) == 1
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "local" / "results.parquet"),
                                  pd.read_parquet(tmp_path / "remote" / "results.parquet"))


def test_an_unreachable_scheduler_is_one_clear_error(scenario_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("dask.distributed")
    res = runner.invoke(app, ["sweep", str(scenario_file), "--grid", "router.window_s=0,2", "--out",
                              str(tmp_path / "x"), "--scheduler", "tcp://127.0.0.1:9"])
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert res.exit_code == 2 and "cannot reach the Dask scheduler tcp://127.0.0.1:9" in res.output
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_ctrl_c_keeps_finished_runs_and_the_rerun_completes(scenario_file: Path, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "sw"
    args = [sys.executable, "-m", "sim", "sweep", str(scenario_file), "--grid",
            "router.window_s=0:3:0.25", "--policies", "milp", "--set", "num_queries=600", "--out", str(out),
            "--jobs", "1", "-q"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    deadline = time.monotonic() + 120
    def finished() -> list[Path]:  # committed run folders (a writer's temporary folder starts with '.')
        return [p.parent for p in (out / "runs").glob("*/summary.json") if not p.parent.name.startswith(".")]

    while time.monotonic() < deadline and len(finished()) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    # (every message carries what a rare failure needs: the exit code, stderr and the folder as left)
    kept = sorted(p.name for p in (out / "runs").iterdir()) if (out / "runs").is_dir() else []
    seen = f"rc {proc.returncode}; kept {kept}; stderr: {stderr[-3000:]}"
    assert proc.returncode == 130, seen
    assert "interrupted" in stderr and "Traceback" not in stderr, seen
    assert 2 <= len(kept) < 13 and all((out / "runs" / d / "summary.json").is_file() for d in kept), seen
    assert not [d for d in kept if d.startswith(".")], seen
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(pd.read_parquet(out / "results.parquet")) == 13


def test_matched_spend_on_a_decreasing_log_knob(scenario_file: Path, tmp_path: Path) -> None:
    """utility_greedy's λ lowers spend as it grows and spans decades: bisected on a log scale."""
    out = tmp_path / "cmp"
    res = cli("compare", str(scenario_file), "--policies", "threshold_greedy:alpha=0.7,utility_greedy",
              "--seeds", "2", "--out", str(out), "--jobs", "1", "--match-spend", "threshold_greedy:alpha=0.7", "-q")
    assert res.exit_code == 0, res.output
    m = pd.read_parquet(out / "matched_spend.parquet")
    ug = m[m["policy"] == "utility_greedy"]
    assert (ug["knob"] == "router.params.lam").all() and ug["reached"].all()
    assert ug["spend_usd"].mean() == pytest.approx(ug["target_spend_usd"].mean(), rel=0.01)
    assert 1e-2 <= ug["knob_value"].iloc[0] <= 1e7


# --------------------------------------------------------------------------- review regressions
def test_a_grid_over_policy_parameters_varies_what_the_policy_sees(scenario_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "sw"
    res = cli("sweep", str(scenario_file), "--grid", "router.params.alpha=0.3,0.95", "--out", str(out),
              "--jobs", "1", "-q")
    assert res.exit_code == 0, res.output
    r = pd.read_parquet(out / "results.parquet")
    assert r["run_id"].nunique() == 2 and list(r["param.router.params.alpha"]) == [0.3, 0.95]
    assert r["cost.total_usd"].iloc[1] > r["cost.total_usd"].iloc[0]  # a higher α buys stronger models
    for d, alpha in zip(r["run_dir"], (0.3, 0.95), strict=True):
        assert yaml.safe_load((out / d / "scenario.yaml").read_text())["router"]["params"]["alpha"] == alpha


@pytest.mark.parametrize(("grid", "flag"), [("seed=1,2", "--seeds"), ("router.policy=cheapest,milp", "--policies")])
def test_fields_with_their_own_flag_are_not_swept(scenario_file: Path, tmp_path: Path, grid: str, flag: str) -> None:
    res = cli("sweep", str(scenario_file), "--grid", grid, "--out", str(tmp_path / "x"))
    assert res.exit_code == 2 and flag in res.output and not (tmp_path / "x").exists()


def test_grid_points_that_change_nothing_are_refused(scenario_file: Path, tmp_path: Path) -> None:
    """window_s 1 and 1.0 are one scenario: two runs with one id would overwrite each other's folder."""
    res = cli("sweep", str(scenario_file), "--grid", "router.window_s=1,1.0", "--out", str(tmp_path / "x"))
    assert res.exit_code == 2 and "same scenario" in res.output and not (tmp_path / "x").exists()


def test_huge_seed_counts_are_refused_at_once(scenario_file: Path, tmp_path: Path) -> None:
    res = cli("compare", str(scenario_file), "--policies", "cheapest", "--seeds", str(10**20),
              "--out", str(tmp_path / "x"))
    assert res.exit_code == 2 and "--seeds" in res.output and not (tmp_path / "x").exists()


def test_a_rerun_without_match_spend_drops_the_old_table_and_kinds_do_not_mix(
        scenario_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    base = ["compare", str(scenario_file), "--seeds", "1", "--out", str(out), "--jobs", "1", "-q"]
    assert cli(*base, "--policies", "utility_greedy,lagrangian", "--match-spend", "lagrangian").exit_code == 0
    assert (out / "matched_spend.parquet").exists()
    assert cli(*base, "--policies", "utility_greedy,lagrangian").exit_code == 0
    assert not (out / "matched_spend.parquet").exists()
    assert "Matched spend" not in (out / "report.md").read_text()
    res = cli("sweep", str(scenario_file), "--grid", "router.window_s=0,1", "--out", str(out))
    assert res.exit_code == 2 and "holds a compare experiment" in res.output
    res = cli(*base, "--policies", "lagrangian", "--match-spend", "lagrangian")
    assert res.exit_code == 2 and "--match-spend" in res.output


def test_quiet_prints_the_folder_on_one_line_and_errors_are_one_line(scenario_file: Path, tmp_path: Path) -> None:
    out = tmp_path / ("a-rather-long-folder-name-" * 4) / "cmp"
    res = cli("compare", str(scenario_file), "--policies", "cheapest", "--seeds", "1", "--out", str(out), "-q")
    assert res.exit_code == 0 and res.output == f"{out}\n"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = runner.invoke(app, ["compare", str(scenario_file), "--policies", "cheapest", "--out", str(blocker)])
    assert res.exit_code == 2 and res.output.startswith("error:") and res.output.count("\n") == 1


@pytest.mark.slow
def test_sigterm_to_the_parent_ends_its_workers_and_keeps_finished_runs(scenario_file: Path, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "sw"
    args = [sys.executable, "-m", "sim", "sweep", str(scenario_file), "--grid", "router.window_s=0:3:0.25",
            "--policies", "milp,lagrangian", "--set", "num_queries=600", "--out", str(out), "--jobs", "2", "-q"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while time.monotonic() < deadline and not (workers and list((out / "runs").glob("[!.]*/summary.json"))):
        time.sleep(0.05)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        workers = [int(p) for p in children.read_text().split()] if children.exists() else []
    assert workers, "the sweep never forked its workers"
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "interrupted" in stderr and "Traceback" not in stderr, \
        f"rc {proc.returncode}; stderr: {stderr[-3000:]}"
    assert time.monotonic() - t0 < 10  # the workers are ended, not waited for
    time.sleep(0.5)
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    kept = [d for d in (out / "runs").iterdir() if not d.name.startswith(".")]
    assert kept and all((d / "summary.json").is_file() for d in kept)
    assert len(pd.read_parquet(out / "results.parquet")) == len(kept)


def test_sweep_reports_accuracy_interpolated_at_a_given_spend(scenario_file: Path, tmp_path: Path) -> None:
    from reports.stats import accuracy_at_spend

    out = tmp_path / "sw"
    res = cli("sweep", str(scenario_file), "--grid", "router.params.alpha=0.3,0.6,0.95", "--out", str(out),
              "--jobs", "1", "-q")
    assert res.exit_code == 0, res.output
    r = pd.read_parquet(out / "results.parquet")
    spend = float(r["cost.total_usd"].iloc[0] + r["cost.total_usd"].iloc[2]) / 2
    assert cli("report", str(out), "--at-spend", str(spend)).exit_code == 0
    aiq = pd.read_csv(out / "aiq.csv")
    expected = accuracy_at_spend(r["cost.total_usd"], r["accuracy"], spend)
    assert expected is not None and aiq["accuracy_at_spend"].iloc[0] == pytest.approx(expected)
    assert f"{100 * expected:.2f} %" in (out / "report.md").read_text()
    assert cli("report", str(out), "--at-spend", "nan").exit_code == 2
