"""The shipped what-if scenarios run without external data, account for every request, and show what
their comments promise: the strong model's queue builds in the event's window and drains after it, and
latency is worse than in the same scenario without the event."""

from __future__ import annotations

import pytest
import yaml

from sim.config import load_scenario, parse_scenario
from sim.runner import RunResult, run
from tests.sim.conftest import SCENARIOS


def queue_means(res: RunResult, windows: list[tuple[float, float]]) -> list[float]:
    occ = res.occupancy[res.occupancy.model == "llama-70b"]
    q = occ.groupby("time_s").queued.sum()
    return [float(q[(q.index >= a) & (q.index < b)].mean()) for a, b in windows]


@pytest.mark.parametrize("name", ["whatif_node_failure", "whatif_burst"])
def test_whatif_scenario_shows_its_event(name: str) -> None:
    path = SCENARIOS / f"{name}.yaml"
    sc = load_scenario(path)
    res = run(sc)
    data = yaml.safe_load(path.read_text())
    data["events"] = []
    base = run(parse_scenario(yaml.safe_dump(data), file=str(path)))
    q = res.summary["queries"]
    assert q["completed"] + q["rejected"] + q["lost"] == q["arrived"]
    before, during, long_after = queue_means(res, [(0, 120), (180, 240), (320, 360)])
    assert during > 10 * max(before, 0.5) and long_after < during / 10
    p95 = res.summary["latency_s"]["ttft"]["p95"]
    assert p95 > 3 * base.summary["latency_s"]["ttft"]["p95"]
    row = res.summary["events"][0]
    if name == "whatif_burst":
        rate = row["arrivals_in_window"] / 120.0
        assert abs(rate - 8.0) < 4 * (8.0 / 120.0) ** 0.5  # Poisson count: within 4 sd of 2 x 4/s
    else:
        assert q["retried"] == row["requeued"] == row["requests_hit"] > 0 and q["lost"] == 0
