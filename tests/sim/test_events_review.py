"""Fresh-eyes review of scenario ``events:`` (docs/events.md) from the user's side: whole runs on the shipped
what-if scenarios and variants of them, checked against queueing theory, against the same run without the
event, and against what the summary and the request table each say. Tests marked ``xfail(strict=True)``
document a mismatch between docs/events.md and the code found in the review."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from sim.cli import app
from sim.config import parse_scenario
from sim.runner import RunResult, run
from sim.workload.build import build_arrivals
from tests.sim.conftest import SCENARIOS
from tests.sim.test_queueing_theory import erlang_c_wait


def load(name: str, **over: Any) -> dict[str, Any]:
    data = yaml.safe_load((SCENARIOS / name).read_text())
    data.update(over)
    return data


def run_dict(data: dict[str, Any]) -> RunResult:
    return run(parse_scenario(yaml.safe_dump(data), file="review.yaml"))


def check_accounting(res: RunResult) -> None:
    """Every arrival ends in exactly one state, and the summary and requests table agree on each count."""
    q, req = res.summary["queries"], res.requests
    states = ("completed", "rejected", "lost", "running", "pending")
    assert sum(q[s] for s in states) == q["arrived"] == len(req)
    counts = req.status.value_counts()
    for s in states:
        assert counts.get(s, 0) == q[s], s
    assert int(req.retries.sum()) == q["retried"]
    assert (req[req.status == "lost"].reject_reason == "node_failure").all()
    # Only completed requests are billed and scored (docs/events.md, "Accounting").
    done = req.status == "completed"
    assert res.summary["cost"]["total_usd"] == pytest.approx(req.cost_usd[done].sum(), rel=1e-12, abs=1e-15)
    assert res.summary["accuracy"] == pytest.approx(req.quality.where(done, 0.0).mean(), rel=1e-12)


def check_down_windows(res: RunResult) -> None:
    """From the summary's own events rows (instance_ids as in requests.parquet): no request served by a
    failed instance started, ran through or finished inside its down window."""
    done = res.requests[res.requests.status == "completed"]
    for row in res.summary.get("events", []):
        if row["kind"] != "node_failure":
            continue
        a, b = row["at_s"], row.get("recover_at_s", np.inf)
        for iid in row["instance_ids"]:
            g = done[done.instance == iid]
            assert not ((g.start_s > a) & (g.start_s < b)).any()
            assert not ((g.finish_s > a) & (g.finish_s < b)).any()
            assert not ((g.start_s < a) & (g.finish_s > a)).any()  # running across the failure
            assert (g.start_s >= b).any() == np.isfinite(b)  # a recovered instance serves again


# --- 1. queueing theory: a failure takes one server of an M/M/c away for the window ----------------------

LAM, FAIL_AT, RECOVER_AT, HORIZON = 2.0, 2000.0, 10000.0, 14000.0


@cache
def mmc_failure_run() -> RunResult:
    """M/M/4 (mean service 1 s) at lambda 2: rho 0.5 with four servers, 0.667 while one is down."""
    data = load("mmc_validation.yaml", num_queries=None, duration_s=HORIZON, warmup_s=0.0)
    data["workload"]["arrivals"]["rate"] = LAM
    data["outputs"] = {"sample_interval_s": 5.0}
    data["events"] = [{"kind": "node_failure", "at_s": FAIL_AT, "deployment": 0, "instances": [3],
                       "recover_at_s": RECOVER_AT}]
    return run_dict(data)


def test_mmc_failure_waits_follow_erlang_c_at_c_minus_one() -> None:
    res = mmc_failure_run()
    check_accounting(res)
    check_down_windows(res)
    req = res.requests[res.requests.status == "completed"]
    wait = (req.start_s - req.decision_s).to_numpy()
    t = req.arrival_s.to_numpy()
    relax = 200.0  # many relaxation times (1/(c*mu - lam) = 1 s at c = 3) after each switch
    down = wait[(t >= FAIL_AT + relax) & (t < RECOVER_AT)].mean()
    up = wait[((t >= relax) & (t < FAIL_AT)) | (t >= RECOVER_AT + relax)].mean()
    w3, w4 = erlang_c_wait(LAM, 1.0, 3), erlang_c_wait(LAM, 1.0, 4)
    assert w3 > 3 * w4  # 0.44 s against 0.087 s
    # ~16,000 arrivals in the down window (correlated waits at rho 0.67: ~8 %); ~12,000 outside, where
    # only ~17 % wait at all (~20 %).
    assert abs(down - w3) / w3 < 0.15, (down, w3)
    assert abs(up - w4) / w4 < 0.3, (up, w4)
    # Whatever the failed server held at FAIL_AT was restarted on the others (requeue), none lost.
    row = res.summary["events"][0]
    assert row["requests_hit"] == row["requeued"] == res.summary["queries"]["retried"]
    assert res.summary["queries"]["lost"] == 0


# --- 2. the shipped node-failure scenario and variants a user would try -------------------------------------

def nf(events: list[dict[str, Any]], scheduler: str = "reserve", queue: str = "shared", **over: Any) -> dict[str, Any]:
    """scenarios/whatif_node_failure.yaml shortened to 200 s (about 1,000 arrivals)."""
    data = load("whatif_node_failure.yaml", duration_s=200.0, events=events, **over)
    for d in data["deployments"]:
        d.update(scheduler=scheduler, queue=queue)
    return data


MIXED = [
    # every llama-70b instance down, then back; both llama-8b instances down for good later on
    {"kind": "node_failure", "at_s": 60.0, "deployment": 1, "count": 3, "recover_at_s": 90.0},
    {"kind": "node_failure", "at_s": 150.0, "deployment": 0, "instances": [0, 1]},
    # overlapping burst and lull, and back-to-back windows of one instance
    {"kind": "rate_change", "start_s": 40.0, "end_s": 120.0, "multiplier": 2.0},
    {"kind": "rate_change", "start_s": 100.0, "end_s": 170.0, "multiplier": 0.5},
    {"kind": "node_failure", "at_s": 100.0, "deployment": 1, "instances": [2], "recover_at_s": 120.0},
    {"kind": "node_failure", "at_s": 120.0, "deployment": 1, "instances": [2], "recover_at_s": 140.0},
    {"kind": "price_change", "at_s": 80.0, "model": "llama-70b", "multiplier": 1.5},
]


@pytest.mark.parametrize("scheduler", ["reserve", "paged"])
@pytest.mark.parametrize("queue", ["shared", "per_instance"])
@pytest.mark.parametrize("mode", ["requeue", "lose"])
def test_mixed_events_account_for_every_request(scheduler: str, queue: str, mode: str) -> None:
    events = [{**e, "on_failure": mode} if e["kind"] == "node_failure" else e for e in MIXED]
    res = run_dict(nf(events, scheduler, queue))
    check_accounting(res)
    check_down_windows(res)
    q = res.summary["queries"]
    assert q["running"] == q["pending"] == 0
    rows = res.summary["events"]
    assert [r["kind"] for r in rows] == [e["kind"] for e in MIXED]
    # the llama-8b deployment never comes back: nothing decided after 150 s runs on it
    req = res.requests
    late = req[(req.decision_s > 150.0) & (req.status == "completed")]
    assert not (late.model == "llama-8b").any()
    # requests_hit splits into requeued + lost at the failure
    for r in rows:
        if r["kind"] == "node_failure":
            assert r["requests_hit"] == r["requeued"] + r["lost"]
    if mode == "lose":
        assert q["retried"] == 0


def test_rate_change_rows_count_the_arrivals_in_their_window() -> None:
    res = run_dict(nf(MIXED))
    t = res.requests.arrival_s.to_numpy()
    for row in res.summary["events"]:
        if row["kind"] == "rate_change":
            assert row["arrivals_in_window"] == int(((t >= row["start_s"]) & (t < row["end_s"])).sum())
        if row["kind"] == "price_change":
            req = res.requests
            after = (req.model == row["model"]) & (req.decision_s >= row["at_s"])
            assert row["queries_decided_after"] == int(after.sum())


def test_failure_at_zero_and_drain_false_cut_off() -> None:
    """A failure at t = 0 (arrivals at 0 routed first) and a run cut off at the arrivals' end: the
    unfinished requests are counted running/pending, not lost."""
    ev = [{"kind": "node_failure", "at_s": 0.0, "deployment": 1, "count": 2, "recover_at_s": 30.0},
          {"kind": "node_failure", "at_s": 150.0, "deployment": 1, "instances": [2]}]
    res = run_dict(nf(ev, drain=False))
    check_accounting(res)
    q = res.summary["queries"]
    assert q["running"] + q["pending"] > 0
    check_down_windows(res)


def test_failure_of_a_whole_model_without_recovery_reports_its_losses() -> None:
    res = run_dict(nf([{"kind": "node_failure", "at_s": 100.0, "deployment": 1, "count": 3}]))
    check_accounting(res)
    row, q = res.summary["events"][0], res.summary["queries"]
    assert q["lost"] > 0  # the requests that were running on llama-70b at 100 s
    assert (row["requeued"], row["lost"]) == (0, q["lost"])
    assert q["retried"] == 0  # nothing was restarted


# --- 3. price changes: exactly the documented multiplier, latest change holds ---------------------------

def test_price_changes_scale_each_models_costs_by_the_latest_multiplier() -> None:
    """``random`` routes the same with and without price changes, so each request's cost compares with
    its own cost in the run without them."""
    changes = [("llama-70b", 50.0, 2.0), ("llama-70b", 120.0, 0.5), ("llama-8b", 80.0, 3.0)]
    events = [{"kind": "price_change", "at_s": t, "model": m, "multiplier": x} for m, t, x in changes]
    base = run_dict(nf([], router={"policy": "random"})).requests
    new = run_dict(nf(events, router={"policy": "random"})).requests
    assert (base.model == new.model).all() and np.array_equal(base.decision_s, new.decision_s)
    expected = np.ones(len(new))
    for m, t, x in sorted(changes, key=lambda c: c[1]):  # not compounded: the latest change holds
        expected[((new.model == m) & (new.decision_s >= t)).to_numpy()] = x
    np.testing.assert_allclose(new.cost_usd / base.cost_usd, expected, rtol=1e-12)
    np.testing.assert_allclose(new.predicted_cost_usd / base.predicted_cost_usd, expected, rtol=1e-12)


# --- 4. validation: the arrivals' end is where the arrivals end ---------------------------------------------

def test_event_after_a_lull_inside_the_real_arrival_span_is_accepted() -> None:
    data = load("slo_routing.yaml")
    data["events"] = [{"kind": "rate_change", "start_s": 0.0, "end_s": 400.0, "multiplier": 0.5}]
    sc = parse_scenario(yaml.safe_dump(data), file="lull.yaml")
    end = float(build_arrivals(sc).times.max())
    assert end > 750.0  # 1,000 arrivals in the lull at 2.5/s, the other 2,000 at 5/s
    data["events"].append({"kind": "node_failure", "at_s": 700.0, "deployment": 3, "count": 1})
    parse_scenario(yaml.safe_dump(data), file="lull.yaml")


# --- 5. bursts: the documented arrivals, and the run before the window ---------------------------------------

@cache
def burst_pair() -> tuple[RunResult, RunResult]:
    data = load("whatif_burst.yaml")
    return run_dict({**data, "events": []}), run_dict(data)


def test_burst_scenario_doubles_arrivals_in_its_window_and_queues_more() -> None:
    base, burst = burst_pair()
    for res in (base, burst):
        check_accounting(res)
    tb, tx = base.requests.arrival_s.to_numpy(), burst.requests.arrival_s.to_numpy()
    assert np.array_equal(tb[tb < 120.0], tx[tx < 120.0])  # same arrival draws before the window
    inside = ((tx >= 120.0) & (tx < 240.0)).sum()
    # Poisson(4/s x 2 x 120 s = 960): within 4 standard deviations (~124)
    assert abs(inside - 960) < 4 * np.sqrt(960)
    assert burst.summary["events"][0]["arrivals_in_window"] == inside
    assert ((tx >= 240.0).sum() - 480) < 4 * np.sqrt(480)

    def wait(res: RunResult, a: float, b: float) -> float:
        r = res.requests[(res.requests.arrival_s >= a) & (res.requests.arrival_s < b)]
        return float((r.first_token_s - r.arrival_s).mean())

    assert wait(burst, 180.0, 240.0) > 5 * wait(base, 180.0, 240.0)  # 8/s is above capacity


def test_burst_leaves_the_requests_before_its_window_unchanged() -> None:
    base, burst = burst_pair()
    b = base.requests[base.requests.arrival_s < 120.0]
    x = burst.requests[burst.requests.arrival_s < 120.0]
    assert list(b.query_id) == list(x.query_id)
    assert np.array_equal(b.prompt_tokens, x.prompt_tokens)


# --- 6. from the command line -----------------------------------------------------------------------------

cli = CliRunner()


def test_cli_runs_with_events_are_byte_deterministic(tmp_path: Path) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(nf(MIXED, "paged", "per_instance")))
    outs = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        result = cli.invoke(app, ["run", str(path), "--out", str(out), "-q"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        outs.append((out / "summary.json").read_bytes())
    assert outs[0] == outs[1]
    assert "events" in json.loads(outs[0])


@pytest.mark.parametrize(("override", "needle"), [
    ("events=[{kind: node_failure, at_s: 50, deployment: 1, instances: [3]}]", "events[0].instances[0]"),
    ("events=[{kind: price_change, at_s: 50, model: gpt-9, multiplier: 2}]", "events[0].model"),
    ("events=[{kind: rate_change, start_s: 250, end_s: 300, multiplier: 2}]", "events[0].start_s"),
    ("events.0.recover_at_s=10", "recover_at_s"),
])
@pytest.mark.parametrize("command", ["run", "whatif"])
def test_bad_events_from_set_fail_cleanly(tmp_path: Path, override: str, needle: str, command: str) -> None:
    path = tmp_path / "nf.yaml"
    path.write_text(yaml.safe_dump(nf([{"kind": "node_failure", "at_s": 50.0, "deployment": 1, "count": 1}])))
    out = tmp_path / "out"
    args = [command, str(path), "--set", override, "--out", str(out)] + (["--seeds", "1"] if command == "whatif" else [])
    result = cli.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and needle in result.output and str(path) in result.output
    assert result.output.count("error") == 1
    assert not out.exists()


# --- 7. the up-front decision shortcut (per-query rules at window 0) is off with no visible change ---------

@pytest.mark.parametrize("policy", ["least_loaded", "latency_aware", "cheapest"])
def test_price_change_by_one_keeps_per_query_decisions(policy: str) -> None:
    """A x1 price change turns the shortcut off (docs/events.md); batch-by-batch decisions must be the
    ones the shortcut takes, for load-aware rules too."""
    plain = run_dict(nf([], router={"policy": policy})).requests
    ev = [{"kind": "price_change", "at_s": 10.0, "model": "llama-70b", "multiplier": 1.0}]
    routed = run_dict(nf(ev, router={"policy": policy})).requests
    assert list(plain.model) == list(routed.model)
    np.testing.assert_array_equal(plain.finish_s.to_numpy(), routed.finish_s.to_numpy())


# --- 8. a replayed trace with prefix caching -----------------------------------------------------------------

@pytest.mark.slow
def test_mooncake_trace_failure_and_burst() -> None:
    data = load("mooncake_prefix.yaml")
    path = (SCENARIOS / data["workload"]["arrivals"]["path"]).resolve()
    if not path.exists():
        pytest.skip(f"trace not available: {path}")
    data["workload"]["arrivals"]["path"] = str(path)
    data["deployments"][0]["queue"] = "per_instance"
    data["events"] = [
        {"kind": "node_failure", "at_s": 1000.0, "deployment": 0, "instances": [1, 2], "recover_at_s": 1600.0},
        {"kind": "rate_change", "start_s": 2000.0, "end_s": 2400.0, "multiplier": 1.5},
        {"kind": "rate_change", "start_s": 2500.0, "end_s": 3000.0, "multiplier": 0.3},
    ]
    res = run_dict(data)
    check_accounting(res)
    check_down_windows(res)
    t = res.requests.arrival_s.to_numpy()
    for row in res.summary["events"][1:]:
        assert row["arrivals_in_window"] == int(((t >= row["start_s"]) & (t < row["end_s"])).sum())


# --- 9. engine limits and busy time across many short failures ------------------------------------------------

def flapping(n: int = 150) -> list[dict[str, Any]]:
    """Each llama-70b instance in turn down for 50 or 350 ms every 0.7 s."""
    return [{"kind": "node_failure", "at_s": 20.0 + 0.7 * k, "deployment": 1, "instances": [k % 3],
             "recover_at_s": 20.0 + 0.7 * k + 0.05 + 0.3 * (k % 2)} for k in range(n)]


@pytest.mark.parametrize("scheduler", ["reserve", "paged"])
@pytest.mark.parametrize("queue", ["shared", "per_instance"])
def test_flapping_instances_keep_every_invariant(scheduler: str, queue: str) -> None:
    res = run_dict(nf(flapping(), scheduler, queue))
    check_accounting(res)
    check_down_windows(res)
    inst = res.instances
    assert (inst.max_running_seen <= inst.max_seqs).all()
    assert (inst.max_kv_used_seen <= inst.kv_capacity_tokens).all()
    rows = res.summary["events"]
    assert sum(r["requeued"] for r in rows) == res.summary["queries"]["retried"] > 0


def test_no_busy_time_accrues_while_down() -> None:
    """docs/events.md: busy time stops at at_s and restarts at recover_at_s, so a failed instance is busy
    at most (run length - down time)."""
    ev = [{"kind": "node_failure", "at_s": 120.0, "deployment": 1, "count": 3, "recover_at_s": 240.0}]
    res = run_dict(load("whatif_node_failure.yaml", events=ev))
    busy = res.instances.set_index("instance").busy_time_s
    for iid in res.summary["events"][0]["instance_ids"]:
        assert busy[iid] <= res.summary["sim_time_s"] - 120.0 + 1e-9


def test_run_folder_has_the_instances_table_the_docs_refer_to(tmp_path: Path) -> None:
    path = tmp_path / "nf.yaml"
    path.write_text(yaml.safe_dump(nf([{"kind": "node_failure", "at_s": 50.0, "deployment": 1, "count": 1}])))
    out = tmp_path / "run"
    result = cli.invoke(app, ["run", str(path), "--out", str(out), "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "instances.parquet")
    row = json.loads((out / "summary.json").read_text())["events"][0]
    assert set(row["instance_ids"]) <= set(table.instance)
