"""Node failures inside the engine (sim/engine/faults.py, docs/events.md), both schedulers, both queue
modes: a failed instance hands back exactly what it held and is empty; stale SimPy wakes do nothing; a
recovered instance serves exactly like a new one; and under random failures and recoveries every
request finishes or is lost exactly once, never on an instance while it is down, with no instance over
its sequence or KV limits at any event."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
import simpy

from sim.engine.cluster import DeploymentRuntime, ModelGroup
from sim.engine.faults import Failure, FaultController
from sim.engine.latency import LatencyProfile
from sim.engine.request import Request
from sim.engine.scheduler import RESERVE, SchedulerConfig

PROFILE = LatencyProfile(prefill_base_s=0.01, prefill_per_token_s=1e-4, decode_base_s=0.02,
                         decode_per_seq_s=1e-3, decode_per_ctx_token_s=1e-6)
SCHEDULERS = {"reserve": RESERVE, "paged": SchedulerConfig(kind="paged", block_size=16, max_num_batched_tokens=512)}


def deployment(env: simpy.Environment, scheduler: str, shared: bool, n: int, on_finish: Any,
               max_seqs: int = 4, kv: int = 4096) -> DeploymentRuntime:
    return DeploymentRuntime(
        env, name="m@g#0", model_index=0, gpu="g", tp=1, gpu_cost_per_hour=0.0, profile=PROFILE,
        n_instances=n, max_seqs=max_seqs, kv_capacity_tokens=kv, shared_queue=shared, max_queue=None,
        first_iid=0, on_finish=on_finish, scheduler=SCHEDULERS[scheduler],
    )


def at(env: simpy.Environment, t: float, fn: Any) -> None:
    env.timeout(t - env.now).callbacks.append(lambda _e: fn())


@pytest.mark.parametrize("scheduler", ["reserve", "paged"])
def test_failed_instance_returns_what_it_held_and_recovers_like_new(scheduler: str) -> None:
    env = simpy.Environment()
    finished: list[Request] = []
    dep = deployment(env, scheduler, False, 1, finished.append)
    reqs = [Request(i, 300, 40) for i in range(7)]  # 4 run, 3 wait
    for r in reqs:
        dep.submit(r)
    back: list[tuple[Request, int]] = []
    at(env, 0.3, lambda: back.extend(dep.fail([0])))
    env.run(until=5.0)
    assert finished == []  # nothing finishes while down: the failed run's wakes are ignored
    assert sorted(r.rid for r, _ in back) == list(range(7))
    assert sorted(iid for _, iid in back) == [-1] * 3 + [0] * 4
    inst = dep.instances[0]
    assert inst.running == 0 and inst.kv_used_tokens == 0 and inst.queue_len == 0 and inst.free_slots == 0
    assert all(math.isnan(r.start_time) and r.instance == -1 for r, _ in back)
    assert dep.capacity("unlimited") == 0.0
    busy = inst.busy_time
    assert 0.29 < busy <= 0.3 + 1e-12  # busy up to the failure, not while down
    dep.recover([0])
    assert dep.capacity("slots") == 4.0
    x = Request(99, 500, 30)
    at(env, 12.0, lambda: dep.submit(x))
    env.run(until=60.0)
    # the same request on a brand-new instance, submitted at the same time
    env2 = simpy.Environment()
    dep2 = deployment(env2, scheduler, False, 1, lambda r: None)
    y = Request(99, 500, 30)
    at(env2, 12.0, lambda: dep2.submit(y))
    env2.run(until=60.0)
    assert (x.start_time, x.first_token_time, x.finish_time) == (y.start_time, y.first_token_time, y.finish_time)
    assert finished == [x]
    assert inst.busy_time == pytest.approx(busy + (y.finish_time - y.start_time))


@pytest.mark.parametrize("scheduler", ["reserve", "paged"])
def test_shared_queue_stays_with_survivors(scheduler: str) -> None:
    env = simpy.Environment()
    done: list[Request] = []
    dep = deployment(env, scheduler, True, 2, done.append, max_seqs=2)
    for i in range(10):
        dep.submit(Request(i, 200, 50))
    back: list[tuple[Request, int]] = []
    at(env, 0.2, lambda: back.extend(dep.fail([1])))
    env.run()
    assert len(back) == 2 and all(iid == 1 for _, iid in back)  # only its running pair
    assert len(done) == 8 and all(r.instance == 0 for r in done if r.start_time > 0.2)
    # all down: the shared queue is handed back too
    env = simpy.Environment()
    dep = deployment(env, scheduler, True, 2, lambda r: None, max_seqs=2)
    for i in range(10):
        dep.submit(Request(i, 200, 50))
    back = []
    at(env, 0.2, lambda: back.extend(dep.fail([0, 1])))
    env.run()
    assert len(back) == 10 and sum(iid >= 0 for _, iid in back) == 4 and dep.queued == 0


def _fuzz(seed: int, scheduler: str, shared: bool) -> None:
    rng = random.Random(seed)
    env = simpy.Environment()
    n_inst = rng.randint(1, 3)
    outcome: dict[int, str] = {}
    down: dict[int, list[tuple[float, float]]] = {k: [] for k in range(n_inst)}
    deps: list[DeploymentRuntime] = []

    def limits() -> None:
        for inst in deps[0].instances:
            assert inst.running <= inst.max_seqs
            assert inst.kv_used_tokens <= inst.kv_capacity_tokens
            if scheduler == "paged":  # its counter (read per routed request) is what it holds
                assert inst.running == len(inst._run)  # type: ignore[union-attr]

    def on_finish(r: Request) -> None:
        assert r.rid not in outcome
        outcome[r.rid] = "done"
        limits()
        if scheduler == "reserve" or not shared:  # the instance it finished on is known
            assert not any(a <= env.now < b for a, b in down[r.instance]), (r, env.now)

    def on_lost(r: Request, _iid: int) -> None:
        assert r.rid not in outcome
        outcome[r.rid] = "lost"

    dep = deployment(env, scheduler, shared, n_inst, on_finish, max_seqs=rng.randint(1, 4),
                     kv=rng.choice([2048, 4096]))
    deps.append(dep)
    group = ModelGroup("m", [dep])
    failures = []
    for k in range(n_inst):
        t = 0.0
        for _ in range(rng.randint(0, 2)):
            a = t + rng.uniform(0.0, 3.0)
            b = a + rng.uniform(0.1, 3.0) if rng.random() < 0.8 else None
            failures.append(Failure(at_s=a, deployment=0, indices=(k,), recover_at_s=b, lose=rng.random() < 0.3))
            down[k].append((a, math.inf if b is None else b))
            if b is None:
                break
            t = b
    FaultController(env, [group], [dep], failures, on_lost)
    n = rng.randint(5, 60)
    submitted: set[int] = set()
    for i, t in enumerate(sorted(rng.uniform(0.0, 8.0) for _ in range(n))):
        r = Request(i, rng.randint(1, 700), rng.randint(1, 80))
        if group.fits(r):  # (the dispatcher rejects the others as too long)
            submitted.add(i)
            at(env, t, lambda r=r: group.submit(r))
    env.run()  # must end: no request left waiting for a recovery that never comes
    limits()
    assert set(outcome) == submitted  # each ended exactly once (the callbacks refuse a second end)
    ctl_lost = sum(v == "lost" for v in outcome.values())
    assert ctl_lost == 0 or any(f.lose or f.recover_at_s is None for f in failures)


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("scheduler", ["reserve", "paged"])
@pytest.mark.parametrize("shared", [False, True])
def test_fuzz_failures_and_recoveries(seed: int, scheduler: str, shared: bool) -> None:
    _fuzz(seed, scheduler, shared)
