"""Bad ``events`` (docs/events.md): one message naming events[i].<field> and the scenario file, exit 2,
no traceback, nothing written; ``llmsim validate`` refuses the same. And price changes: exact charges
after the change, and a cost-aware policy moving traffic away from a model whose price jumps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from sim.cli import app
from sim.config import parse_scenario
from sim.runner import prepare, run
from tests.sim.conftest import small_scenario

runner = CliRunner()
FAIL = {"kind": "node_failure", "at_s": 10.0, "deployment": 1, "instances": [0], "recover_at_s": 20.0}

BAD: list[tuple[list[dict[str, Any]], list[str]]] = [
    ([{**FAIL, "deployment": 5}], ["events[0].deployment", "no deployment 5"]),
    ([{**FAIL, "instances": [1]}], ["events[0].instances[0]", "no instance 1"]),
    ([{**{k: v for k, v in FAIL.items() if k != "instances"}, "count": 2}], ["events[0].count", "has 1"]),
    ([{**FAIL, "recover_at_s": 10.0}], ["events[0]", "recover_at_s", "after at_s"]),
    ([FAIL, {**FAIL, "at_s": 15.0, "recover_at_s": 30.0}], ["events[1].at_s", "already down"]),
    ([{**FAIL, "recover_at_s": None}, {**FAIL, "at_s": 50.0, "recover_at_s": None}], ["events[1].at_s", "already down"]),
    ([{**FAIL, "instances": [0, 0]}], ["events[0]", "twice"]),
    ([{k: v for k, v in FAIL.items() if k != "instances"}], ["events[0]", "instances or count"]),
    ([{"kind": "price_change", "at_s": 5.0, "model": "ghost", "multiplier": 2.0}],
     ["events[0].model", "unknown model 'ghost'"]),
    ([{"kind": "price_change", "at_s": 5.0, "model": "big", "multiplier": 0.0}],
     ["events[0].multiplier", "greater than 0"]),
    ([{"kind": "rate_change", "start_s": 5.0, "end_s": 5.0, "multiplier": 2.0}], ["events[0]", "end_s", "after start_s"]),
    ([{"kind": "rate_change", "start_s": 5.0, "end_s": 9.0, "multiplier": -1.0}],
     ["events[0].multiplier", "greater than 0"]),
    ([{"kind": "rate_change", "start_s": 1e9, "end_s": 2e9, "multiplier": 2.0}], ["events[0].start_s"]),
    ([{"kind": "meteor", "at_s": 1.0}], ["events[0]", "kind"]),
]


@pytest.mark.parametrize(("events", "needles"), BAD, ids=[str(i) for i in range(len(BAD))])
@pytest.mark.parametrize("command", ["run", "validate"])
def test_bad_events_fail_cleanly(write_scenario, tmp_path: Path, events, needles, command) -> None:  # type: ignore[no-untyped-def]
    path = write_scenario(small_scenario(events=events))
    out = tmp_path / "run"
    args = [command, str(path)] + (["--out", str(out)] if command == "run" else [])
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for needle in [str(path), *needles]:
        assert needle in result.output, (needle, result.output)
    assert not out.exists()


def test_a_failure_after_the_arrivals_is_refused_only_without_drain(write_scenario) -> None:  # type: ignore[no-untyped-def]
    """With drain (the default) a failure after the last arrival still hits the work in flight; without
    drain the run stops at the horizon, so the event could change nothing."""
    late = [{**FAIL, "at_s": 5000.0, "recover_at_s": 6000.0}]
    ok = runner.invoke(app, ["validate", str(write_scenario(small_scenario(events=late)))], catch_exceptions=False)
    assert ok.exit_code == 0, ok.output
    path = write_scenario(small_scenario(events=late, drain=False, duration_s=100.0, num_queries=None))
    bad = runner.invoke(app, ["validate", str(path)], catch_exceptions=False)
    assert bad.exit_code == 2 and "events[0].at_s" in bad.output and "arrivals end" in bad.output


def test_good_events_validate(write_scenario) -> None:  # type: ignore[no-untyped-def]
    events = [FAIL, {**FAIL, "at_s": 20.0, "recover_at_s": 30.0},  # back-to-back windows are fine
              {"kind": "rate_change", "start_s": 5.0, "end_s": 9.0, "multiplier": 2.0},
              {"kind": "price_change", "at_s": 5.0, "model": "big", "multiplier": 2.0}]
    result = runner.invoke(app, ["validate", str(write_scenario(small_scenario(events=events)))],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output


def run_dict(data: dict[str, Any]):  # type: ignore[no-untyped-def]
    return run(parse_scenario(yaml.safe_dump(data), file="t.yaml"))


@pytest.mark.parametrize("window_s", [0.0, 2.0])
def test_price_change_charges_queries_decided_after_it(window_s: float) -> None:
    at, mult = 30.0, 3.5
    data = small_scenario(router={"policy": "strongest", "window_s": window_s},
                          events=[{"kind": "price_change", "at_s": at, "model": "big", "multiplier": mult}])
    sc = parse_scenario(yaml.safe_dump(data), file="t.yaml")
    base = prepare(sc).workload.cost  # (N, m) at the base prices
    res = run(sc)
    req = res.requests
    assert res.summary["events"][0]["queries_decided_after"] == ((req.decision_s >= at) & (req.model == "big")).sum()
    big = req[(req.model == "big") & (req.status == "completed")]
    before, after = big[big.decision_s < at], big[big.decision_s >= at]
    assert len(before) > 10 and len(after) > 10
    assert np.array_equal(before.cost_usd.to_numpy(), base[before.request_id, 1])
    assert np.array_equal(after.cost_usd.to_numpy(), base[after.request_id, 1] * mult)
    if window_s:  # the decision time rules, not the arrival time
        straddle = after[after.arrival_s < at]
        assert len(straddle) > 0


def test_cost_aware_policy_moves_away_from_a_price_jump() -> None:
    """``cheapest`` sends everything to the cheaper model; when its price jumps above the other's, new
    queries go to the other one."""
    data = small_scenario(router={"policy": "cheapest"},
                          events=[{"kind": "price_change", "at_s": 30.0, "model": "small", "multiplier": 100.0}])
    req = run_dict(data).requests
    early, late = req[req.decision_s < 30.0], req[req.decision_s >= 30.0]
    assert (early.model == "small").mean() > 0.95
    assert (late.model == "big").mean() > 0.95
    price_unchanged = run_dict(small_scenario(router={"policy": "cheapest"})).requests
    assert (price_unchanged.model == "small").mean() > 0.95


def test_burst_too_big_for_memory_is_refused(write_scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The memory pre-check counts the burst's extra arrivals (x1e6 for 890 s of a 4/s stream: ~3.6e9)."""
    data = small_scenario(num_queries=None, duration_s=1000.0,
                          events=[{"kind": "rate_change", "start_s": 10.0, "end_s": 900.0, "multiplier": 1e6}])
    path = write_scenario(data)
    result = runner.invoke(app, ["run", str(path), "--out", str(tmp_path / "run")], catch_exceptions=False)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "events" in result.output and "arrivals would need" in result.output
    assert not (tmp_path / "run").exists()
