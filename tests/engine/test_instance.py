"""The closed-form Instance against the per-iteration reference, plus invariants and hand-computed cases."""

from __future__ import annotations

import bisect
import math
import random
from collections import deque
from collections.abc import Hashable, Sequence

import pytest
import simpy

from sim.engine.instance import Instance
from sim.engine.latency import LatencyProfile
from sim.engine.request import Request

from .reference import RefConfig, RefResult, simulate

Arrival = tuple[float, Hashable, int, int]
MODES = ("early", "late", "process")


class CountingEnv(simpy.Environment):
    """Counts scheduled SimPy events (to check the engine does no per-iteration work)."""

    def __init__(self) -> None:
        super().__init__()
        self.scheduled = 0

    def schedule(self, event, priority=1, delay=0):  # type: ignore[no-untyped-def]
        self.scheduled += 1
        super().schedule(event, priority, delay)


class Run:
    """One engine run of ``arrivals`` on ``configs`` (same inputs as the reference), with monitors.

    ``mode`` decides how arrivals reach the engine relative to other events at the same instant:
    ``early`` -- all arrival timeouts created up front (they fire before engine wakes at the same time);
    ``late`` -- each arrival re-schedules itself with a zero delay at its time (fires after them);
    ``process`` -- one generator process yields from arrival to arrival.
    For a shared queue the request is submitted through a randomly chosen member.
    """

    def __init__(
        self, configs: Sequence[RefConfig], arrivals: Sequence[Arrival], mode: str = "early", seed: int = 0
    ):
        self.env = env = CountingEnv()
        rng = random.Random(seed)
        self.log: list[tuple[float, str, int, int]] = []  # (time, "admit"/"finish", rid, instance)
        self.admit_order: dict[Hashable, list[int]] = {}
        self.submit_order: dict[Hashable, list[int]] = {}
        self.violations: list[str] = []
        queues: dict[Hashable, deque[Request]] = {}
        members: dict[Hashable, list[Instance]] = {}
        self.instances: list[Instance] = []
        for i, cfg in enumerate(configs):
            q = queues.setdefault(cfg.queue, deque())
            inst = Instance(
                env,
                i,
                cfg.profile,
                cfg.max_seqs,
                cfg.kv_capacity_tokens,
                queue=q,
                on_finish=self._on_finish,
                on_admit=self._on_admit,
            )
            members.setdefault(cfg.queue, []).append(inst)
            self.instances.append(inst)
        self.keys = [a[1] for a in arrivals]
        self.reqs = [Request(i, p, o) for i, (_, _, p, o) in enumerate(arrivals)]

        def submit(i: int) -> None:
            key = self.keys[i]
            self.submit_order.setdefault(key, []).append(i)
            group = members[key]
            group[rng.randrange(len(group))].submit(self.reqs[i])

        order = sorted(range(len(arrivals)), key=lambda i: arrivals[i][0])
        if mode == "early":
            for i in order:
                env.timeout(arrivals[i][0]).callbacks.append(lambda _ev, i=i: submit(i))
        elif mode == "late":
            for i in order:
                env.timeout(arrivals[i][0]).callbacks.append(
                    lambda _ev, i=i: env.timeout(0).callbacks.append(lambda _ev2: submit(i))
                )
        else:

            def source():  # type: ignore[no-untyped-def]
                for i in order:
                    if arrivals[i][0] > env.now:
                        yield env.timeout(arrivals[i][0] - env.now)
                    submit(i)

            env.process(source())
        env.run()

    def _on_admit(self, r: Request) -> None:
        inst = self.instances[r.instance]
        self.log.append((self.env.now, "admit", r.rid, r.instance))
        self.admit_order.setdefault(self.keys[r.rid], []).append(r.rid)
        if inst.running > inst.max_seqs:
            self.violations.append(f"{inst}: running > max_seqs at {self.env.now}")
        if inst.kv_used_tokens > inst.kv_capacity_tokens:
            self.violations.append(f"{inst}: KV over capacity at {self.env.now}")
        if r.start_time != self.env.now or r.enqueue_time > r.start_time:
            self.violations.append(f"{r}: bad start time at {self.env.now}")

    def _on_finish(self, r: Request) -> None:
        self.log.append((self.env.now, "finish", r.rid, r.instance))
        if r.finish_time != self.env.now:
            self.violations.append(f"{r}: finish_time != now {self.env.now}")


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def assert_matches(run: Run, ref: list[RefResult]) -> None:
    for r, x in zip(run.reqs, ref, strict=True):
        ok = (
            r.instance == x.instance
            and close(r.start_time, x.start)
            and close(r.first_token_time, x.first_token)
            and close(r.finish_time, x.finish)
        )
        assert ok, f"engine {r} on instance {r.instance} != reference {x}"


def assert_invariants(run: Run, configs: Sequence[RefConfig]) -> None:
    assert not run.violations, run.violations[:5]
    for inst, cfg in zip(run.instances, configs, strict=True):
        assert inst.max_running_seen <= cfg.max_seqs
        assert inst.max_kv_used_seen <= cfg.kv_capacity_tokens
        assert inst.running == 0 and inst.kv_used_tokens == 0 and inst.queue_len == 0
        assert 0.0 <= inst.busy_time <= run.env.now + 1e-9
    for r in run.reqs:
        assert r.instance >= 0
        assert r.enqueue_time <= r.start_time <= r.first_token_time <= r.finish_time, r
    for key, admitted in run.admit_order.items():  # strict FIFO per queue
        assert admitted == run.submit_order[key]
    assert sum(1 for e in run.log if e[1] == "finish") == len(run.reqs)


# --------------------------------------------------------------------------- random workloads


def random_profile(rng: random.Random, dyadic: bool, instant_prefill_ok: bool = True) -> LatencyProfile:
    if dyadic:  # every sum the engines compute is exact in binary floating point
        pick = rng.choice
        prof = LatencyProfile(
            prefill_base_s=pick([0.0, 0.125, 0.5, 1.0]),
            prefill_per_token_s=pick([0.0, 2**-8, 2**-6]),
            prefill_per_token2_s=pick([0.0, 0.0, 2**-20]),
            decode_base_s=pick([0.0, 0.125, 0.25, 1.0]),
            decode_per_seq_s=pick([0.0, 2**-5, 2**-3]),
            decode_per_ctx_token_s=pick([0.0, 0.0, 2**-12, 2**-9]),
        )
    else:

        def coef(scale: float) -> float:
            return 0.0 if rng.random() < 0.3 else rng.uniform(0.2, 1.0) * scale

        prof = LatencyProfile(coef(0.05), coef(2e-4), coef(1e-7), coef(0.02), coef(1e-3), coef(2e-5))
    if prof.iteration_time(1, 1) == 0.0:  # zero-time decode iterations: see Instance docs; keep them out
        prof = LatencyProfile(prof.prefill_base_s, prof.prefill_per_token_s, prof.prefill_per_token2_s, 0.25)
    decode = (prof.decode_base_s, prof.decode_per_seq_s, prof.decode_per_ctx_token_s)
    if rng.random() < 0.15:  # instantaneous prefill: zero-length steps
        prof = LatencyProfile(0.0, 0.0, 0.0, *decode)
    if not instant_prefill_ok and prof.prefill_time(1) == 0.0:  # see the caveat in sim/engine/instance.py
        prof = LatencyProfile(0.5, 0.0, 0.0, *decode)
    return prof


def random_workload(
    rng: random.Random, n: int, keys: Sequence[Hashable], dyadic: bool, rate: float
) -> list[Arrival]:
    arrivals: list[Arrival] = []
    t = 0.0
    for _ in range(n):
        u = rng.random()
        if u < 0.25:
            pass  # simultaneous with the previous arrival
        elif dyadic:
            t += rng.choice([0.125, 0.25, 0.5, 1.0, 2.0]) * rng.randint(1, 4)
        else:
            t += rng.expovariate(rate)
        prompt = rng.randint(1, 300) if rng.random() < 0.9 else rng.randint(300, 1500)
        output = 1 if rng.random() < 0.2 else rng.randint(2, 40)
        arrivals.append((t, rng.choice(keys), prompt, output))
    return arrivals


def random_kv_cap(rng: random.Random, arrivals: Sequence[Arrival], max_seqs: int) -> int:
    biggest = max(p + o for _, _, p, o in arrivals)
    mean = sum(p + o for _, _, p, o in arrivals) / len(arrivals)
    return rng.choice(
        [biggest, max(biggest, int(2.5 * mean)), max(biggest, int(mean * max_seqs * 0.5)), 10**9]
    )


def add_boundary_arrivals(rng: random.Random, configs, arrivals, k: int) -> list[Arrival]:  # type: ignore[no-untyped-def]
    """Extra arrivals placed exactly on step boundaries (prefill ends, decode iterations) of a first run."""
    _, insts = simulate(configs, arrivals)
    bounds = sorted({b for inst in insts for b in inst.boundaries})
    keys = [c.queue for c in configs]
    extra = [
        (rng.choice(bounds), rng.choice(keys), rng.randint(1, 200), rng.randint(1, 20)) for _ in range(k)
    ]
    return sorted(arrivals + extra, key=lambda a: a[0])


def n_arrivals_on_boundaries(arrivals: Sequence[Arrival], insts) -> int:  # type: ignore[no-untyped-def]
    bounds = {b for inst in insts for b in inst.boundaries}
    return sum(1 for a in arrivals if a[0] in bounds)


def check(configs: Sequence[RefConfig], arrivals: Sequence[Arrival], modes: Sequence[str] = MODES) -> list:  # type: ignore[type-arg]
    ref, insts = simulate(configs, arrivals)
    for mode in modes:
        run = Run(configs, arrivals, mode=mode, seed=len(arrivals))
        assert_matches(run, ref)
        assert_invariants(run, configs)
        for inst, rinst in zip(run.instances, insts, strict=True):
            assert inst.max_running_seen == rinst.max_running
            assert inst.max_kv_used_seen == rinst.max_kv
            assert close(inst.busy_time, rinst.busy)
    return insts


@pytest.mark.parametrize("max_seqs", [1, 2, 8, 64])
@pytest.mark.parametrize("seed", range(8))
def test_private_queue_matches_reference(seed: int, max_seqs: int) -> None:
    rng = random.Random(1000 * max_seqs + seed)
    prof = random_profile(rng, dyadic=False)
    arrivals = random_workload(rng, 120, [0], dyadic=False, rate=rng.choice([2.0, 20.0, 200.0]))
    configs = [RefConfig(prof, max_seqs, random_kv_cap(rng, arrivals, max_seqs), 0)]
    check(configs, arrivals)


@pytest.mark.parametrize("max_seqs", [1, 2, 8, 64])
@pytest.mark.parametrize("seed", range(6))
def test_private_queue_exact_boundaries_matches_reference(seed: int, max_seqs: int) -> None:
    """Dyadic profile and times: simultaneous arrivals and arrivals exactly on iteration boundaries."""
    rng = random.Random(2000 * max_seqs + seed)
    prof = random_profile(rng, dyadic=True)
    arrivals = random_workload(rng, 80, [0], dyadic=True, rate=0.0)
    configs = [RefConfig(prof, max_seqs, random_kv_cap(rng, arrivals, max_seqs), 0)]
    arrivals = add_boundary_arrivals(rng, configs, arrivals, 40)
    insts = check(configs, arrivals)
    assert n_arrivals_on_boundaries(arrivals, insts) > 0


@pytest.mark.parametrize("max_seqs", [1, 2, 8, 64])
@pytest.mark.parametrize("seed", range(5))
def test_shared_queue_three_instances_matches_reference(seed: int, max_seqs: int) -> None:
    rng = random.Random(3000 * max_seqs + seed)
    prof = random_profile(rng, dyadic=False, instant_prefill_ok=False)
    arrivals = random_workload(rng, 150, ["shared"], dyadic=False, rate=rng.choice([5.0, 50.0, 500.0]))
    cap = random_kv_cap(rng, arrivals, max_seqs)
    configs = [RefConfig(prof, max_seqs, cap, "shared") for _ in range(3)]
    check(configs, arrivals)


@pytest.mark.parametrize("max_seqs", [1, 2, 8, 64])
@pytest.mark.parametrize("seed", range(5))
def test_shared_queue_exact_ties_matches_reference(seed: int, max_seqs: int) -> None:
    """Identical instances on a dyadic grid: boundaries of different instances coincide all the time, so
    who gets the head is decided by the tie rule (first instance in order), whatever the event order."""
    rng = random.Random(4000 * max_seqs + seed)
    prof = random_profile(rng, dyadic=True, instant_prefill_ok=False)
    arrivals = random_workload(rng, 100, ["shared"], dyadic=True, rate=0.0)
    cap = random_kv_cap(rng, arrivals, max_seqs)
    configs = [RefConfig(prof, max_seqs, cap, "shared") for _ in range(3)]
    arrivals = add_boundary_arrivals(rng, configs, arrivals, 40)
    insts = check(configs, arrivals)
    assert n_arrivals_on_boundaries(arrivals, insts) > 0


@pytest.mark.parametrize("seed", range(6))
def test_mixed_shared_and_private_queues_match_reference(seed: int) -> None:
    """Three instances on a shared queue next to two with private queues, heterogeneous settings."""
    rng = random.Random(5000 + seed)
    dyadic = seed % 2 == 0
    keys = ["shared", "p3", "p4"]
    arrivals = random_workload(rng, 150, keys, dyadic=dyadic, rate=30.0)
    configs = []
    for key in ["shared", "shared", "shared", "p3", "p4"]:
        max_seqs = rng.choice([1, 2, 8, 64])
        prof = random_profile(rng, dyadic=dyadic, instant_prefill_ok=key != "shared")
        configs.append(RefConfig(prof, max_seqs, random_kv_cap(rng, arrivals, max_seqs), key))
    if dyadic:
        arrivals = add_boundary_arrivals(rng, configs, arrivals, 30)
    check(configs, arrivals)


# --------------------------------------------------------------------------- hand-computed cases


def test_hand_computed_small_case() -> None:
    """prefill_time(P) = 1 + P/100; iteration_time(n, ctx) = 0.5 + 0.25 n + 0.01 ctx; max_seqs = 2.

    r0 (t=0, prompt 100, out 3), r1 (t=0.5, prompt 50, out 2), r2 (t=1, prompt 100, out 1).

    * t=0: r0 admitted (idle), prefill(100) = 2      -> r0 first token at 2 (ctx 101, 2 to go).
    * r1, r2 arrive during that prefill and wait.
    * t=2: r1 admitted (2 running = max_seqs, r2 blocked); prefill(50) = 1.5, r0 paused
                                                     -> r1 first token at 3.5 (ctx 51, 1 to go).
    * t=3.5: decode n=2, ctx=152: 0.5+0.5+1.52 = 2.52 -> r1 finishes at 6.02; r0 ctx 102, 1 to go.
    * t=6.02: r2 admitted, prefill(100) = 2          -> r2 first token and finish at 8.02 (out 1).
    * t=8.02: decode n=1, ctx=102: 0.5+0.25+1.02 = 1.77 -> r0 finishes at 9.79.
    """
    prof = LatencyProfile(
        prefill_base_s=1.0,
        prefill_per_token_s=0.01,
        decode_base_s=0.5,
        decode_per_seq_s=0.25,
        decode_per_ctx_token_s=0.01,
    )
    arrivals = [(0.0, 0, 100, 3), (0.5, 0, 50, 2), (1.0, 0, 100, 1)]
    expected = [(0.0, 2.0, 9.79), (2.0, 3.5, 6.02), (6.02, 8.02, 8.02)]
    configs = [RefConfig(prof, 2, 10_000, 0)]
    ref, _ = simulate(configs, arrivals)
    for mode in MODES:
        run = Run(configs, arrivals, mode)
        for r, x, (s, f, e) in zip(run.reqs, ref, expected, strict=True):
            assert (r.start_time, r.first_token_time, r.finish_time) == pytest.approx((s, f, e), rel=1e-12)
            assert (x.start, x.first_token, x.finish) == pytest.approx((s, f, e), rel=1e-12)


def test_exact_event_order_unit_iterations() -> None:
    """a=1, b=c=0 (every decode iteration takes 1 s), prefill 0.5 s; max_seqs=2. Exact timestamps:

    r0 t=0    out 3: prefill [0,0.5]; paused by r1's prefill [0.5,1]; decodes [1,2],[2.5,3.5]   -> 3.5
    r1 t=0.25 out 2: waits for the boundary at 0.5; first token 1; decode [1,2]               -> 2
    r2 t=1.5  out 2: arrives mid-iteration, waits to 2 (after r1 finishes); prefill [2,2.5]   -> 3.5
    r3 t=2.5  out 1: on a boundary but 2 running: waits to 3.5; prefill [3.5,4]               -> 4
    r4 t=4    out 2: arrives as the instance goes idle at 4: prefill [4,4.5]; decode [4.5,5.5]-> 5.5
    r5 t=5    out 1: mid-iteration: waits to 5.5; prefill [5.5,6]                             -> 6
    """
    prof = LatencyProfile(prefill_base_s=0.5, decode_base_s=1.0)
    arrivals = [
        (0.0, 0, 10, 3),
        (0.25, 0, 10, 2),
        (1.5, 0, 10, 2),
        (2.5, 0, 10, 1),
        (4.0, 0, 10, 2),
        (5.0, 0, 10, 1),
    ]
    expected_log = [
        (0.0, "admit", 0),
        (0.5, "admit", 1),
        (2.0, "finish", 1),
        (2.0, "admit", 2),
        (3.5, "finish", 0),
        (3.5, "finish", 2),
        (3.5, "admit", 3),
        (4.0, "finish", 3),
        (4.0, "admit", 4),
        (5.5, "finish", 4),
        (5.5, "admit", 5),
        (6.0, "finish", 5),
    ]
    expected = [
        (0.0, 0.5, 3.5),
        (0.5, 1.0, 2.0),
        (2.0, 2.5, 3.5),
        (3.5, 4.0, 4.0),
        (4.0, 4.5, 5.5),
        (5.5, 6.0, 6.0),
    ]
    configs = [RefConfig(prof, 2, 1000, 0)]
    ref, _ = simulate(configs, arrivals)
    assert [(x.start, x.first_token, x.finish) for x in ref] == expected
    for mode in MODES:
        run = Run(configs, arrivals, mode)
        assert [(t, kind, rid) for t, kind, rid, _ in run.log] == expected_log, mode
        assert [(r.start_time, r.first_token_time, r.finish_time) for r in run.reqs] == expected
        assert [r.enqueue_time for r in run.reqs] == [a[0] for a in arrivals]
        assert run.instances[0].busy_time == 0.5 * 6 + 1.0 * 3 == 6.0  # 6 prefills, 3 iterations: never idle


def test_arrival_on_a_boundary_inside_a_decode_run() -> None:
    """r0 (out 10) decodes alone from 0.5: boundaries at 1.5, 2.5, ... r1 arrives exactly at 2.5 (two
    iterations into a run that has no event there) and is admitted at 2.5: prefill [2.5,3], r0 paused
    with 7 tokens to go -> decodes [3,4]..[9,10] -> r0 finishes at 10; r1 (out 3) at 5."""
    prof = LatencyProfile(prefill_base_s=0.5, decode_base_s=1.0)
    arrivals = [(0.0, 0, 10, 10), (2.5, 0, 10, 3)]
    configs = [RefConfig(prof, 8, 1000, 0)]
    for mode in MODES:
        run = Run(configs, arrivals, mode)
        assert [(r.start_time, r.first_token_time, r.finish_time) for r in run.reqs] == [
            (0.0, 0.5, 10.0),
            (2.5, 3.0, 5.0),
        ]


def test_kv_head_of_line_blocking() -> None:
    """KV capacity 250: r0 holds 103; r1 needs 150 (103+150 > 250) and blocks r2 (12 tokens), which would
    fit, until r0 finishes: strict FIFO, no skipping."""
    prof = LatencyProfile(prefill_base_s=0.5, decode_base_s=1.0)
    arrivals = [(0.0, 0, 100, 3), (0.1, 0, 120, 30), (0.2, 0, 10, 2)]
    configs = [RefConfig(prof, 8, 250, 0)]
    ref, _ = simulate(configs, arrivals)
    run = Run(configs, arrivals)
    assert_matches(run, ref)
    r0, r1, r2 = run.reqs
    assert r0.finish_time == 2.5  # prefill [0,0.5], decodes [0.5,1.5],[1.5,2.5]
    assert r1.start_time == 2.5 and r2.start_time == 2.5  # admitted together once r0 left
    assert run.instances[0].max_kv_used_seen == 150 + 12


def test_shared_queue_tie_goes_to_first_instance_and_heads_fill_in_order() -> None:
    """Two idle instances (max_seqs 2) on one queue, four simultaneous arrivals: 0 takes r0, r1; 1 takes
    r2, r3 -- whichever instance the requests are submitted through."""
    prof = LatencyProfile(prefill_base_s=0.5, decode_base_s=1.0)
    env = simpy.Environment()
    q: deque[Request] = deque()
    insts = [Instance(env, i, prof, 2, 1000, queue=q) for i in range(2)]
    reqs = [Request(i, 10, 2) for i in range(4)]
    for r in reqs:
        insts[1].submit(r)
    env.run()
    assert [r.instance for r in reqs] == [0, 0, 1, 1]
    assert all(r.finish_time == 1.5 for r in reqs)


def test_poke_after_direct_append_to_shared_queue() -> None:
    prof = LatencyProfile(prefill_base_s=0.5, decode_base_s=1.0)
    env = simpy.Environment()
    q: deque[Request] = deque()
    insts = [Instance(env, i, prof, 1, 1000, queue=q) for i in range(3)]
    reqs = [Request(i, 10, 1) for i in range(3)]

    def at_1(_ev: simpy.Event) -> None:
        for r in reqs:
            r.enqueue_time = env.now
            q.append(r)
        for inst in insts:
            inst.poke()

    env.timeout(1.0).callbacks.append(at_1)
    env.run()
    assert [(r.instance, r.start_time, r.finish_time) for r in reqs] == [
        (0, 1.0, 1.5),
        (1, 1.0, 1.5),
        (2, 1.0, 1.5),
    ]


def test_closed_loop_resubmission_from_on_finish() -> None:
    """A callback submitting the next request at a finish time gets it admitted at that very boundary."""
    prof = LatencyProfile(prefill_base_s=0.5, decode_base_s=1.0)
    env = simpy.Environment()
    done: list[Request] = []

    def on_finish(r: Request) -> None:
        done.append(r)
        if r.rid < 9:
            inst.submit(Request(r.rid + 1, 10, 3))

    inst = Instance(env, 0, prof, 4, 1000, on_finish=on_finish)
    inst.submit(Request(0, 10, 3))
    env.run()
    assert [r.rid for r in done] == list(range(10))
    for prev, r in zip(done, done[1:], strict=False):
        assert r.start_time == prev.finish_time == r.enqueue_time
        assert r.finish_time == r.start_time + 2.5  # prefill 0.5 + two 1 s iterations


def test_events_per_request_do_not_grow_with_tokens() -> None:
    """One 100k-token request: a handful of SimPy events, not one per iteration."""
    env = CountingEnv()
    prof = LatencyProfile(prefill_base_s=0.1, decode_base_s=0.01, decode_per_ctx_token_s=1e-7)
    inst = Instance(env, 0, prof, 8, 10**6)
    r = Request(0, 100, 100_000)
    inst.submit(r)
    env.run()
    assert env.scheduled <= 2  # prefill end, completion
    t = 0.1 + sum(0.01 + 1e-7 * (101 + i) for i in range(99_999))
    assert r.finish_time == pytest.approx(t, rel=1e-9)
    assert inst.busy_time == pytest.approx(t, rel=1e-9)


def test_events_per_request_small_under_load() -> None:
    rng = random.Random(7)
    prof = LatencyProfile(0.02, 1e-4, 0.0, 0.015, 2e-4, 1e-6)
    arrivals = random_workload(rng, 3000, [0], dyadic=False, rate=40.0)
    run = Run([RefConfig(prof, 32, 50_000, 0)], arrivals)
    assert_invariants(run, [RefConfig(prof, 32, 50_000, 0)])
    engine_events = run.env.scheduled - len(arrivals)  # minus the arrival timeouts
    assert engine_events / len(arrivals) < 4.0


def test_rejects_requests_that_can_never_fit_and_bad_config() -> None:
    env = simpy.Environment()
    prof = LatencyProfile(decode_base_s=1.0)
    inst = Instance(env, 0, prof, 4, 100)
    with pytest.raises(ValueError, match="KV tokens"):
        inst.submit(Request(0, 90, 11))
    inst.submit(Request(1, 90, 10))  # exactly the capacity is fine
    env.run()
    with pytest.raises(ValueError):
        Instance(env, 1, prof, 0, 100)
    with pytest.raises(ValueError):
        Instance(env, 2, prof, 1, 0)


def test_readonly_state_during_run() -> None:
    prof = LatencyProfile(prefill_base_s=0.5, decode_base_s=1.0)
    env = simpy.Environment()
    inst = Instance(env, 3, prof, 2, 1000)
    for i in range(3):
        inst.submit(Request(i, 10, 4))
    assert (inst.running, inst.free_slots, inst.queue_len, inst.kv_used_tokens) == (2, 0, 1, 28)
    env.run(until=2.0)  # prefill [0,0.5], decodes [0.5,1.5], [1.5,2.5]
    assert inst.busy_time == 2.0 and inst.decode_batch == 2
    env.run()
    assert inst.busy_time == env.now == math.fsum([0.5, 3.0, 0.5, 3.0])
    assert (inst.running, inst.free_slots, inst.queue_len, inst.kv_used_tokens) == (0, 2, 0, 0)


def decode_run(prof: LatencyProfile, n: int, ctx: int, kmax: int, t0: float) -> Instance:
    """An instance in the middle of a decode run of ``n`` sequences, total context ``ctx``, started at
    ``t0``, whose next completion is ``kmax`` iterations away (engine internals set directly)."""
    inst = Instance(simpy.Environment(), 0, prof, 64, 10**9)
    inst._phase, inst._t0, inst._tok = 2, t0, 0
    inst._heap = [(kmax, 0, Request(0, 1, 1))]
    inst._alpha, inst._cn = prof.iteration_time(n, ctx), prof.decode_per_ctx_token_s * n
    return inst


@pytest.mark.parametrize("seed", range(4))
def test_next_boundary_is_exact_against_brute_force(seed: int) -> None:
    """The quadratic solve + fix-up returns exactly the boundary the wakes use, even for times one ulp
    either side of a boundary, and an exact boundary is never rejected by the fast path of _open_at."""
    rng = random.Random(seed)
    for _ in range(200):
        c = rng.choice([0.0, rng.uniform(1e-8, 1e-4)])
        prof = LatencyProfile(
            decode_base_s=rng.uniform(1e-4, 0.1),
            decode_per_seq_s=rng.uniform(0, 1e-3),
            decode_per_ctx_token_s=c,
        )
        n = rng.randint(1, 64)
        ctx = n * rng.randint(1, 4000)
        kmax = rng.randint(1, 5000)
        t0 = rng.uniform(0, 1e6)
        args = (prof, n, ctx, kmax, t0)
        run = decode_run(*args)
        bounds = [t0 + run._T(j) for j in range(kmax + 1)]
        for _ in range(5):
            b = bounds[rng.randint(0, kmax)]
            for now in (
                b,
                math.nextafter(b, -math.inf),
                math.nextafter(b, math.inf),
                rng.uniform(t0, bounds[-1]),
            ):
                if now > bounds[-1]:
                    continue
                expect = bisect.bisect_left(bounds, now)  # first boundary >= now (bounds is sorted)
                assert decode_run(*args)._next_boundary(now) == (expect, bounds[expect])
                if 0 < expect < kmax:
                    assert decode_run(*args)._open_at(now) == (bounds[expect] == now)
        # the closed form agrees with iteration-by-iteration sums
        t, cc = t0, ctx
        for _ in range(kmax):
            t += prof.iteration_time(n, cc)
            cc += n
        assert bounds[-1] == pytest.approx(t, rel=1e-12, abs=1e-9)


def test_instances_on_one_deque_share_one_group_per_environment() -> None:
    """The queue-group registry (``_group_of``): one group per deque within an environment; a deque shared
    across two environments is refused; nothing outlives the environment (no registry leak)."""
    import gc
    import weakref

    from sim.engine import instance as instance_mod

    prof = LatencyProfile(0.01, 1e-4, 0.0, 0.02)
    env = simpy.Environment()
    q: deque[Request] = deque()
    a, b = Instance(env, 0, prof, 2, 1000, queue=q), Instance(env, 1, prof, 2, 1000, queue=q)
    c = Instance(env, 2, prof, 2, 1000)  # a queue of its own
    assert a._group is b._group and a._group.members == [a, b]
    assert c._group is not a._group and c._group.members == [c]
    with pytest.raises(ValueError, match="share the SimPy environment"):
        Instance(simpy.Environment(), 3, prof, 2, 1000, queue=q)
    qid = id(q)
    assert instance_mod._QUEUE_ENV[qid] is env
    env_ref = weakref.ref(env)
    del env, a, b, c, q
    gc.collect()
    assert env_ref() is None  # the environment, its groups and their queues are gone ...
    assert qid not in instance_mod._QUEUE_ENV  # ... and with them the registry's entry
    env2 = simpy.Environment()  # a fresh deque (whatever its id) starts a fresh group
    d = Instance(env2, 0, prof, 2, 1000, queue=deque())
    assert d._group.members == [d]
