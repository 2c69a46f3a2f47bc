"""Whole-run invariants: every query accounted for, no instance over its concurrency or KV memory,
timestamps in causal order, determinism, identical workloads across policies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from sim.cli import app
from sim.config import parse_scenario
from sim.dispatcher import Dispatcher
from sim.runner import RunResult, run
from tests.sim.conftest import REPO, small_scenario


def run_dict(data: dict) -> RunResult:  # type: ignore[type-arg]
    return run(parse_scenario(yaml.safe_dump(data), file="test.yaml"))


VARIANTS = {
    "per_query": {},
    "window_milp_budget": {"router": {"policy": "cheapest", "window_s": 2.0, "budget_per_query": 0.0005}},
    "overload_shared_queue": {
        "workload": {"arrivals": {"type": "gamma", "rate": 40.0, "cv": 3.0}, "pool": {"type": "synthetic"}},
        "deployments": [
            {"model": "small", "gpu": "A100", "tp": 1, "instances": 1, "max_seqs": 4, "queue": "shared"},
            {"model": "big", "gpu": "A100", "tp": 2, "instances": 1, "max_seqs": 2},
        ],
    },
    "slots_reject": {
        "router": {"policy": "strongest", "capacity": "slots", "allow_reject": True},
        "workload": {"arrivals": {"type": "batch", "batch_size": 40, "interval_s": 5.0},
                     "pool": {"type": "synthetic"}},
    },
    "no_drain": {"drain": False, "num_queries": None, "duration_s": 30.0,
                 "workload": {"arrivals": {"type": "poisson", "rate": 30.0}, "pool": {"type": "synthetic"}}},
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> tuple[str, RunResult]:
    name = request.param
    data = small_scenario(**VARIANTS[name])
    return name, run_dict(data)


def test_every_query_accounted_for(variant: tuple[str, RunResult]) -> None:
    name, res = variant
    q = res.summary["queries"]
    assert q["completed"] + q["rejected"] + q["running"] + q["pending"] == q["arrived"] == len(res.requests)
    if name != "no_drain":
        assert q["running"] == 0 and q["pending"] == 0
    counts = res.requests.status.value_counts()
    assert counts.get("completed", 0) == q["completed"]
    assert counts.get("rejected", 0) == q["rejected"]


def test_no_instance_exceeds_concurrency_or_kv(variant: tuple[str, RunResult]) -> None:
    _, res = variant
    inst = res.instances
    assert (inst.max_running_seen <= inst.max_seqs).all()
    assert (inst.max_kv_used_seen <= inst.kv_capacity_tokens).all()
    assert (inst.max_running_seen >= 1).any()


def test_timestamps_causal(variant: tuple[str, RunResult]) -> None:
    _, res = variant
    r = res.requests[res.requests.status == "completed"]
    assert (r.arrival_s <= r.decision_s).all()
    assert (r.decision_s <= r.start_s).all()
    assert (r.start_s < r.first_token_s).all()
    assert (r.first_token_s <= r.finish_s).all()


def test_concurrency_reconstructed_from_timestamps(variant: tuple[str, RunResult]) -> None:
    """Independently of the engine's counters: at no time do more requests run on an instance than
    its max_seqs (sweep over start/finish events)."""
    _, res = variant
    r = res.requests[res.requests.status == "completed"]
    limits = dict(zip(res.instances.instance, res.instances.max_seqs, strict=True))
    for iid, g in r.groupby("instance"):
        ev = np.concatenate([np.c_[g.start_s, np.ones(len(g))], np.c_[g.finish_s, -np.ones(len(g))]])
        ev = ev[np.lexsort((ev[:, 1], ev[:, 0]))]  # finishes before starts at equal times
        assert np.cumsum(ev[:, 1]).max() <= limits[iid]


def test_capacity_mode_slots_never_overfills() -> None:
    """capacity = free slots: routed-but-unfinished requests of a model never exceed its slots
    (reconstructed from decision and finish times, independently of the engine's counters)."""
    data = small_scenario(**VARIANTS["slots_reject"])
    res = run_dict(data)
    slots = {d["model"]: d["instances"] * d["max_seqs"] for d in data["deployments"]}
    r = res.requests[res.requests.status == "completed"]
    for model, g in r.groupby("model"):
        ev = np.concatenate([np.c_[g.decision_s, np.ones(len(g))], np.c_[g.finish_s, -np.ones(len(g))]])
        ev = ev[np.lexsort((ev[:, 1], ev[:, 0]))]
        assert np.cumsum(ev[:, 1]).max() <= slots[model]
    assert res.summary["queries"]["rejected"] > 0  # the batches are larger than the free slots


runner = CliRunner()


def test_same_seed_identical_summary_json(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        result = runner.invoke(app, ["run", "--out", str(out), "-q"])
        assert result.exit_code == 0, result.output
    assert (a / "summary.json").read_bytes() == (b / "summary.json").read_bytes()
    for f in ("requests.parquet", "batches.parquet", "scenario.yaml", "run_info.json"):
        assert (a / f).exists()


def test_different_seed_changes_summary(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    runner.invoke(app, ["run", "--out", str(a), "-q"])
    runner.invoke(app, ["run", "--out", str(b), "-q", "--seed", "8"])
    assert (a / "summary.json").read_bytes() != (b / "summary.json").read_bytes()


def test_policies_see_identical_workloads() -> None:
    base = small_scenario()
    runs = {}
    for policy in ("cheapest", "strongest", "random"):
        data = small_scenario(router={"policy": policy})
        runs[policy] = run_dict(data).requests
    ref = runs["cheapest"]
    for other in runs.values():
        assert np.array_equal(other.arrival_s, ref.arrival_s)
        assert np.array_equal(other.query_id, ref.query_id)
        assert np.array_equal(other.prompt_tokens, ref.prompt_tokens)
    assert base["seed"] == 3


def test_resolved_config_reproduces_run(tmp_path: Path) -> None:
    first = tmp_path / "first"
    assert runner.invoke(app, ["run", "--out", str(first), "-q"]).exit_code == 0
    again = tmp_path / "again"
    result = runner.invoke(app, ["run", str(first / "scenario.yaml"), "--out", str(again), "-q"])
    assert result.exit_code == 0, result.output
    assert (first / "summary.json").read_bytes() == (again / "summary.json").read_bytes()


def test_embedded_default_is_the_shipped_quickstart() -> None:
    from importlib import resources

    embedded = resources.files("sim").joinpath("scenarios", "quickstart.yaml").read_text()
    assert embedded == (REPO / "scenarios" / "quickstart.yaml").read_text()


@pytest.mark.parametrize(
    "router",
    [
        {"policy": "threshold_greedy", "params": {"alpha": 0.7}},
        {"policy": "round_robin"},
        {"policy": "random"},
        {"policy": "utility_greedy", "budget_per_query": 0.0002, "min_quality": 0.6},
        {"policy": "cheapest", "window_s": 3.0, "budget_per_query": 0.0001},
    ],
    ids=lambda r: r["policy"] + ("_window" if "window_s" in r else ""),
)
def test_up_front_decisions_equal_batch_by_batch_routing(router: dict) -> None:  # type: ignore[type-arg]
    """The vectorised up-front path for row-independent per-query rules is an optimisation only."""
    sc = parse_scenario(yaml.safe_dump(small_scenario(router=router)), file="t.yaml")
    _assert_same_runs(sc)


def _assert_same_runs(sc: object) -> None:
    fast, slow = run(sc), run(sc, _no_precompute=True)  # type: ignore[arg-type]
    assert fast.requests.equals(slow.requests)
    assert fast.summary == slow.summary
    cols = [c for c in fast.batches.columns if c not in ("solve_time_s", "routing_time_s")]  # wall clock
    assert fast.batches[cols].equals(slow.batches[cols])


@pytest.mark.parametrize("drain", [True, False])
def test_single_path_matches_batch_path(drain: bool) -> None:
    """The up-front single-query path (decision columns written at once, the chosen model's facts read
    from typed arrays) against routing batch by batch, where it matters most: queries too long for the
    chosen model's KV cache, latency estimates recorded for the chosen model, budget and floor violations
    counted per batch, and a run cut off at the horizon with queries still running."""
    d = small_scenario(router={"policy": "threshold_greedy", "params": {"alpha": 0.2}, "min_quality": 0.5,
                               "budget_per_query": 0.0001},
                       outputs={"latency_estimates": True}, drain=drain)
    # a KV cache of a few thousand tokens on the small model: some queries can never start there
    d["deployments"][0].update(gpu_memory_utilization=0.2005, activation_reserve_gib=1.0)
    sc = parse_scenario(yaml.safe_dump(d), file="t.yaml")
    res = run(sc)
    assert res.summary["queries"]["rejected_by_reason"]["too_long"] > 0
    assert res.summary["queries"]["completed"] > 0
    assert res.batches["violations"].str.startswith("budget").any()
    assert res.batches["violations"].str.contains("min_quality").any()
    assert res.requests["predicted_e2e_s"].notna().any()
    if not drain:
        assert res.summary["queries"]["running"] > 0
    _assert_same_runs(sc)


@pytest.mark.parametrize(
    "router",
    [
        {"policy": "least_loaded"},
        {"policy": "least_loaded", "capacity": "slots", "allow_reject": True},
        {"policy": "threshold_greedy", "capacity": "slots", "min_quality": 0.6, "budget_per_query": 0.0001},
        {"policy": "cheapest", "capacity": "slots", "allow_reject": True},
        {"policy": "strongest", "capacity": "slots_and_queue"},
        {"policy": "utility_greedy", "capacity": "slots", "params": {"lam": 50.0}},
        {"policy": "random", "capacity": "slots"},
        {"policy": "round_robin", "capacity": "slots", "allow_reject": True},
        {"policy": "lagrangian"},
        {"policy": "lagrangian", "capacity": "slots", "allow_reject": True},
        {"policy": "lagrangian", "capacity": "slots", "min_quality": 0.6},  # a side row: the general path
    ],
    ids=lambda r: "-".join(str(v) for v in r.values()),
)
def test_one_query_path(router: dict, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[type-arg]
    """One-query batches routed through Policy.route_one (Python scalars) against the RoutingProblem path,
    where capacity binds (slot refusals, rejections, violations) and some queries are too long for a model."""
    d = small_scenario(router=router, num_queries=400)
    d["workload"]["arrivals"]["rate"] = 40.0  # the models fill up: capacity binds, queries are refused
    d["deployments"][0].update(gpu_memory_utilization=0.2005, activation_reserve_gib=1.0, max_seqs=4)
    d["deployments"][1].update(max_seqs=4, max_queue=2)
    sc = parse_scenario(yaml.safe_dump(d), file="t.yaml")
    fast = run(sc)
    monkeypatch.setattr(Dispatcher, "scalar_one_query", False)
    slow = run(sc)
    assert fast.requests.equals(slow.requests)
    assert fast.summary == slow.summary
    cols = [c for c in fast.batches.columns if c not in ("solve_time_s", "routing_time_s")]  # wall clock
    assert fast.batches[cols].equals(slow.batches[cols])
    if router.get("capacity") == "slots":
        assert fast.summary["queries"]["rejected"] > 0


@pytest.mark.parametrize("queue", ["per_instance", "shared"])
@pytest.mark.parametrize("router", [{"policy": "least_loaded"}, {"policy": "least_loaded", "window_s": 0.5}])
def test_in_flight_counter(queue: str, router: dict, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[type-arg]
    """least_loaded's load from the dispatcher's counters (+1 per submission, -1 per finish) against
    summing running + queued over instances, with queues building and paged preemptions."""
    d = small_scenario(router=router, num_queries=400)
    d["workload"]["arrivals"]["rate"] = 40.0
    d["gpus"][0]["count"] = 8
    for dep in d["deployments"]:
        dep.update(max_seqs=8, queue=queue, instances=2)
    d["deployments"][0].update(gpu_memory_utilization=0.2005, activation_reserve_gib=1.0)  # a small KV cache
    sc = parse_scenario(yaml.safe_dump(d), file="t.yaml")
    fast = run(sc)
    monkeypatch.setattr(Dispatcher, "count_in_flight", False)
    slow = run(sc)
    assert fast.summary["scheduler"]["preemptions"] > 0
    assert fast.requests.equals(slow.requests)
    assert fast.summary == slow.summary
