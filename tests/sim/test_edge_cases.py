"""Edge cases found in review: degenerate workloads, long windows, cut-offs, accounting of what is
actually served, and bad input that used to end in a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from policies import Policy, RoutingProblem, RoutingResult, register
from sim.config import parse_scenario
from sim.runner import run
from tests.sim.conftest import SCENARIOS, cli, small_scenario
from tests.sim.test_bad_input import assert_clean_failure, mutate


@register("test_overfill")
class Overfill(Policy):
    """Test-only: sends every query to the last model, ignoring capacity (the dispatcher must refuse)."""

    def __init__(self) -> None:
        pass

    def _route(self, problem: RoutingProblem) -> RoutingResult:
        return RoutingResult.build(problem, np.full(problem.n, problem.m - 1), "feasible")




def parse(data: dict) -> object:  # type: ignore[type-arg]
    return parse_scenario(yaml.safe_dump(data), file="t.yaml")


def test_precomputed_threshold_uses_the_quality_floor_as_alpha() -> None:
    sc = parse(small_scenario(router={"policy": "threshold_greedy", "min_quality": 0.8}))
    fast, slow = run(sc), run(sc, _no_precompute=True)  # type: ignore[arg-type]
    assert fast.requests.equals(slow.requests)
    assert fast.summary == slow.summary


@pytest.mark.parametrize(
    "overrides",
    [
        {"num_queries": 4, "workload": {"arrivals": {"type": "batch", "batch_size": 4, "interval_s": 1.0},
                                        "pool": {"type": "synthetic"}}},
        {"num_queries": 1},
    ],
    ids=["all_at_t0", "single_query"],
)
def test_tiny_workloads_run(overrides: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    res = run(parse(small_scenario(**overrides)))  # type: ignore[arg-type]
    q = res.summary["queries"]
    assert q["completed"] + q["rejected"] == q["arrived"] == overrides["num_queries"]
    json.dumps(res.summary, allow_nan=False)  # undefined statistics (AUC on one class) are null


def test_zero_arrivals_is_a_clear_error(write_scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_scenario(small_scenario(num_queries=None, duration_s=0.001))
    out = tmp_path / "out"
    assert_clean_failure(cli("run", str(path), "--out", str(out)), str(path), "no arrivals")
    assert not out.exists()


def test_huge_window_costs_nothing_extra() -> None:
    """The longest window the schema takes (a day) over a short arrival burst: one batch, no time steps."""
    res = run(parse(small_scenario(num_queries=50, router={"policy": "cheapest", "window_s": 86400.0})))  # type: ignore[arg-type]
    assert res.summary["queries"]["completed"] == 50
    first = float(res.requests.arrival_s.min())  # the window opens with the first arrival
    assert len(res.batches) == 1 and res.batches.time_s[0] == pytest.approx(first + 86400.0, rel=1e-12)


def test_too_many_samples_is_refused(write_scenario) -> None:  # type: ignore[no-untyped-def]
    path = write_scenario(small_scenario(outputs={"sample_interval_s": 1e-9}))
    assert_clean_failure(cli("run", str(path)), "outputs.sample_interval_s", "samples")


def test_no_drain_processes_the_last_arrival_and_scores_only_completed() -> None:
    res = run(parse(small_scenario(num_queries=200, drain=False, workload={
        "arrivals": {"type": "poisson", "rate": 50.0}, "pool": {"type": "synthetic"}})))  # type: ignore[arg-type]
    r = res.requests
    assert r.arrival_s.notna().all() and (r.status != "pending").all()
    q = res.summary["queries"]
    assert q["running"] > 0
    done = r.status == "completed"
    assert res.summary["accuracy"] == pytest.approx(r.quality[done].sum() / len(r))
    assert res.summary["cost"]["total_usd"] == pytest.approx(r.cost_usd[done].sum())


def test_num_queries_and_duration_whichever_first() -> None:
    res = run(parse(small_scenario(num_queries=3000, duration_s=10.0)))  # type: ignore[arg-type]
    assert res.requests.arrival_s.max() < 10.0
    assert 0 < len(res.requests) < 3000


def test_budget_accounting_counts_only_served_queries() -> None:
    """Queries refused for capacity are not billed to their batch: with a budget large enough for what
    can be served, no batch is over even though the policy asked for more."""
    data = small_scenario(
        router={"policy": "test_overfill", "capacity": "slots", "allow_reject": True,
                "budget_per_query": 0.0045},
        workload={"arrivals": {"type": "batch", "batch_size": 60, "interval_s": 30.0},
                  "pool": {"type": "synthetic"}},
    )
    res = run(parse(data))  # type: ignore[arg-type]
    b = res.batches
    r = res.requests
    served = r[r.status != "rejected"]
    per_batch = served.groupby("batch").predicted_cost_usd.sum().reindex(b.batch, fill_value=0.0)
    assert np.allclose(b.predicted_cost_usd.to_numpy(), per_batch.to_numpy())
    assert (r.reject_reason == "capacity").sum() > 0
    assert res.summary["budget"]["batches_over_budget"] == 0


def test_realised_budget_overruns_are_reported() -> None:
    s = run(parse(small_scenario(router={"policy": "milp", "window_s": 5.0, "budget_per_query": 0.0003,
                                         "predictor": {"name": "noisy_oracle", "params": {"noise": 0.3,
                                                                                        "token_noise": 0.5}}})))  # type: ignore[arg-type]
    b = s.summary["budget"]
    assert b["batches_over_budget"] == 0  # the policy keeps the predicted cost in budget ...
    assert "batches_over_budget_realised" in b  # ... and realised spend is reported next to it
    r = s.requests
    billed = r[r.status != "rejected"]
    spent = billed.groupby("batch").cost_usd.sum()
    sizes = s.batches.set_index("batch")["size"]
    over = (spent > 0.0003 * sizes.reindex(spent.index) * (1 + 1e-9) + 1e-12).sum()
    assert b["batches_over_budget_realised"] == over


BAD = [
    (("workload", "arrivals"), {"type": "poisson", "rate": 1.0, "modulation": {"type": "piecewise", "steps": [[5, 1], [0, 2]]}},
     ["workload.arrivals.modulation", "start at 0"]),
    (("workload", "arrivals"), {"type": "poisson", "rate": 1.0, "modulation": {"type": "piecewise", "steps": [[0, 0]]}},
     ["every multiplier is 0"]),
    (("workload", "pool"), {"type": "synthetic", "tasks": []}, ["workload.pool.tasks"]),
    (("workload", "pool"), {"type": "synthetic", "tasks": [{"name": "a"}, {"name": "a"}]}, ["listed twice"]),
    (("workload", "pool"), {"type": "synthetic", "tasks": [{"name": "a", "length_dist": "geometric",
                                                            "output_median": 0.5}]}, [">= 1"]),
    (("router", "predictor"), {"name": "crystal_ball"}, ["router.predictor.name", "valid predictors"]),
    (("router", "predictor"), {"name": "knn", "params": {"k": "many"}}, ["router.predictor.params"]),
    (("router", "params"), {"seed": None}, ["router.params.seed", "integer"]),
    (("router", "params"), {"rng": "x"}, ["router.params.rng"]),
    (("workload", "pool"), {"type": "dataset", "kind": "nope", "path": "."}, ["workload.pool.kind", "valid kinds"]),
    (("duration_s",), 1e300, ["duration_s"]),
]


@pytest.mark.parametrize(("path", "value", "needles"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_more_bad_scenarios_fail_cleanly(write_scenario, tmp_path: Path, path, value, needles) -> None:  # type: ignore[no-untyped-def]
    data = mutate(path, value)
    if path == ("router", "params"):
        data["router"]["policy"] = "random"
    if path == ("duration_s",):
        data["num_queries"] = None
    scenario = write_scenario(data)
    out = tmp_path / "out"
    assert_clean_failure(cli("run", str(scenario), "--out", str(out)), str(scenario), *needles)
    assert not out.exists()


def test_set_on_invalid_yaml_and_errors_name_the_override(write_scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A bad value given by --set is reported against the option, not the line of the file's own (valid)
    value it replaced."""
    bad = write_scenario("name: [\n", name="broken.yaml")
    assert_clean_failure(cli("run", str(bad), "--set", "seed=1"), "not valid YAML")
    text = (SCENARIOS / "quickstart.yaml").read_text()
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "window_s:" in ln)
    result = cli("run", str(SCENARIOS / "quickstart.yaml"), "--set", "router.window_s=abc")
    assert_clean_failure(result, "router.window_s (from --set router.window_s)")
    assert f"line {line}" not in result.output


def test_unwritable_out_is_refused_before_simulating(tmp_path: Path) -> None:
    assert_clean_failure(cli("run", "--out", "/dev/null/run"), "/dev/null/run", "writable")


def test_wrote_line_lists_only_written_files(write_scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_scenario(small_scenario(outputs={"requests": False, "batches": False}))
    result = cli("run", str(path), "--out", str(tmp_path / "o"))
    assert result.exit_code == 0
    assert "requests.parquet" not in result.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["instances.parquet", "occupancy.parquet", "run_info.json", "scenario.yaml",
                                                              "summary.json"]


def test_both_side_rows_need_milp(write_scenario) -> None:  # type: ignore[no-untyped-def]
    data = small_scenario(router={"policy": "lagrangian", "budget_per_query": 0.001, "min_quality": 0.6})
    assert_clean_failure(cli("validate", str(write_scenario(data))), "router.policy", "use milp")
    data["router"]["policy"] = "milp"
    assert cli("validate", str(write_scenario(data))).exit_code == 0


def test_dataset_prompts_repeated_across_the_split_stay_out_of_training(tmp_path: Path) -> None:
    from sim.workload.build import build_workload

    table = tmp_path / "scores.csv"
    rows = ["query_id,task,model,score,prompt"]
    for q in range(80):
        text = f"the same question {q % 20}"  # every prompt appears 4 times
        for m in ("small", "big"):
            rows.append(f"q{q},qa,{m},{(q + len(m)) % 2},{text}")
    table.write_text("\n".join(rows) + "\n")
    data = small_scenario(num_queries=30, workload={
        "arrivals": {"type": "poisson", "rate": 2.0},
        "pool": {"type": "dataset", "kind": "long_table", "path": str(table)}})
    for m in data["models"]:
        m.pop("strength")
    wl = build_workload(parse(data))  # type: ignore[arg-type]
    assert wl.train is not None and wl.train.prompts is not None and wl.queries.prompts is not None
    assert not set(wl.train.prompts) & set(wl.queries.prompts)


def test_by_cost_orders_on_the_recorded_cost_that_is_billed(tmp_path: Path) -> None:
    """A dataset's recorded cost (not a token-priced estimate) orders the queries and is what's billed."""
    from sim.workload.build import build_workload

    table = tmp_path / "scores.csv"
    rows = ["query_id,task,model,score,prompt,input_tokens,output_tokens,cost_usd"]
    for q in range(40):
        # long prompts get the *smallest* recorded cost, so token pricing would give the opposite order
        tokens = 100 + 10 * q
        for m, recorded in (("small", 0.001 * (40 - q)), ("big", 0.01 * (40 - q))):
            rows.append(f"q{q},qa,{m},1,question {q},{tokens},10,{recorded}")
    table.write_text("\n".join(rows) + "\n")
    data = small_scenario(num_queries=None, workload={
        "arrivals": {"type": "batch", "batch_size": 12, "interval_s": 1.0},
        "pool": {"type": "dataset", "kind": "long_table", "path": str(table), "test_fraction": 0.5},
        "order": {"mode": "by_cost", "strong_model": "big"}})
    data["num_queries"] = 12
    for m in data["models"]:
        m.pop("strength")
    wl = build_workload(parse(data))  # type: ignore[arg-type]
    billed = wl.cost[:, 1]
    assert np.all(np.diff(billed) <= 0)  # hardest (dearest) first, on the recorded cost
    assert wl.queries.cost_usd is not None and np.array_equal(billed, wl.queries.cost_usd[:, 1])
