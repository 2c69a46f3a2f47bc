"""``llmsim plan``: candidates, the allocation problem built from a scenario, the scenarios that run an
allocation, the SLO search's moves, bad input (exit 2, nothing written), and whole plans: every
allocation simulated as planned, the inventory respected, determinism and resume, and the acceptance
case (scenarios/capacity_planning.yaml: the optimised plan's simulated accuracy ≥ both baselines' at no
higher $/hour)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from sim.config.load import load_scenario, parse_scenario
from sim.experiments.plan import read_source
from sim.planning.candidates import candidates
from sim.planning.plan import (
    OPTIMISED,
    PROPORTIONAL,
    UNIFORM,
    PlanOptions,
    make_plan,
    plan_sets,
    resolve_inventory,
)
from sim.planning.problem import build_problem, deployments_for, need_tokens, sustainable_load
from sim.planning.rate import Slo
from sim.planning.search import next_counts
from sim.runner import prepare
from tests.sim.conftest import SCENARIOS, cli, small_scenario


def tiny(tmp_path: Path, **kw: Any) -> Path:
    """Two models on one GPU type (8 GPUs): small (tp 1) and big (tp 4); a 1 s batching window."""
    data = small_scenario(num_queries=400, **kw)
    data["gpus"][0]["count"] = 8
    data["deployments"][1]["tp"] = 4  # at tp 2 the 70B model's KV holds less than its longest requests
    data["router"] = {"policy": "lagrangian", "window_s": 1.0, "capacity": "slots", "budget_per_query": 0.002}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ---------------------------------------------------------------------- pieces
def test_candidates_follow_profiles_inventory_and_memory() -> None:
    sc = load_scenario(SCENARIOS / "quickstart.yaml")
    prepared = prepare(sc)
    need = need_tokens(sc, prepared)
    cands = candidates(sc, {"A100-80GB": 8, "H100-80GB": 16}, need)
    labels = {c.label for c in cands}
    # explicit coefficients are for one tp: the scenario's own deployment of the model on that GPU
    assert {"llama-8b@A100-80GBx1", "qwen-32b@A100-80GBx2", "llama-70b@A100-80GBx4",
            "frontier-405b@H100-80GBx8"} == labels
    # the frontier model has no A100 profile; with 4 H100s it has no candidate at all
    few = candidates(sc, {"A100-80GB": 8, "H100-80GB": 4}, need)
    assert all(c.model.name != "frontier-405b" for c in few)
    for c in cands:
        assert c.kv_tokens >= need[c.model.name]
        assert c.price_per_hour == pytest.approx(c.gpu.cost_per_hour * c.tp)


def test_builtin_profiles_offer_two_tp_choices() -> None:
    sc = load_scenario(SCENARIOS / "capacity_planning.yaml")
    need = need_tokens(sc, prepare(sc))
    cands = candidates(sc, {"A100-80GB": 8, "H100-80GB": 16}, need)
    by_model: dict[str, list[int]] = {}
    for c in cands:
        by_model.setdefault(f"{c.model.name}@{c.gpu.name}", []).append(c.tp)
    assert by_model["llama-8b@H100-80GB"] == [1, 2]
    # 123B in bf16 needs more than 2 × 80 GB; on A100 only tp 8 leaves room for the KV the mix needs
    assert min(by_model["mistral-large-123b@H100-80GB"]) >= 4
    assert all(tp <= 8 for tps in by_model.values() for tp in tps)


def test_problem_from_a_scenario(tmp_path: Path) -> None:
    sc = load_scenario(tiny(tmp_path))
    prepared = prepare(sc)
    cands = candidates(sc, {"A100": 8}, need_tokens(sc, prepared))
    rates = [2.0, 0.5]
    p, inputs = build_problem(sc, prepared, cands, rates, {"A100": 8}, max_cost_per_hour=None, min_accuracy=None,
                              batches=5, batch_size=20)
    t = prepared.workload.times
    assert inputs.arrival_rate == pytest.approx(len(t) / (t[-1] - t[0]))
    assert p.s == 5 and all(q.shape == (20, 2) for q in p.quality)
    assert p.slots == pytest.approx(np.array(rates) * 20 / inputs.arrival_rate)
    assert p.budget_per_query == 0.002 and p.inventory.tolist() == [8]
    assert p.gpus.tolist() == [c.tp for c in cands]


def test_sustainable_load_is_the_tightest_model() -> None:
    from policies import AllocationProblem

    q = np.full((2, 2), 0.5)
    p = AllocationProblem(model=[0, 1, 1], gpu_type=[0, 0, 0], gpus=[1, 1, 2], price_per_hour=[1, 1, 2],
                          rate=[4.0, 1.0, 3.0], slots=[1, 1, 1], inventory=[10], quality=[q], cost=[q * 0],
                          arrival_rate=2.0)
    # model 0: 2 × 4 = 8 q/s for 25 % of traffic → 32; model 1: 1 + 3 = 4 q/s for 75 % → 5.33
    assert sustainable_load(p, np.array([2, 1, 1]), np.array([0.25, 0.75])) == pytest.approx(4 / 0.75)
    assert sustainable_load(p, np.array([2, 1, 1]), np.array([0.0, 0.0])) == 0.0


def test_an_allocation_becomes_a_valid_scenario(tmp_path: Path) -> None:
    path = tiny(tmp_path)
    source = read_source(path)
    sc = load_scenario(path)
    cands = candidates(sc, {"A100": 8}, need_tokens(sc, prepare(sc)))
    counts = np.array([3, 0])  # big gets nothing: it stays listed with 0 instances
    deps = deployments_for(sc, cands, counts)
    assert [(d["model"], d.get("instances", 1)) for d in deps] == [("small", 3), ("big", 0)]
    run = parse_scenario(source.text, file=source.file, base_dir=source.base_dir,
                         overrides=plan_sets(sc, cands, counts, {"A100": 8}))
    assert sum(d.instances * d.tp for d in run.deployments) == 3
    assert [m.name for m in run.models] == [m.name for m in sc.models]  # the router's columns unchanged


def test_search_moves_toward_the_bottleneck(tmp_path: Path) -> None:
    path = tiny(tmp_path)
    plan = make_plan(read_source(path), PlanOptions(slo=Slo(e2e_p95=60.0), seeds=1))
    p = plan.problem
    big = [d for d in range(p.d) if p.model[d] == 1]
    small = [d for d in range(p.d) if p.model[d] == 0]
    counts = np.zeros(p.d, dtype=np.int64)
    counts[small[0]] = 1
    step = next_counts(plan, counts, np.array([0.5, 2.0]))  # big misses its SLO the most
    assert step is not None and step[big].sum() == 1 and step[small].sum() == 1
    # a full inventory: an instance moves from the model with most headroom to the bottleneck
    full = np.zeros(p.d, dtype=np.int64)
    full[small[0]] = 8
    moved = next_counts(plan, full, np.array([0.5, 2.0]))
    assert moved is not None and moved[small].sum() < 8 and moved[big].sum() == 1 and p.fits(moved)


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("args", "where", "says"), [
    (["--gpus", "A100=lots"], "--gpus", "TYPE=COUNT"),
    (["--gpus", "H100=4"], "--gpus", "unknown GPU type 'H100'"),
    (["--gpus", "A100=0"], "--gpus", "no GPU"),
    (["--gpus", "A100=1"], "--gpus", "cannot host one instance"),  # big needs tp 2; small alone? see below
    (["--slo", "e2e_p95=0.5s"], "--slo", "not above the router's batching window"),
    (["--slo", "e2e_p95=1.5s"], "--slo", "no allocation can meet the SLO"),
    (["--slo", "p99=3s"], "--slo", "ttft_p95"),
    (["--min-accuracy", "1.5"], "--min-accuracy", "within [0, 1]"),
    (["--max-cost-per-hour", "-1"], "--max-cost-per-hour", "within"),
    (["--seeds", "0"], "--seeds", "within"),
])
def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path, args: list[str], where: str, says: str) -> None:
    data = small_scenario(num_queries=200)
    data["gpus"][0]["count"] = 8
    data["router"] = {"policy": "lagrangian", "window_s": 1.0, "capacity": "slots"}
    if args[:2] == ["--gpus", "A100=1"]:  # neither model fits one GPU: small is made 40B in bf16 here
        data["models"][0]["params_b"] = 40
        data["deployments"][0]["tp"] = 2
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    res = cli("plan", str(path), "--out", str(out), *args)
    assert res.exit_code == 2, res.output
    assert says in res.output and where in res.output
    assert "Traceback" not in res.output
    assert not out.exists()


def test_a_compare_folder_is_not_taken_over(tmp_path: Path) -> None:
    path = tiny(tmp_path)
    folder = tmp_path / "cmp"
    assert cli("compare", str(path), "--policies", "cheapest", "--seeds", "1", "--out", str(folder),
               "-q").exit_code == 0
    res = cli("plan", str(path), "--out", str(folder), "--seeds", "1")
    assert res.exit_code == 2 and "not a plan" in res.output


# ---------------------------------------------------------------------- whole plans
@pytest.fixture(scope="module")
def tiny_plan(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("plan")
    path = tiny(base)
    folder = base / "out"
    res = cli("plan", str(path), "--out", str(folder), "--seeds", "2", "--slo", "e2e_p95=60s")
    assert res.exit_code == 0, res.output
    return path, folder


def test_every_allocation_is_simulated_as_planned(tiny_plan: tuple[Path, Path]) -> None:
    _, folder = tiny_plan
    manifest = json.loads((folder / "manifest.json").read_text())
    plan = manifest["plan"]
    labels = [a["label"] for a in plan["allocations"]]
    assert labels[0] == OPTIMISED and UNIFORM in labels and PROPORTIONAL in labels
    results = pd.read_parquet(folder / "results.parquet")
    assert sorted(results["policy"].unique()) == sorted(labels)
    assert (results.groupby("policy").size() == 2).all()
    for alloc in plan["allocations"]:
        gpus = sum(d["instances"] * d["tp"] for d in alloc["deployments"])
        assert gpus <= plan["inventory"]["A100"]
        for run_dir in results.loc[results["policy"] == alloc["label"], "run_dir"]:
            sc = yaml.safe_load((folder / run_dir / "scenario.yaml").read_text())
            ran = {(d["model"], d["tp"]): d["instances"] for d in sc["deployments"] if d["instances"]}
            assert ran == {(d["model"], d["tp"]): d["instances"] for d in alloc["deployments"]}
            summary = json.loads((folder / run_dir / "summary.json").read_text())
            assert summary["queries"]["completed"] + summary["queries"]["rejected"] == summary["queries"]["arrived"]
    table = pd.read_csv(folder / "plan.csv")
    assert table["plan"].tolist() == labels
    html = (folder / "report.html").read_text()
    assert "Capacity plan" in html and "GPUs per model" in html


def test_a_plan_is_deterministic_and_resumes(tiny_plan: tuple[Path, Path], tmp_path: Path) -> None:
    path, folder = tiny_plan
    again = tmp_path / "again"
    assert cli("plan", str(path), "--out", str(again), "--seeds", "2", "--slo", "e2e_p95=60s", "-q").exit_code == 0
    cols = ["plan", "gpus", "cost_per_hour", "expected_accuracy", "accuracy", "latency_s.e2e.p95"]
    pd.testing.assert_frame_equal(pd.read_csv(folder / "plan.csv")[cols], pd.read_csv(again / "plan.csv")[cols])
    # resume: the same command into the same folder simulates nothing again
    before = {p: p.stat().st_mtime_ns for p in again.glob("runs/*/summary.json")}
    assert cli("plan", str(path), "--out", str(again), "--seeds", "2", "--slo", "e2e_p95=60s", "-q").exit_code == 0
    assert {p: p.stat().st_mtime_ns for p in again.glob("runs/*/summary.json")} == before
    assert json.loads((again / "rates.json").read_text())


def test_min_accuracy_gives_the_cheapest_plan(tmp_path: Path) -> None:
    path = tiny(tmp_path)
    source = read_source(path)
    best = make_plan(source, PlanOptions(slo=Slo(e2e_p95=60.0), seeds=1))
    target = best.allocations[0].expected_accuracy - 0.05
    cheap = make_plan(source, PlanOptions(slo=Slo(e2e_p95=60.0), seeds=1, min_accuracy=target))
    opt = cheap.allocations[0]
    assert opt.expected_accuracy >= target - 1e-6
    assert opt.cost_per_hour <= best.allocations[0].cost_per_hour + 1e-9


def test_inventory_defaults_to_the_scenario() -> None:
    sc = load_scenario(SCENARIOS / "quickstart.yaml")
    assert resolve_inventory(sc, None) == {"A100-80GB": 8, "H100-80GB": 16}
    assert resolve_inventory(sc, {"A100-80GB": 4, "H100-80GB": 0}) == {"A100-80GB": 4}


@pytest.mark.slow
def test_acceptance_optimised_beats_both_baselines(tmp_path: Path) -> None:
    """scenarios/capacity_planning.yaml with the issue's inventory: the optimised plan's simulated
    accuracy (3 seeds) is at least both baselines' and its $/hour no higher; it meets the SLO."""
    folder = tmp_path / "plan"
    res = cli("plan", str(SCENARIOS / "capacity_planning.yaml"), "--gpus", "H100-80GB=16,A100-80GB=8",
              "--out", str(folder), "--seeds", "3")
    assert res.exit_code == 0, res.output
    table = pd.read_csv(folder / "plan.csv").set_index("plan")
    opt = table.loc[OPTIMISED]
    for base in (UNIFORM, PROPORTIONAL):
        assert opt["accuracy"] >= table.loc[base, "accuracy"]
        assert opt["cost_per_hour"] <= table.loc[base, "cost_per_hour"] + 1e-9
    assert bool(opt["slo_met"])


def test_identical_allocations_share_their_runs(tmp_path: Path) -> None:
    """On quickstart only the 8B model meets a 1 s TTFT even on one idle instance: all three plans
    are the same allocation, simulated once and reported under each label."""
    folder = tmp_path / "same"
    res = cli("plan", str(SCENARIOS / "quickstart.yaml"), "--slo", "ttft_p95=1s", "--seeds", "1",
              "--out", str(folder))
    assert res.exit_code == 0, res.output
    plan = json.loads((folder / "manifest.json").read_text())["plan"]
    allocs = plan["allocations"]
    assert {m for a in allocs for m, v in a["models"].items() if v["gpus"]} == {"llama-8b"}
    for k, a in enumerate(allocs):  # a later twin of an earlier allocation shares its runs
        twin = next((b for b in allocs[:k] if b["deployments"] == a["deployments"] and b["same_as"] is None), None)
        assert a["same_as"] == (None if twin is None else twin["label"])
    assert any(a["same_as"] for a in allocs)
    simulated = set(pd.read_parquet(folder / "results.parquet")["policy"])
    assert simulated == {a["label"] for a in allocs if a["same_as"] is None}
    table = pd.read_csv(folder / "plan.csv").set_index("plan")
    for a in allocs:
        if a["same_as"]:  # one allocation, one yardstick: simulated and expected numbers are the twin's
            for col in ("accuracy", "expected_accuracy", "sustainable_load_qps"):
                assert table.loc[a["label"], col] == pytest.approx(table.loc[a["same_as"], col], rel=1e-9), col


def test_a_missed_slo_is_searched_and_explained(tmp_path: Path) -> None:
    """Quickstart's queue-blind per-query router piles work on llama-70b: a 20 s end-to-end SLO is
    missed by every plan. The search moves GPUs to the model the runs show as the bottleneck, each step
    simulated, and the verdict says the rates would carry the load, so the routing is short."""
    folder = tmp_path / "miss"
    res = cli("plan", str(SCENARIOS / "quickstart.yaml"), "--slo", "e2e_p95=20s", "--seeds", "2",
              "--search-steps", "2", "--out", str(folder))
    assert res.exit_code == 0, res.output
    assert "NO optimised plan met the SLO" in res.output
    plan = json.loads((folder / "manifest.json").read_text())["plan"]
    assert plan["search"]  # every step, or why none could be taken, is recorded
    steps = [s for s in plan["search"] if s.get("label")]
    assert all(not s["met"] for s in steps)
    if steps:  # each step added llama-70b capacity, the model the runs showed as the bottleneck
        assert steps[0]["bottleneck"] == "llama-70b"
        first, moved = plan["allocations"][0], next(a for a in plan["allocations"] if a["label"] == steps[0]["label"])
        assert moved["models"]["llama-70b"]["gpus"] > first["models"]["llama-70b"]["gpus"]
    else:  # the A100s are full and no served model may give up its last instance
        assert "no instance can be added or moved" in plan["search"][0]["note"]
    verdict = plan["verdict"]
    assert verdict["recommended"] is None and verdict["max_load_qps"] > verdict["arrival_rate_qps"]
    assert "routing" in verdict["reason"] or "router" in verdict["reason"]
    labels = set(pd.read_parquet(folder / "results.parquet")["policy"])
    assert {s["label"] for s in steps} <= labels | {a["same_as"] for a in plan["allocations"]}


def test_traffic_beyond_the_inventory_is_refused_with_the_load_it_carries(tmp_path: Path) -> None:
    data = small_scenario(num_queries=3000, workload={"arrivals": {"type": "poisson", "rate": 300.0},
                                                      "pool": {"type": "synthetic"}})
    data["gpus"][0]["count"] = 8
    data["deployments"][1]["tp"] = 4
    data["router"] = {"policy": "lagrangian", "window_s": 1.0, "capacity": "slots"}
    path = tmp_path / "busy.yaml"
    path.write_text(yaml.safe_dump(data))
    res = cli("plan", str(path), "--out", str(tmp_path / "out"), "--slo", "e2e_p95=60s", "--seeds", "1")
    assert res.exit_code == 2, res.output
    assert "serves at most" in res.output and "gpus[].count" in res.output
    carried = float(res.output.split("serves at most ")[1].split()[0])
    assert 0 < carried < 300
    assert not (tmp_path / "out").exists()


def test_compare_and_whatif_do_not_take_over_a_plan_folder(tiny_plan: tuple[Path, Path]) -> None:
    path, folder = tiny_plan
    before = sorted(p.name for p in (folder / "runs").iterdir())
    for args in (["compare", str(path), "--policies", "cheapest", "--seeds", "1"],
                 ["whatif", str(path), "--set", "workload.arrivals.rate=5", "--seeds", "1"]):
        res = cli(*args, "--out", str(folder), "-q")
        assert res.exit_code == 2 and "plan experiment" in res.output, res.output
    assert sorted(p.name for p in (folder / "runs").iterdir()) == before
