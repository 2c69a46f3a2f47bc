"""SLO-aware routing end to end (issue 12): scenarios/slo_routing.yaml, queue-blind vs SLO-aware
Lagrangian on the same workload, at matched spend; the router.slo section's checks; determinism."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from reports.stats import bisect_knob
from sim.config import load_scenario, parse_scenario
from sim.config.schema import Scenario, SloSpec
from sim.errors import InputError
from sim.runner import Prepared, RunResult, prepare, simulate
from tests.sim.conftest import SCENARIOS, small_scenario
from tests.sim.test_bad_input import assert_clean_failure, run_cli

SLO_S = 30.0


@cache
def aware_scenario() -> Scenario:
    return load_scenario(SCENARIOS / "slo_routing.yaml")


def with_router(sc: Scenario, **update: object) -> Scenario:
    return sc.model_copy(update={"router": sc.router.model_copy(update=update)})


@cache
def shared() -> Prepared:
    return prepare(aware_scenario())


@cache
def aware() -> RunResult:
    return simulate(aware_scenario(), prepared=shared())


@cache
def blind() -> RunResult:
    return simulate(with_router(aware_scenario(), slo=None), prepared=shared())


def attainment(req: pd.DataFrame, slo: float) -> float:
    """Share of all queries that completed within ``slo`` of their arrival (a rejected one missed it)."""
    met = (req.status == "completed") & (req.finish_s - req.arrival_s <= slo)
    return float(met.mean())


def test_scenario_routes_on_a_30_second_end_to_end_slo() -> None:
    slo = aware_scenario().router.slo
    assert slo is not None and (slo.e2e_s, slo.route_on, slo.mode) == (SLO_S, "e2e", "constraint")
    assert aware_scenario().router.policy == "lagrangian" and aware_scenario().router.window_s > 0


def test_queue_blind_routing_saturates_a_strong_model() -> None:
    req = blind().requests
    waits = (req.start_s - req.decision_s).groupby(req.model).quantile(0.99)
    strong = waits.idxmax()
    assert strong in ("llama-70b", "frontier-405b")
    assert waits[strong] > SLO_S  # its queue alone, before any service, exceeds the SLO


def test_slo_aware_lagrangian_attains_the_slo_where_queue_blind_does_not() -> None:
    a, b = attainment(aware().requests, SLO_S), attainment(blind().requests, SLO_S)
    print(f"\nattainment of the {SLO_S:g} s end-to-end SLO: SLO-aware {a:.1%}, queue-blind {b:.1%}")
    assert a >= 0.95
    assert b <= a - 0.15


def test_summary_reports_the_attainment_the_requests_show() -> None:
    section = aware().summary.get("slo")
    if section is None:
        pytest.skip("the summary's slo section is not in this checkout yet")
    assert section["e2e_s"] == SLO_S
    assert section["attainment_e2e"] == pytest.approx(attainment(aware().requests, SLO_S))


def test_accuracy_at_matched_spend_is_within_two_points() -> None:
    """Bisect the SLO-aware run's budget until its spend is within 1 % of the queue-blind run's (as
    ``llmsim compare --match-spend`` does), then compare accuracy there."""
    target = blind().summary["cost"]["total_usd"]
    runs: dict[float, RunResult] = {}

    def spend(budget: float) -> float:
        if budget not in runs:
            runs[budget] = simulate(with_router(aware_scenario(), budget_per_query=budget), prepared=shared())
        return float(runs[budget].summary["cost"]["total_usd"])

    base = aware_scenario().router.budget_per_query
    assert base is not None
    found = bisect_knob(spend, 0.8 * base, 1.25 * base, target, rtol=0.01, max_iter=12)
    assert found.reached, found
    matched = runs[found.value]
    gap = blind().summary["accuracy"] - matched.summary["accuracy"]
    print(f"\nmatched spend ${found.achieved:.3f} (blind ${target:.3f}): accuracy gap {gap * 100:+.2f} points, "
          f"attainment {attainment(matched.requests, SLO_S):.1%}")
    assert abs(gap) <= 0.02
    assert attainment(matched.requests, SLO_S) >= 0.95


@pytest.mark.parametrize("run", [aware, blind], ids=["aware", "blind"])
def test_every_query_is_accounted_for_with_a_prediction(run) -> None:  # type: ignore[no-untyped-def]
    res = run()
    q = res.summary["queries"]
    assert q["arrived"] == len(res.requests) == q["completed"] + q["rejected"]
    assert q["running"] == q["pending"] == 0
    served = res.requests[res.requests.status == "completed"]
    assert np.isfinite(served.predicted_e2e_s).all() and np.isfinite(served.predicted_ttft_s).all()
    assert (served.predicted_e2e_s >= served.predicted_ttft_s).all()


def test_slo_capacity_never_refuses_a_query() -> None:
    """The SLO capacity steers the policy; only today's capacity is enforced by refusing queries."""
    assert aware().summary["queries"]["rejected_by_reason"]["capacity"] == 0


def test_zero_penalty_routes_exactly_as_queue_blind() -> None:
    sc = with_router(aware_scenario(), slo=SloSpec(e2e_s=SLO_S, mode="penalty", penalty=0.0))
    res = simulate(sc, prepared=shared())
    pd.testing.assert_series_equal(res.requests.model, blind().requests.model)
    pd.testing.assert_series_equal(res.requests.finish_s, blind().requests.finish_s)


@pytest.mark.parametrize("slo", [SloSpec(ttft_s=3.0, route_on="ttft"), SloSpec(e2e_s=SLO_S, mode="penalty", penalty=0.05)],
                         ids=["ttft", "penalty"])
def test_other_slo_settings_also_beat_queue_blind_on_their_metric(slo: SloSpec) -> None:
    res = simulate(with_router(aware_scenario(), slo=slo), prepared=shared())
    metric = "first_token_s" if slo.route_on == "ttft" else "finish_s"
    target = slo.ttft_s if slo.route_on == "ttft" else slo.e2e_s
    assert target is not None

    def share(req: pd.DataFrame) -> float:
        return float(((req.status == "completed") & (req[metric] - req.arrival_s <= target)).mean())

    assert share(res.requests) >= share(blind().requests) + 0.1


def test_deterministic() -> None:
    again = simulate(aware_scenario())
    assert again.summary == aware().summary
    pd.testing.assert_frame_equal(again.requests, aware().requests)


# -------------------------------------------------------------------------------- router.slo checks
def parse(slo: object) -> Scenario:
    data = small_scenario()
    data["router"]["slo"] = slo
    return parse_scenario(yaml.safe_dump(data, sort_keys=False), file="t.yaml")


@pytest.mark.parametrize(("slo", "where", "says"), [
    ({"ttft_s": 1.0}, "router.slo.e2e_s", "route_on is 'e2e'"),
    ({"e2e_s": 10.0, "route_on": "ttft"}, "router.slo.ttft_s", "route_on is 'ttft'"),
    ({"e2e_s": 10.0, "mode": "hard"}, "router.slo.mode", "'constraint' or 'penalty'"),
    ({"e2e_s": 10.0, "penalty": -1}, "router.slo.penalty", "greater than or equal to 0"),
    ({"e2e_s": 0}, "router.slo.e2e_s", "greater than 0"),
    ({"e2e_s": 1e9}, "router.slo.e2e_s", "less than or equal to 86400"),
    ({"e2e_s": 10.0, "route_on": "tpot"}, "router.slo.route_on", "e2e"),
    ({"e2e_s": 10.0, "margin": 1}, "router.slo.margin", "unknown key"),
])
def test_bad_slo_sections_are_one_clear_error(slo: dict[str, object], where: str, says: str) -> None:
    with pytest.raises(InputError) as info:
        parse(slo)
    assert where in str(info.value) and says in str(info.value), str(info.value)


def test_penalty_mode_without_mu_is_allowed_and_means_zero() -> None:
    slo = parse({"e2e_s": 10.0, "mode": "penalty"}).router.slo
    assert slo is not None and slo.penalty == 0.0 and slo.route_on == "e2e"


def test_cli_refuses_an_unset_route_on_slo(write_scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = small_scenario()
    data["router"]["slo"] = {"ttft_s": 2.0}
    path = write_scenario(data)
    out = tmp_path / "out"
    assert_clean_failure(run_cli(["run", str(path), "--out", str(out)]), str(path), "router.slo.e2e_s")
    assert not out.exists()


@pytest.mark.parametrize("window", [0.0, 2.0])
def test_latency_based_rules_see_latency_without_an_slo(window: float) -> None:
    """latency_aware and utility_greedy with a latency weight route on predicted latency even when no
    SLO is set (and so are not decided up front at window 0): the weight changes the routing."""
    base = with_router(aware_scenario(), slo=None, window_s=window, policy="utility_greedy")
    plain = simulate(base, prepared=shared()).requests
    weighted = simulate(with_router(base, params={"latency_weight": 0.05}), prepared=shared()).requests
    assert not plain.model.equals(weighted.model)
    assert weighted.predicted_e2e_s.notna().any()
    aware_rule = simulate(with_router(base, policy="latency_aware", params={}), prepared=shared())
    assert aware_rule.requests.predicted_e2e_s.notna().any()


def test_a_penalty_with_constraint_mode_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from sim.cli import app

    res = CliRunner().invoke(app, ["validate", str(SCENARIOS / "slo_routing.yaml"), "--set",
                                   "router.slo={e2e_s: 30, route_on: e2e, penalty: 1}"])
    assert res.exit_code == 2 and "router.slo.penalty" in res.output and "mode: penalty" in res.output
