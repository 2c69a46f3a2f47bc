"""``llmsim report`` on a plan folder whose manifest's ``plan`` entry was hand-edited or damaged: one
``error:`` line naming ``manifest.json`` and the field path (exit 2), nothing written; the entry as
``llmsim plan`` writes it still gives the capacity-plan section. (Before the check, 80 of the damaged
entries tried ended as "internal error": KeyError, AttributeError, TypeError, ValueError.)"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from reports.tables import MANIFEST_FILE
from tests.reports.test_review_inputs import assert_one_error, cli

#: A compare folder's policies (tests/reports/conftest.py) as the plan's three allocations.
LABELS = ("threshold_greedy", "cheapest", "lagrangian")


def plan_entry() -> dict[str, Any]:
    """A ``plan`` entry of the shape :meth:`sim.planning.plan.Plan.manifest_extra` writes."""
    alloc = [{"label": label, "same_as": None, "runs_label": label, "method": "milp+headroom" if i == 0 else label,
              "expected_accuracy": 0.6 + 0.01 * i, "cost_per_hour": 10.0 + i, "sustainable_load_qps": 3.5,
              "routed_share": {"small": 0.6, "big": 0.4},
              "models": {"small": {"instances": 1 + i, "gpus": 1 + i}, "big": {"instances": 1, "gpus": 4}},
              "deployments": [], "note": ""} for i, label in enumerate(LABELS)]
    return {"inventory": {"A100": 8}, "slo": {"ttft_p95": None, "e2e_p95": 60.0}, "slo_label": "e2e_p95=60s",
            "max_cost_per_hour": None, "min_accuracy": None, "arrival_rate_qps": 3.86, "batches": 16,
            "batch_size": 64, "budget_per_query": 0.002, "allow_reject": False,
            "candidates": [{"candidate": "small@A100x1", "model": "small", "gpu": "A100", "tp": 1,
                            "price_per_hour": 2.0, "kv_tokens": 443177, "sustainable_rate_qps": 7.3,
                            "saturation_estimate_qps": 5.3, "idle_p95_s": {"ttft": 0.5, "e2e": 4.3},
                            "p95_at_rate_s": {"ttft": 50.4, "e2e": 58.6}, "targets_s": {"e2e": 59.0}}],
            "allocations": alloc, "search": [],
            "verdict": {"slo_met": {label: True for label in LABELS}, "recommended": LABELS[0]},
            "per_model_p95_s": {label: {"big": {"ttft": 3.2, "e2e": 25.3}, "small": {"ttft": 2.2, "e2e": None}}
                                for label in LABELS}}


@pytest.fixture()
def plan_folder(compare_folder: Path, tmp_path: Path) -> Path:
    folder = Path(shutil.copytree(compare_folder, tmp_path / "plan"))
    for name in ("report.md", "report.html"):
        (folder / name).unlink(missing_ok=True)
    return folder


def with_plan(folder: Path, plan: Any) -> Path:
    path = folder / MANIFEST_FILE
    manifest = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**manifest, "plan": plan}), encoding="utf-8")
    return folder


def edited(path: str, value: Any) -> dict[str, Any]:
    """:func:`plan_entry` with ``path`` (dotted; list indices as numbers) set to ``value``, or removed
    when ``value`` is :data:`REMOVE`."""
    plan = copy.deepcopy(plan_entry())
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    obj: Any = plan
    for key in parents:
        obj = obj[key]
    if value is REMOVE:
        del obj[last]
    else:
        obj[last] = value
    return plan


REMOVE = object()


def test_the_entry_as_plan_writes_it_is_reported(plan_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "report", str(with_plan(plan_folder, plan_entry())))
    assert code == 0, err
    text = (plan_folder / "report.md").read_text(encoding="utf-8")
    assert "Capacity plan" in text and "2.200 s (small)" not in text  # a null p95 is skipped, not shown
    assert "3.200 s (big)" in text and (plan_folder / "plan.csv").exists()


@pytest.mark.parametrize(("path", "value", "where"), [
    ("allocations", REMOVE, "plan.allocations"),
    ("allocations", [], "plan.allocations"),
    ("allocations.0", "x", "plan.allocations.0"),
    ("allocations.0.label", REMOVE, "plan.allocations.0.label"),
    ("allocations.0.label", None, "plan.allocations.0.label"),
    ("allocations.1.label", "threshold_greedy", "plan.allocations.1.label"),
    ("allocations.0.runs_label", [], "plan.allocations.0.runs_label"),
    ("allocations.0.method", REMOVE, "plan.allocations.0.method"),
    ("allocations.0.expected_accuracy", "x", "plan.allocations.0.expected_accuracy"),
    ("allocations.0.cost_per_hour", {}, "plan.allocations.0.cost_per_hour"),
    ("allocations.0.sustainable_load_qps", True, "plan.allocations.0.sustainable_load_qps"),
    ("allocations.0.models", None, "plan.allocations.0.models"),
    ("allocations.0.models.small.instances", -1, "plan.allocations.0.models"),
    ("allocations.0.models.big.gpus", "4", "plan.allocations.0.models"),
    ("allocations.2.models.small", REMOVE, "plan.allocations.2.models"),
    ("inventory", REMOVE, "plan.inventory"),
    ("inventory.A100", "eight", "plan.inventory"),
    ("arrival_rate_qps", None, "plan.arrival_rate_qps"),
    ("batches", 1.5, "plan.batches"),
    ("candidates", {}, "plan.candidates"),
    ("candidates.0.kv_tokens", "many", "plan.candidates.0.kv_tokens"),
    ("candidates.0.idle_p95_s", [], "plan.candidates.0.idle_p95_s"),
    ("slo", [], "plan.slo"),
    ("verdict", "yes", "plan.verdict"),
    ("verdict.slo_met", [], "plan.verdict.slo_met"),
    ("verdict.slo_met.cheapest", "yes", "plan.verdict.slo_met"),
    ("per_model_p95_s", [], "plan.per_model_p95_s"),
    ("per_model_p95_s.cheapest.big.ttft", "x", "plan.per_model_p95_s"),
    ("arrival_rate_qps", 10**30, "plan.arrival_rate_qps"),  # (beyond a float's exact ints: plotly's overflow)
    ("allocations.0.expected_accuracy", 10**400, "plan.allocations.0.expected_accuracy"),
])
def test_a_damaged_plan_entry_is_named(plan_folder: Path, capsys: pytest.CaptureFixture[str], path: str, value: Any,
                                       where: str) -> None:
    folder = with_plan(plan_folder, edited(path, value))
    before = sorted(p.name for p in folder.iterdir())
    assert_one_error(cli(capsys, "report", str(folder)), f"{MANIFEST_FILE}: {where}: expected")
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written


def test_a_plan_entry_that_is_not_an_object_is_named(plan_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_error(cli(capsys, "report", str(with_plan(plan_folder, [1]))), f"{MANIFEST_FILE}: plan: expected a dict")
