"""Fixes from the events review: lost rows carry no cost or answer in requests.parquet (as rejected ones),
and a price change counts only the decisions made while it was the model's latest."""

from __future__ import annotations

from pathlib import Path

import yaml

from sim.config.load import parse_scenario
from sim.runner import simulate
from tests.sim.conftest import SCENARIOS


def scenario(events: list[dict], **over):  # type: ignore[no-untyped-def]
    data = yaml.safe_load(Path(SCENARIOS / "whatif_node_failure.yaml").read_text())
    data.update(duration_s=200.0, events=events, **over)
    return parse_scenario(yaml.safe_dump(data), file="t.yaml")


def test_lost_requests_are_not_billed_in_the_table() -> None:
    res = simulate(scenario([{"kind": "node_failure", "at_s": 100.0, "deployment": 1, "count": 2,
                              "on_failure": "lose"}]))
    req = res.requests
    lost = req[req["status"] == "lost"]
    assert len(lost) == res.summary["queries"]["lost"] > 0
    assert (lost["cost_usd"] == 0).all() and (lost["quality"] == 0).all()
    done = req["status"] == "completed"
    assert abs(req.loc[done, "cost_usd"].sum() - req["cost_usd"].sum()) < 1e-12


def test_a_price_change_counts_decisions_until_the_next_one() -> None:
    model = "llama-70b"
    ev = [{"kind": "price_change", "at_s": 50.0, "model": model, "multiplier": 4.0},
          {"kind": "price_change", "at_s": 120.0, "model": model, "multiplier": 1.0}]
    res = simulate(scenario(ev, router={"policy": "random"}))
    req = res.requests[res.requests["model"] == model]
    rows = res.summary["events"]
    first = ((req["decision_s"] >= 50.0) & (req["decision_s"] < 120.0)).sum()
    second = (req["decision_s"] >= 120.0).sum()
    assert (rows[0]["queries_decided_after"], rows[1]["queries_decided_after"]) == (first, second)
    assert first > 0 and second > 0
