"""``instances: 0``: a model stays listed (its router column, predictions and workload draws unchanged)
but is not served. Nothing is routed to it under any capacity mode, every query is accounted for, and
the other models' results are what a cluster without its GPUs gives."""

from __future__ import annotations

import pytest

from sim.config.load import load_scenario, parse_scenario
from sim.errors import InputError
from sim.experiments.plan import read_source
from sim.runner import prepare, prepare_key, simulate
from tests.sim.conftest import SCENARIOS

QUICKSTART = SCENARIOS / "quickstart.yaml"


def scenario(*sets: str, path=QUICKSTART):  # type: ignore[no-untyped-def]
    src = read_source(path)
    return parse_scenario(src.text, file=src.file, base_dir=src.base_dir, overrides=list(sets))


@pytest.mark.parametrize("policy", ["threshold_greedy", "lagrangian", "cheapest", "utility_greedy"])
@pytest.mark.parametrize("capacity", ["slots", "slots_and_queue", "unlimited"])
def test_nothing_reaches_an_unserved_model(policy: str, capacity: str) -> None:
    sc = scenario("deployments.2.instances=0", f"router.policy={policy}", "router.params={}",
                  f"router.capacity={capacity}", "num_queries=600")
    res = simulate(sc)
    q = res.summary["queries"]
    assert q["completed"] + q["rejected"] + q.get("lost", 0) == q["arrived"] == 600
    assert (res.requests["model"] != "llama-70b").all()
    llama = res.summary["models"]["llama-70b"]
    assert llama["queries"] == 0 and llama["busy_fraction"] == 0.0
    # GPU cost counts only the instances that exist
    assert res.summary["cost"]["gpu_usd"] == pytest.approx(
        (2 * 1.8 + 2 * 1.8 + 2 * 8 * 3.5) * res.summary["sim_time_s"] / 3600)


def test_slo_routing_predicts_infinity_for_an_unserved_model() -> None:
    sc = scenario("deployments.0.instances=0", "num_queries=400", path=SCENARIOS / "slo_routing.yaml")
    res = simulate(sc)
    name = sc.deployments[0].model
    assert (res.requests["model"] != name).all()
    q = res.summary["queries"]
    assert q["completed"] + q["rejected"] + q.get("lost", 0) == q["arrived"]


def test_the_workload_is_the_same_with_or_without_a_models_instances() -> None:
    full, empty = load_scenario(QUICKSTART), scenario("deployments.1.instances=0")
    assert prepare_key(full) == prepare_key(empty)
    a, b = prepare(full), prepare(empty)
    assert (a.predictions.quality == b.predictions.quality).all()


def test_every_deployment_empty_is_refused() -> None:
    with pytest.raises(InputError, match="every deployment has 0 instances"):
        scenario(*(f"deployments.{k}.instances=0" for k in range(4)))


@pytest.mark.parametrize("policy", ["threshold_greedy", "cheapest", "utility_greedy"])
@pytest.mark.parametrize("capacity", ["slots_and_queue", "unlimited"])
def test_deciding_up_front_stays_exact_with_an_unserved_model(policy: str, capacity: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A model with no instance has capacity 0 for the whole run, so row-independent rules still decide
    every query in one call (the fast path), with exactly the answers of routing them one by one."""
    from sim.dispatcher import Dispatcher

    sc = scenario("deployments.2.instances=0", f"router.policy={policy}", "router.params={}",
                  f"router.capacity={capacity}", "num_queries=600")
    used: list[bool] = []
    real = Dispatcher.precompute
    monkeypatch.setattr(Dispatcher, "precompute", lambda self: used.append(real(self)) or used[-1])
    fast = simulate(sc)
    slow = simulate(sc, _no_precompute=True)
    assert used == [True]
    assert fast.requests.equals(slow.requests) and fast.summary == slow.summary
    assert (fast.requests["model"] != "llama-70b").all()
