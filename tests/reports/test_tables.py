"""Results-table helpers and figure preconditions that need no simulation."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from reports import figures as F
from reports.tables import flatten_summary, read_run, run_row


def test_flatten_summary_uses_dotted_keys_and_keeps_lists_as_json() -> None:
    nested = {"accuracy": 0.5, "latency_s": {"ttft": {"p99": 1.5}}, "budget": {"per_query_usd": None},
              "models": {"m.a": {"share": 1.0}}, "tags": [1, "x"], "policy": "p"}
    flat = flatten_summary(nested)
    assert flat == {"accuracy": 0.5, "latency_s.ttft.p99": 1.5, "budget.per_query_usd": None,
                    "models.m.a.share": 1.0, "tags": '[1, "x"]', "policy": "p"}


def test_run_row_and_read_run_on_a_minimal_folder(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(json.dumps({"policy": "cheapest", "seed": 4, "cost": {"total_usd": 2.0}}))
    row = run_row(tmp_path)
    assert row == {"run_id": tmp_path.name, "run_dir": ".", "policy": "cheapest", "seed": 4, "cost.total_usd": 2.0}
    run = read_run(tmp_path)
    assert run.requests is None and run.batches is None and run.occupancy is None


def test_controllability_needs_a_swept_alpha_or_concurrency_column() -> None:
    res = pd.DataFrame({"param.router.params.alpha": [0.5, 0.7], "param.deployments.0.max_seqs": [8, 8],
                        "param.deployments.1.max_seqs": [8, 16], "param.router.window_s": [1, 2]})
    cols = [c for c, _ in F.controllability_columns(res)]
    assert cols == ["param.router.params.alpha", "param.deployments.1.max_seqs"]


def test_budget_figure_is_skipped_without_a_budget() -> None:
    batches = pd.DataFrame({"time_s": [0.0, 1.0], "predicted_cost_usd": [0.1, 0.2], "budget_usd": [float("nan")] * 2})
    with pytest.raises(F.FigureSkipped, match="no batches table with a budget"):
        F.budget_spend({"p": batches, "q": None})
    fig, caption = F.budget_spend({"p": batches.assign(budget_usd=0.15, realised_cost_usd=[0.1, 0.3])})
    assert [t.name for t in fig.data] == ["p predicted", "p realised", "p budget"] and "budget" in caption
    assert fig.layout.yaxis.title.text == "batch spend (USD)"
    twin, _ = F.budget_spend({"p": batches.assign(budget_usd=0.15), "q": batches.assign(budget_usd=0.15)})
    assert [t.name for t in twin.data] == ["p predicted", "p budget", "q predicted"]


def test_occupancy_utilisation_sums_a_models_deployments() -> None:
    occ = pd.DataFrame({"time_s": [0.0, 0.0], "deployment": ["a#0", "a#1"], "model": ["a", "a"],
                        "queued": [1, 2], "running": [4, 2], "slots": [8, 4]})
    fig, _ = F.occupancy("p", occ)
    util, queued = fig.data
    assert list(util.y) == [50.0] and list(queued.y) == [3]
