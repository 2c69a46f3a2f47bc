"""Review of the issue-14 fast paths of the dispatcher and runner against the straightforward ones, on the
inputs where they could part: arrival groups of several queries mixed with single ones, batching
windows, queries too long for the chosen model, budgets and floors, full models, policies that ignore
capacity, fall-backs (SLO, latency routing, estimates, prices, oracle) and node failures.

"Straightforward" = every switch the code keeps for comparison, at once: ``_no_precompute``,
``Dispatcher.scalar_one_query = False``, ``Dispatcher.count_in_flight = False`` and the arrival generator
:func:`sim.engine.feed.reference_process` instead of :class:`~sim.engine.feed.ArrivalFeed`. Wall-clock
columns aside, the summary and both tables must be equal. The last tests pin differences this review
found (fixed since).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import simpy
import yaml

import sim.engine.feed as feed
from policies import RoutingProblem, available_policies, check_assignment, policy_class
from policies.one_query import OneQuery
from policies.registry import _REGISTRY, Policy, register
from policies.result import TOL, RoutingResult
from sim.config import parse_scenario
from sim.dispatcher import Dispatcher
from sim.runner import Prepared, prepare, simulate
from tests.sim.conftest import small_scenario

WALL_CLOCK = ("solve_time_s", "routing_time_s")
SMALL_KV = {"gpu_memory_utilization": 0.2005, "activation_reserve_gib": 1.0}  # some queries never fit


class _ReferenceFeed:
    """The arrival generator in ArrivalFeed's shape (``done`` is the process)."""

    def __init__(self, env: simpy.Environment, times: np.ndarray, starts: np.ndarray | None, arrive: Any) -> None:
        if starts is None:  # every arrival its own group (the workload keeps no 0 .. N-1 then)
            starts = np.arange(len(times))
        self.done = env.process(feed.reference_process(env, times, starts, arrive))


def _scenario(router: dict[str, Any], *, deps: dict[str, Any] | None = None, dep0: dict[str, Any] | None = None,
              rate: float | None = None, **top: Any) -> Any:
    d = small_scenario(router=router, **top)
    d["gpus"][0]["count"] = 16
    for dep in d["deployments"]:
        dep.update(deps or {})
    d["deployments"][0].update(dep0 or {})
    if rate is not None:
        d["workload"]["arrivals"]["rate"] = rate
    return parse_scenario(yaml.safe_dump(d), file="t.yaml")


def _regrouped(sc: Any, seed: int, p_join: float = 0.3) -> Prepared:
    """``sc``'s inputs with random runs of consecutive arrivals merged into one arrival group (at the
    first one's time): groups of several queries mixed with single ones, as no arrival process gives."""
    prepared = prepare(sc)
    wl = prepared.workload
    new = np.r_[True, np.random.default_rng(seed).random(len(wl.times) - 1) >= p_join]
    starts = np.flatnonzero(new)
    times = wl.times[starts][np.cumsum(new) - 1]
    return dataclasses.replace(prepared, workload=dataclasses.replace(wl, times=times, group_starts=starts))


def _runs(sc: Any, prepared: Prepared | None, slow_ctx: pytest.MonkeyPatch) -> tuple[Any, Any]:
    fast = simulate(sc, prepared=prepared)
    slow_ctx.setattr(Dispatcher, "scalar_one_query", False)
    slow_ctx.setattr(Dispatcher, "count_in_flight", False)
    slow_ctx.setattr(feed, "ArrivalFeed", _ReferenceFeed)
    slow = simulate(sc, prepared=prepared, _no_precompute=True)
    slow_ctx.undo()
    return fast, slow


def _assert_same(fast: Any, slow: Any) -> None:
    assert fast.summary == slow.summary
    assert fast.requests.equals(slow.requests)
    cols = [c for c in fast.batches.columns if c not in WALL_CLOCK]
    assert fast.batches[cols].equals(slow.batches[cols])


# -- arrival groups mixed with single queries -------------------------------------------------------------

MIXED = {
    "threshold_greedy-too-long": ({"policy": "threshold_greedy", "params": {"alpha": 0.2}}, {}, SMALL_KV, None),
    "cheapest-budget-too-long": ({"policy": "cheapest", "budget_per_query": 5e-5, "min_quality": 0.4}, {}, SMALL_KV,
                                 None),
    "threshold_greedy-window-budget-too-long": ({"policy": "threshold_greedy", "window_s": 0.02,
                                                 "budget_per_query": 2e-4}, {}, SMALL_KV, None),
    "random-slots": ({"policy": "random", "capacity": "slots", "allow_reject": True}, {"max_seqs": 2}, {}, 20.0),
    "round_robin-slots": ({"policy": "round_robin", "capacity": "slots"}, {"max_seqs": 2}, {}, 20.0),
    "utility-queue": ({"policy": "utility_greedy", "params": {"lam": 300.0}}, {"max_seqs": 2, "max_queue": 1}, {},
                      20.0),
    "lagrangian-slots": ({"policy": "lagrangian", "capacity": "slots", "allow_reject": True}, {"max_seqs": 2}, {},
                         20.0),
    "lagrangian-no-reject": ({"policy": "lagrangian", "capacity": "slots"}, {"max_seqs": 2}, {}, 20.0),
    "least_loaded-shared": ({"policy": "least_loaded", "capacity": "slots", "allow_reject": True},
                            {"max_seqs": 3, "queue": "shared", "instances": 2}, SMALL_KV, 20.0),
}


@pytest.mark.parametrize("case", sorted(MIXED))
def test_mixed_arrival_groups(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Groups (the general route) interleaved with singles (up-front, scalar or counter paths): the
    policy's state (generator, cursor), the counters and the batch log stay in step."""
    router, deps, dep0, rate = MIXED[case]
    sc = _scenario(router, deps=deps, dep0=dep0, rate=rate)
    prepared = _regrouped(sc, seed=len(case))
    fast, slow = _runs(sc, prepared, monkeypatch)
    assert (fast.batches["size"] > 1).any() and (fast.batches["size"] == 1).any()
    _assert_same(fast, slow)


# -- paths that must fall back, or switch a fast path off -------------------------------------------------

FAIL = [{"kind": "node_failure", "at_s": 5.0, "deployment": 0, "instances": [0], "on_failure": "lose",
         "recover_at_s": 12.0}]
PRICES = [{"kind": "price_change", "at_s": 10.0, "model": "big", "multiplier": 0.1}]
FALLBACKS = {
    "slo": ({"policy": "threshold_greedy", "slo": {"e2e_s": 5.0}, "allow_reject": True}, {}),
    "latency_aware": ({"policy": "latency_aware"}, {}),
    "latency_weight": ({"policy": "utility_greedy", "params": {"latency_weight": 0.01}}, {}),
    "estimates": ({"policy": "cheapest", "capacity": "slots", "allow_reject": True},
                  {"outputs": {"latency_estimates": True}}),
    "prices": ({"policy": "utility_greedy", "params": {"lam": 1000.0}, "capacity": "slots", "allow_reject": True},
               {"events": PRICES}),
    "oracle": ({"policy": "oracle", "capacity": "slots"}, {}),
}


class _RouteOneCalled(Exception):
    pass


def _refuse_route_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every policy's own route_one raises :class:`_RouteOneCalled`."""

    def refuse(self: Policy, query: OneQuery) -> int | None:
        raise _RouteOneCalled(type(self).__name__)

    for name in available_policies():
        for cls in policy_class(name).__mro__:
            if cls is not Policy and "route_one" in vars(cls):
                monkeypatch.setattr(cls, "route_one", refuse)


def test_route_one_refusal_is_live(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control of the test below: without a fall-back reason the scalar path is taken."""
    _refuse_route_one(monkeypatch)
    for router in ({"policy": "cheapest", "capacity": "slots"}, {"policy": "least_loaded"},
                   {"policy": "lagrangian", "capacity": "slots", "allow_reject": True}):
        with pytest.raises(_RouteOneCalled):
            simulate(_scenario(router, num_queries=20))


@pytest.mark.parametrize("case", sorted(FALLBACKS))
def test_scalar_path_not_taken_where_route_one_cannot_answer(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An SLO, latency routing, recorded estimates, price changes and true quality are not in a OneQuery:
    route_one is never asked (every rule's route_one raises here) and the run equals the general path."""
    router, top = FALLBACKS[case]
    sc = _scenario(router, deps={"max_seqs": 3}, rate=10.0, num_queries=150, **top)

    _refuse_route_one(monkeypatch)
    fast = simulate(sc)
    monkeypatch.undo()
    fast2, slow = _runs(sc, None, monkeypatch)
    _assert_same(fast, slow)
    _assert_same(fast2, slow)


def _dispatchers(monkeypatch: pytest.MonkeyPatch) -> list[Dispatcher]:
    seen: list[Dispatcher] = []
    init = Dispatcher.__init__

    def spy(self: Dispatcher, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        seen.append(self)

    monkeypatch.setattr(Dispatcher, "__init__", spy)
    return seen


def test_node_failures_switch_the_counters_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure hands requests back (lost or re-queued): least_loaded reads the instance sums then, and
    the run equals the straightforward one."""
    sc = _scenario({"policy": "least_loaded"}, deps={"max_seqs": 3, "instances": 2, "queue": "shared"},
                   rate=20.0, events=FAIL)
    seen = _dispatchers(monkeypatch)
    fast = simulate(sc)
    assert seen[0]._in_flight is None
    assert fast.summary["queries"]["lost"] > 0
    monkeypatch.undo()
    _assert_same(fast, _runs(sc, None, monkeypatch)[1])


# -- the in-flight counters, at every decision ------------------------------------------------------------

COUNTER_CASES = {
    "reserve-shared": ({"scheduler": "reserve", "max_seqs": 4, "queue": "shared", "instances": 2}, {}, {}),
    "paged-no-chunking": ({"chunked_prefill": False, "max_seqs": 4}, SMALL_KV, {}),
    "paged-shared": ({"queue": "shared", "instances": 2, "max_seqs": 4}, SMALL_KV, {}),
    "window": ({"max_seqs": 4}, {}, {"router": {"policy": "least_loaded", "window_s": 0.1}}),
    "batches": ({"max_seqs": 4}, {}, {"arrivals": {"type": "batch", "batch_size": 7, "interval_s": 0.3}}),
    "two-deployments-one-model": ({"max_seqs": 4}, {}, {"extra": {"model": "small", "gpu": "A100", "tp": 1,
                                                                  "instances": 2, "max_seqs": 3,
                                                                  "scheduler": "reserve"}}),
    "zero-instances": ({"max_seqs": 4}, {}, {"extra": {"model": "big", "gpu": "A100", "tp": 2, "instances": 0}}),
    "no-drain": ({"max_seqs": 4}, {}, {"top": {"drain": False, "num_queries": None, "duration_s": 8.0}}),
    "slots-reject": ({"max_seqs": 2, "max_queue": 1}, {}, {"router": {"policy": "least_loaded",
                                                                      "capacity": "slots", "allow_reject": True}}),
}


@pytest.mark.parametrize("case", sorted(COUNTER_CASES))
def test_counters_equal_instance_sums_at_every_decision(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """least_loaded's load from the counters equals running + queued summed over instances at each
    decision (stronger than equal results: a different load may still pick the same model)."""
    deps, dep0, opts = COUNTER_CASES[case]
    d = small_scenario(router=opts.get("router", {"policy": "least_loaded"}),
                       **{"num_queries": 300, **opts.get("top", {})})
    d["gpus"][0]["count"] = 16
    d["workload"]["arrivals"] = opts.get("arrivals", {"type": "poisson", "rate": 40.0})
    for dep in d["deployments"]:
        dep.update(deps)
    d["deployments"][0].update(dep0)
    if "extra" in opts:
        d["deployments"].append(copy.deepcopy(opts["extra"]))
    sc = parse_scenario(yaml.safe_dump(d), file="t.yaml")
    load = Dispatcher._load
    checked = []

    def compare(self: Dispatcher) -> list[int]:
        got = load(self)
        assert self._in_flight is not None
        assert list(got) == [g.in_flight for g in self.models], self.env.now
        checked.append(1)
        return got

    monkeypatch.setattr(Dispatcher, "_load", compare)
    res = simulate(sc)
    assert len(checked) == len(res.batches) > 40
    assert res.summary["queries"]["rejected_by_reason"]["too_long"] > 0  # refused, never counted in flight


# -- the scalar path's replica of the checker -------------------------------------------------------------

class _Stubborn(Policy):
    """Always model ``pick`` (-1: reject), full or not, in both paths: what route_one may answer is
    route()'s answer, so the dispatcher's own checks, refusals and messages are all that differ."""

    def __init__(self, pick: int = 0, claim: str = "feasible") -> None:
        self.pick, self.claim = pick, claim

    def _route(self, problem: RoutingProblem) -> RoutingResult:
        return RoutingResult.build(problem, np.full(problem.n, self.pick, dtype=np.int64), self.claim)

    def route_one(self, query: OneQuery) -> int | None:
        return self.pick


class _StubbornOptimal(_Stubborn):
    one_query_status = "optimal"


for _name, _cls in (("review_stubborn", _Stubborn), ("review_stubborn_optimal", _StubbornOptimal)):
    if _name not in _REGISTRY:
        register(_name)(_cls)


@pytest.mark.parametrize("router", [
    {"policy": "review_stubborn", "capacity": "slots"},
    {"policy": "review_stubborn", "capacity": "slots_and_queue", "budget_per_query": 0.0001, "min_quality": 0.5},
    {"policy": "review_stubborn", "capacity": "slots", "params": {"pick": -1}},
    {"policy": "review_stubborn", "capacity": "slots", "params": {"pick": -1}, "allow_reject": True},
    {"policy": "review_stubborn_optimal", "capacity": "slots", "params": {"pick": 1, "claim": "optimal"},
     "budget_per_query": 0.0003},
], ids=lambda r: "-".join(str(v) for v in r.values()))
def test_capacity_refusals_and_messages_of_the_scalar_path(router: dict[str, Any],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A policy that fills full models and rejects without leave: refusals, reasons, the checker's
    violation strings and statuses in the batch log as route() gives them."""
    sc = _scenario(router, deps={"max_seqs": 2, "max_queue": 1}, dep0=SMALL_KV, rate=30.0, num_queries=200)
    fast, slow = _runs(sc, None, monkeypatch)
    assert fast.summary["queries"]["rejected"] > 0
    _assert_same(fast, slow)


def _edges(x: float) -> list[float]:
    return [x, math.nextafter(x, math.inf), math.nextafter(x, -math.inf)]


@pytest.mark.parametrize("budget", [None, 0.0, 1e-5, 0.5, 1.0, 3.0])
@pytest.mark.parametrize("floor", [None, 0.0, 0.5, 1.0])
def test_check_one_equals_check_assignment_at_the_tolerances(budget: float | None, floor: float | None) -> None:
    """Dispatcher._check_one against check_assignment as route() uses it (violations kept but budget and
    floor; infeasible when any), with costs and qualities on and one ulp around each tolerance edge,
    fractional and near-1 capacities, and rejection with and without leave."""
    stub = SimpleNamespace(model_names=("small", "big"))
    costs = [0.0] if budget is None else _edges(budget + TOL * max(1.0, budget)) + [budget]
    quals = [0.3] if floor is None else [q for q in _edges(floor - TOL) if 0.0 <= q <= 1.0] + [floor]
    caps = [0.0, 0.5, math.nextafter(1.0 - TOL, 0.0), 1.0 - TOL, 1.0, 1.5, math.inf]
    n = 0
    for cost in costs:
        for qual in quals:
            for cap in caps:
                for reject in (False, True):
                    one = OneQuery([qual, 0.9], [cost, 0.0], [cap, 2.0], budget=budget, min_quality=floor,
                                   allow_reject=reject)
                    problem = RoutingProblem(quality=np.array([one.quality]), cost=np.array([one.cost]),
                                             capacity=np.array(one.capacity), budget=budget, min_quality=floor,
                                             allow_reject=reject, model_names=stub.model_names)
                    for j in (-1, 0):
                        ev = check_assignment(problem, np.array([j]))
                        kept = [v for v in ev.violations if not v.startswith(("budget", "min_quality"))]
                        assert Dispatcher._check_one(stub, one, j) == (kept, bool(ev.violations))  # type: ignore[arg-type]
                        n += 1
    assert n >= 28


# -- ties: coarse predictions on five alike models -------------------------------------------------------

@pytest.mark.parametrize("policy", ["lagrangian", "strongest", "cheapest", "threshold_greedy", "least_loaded",
                                    "round_robin"])
def test_tied_predictions_on_alike_models(policy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Predicted qualities rounded to halves and costs to 1e-4 USD on five models with the same prices:
    exact ties everywhere, full models (slots) and mixed arrival groups; each rule's tie order in the
    scalar path is its numpy path's."""
    d = small_scenario(router={"policy": policy, "capacity": "slots", "allow_reject": policy != "strongest"},
                       num_queries=200)
    d["models"] = [dict(copy.deepcopy(d["models"][0]), name=f"m{k}", strength=0.2 + 0.1 * k) for k in range(5)]
    d["deployments"] = [{"model": f"m{k}", "gpu": "A100", "tp": 1, "instances": 1, "max_seqs": 2} for k in range(5)]
    d["gpus"][0]["count"] = 8
    d["workload"]["arrivals"]["rate"] = 30.0
    sc = parse_scenario(yaml.safe_dump(d), file="t.yaml")
    prepared = _regrouped(sc, seed=3)
    pred = prepared.predictions
    coarse = dataclasses.replace(pred, quality=np.round(pred.quality * 2) / 2, cost=np.round(pred.cost, 4))
    prepared = dataclasses.replace(prepared, predictions=coarse)
    fast, slow = _runs(sc, prepared, monkeypatch)
    assert fast.summary["queries"]["rejected"] > 0
    _assert_same(fast, slow)


# -- the batch log's typed arrays against the lists they replace ------------------------------------------

@dataclasses.dataclass
class _ListBatchLog:
    """BatchLog as it was before its typed arrays (7325310): a list per column, every row whole (run with
    ``Dispatcher.rows_by_query`` off, so no row is kept by its query)."""

    time: list[Any] = dataclasses.field(default_factory=list)
    size: list[Any] = dataclasses.field(default_factory=list)
    status: list[str] = dataclasses.field(default_factory=list)
    solve_time_s: list[Any] = dataclasses.field(default_factory=list)
    routing_time_s: list[Any] = dataclasses.field(default_factory=list)
    predicted_cost: list[Any] = dataclasses.field(default_factory=list)
    budget: list[Any] = dataclasses.field(default_factory=list)
    predicted_mean_quality: list[Any] = dataclasses.field(default_factory=list)
    rejected: list[Any] = dataclasses.field(default_factory=list)
    violations: list[str] = dataclasses.field(default_factory=list)
    one_source: Any = None

    def __len__(self) -> int:
        return len(self.time)

    def add(self, *row: Any) -> None:
        time_s, size, status, solve, routing, cost, budget, quality, rejected, violations = row
        for name, value in (("time", time_s), ("size", size), ("status", status), ("solve_time_s", solve),
                            ("routing_time_s", routing), ("predicted_cost", cost),
                            ("budget", np.nan if budget is None else budget),
                            ("predicted_mean_quality", quality), ("rejected", rejected), ("violations", violations)):
            getattr(self, name).append(value)

    def sizes(self) -> np.ndarray:
        return np.asarray(self.size, dtype=np.int64)

    def infeasible(self) -> int:
        return sum(st == "infeasible" for st in self.status)

    def columns(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "one_source"}


def _batch_tables(sc: Any, monkeypatch: pytest.MonkeyPatch, prepared: Prepared | None = None) -> tuple[Any, Any]:
    import sim.dispatcher

    typed = simulate(sc, prepared=prepared)
    monkeypatch.setattr(sim.dispatcher, "BatchLog", _ListBatchLog)
    monkeypatch.setattr(Dispatcher, "rows_by_query", False)
    listed = simulate(sc, prepared=prepared)
    monkeypatch.undo()
    assert typed.summary == listed.summary
    cols = [c for c in typed.batches.columns if c not in WALL_CLOCK]
    return typed.batches[cols], listed.batches[cols]


@pytest.mark.parametrize("router", [{"policy": "lagrangian", "budget_per_query": 1e-4},
                                    {"policy": "cheapest", "window_s": 0.5, "min_quality": 0.6}])
def test_batch_log_arrays_equal_lists(router: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    d = small_scenario(router=router, num_queries=100)
    d["workload"]["arrivals"] = {"type": "batch", "batch_size": 20, "interval_s": 5.0}
    typed, listed = _batch_tables(parse_scenario(yaml.safe_dump(d), file="t.yaml"), monkeypatch)
    assert typed.equals(listed)


ROWS_BY_QUERY = {
    "plain": ({"policy": "threshold_greedy"}, {}),
    "too-long-floor": ({"policy": "threshold_greedy", "params": {"alpha": 0.2}, "min_quality": 0.5}, SMALL_KV),
    "budget-reject": ({"policy": "cheapest", "budget_per_query": 5e-5, "allow_reject": True}, SMALL_KV),
    "floor-budget": ({"policy": "threshold_greedy", "min_quality": 0.7, "budget_per_query": 2e-4}, {}),
}


@pytest.mark.parametrize("case", sorted(ROWS_BY_QUERY))
@pytest.mark.parametrize("grouped", [False, True])
def test_batch_log_rows_by_query_equal_whole_rows(case: str, grouped: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Δ = 0 runs decided up front: one-query rows kept by their query (columns read back from the recorder)
    give the table of every row stored whole; with violations, too-long and policy refusals, and (grouped)
    arrival groups routed as batches between them."""
    router, dep0 = ROWS_BY_QUERY[case]
    sc = _scenario(router, dep0=dep0)
    prepared = _regrouped(sc, seed=5) if grouped else None
    by_query, whole = _batch_tables(sc, monkeypatch, prepared)
    assert by_query.equals(whole)
    assert (by_query["size"] == 1).any() and ((by_query["size"] > 1).any() == grouped)
    if case != "plain":  # rows logged whole (violations) between rows kept by their query
        assert (by_query["violations"] != "").any() and (by_query["violations"] == "").any()
    if case in ("too-long-floor", "budget-reject"):
        assert (by_query["rejected"] > 0).any()


def test_batch_log_of_one_batch_at_time_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    d = small_scenario(router={"policy": "lagrangian"}, num_queries=50)
    d["workload"]["arrivals"] = {"type": "batch", "batch_size": 50, "interval_s": 5.0}
    """A run whose every batch is routed at SimPy's initial clock (the int 0): the list log gave an int64
    time_s column there; the typed log gives float64 always (same values), kept as the consistent schema."""
    typed, listed = _batch_tables(parse_scenario(yaml.safe_dump(d), file="t.yaml"), monkeypatch)
    assert typed["time_s"].tolist() == listed["time_s"].tolist() == [0.0]
    assert typed["time_s"].dtype == np.float64
    assert typed.drop(columns="time_s").equals(listed.drop(columns="time_s"))


# -- differences this review found, fixed since: regression tests -------------------------------------

def test_window_of_one_too_long_query_zeroes_cost_and_quality(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in review (since 2bd91cf, fixed in 77f2574): with a batching window, a window of ONE query too
    long for its up-front model kept the cost_usd and quality written up front; batch by batch gives 0."""
    sc = _scenario({"policy": "threshold_greedy", "params": {"alpha": 0.2}, "window_s": 0.05}, dep0=SMALL_KV)
    fast, slow = _runs(sc, None, monkeypatch)
    req = fast.requests
    too_long = req[(req.reject_reason == "too_long") & (req.batch.map(req.batch.value_counts()) == 1)]
    assert len(too_long) > 0
    assert (slow.requests.loc[too_long.index, "cost_usd"] == 0.0).all()
    assert (too_long["cost_usd"] == 0.0).all()


def test_precomputed_status_when_the_overspend_is_refused_as_too_long(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in review (older than issue 14, fixed in 77f2574): a batch whose policy answer overspends the
    budget only through a query then refused as too long was 'feasible' decided up front, 'infeasible'
    (the policy's own check) batch by batch: budget.policy_infeasible_batches 1 vs 72 here."""
    d = small_scenario(router={"policy": "strongest", "budget_per_query": 0.0002})
    d["deployments"][0].update(SMALL_KV)
    d["models"][0]["strength"], d["models"][1]["strength"] = 0.9, 0.2  # strongest picks the small KV cache
    sc = parse_scenario(yaml.safe_dump(d), file="t.yaml")
    fast, slow = _runs(sc, None, monkeypatch)
    assert fast.summary["queries"]["rejected_by_reason"]["too_long"] > 0
    assert fast.batches["status"].equals(slow.batches["status"])


def test_lagrangian_few_rounds_scalar_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in review (since 757c5ff, fixed in 77f2574): lagrangian with max_rounds=1 on coarse (tied)
    predictions: the scalar path answered the first tied model where route() fell back to HiGHS."""
    d = small_scenario(router={"policy": "lagrangian", "params": {"max_rounds": 1}, "capacity": "slots",
                               "allow_reject": True}, num_queries=200)
    d["models"] = [dict(copy.deepcopy(d["models"][0]), name=f"m{k}", strength=0.2 + 0.1 * k) for k in range(5)]
    d["deployments"] = [{"model": f"m{k}", "gpu": "A100", "tp": 1, "instances": 1, "max_seqs": 2} for k in range(5)]
    d["gpus"][0]["count"] = 8
    d["workload"]["arrivals"]["rate"] = 30.0
    sc = parse_scenario(yaml.safe_dump(d), file="t.yaml")
    prepared = prepare(sc)
    q = prepared.predictions.quality
    coarse = np.broadcast_to(np.where(np.arange(5) >= 3, 0.9, 0.5), q.shape).copy()  # 3, 4 best; 0-2 tied
    prepared = dataclasses.replace(prepared, predictions=dataclasses.replace(prepared.predictions, quality=coarse))
    fast = simulate(sc, prepared=prepared)
    monkeypatch.setattr(Dispatcher, "scalar_one_query", False)
    slow = simulate(sc, prepared=prepared)
    assert fast.summary["queries"]["rejected"] > 0
    assert fast.requests["model"].equals(slow.requests["model"])
