"""Events that change nothing change nothing: ``events: []`` gives the summary of a scenario without
the key, byte for byte, and so does a price change with multiplier 1 (apart from its ``events`` row) -- which also switches routing
from the up-front decisions to batch-by-batch (and multiplies every cost by exactly 1.0), so it checks
that the event path itself leaves results alone. Quickstart (paged) and the M/M/c scenario (reserve,
shared queue), cut short."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from sim.config import parse_scenario
from sim.runner import run
from tests.sim.conftest import SCENARIOS


def summary_bytes(data: dict[str, Any]) -> str:
    """The summary as JSON, without the per-event rows (there only when events are)."""
    s = run(parse_scenario(yaml.safe_dump(data), file="t.yaml")).summary
    s.pop("events", None)
    return json.dumps(s, sort_keys=True)


@pytest.mark.parametrize(("name", "model", "n"), [("quickstart", "llama-70b", 3000), ("mmc_validation", "server", 5000)])
def test_no_op_events_leave_the_summary_byte_identical(name: str, model: str, n: int) -> None:
    data = yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text())
    data["num_queries"] = n
    data["warmup_s"] = 0.0
    data.pop("events", None)
    base = summary_bytes(data)
    assert json.loads(base)["queries"]["lost"] == json.loads(base)["queries"]["retried"] == 0
    assert summary_bytes({**data, "events": []}) == base
    assert "events" not in run(parse_scenario(yaml.safe_dump({**data, "events": []}), file="t.yaml")).summary
    price = [{"kind": "price_change", "at_s": 10.0, "model": model, "multiplier": 1.0}]
    assert summary_bytes({**data, "events": price}) == base
