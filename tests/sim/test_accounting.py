"""Routing accounting on RouterBench-like data (issue 8): recorded costs drive routing, prices become
optional, floors are reported predicted and realised, the oracle is judged on what it routes on, and
``on_budget=downgrade`` downgrades instead of rejecting."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

from policies import RoutingProblem
from policies.per_query import greedy_assign
from policies.problem import REJECT
from sim.config.load import load_scenario
from sim.datasets.tokens import estimate_tokens
from sim.errors import InputWarning, ScenarioError
from sim.runner import run

from .conftest import small_scenario

RB_MODELS = ("rb-small", "rb-big")  # names no public price list knows
PRICES = {"rb-small": (0.5, 1.5), "rb-big": (10.0, 30.0)}  # USD per 1M tokens behind the recorded costs


# --------------------------------------------------------------------------- downgrade
def reference_downgrade(cost, score, capacity, budget):  # type: ignore[no-untyped-def]
    """The documented rule, written plainly: best-ranked model fitting the budget left after reserving
    every later query's cheapest cost; else the cheapest model with capacity if it fits; else reject."""
    n, m = len(cost), len(cost[0])
    left = [int(min(c, n)) for c in capacity]
    spent, out = 0.0, []
    for i in range(n):
        reserve = sum(min(cost[k]) for k in range(i + 1, n))
        ranked = sorted(range(m), key=lambda j: -score[i][j])  # stable: ties keep model order
        pick = next((j for j in ranked if left[j] >= 1 and spent + cost[i][j] + reserve <= budget + 1e-9), None)
        if pick is None:
            with_room = sorted((j for j in range(m) if left[j] >= 1), key=lambda j: cost[i][j])
            if with_room and spent + cost[i][with_room[0]] <= budget + 1e-9:
                pick = with_room[0]
        if pick is None:
            out.append(REJECT)
            continue
        out.append(pick)
        left[pick] -= 1
        spent += cost[i][pick]
    return out


def test_downgrade_matches_the_reference_rule():
    rng = np.random.default_rng(8)
    for _ in range(300):
        n, m = int(rng.integers(1, 9)), int(rng.integers(1, 4))
        cost = rng.choice([0.1, 0.2, 0.5, 1.0, 2.0], size=(n, m))
        score = rng.random((n, m))
        capacity = rng.choice([1.0, 2.0, np.inf], size=m)
        budget = float(rng.uniform(0.0, 1.5) * cost.max(axis=1).sum())
        p = RoutingProblem(quality=rng.random((n, m)), cost=cost, capacity=capacity, budget=budget,
                           allow_reject=True)
        got = greedy_assign(p, score, "downgrade").tolist()
        assert got == reference_downgrade(cost.tolist(), score.tolist(), capacity.tolist(), budget)


def test_downgrade_rejects_nothing_while_the_cheapest_models_fit():
    # λ = 0: every query prefers the dear model; first-come spending rejected the later ones.
    n = 50
    cost = np.tile([1e-3, 1e-5], (n, 1))
    quality = np.tile([0.9, 0.6], (n, 1))
    p = RoutingProblem(quality=quality, cost=cost, budget=n * 1e-4, allow_reject=True)
    a = greedy_assign(p, quality, "downgrade")
    assert (a >= 0).all()
    assert cost[np.arange(n), a].sum() <= p.budget + 1e-12
    assert (a == 0).sum() == int((n * 1e-4 - n * 1e-5) // (1e-3 - 1e-5))  # as many upgrades as fit
    assert (greedy_assign(p, quality, "reject") == REJECT).sum() > 0  # unchanged: reject still rejects


# --------------------------------------------------------------------------- RouterBench scenarios
def rb_frame(n: int = 240) -> pd.DataFrame:
    """Wide RouterBench-style data whose recorded costs are exactly PRICES × estimated tokens."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(n):
        task = ("arc", "winogrande", "mbpp")[i % 3]
        prompt = f"Question {i}: " + "x" * int(rng.integers(20, 400))
        row: dict[str, object] = {"sample_id": f"{task}.{i}", "prompt": repr([prompt]), "eval_name": task}
        p_tok = int(estimate_tokens(prompt)[0])
        for j, model in enumerate(RB_MODELS):
            answer = "y" * int(rng.integers(4, 200) * (j + 1))
            o_tok = int(estimate_tokens(answer)[0])
            row[model] = float(rng.random() < (0.45 + 0.4 * j))
            row[model + "|model_response"] = repr([answer])
            row[model + "|total_cost"] = (p_tok * PRICES[model][0] + o_tok * PRICES[model][1]) / 1e6
        rows.append(row)
    return pd.DataFrame(rows)


def rb_scenario(tmp_path, *, prices: bool = False, **router) -> dict:  # type: ignore[no-untyped-def]
    data = tmp_path / "rb.csv"
    if not data.exists():
        rb_frame().to_csv(data, index=False)
    sc = small_scenario(num_queries=120)
    for m, name in zip(sc["models"], RB_MODELS, strict=True):
        m.pop("strength")
        m["dataset_model"] = name
        if not prices:
            m.pop("price_in_per_mtok")
            m.pop("price_out_per_mtok")
    sc["workload"] = {"arrivals": {"type": "batch", "batch_size": 10, "interval_s": 1.0},
                      "pool": {"type": "dataset", "kind": "routerbench", "path": str(data), "test_fraction": 0.5}}
    sc["router"] = {"policy": "milp", "predictor": {"name": "knn", "params": {"k": 5}}, **router}
    return sc


def load(write_scenario, sc):  # type: ignore[no-untyped-def]
    return load_scenario(write_scenario(sc))


def test_recorded_costs_make_prices_optional_and_drive_routing(tmp_path, write_scenario):
    sc = load(write_scenario, rb_scenario(tmp_path, budget_per_query=3e-4))
    assert sc.models[0].price_in_per_mtok is None  # not demanded, not invented
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        res = run(sc)
    req = res.requests[res.requests["status"] == "completed"]
    assert (req["predicted_cost_usd"] > 0).all()
    # The fitted per-token rates recover the prices behind the recorded costs; only lengths are predicted.
    ratio = req["predicted_cost_usd"].sum() / req["cost_usd"].sum()
    assert 0.5 < ratio < 2.0
    b = res.summary["budget"]
    assert b["batches_over_budget"] == 0


def test_noisy_oracle_predicts_the_recorded_cost(tmp_path, write_scenario):
    data = rb_scenario(tmp_path)
    data["router"]["predictor"] = {"name": "noisy_oracle", "params": {"noise": 0.0}}
    res = run(load(write_scenario, data))
    req = res.requests[res.requests["status"] == "completed"]
    np.testing.assert_allclose(req["predicted_cost_usd"], req["cost_usd"])


def test_zero_prices_next_to_recorded_costs_warn_and_do_not_zero_the_prediction(tmp_path, write_scenario):
    data = rb_scenario(tmp_path, prices=True, budget_per_query=3e-4)
    for m in data["models"]:
        m["price_in_per_mtok"] = m["price_out_per_mtok"] = 0.0
    sc = load(write_scenario, data)
    with pytest.warns(InputWarning) as got:
        res = run(sc)
    texts = [str(w.message) for w in got if issubclass(w.category, InputWarning)]
    for i in (0, 1):  # both models' prices are zero: both are named
        assert any(re.search(rf"models\[{i}\].*give 0 USD where the dataset recorded", t) for t in texts), texts
    assert (res.requests.loc[res.requests["status"] == "completed", "predicted_cost_usd"] > 0).all()


def test_prices_disagreeing_with_recorded_costs_warn(tmp_path, write_scenario):
    data = rb_scenario(tmp_path, prices=True)
    data["models"][1]["price_in_per_mtok"], data["models"][1]["price_out_per_mtok"] = 10.0, 30.0  # right
    data["models"][0]["price_in_per_mtok"], data["models"][0]["price_out_per_mtok"] = 0.5, 3.0  # +~60 %
    with pytest.warns(InputWarning) as got:
        run(load(write_scenario, data))
    texts = [str(w.message) for w in got if issubclass(w.category, InputWarning)]
    assert any("models[0]" in t and "'small'" in t for t in texts)
    assert not any("models[1]" in t for t in texts)


def test_prices_still_required_without_recorded_costs(write_scenario):
    data = small_scenario()
    del data["models"][0]["price_in_per_mtok"]
    data["models"][0]["name"] = "rb-small"
    data["deployments"][0]["model"] = "rb-small"
    with pytest.raises(ScenarioError, match=r"no price for model 'rb-small'"):
        load_scenario(write_scenario(data))


# --------------------------------------------------------------------------- floors
def realised_floor_misses(requests: pd.DataFrame, sizes: np.ndarray, alpha: float) -> int:
    served = requests[requests["status"].isin(["completed", "running"]) & (requests["batch"] >= 0)]
    per_batch = served.groupby("batch")["quality"].sum().reindex(range(len(sizes)), fill_value=0.0)
    return int((per_batch.to_numpy() / sizes < alpha - 1e-9).sum())


@pytest.mark.parametrize("policy", ["milp", "oracle"])
def test_floor_reported_predicted_and_realised(tmp_path, write_scenario, policy):
    data = rb_scenario(tmp_path, min_quality=0.7, allow_reject=False)
    data["router"]["policy"] = policy
    res = run(load(write_scenario, data))
    b = res.summary["budget"]
    assert b["quality_floor"] == 0.7
    sizes = res.batches["size"].to_numpy(dtype=float)
    assert b["quality_floor_misses_realised"] == realised_floor_misses(res.requests, sizes, 0.7)
    if policy == "oracle":
        # Judged on the true quality it routes on: it meets the floor wherever the truth allows it.
        assert b["policy_infeasible_batches"] == b["quality_floor_misses"] == b["quality_floor_misses_realised"]
    else:
        assert b["quality_floor_misses_realised"] > b["quality_floor_misses"]  # predictions are optimistic


def test_no_floor_reports_null_floor(tmp_path, write_scenario):
    res = run(load(write_scenario, rb_scenario(tmp_path)))
    assert res.summary["budget"]["quality_floor"] is None
    assert res.summary["budget"]["quality_floor_misses_realised"] == 0
    assert res.summary["data"] == {"rows_dropped_duplicate": 0, "rows_dropped_missing_score": 0}


def test_drop_counts_reach_the_summary(tmp_path, write_scenario):
    df = rb_frame()
    df = pd.concat([df, df.iloc[:3]], ignore_index=True)
    df.loc[5, "rb-big"] = np.nan
    df.to_csv(tmp_path / "rb.csv", index=False)
    data = rb_scenario(tmp_path)
    data["workload"]["pool"]["options"] = {"on_duplicate": "first", "on_missing_score": "drop"}
    res = run(load(write_scenario, data))
    assert res.summary["data"] == {"rows_dropped_duplicate": 3, "rows_dropped_missing_score": 1}


def test_trace_tokens_need_prices_even_with_recorded_costs(tmp_path, write_scenario):
    # The trace's own token counts are served, so what the dataset recorded is not what is billed.
    trace = tmp_path / "trace.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46Z,10,5\n"
                     "2023-11-16 18:15:47Z,12,6\n")
    data = rb_scenario(tmp_path)
    data["workload"]["arrivals"] = {"type": "trace", "path": str(trace)}
    with pytest.raises(ScenarioError, match=r"no price for model 'small'"):
        load_scenario(write_scenario(data))
    data["workload"]["arrivals"]["use_trace_tokens"] = False
    assert load_scenario(write_scenario(data)).models[0].price_in_per_mtok is None
