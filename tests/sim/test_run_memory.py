"""What a run keeps in memory (issue 14's million-request target): leaner representations against the
straightforward ones they replace, and the inputs a run frees once its engine has stopped."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

import sim.runner
from sim.config import parse_scenario
from sim.predict import priced
from sim.runner import prepare, simulate
from sim.workload.build import price
from tests.sim.conftest import small_scenario

WALL_CLOCK = ["solve_time_s", "routing_time_s"]


def _scenario(**top: Any) -> Any:
    return parse_scenario(yaml.safe_dump(small_scenario(**top)), file="t.yaml")


def test_group_starts_only_when_some_group_has_several_queries() -> None:
    poisson = prepare(_scenario()).workload
    assert poisson.group_starts is None  # 0 .. N-1 is not stored
    batched = prepare(_scenario(workload={"arrivals": {"type": "batch", "batch_size": 7, "interval_s": 2.0},
                                          "pool": {"type": "synthetic"}})).workload
    n = len(batched.times)
    assert batched.group_starts is not None
    np.testing.assert_array_equal(batched.group_starts, np.arange(0, n, 7))


def test_predicted_cost_shares_the_realised_cost_only_when_equal(monkeypatch: pytest.MonkeyPatch) -> None:
    """priced(same_as=...) against price(): the same floats either way; a read-only view of same_as when
    every slice equals it, a new array when one slice (here the last, or the first) does not."""
    from sim import predict

    monkeypatch.setattr(predict, "ROWS_AT_ONCE", 64)
    rng = np.random.default_rng(5)
    prompt, output = rng.integers(1, 5000, 1001), rng.integers(1, 800, (1001, 3))
    pin, pout = np.array([0.05, 3.0, 0.2]), np.array([0.08, 15.0, 0.3])
    straight = price(prompt, output, pin, pout)
    realised = straight.copy()
    shared = priced(prompt, output, pin, pout, same_as=realised)
    np.testing.assert_array_equal(shared, straight)
    assert np.shares_memory(shared, realised) and not shared.flags.writeable
    for row in (1000, 0):
        other = realised.copy()
        other[row, 1] += 1e-9
        got = priced(prompt, output, pin, pout, same_as=other)
        np.testing.assert_array_equal(got, straight)
        assert not np.shares_memory(got, other) and got.flags.writeable


def test_quickstart_like_predicted_cost_is_the_realised_cost() -> None:
    """noisy_oracle without token noise predicts the served tokens, so the predicted cost is the realised
    one (shared, not copied); with token noise it is not, and is computed as before."""
    exact = prepare(_scenario())
    assert np.shares_memory(exact.predictions.cost, exact.workload.cost)
    np.testing.assert_array_equal(exact.predictions.cost, price(exact.workload.prompt_tokens,
                                                                exact.workload.output_tokens, *_prices(exact)))
    noisy = prepare(_scenario(router={"policy": "threshold_greedy",
                                      "predictor": {"name": "noisy_oracle", "params": {"token_noise": 0.3}}}))
    assert not np.shares_memory(noisy.predictions.cost, noisy.workload.cost)


def _prices(prepared: Any) -> tuple[np.ndarray, np.ndarray]:
    sc = _scenario()
    return (np.array([m.price_in_per_mtok for m in sc.models]), np.array([m.price_out_per_mtok for m in sc.models]))


@pytest.mark.parametrize("router", [{"policy": "threshold_greedy"},
                                    {"policy": "lagrangian", "budget_per_query": 1e-4, "window_s": 0.5}])
def test_own_inputs_trimmed_give_the_results_of_a_callers_prepared(router: dict[str, Any]) -> None:
    """simulate(sc) drops what only prepare reads and frees the rest before summarising; a caller's
    Prepared is kept whole. Summary and both tables are the same."""
    sc = _scenario(router=router)
    own, given = simulate(sc), simulate(sc, prepared=prepare(sc))
    assert own.summary == given.summary
    pd.testing.assert_frame_equal(own.requests, given.requests)
    pd.testing.assert_frame_equal(own.batches.drop(columns=WALL_CLOCK), given.batches.drop(columns=WALL_CLOCK))


def test_the_dispatcher_is_freed_when_the_engine_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the cyclic collector: the run's reference cycles (engine callbacks → dispatcher) do not keep
    the dispatcher and its per-query inputs alive through summarising."""
    seen: list[weakref.ref[Any]] = []
    make = sim.runner._make_dispatcher

    def tracked(*args: Any, **kwargs: Any) -> Any:
        d = make(*args, **kwargs)
        seen.append(weakref.ref(d))
        return d

    monkeypatch.setattr(sim.runner, "_make_dispatcher", tracked)
    inner = sim.runner.summarise
    alive: list[bool] = []
    monkeypatch.setattr(sim.runner, "summarise", lambda *a: (alive.append(seen[0]() is not None), inner(*a))[1])
    enabled = gc.isenabled()
    gc.disable()
    try:
        simulate(_scenario())
    finally:
        if enabled:
            gc.enable()
    assert alive == [False]


def _same_results(a: Any, b: Any) -> None:
    assert a.summary == b.summary
    pd.testing.assert_frame_equal(a.requests, b.requests)
    pd.testing.assert_frame_equal(a.batches.drop(columns=WALL_CLOCK), b.batches.drop(columns=WALL_CLOCK))


@pytest.mark.parametrize("router", [{"policy": "threshold_greedy"}, {"policy": "least_loaded"},
                                    {"policy": "lagrangian", "budget_per_query": 1e-4}])
def test_decision_column_is_the_arrival_column_without_a_window(router: dict[str, Any],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Δ = 0: the recorder's decision column is its arrival column (one array); the results are those of
    two columns written separately."""
    import sim.dispatcher
    from sim.metrics.recorder import RequestRecorder

    recs: list[RequestRecorder] = []
    init = RequestRecorder.__init__

    def tracked(self: RequestRecorder, n: int) -> None:
        init(self, n)
        recs.append(self)

    monkeypatch.setattr(RequestRecorder, "__init__", tracked)
    sc = _scenario(router=router)
    one = simulate(sc)
    assert recs[-1].decision is recs[-1].arrival
    monkeypatch.setattr(sim.dispatcher.Dispatcher, "decisions_at_arrival", False)
    two = simulate(sc)
    assert recs[-1].decision is not recs[-1].arrival
    _same_results(one, two)
    windowed = simulate(_scenario(router={**router, "window_s": 0.5}))
    assert recs[-1].decision is not recs[-1].arrival
    assert (windowed.requests["decision_s"] > windowed.requests["arrival_s"]).any()


@pytest.mark.parametrize("router", [{"policy": "threshold_greedy"}, {"policy": "latency_aware"},
                                    {"policy": "cheapest", "slo": {"e2e_s": 5.0}}])
def test_latency_estimates_kept_only_when_made(router: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorder's prediction columns exist only when the dispatcher makes estimates; a run without
    them gives the results of one keeping all-NaN columns."""
    from sim.metrics.recorder import RequestRecorder

    sc = _scenario(router=router)
    lean = simulate(sc)
    made = router["policy"] != "threshold_greedy"
    assert lean.requests["predicted_e2e_s"].notna().any() == made
    init = RequestRecorder.__init__

    def always(self: RequestRecorder, n: int) -> None:
        init(self, n)
        self.keep_estimates()

    monkeypatch.setattr(RequestRecorder, "__init__", always)
    _same_results(lean, simulate(sc))
