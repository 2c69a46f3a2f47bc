"""The closed-form paged scheduler against the per-step reference, plus invariants and hand-computed cases."""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Sequence

import numpy as np
import pytest
import simpy

from sim.engine.latency import LatencyProfile
from sim.engine.paged import PagedGroup, PagedInstance
from sim.engine.request import Request
from sim.engine.scheduler import SchedulerConfig
from sim.engine.steplog import StepLog

from .paged_reference import PagedRefConfig, PagedRefResult, simulate

Arrival = tuple  # (time, key, prompt, output[, prefix])
MODES = ("early", "late", "process")


class PagedRun:
    """One engine run of ``arrivals`` on ``configs``; arrivals reach the engine early, late or from a
    process relative to other same-instant events (see tests/engine/test_instance.py)."""

    def __init__(self, configs: Sequence[PagedRefConfig], arrivals: Sequence[Arrival], mode: str = "early", seed: int = 0):
        self.env = env = simpy.Environment()
        rng = random.Random(seed)
        self.violations: list[str] = []
        self.finished = 0
        groups: dict[Hashable, PagedGroup] = {}
        members: dict[Hashable, list[PagedInstance]] = {}
        self.instances: list[PagedInstance] = []
        for i, cfg in enumerate(configs):
            group = groups.setdefault(cfg.queue, PagedGroup())
            inst = PagedInstance(
                env, i, cfg.profile, cfg.max_seqs, cfg.kv_capacity_tokens, cfg.sched, group=group,
                on_finish=self._on_finish, on_admit=self._on_admit,
            )
            members.setdefault(cfg.queue, []).append(inst)
            self.instances.append(inst)
        self.reqs = [
            Request(i, a[2], a[3], prefix=tuple(a[4]) if len(a) > 4 else None) for i, a in enumerate(arrivals)
        ]

        def submit(i: int) -> None:
            group = members[arrivals[i][1]]
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
        if inst.running > inst.max_seqs:
            self.violations.append(f"{inst}: running > max_seqs at {self.env.now}")
        if r.start_time != self.env.now or r.enqueue_time > r.start_time:
            self.violations.append(f"{r}: bad start time at {self.env.now}")

    def _on_finish(self, r: Request) -> None:
        self.finished += 1
        if r.finish_time != self.env.now:
            self.violations.append(f"{r}: finish_time != now {self.env.now}")
        for inst in self.instances:
            if inst.blocks_used > inst.blocks_total or inst.running > inst.max_seqs:
                self.violations.append(f"{inst} over its limits at {self.env.now}")


def close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def assert_matches(run: PagedRun, ref: list[PagedRefResult]) -> None:
    for r, x in zip(run.reqs, ref, strict=True):
        ok = (
            r.instance == x.instance
            and close(r.start_time, x.start)
            and close(r.first_token_time, x.first_token)
            and close(r.finish_time, x.finish)
            and r.preemptions == x.preemptions
            and r.recomputed_tokens == x.recomputed_tokens
            and r.cached_tokens == x.cached_tokens
            and close(r.max_gap, x.max_gap)
        )
        assert ok, f"engine {r} pre={r.preemptions} rec={r.recomputed_tokens} cached={r.cached_tokens} gap={r.max_gap} on {r.instance} != reference {x}"


def assert_invariants(run: PagedRun, configs: Sequence[PagedRefConfig], insts) -> None:  # type: ignore[no-untyped-def]
    assert not run.violations, run.violations[:5]
    assert run.finished == len(run.reqs)
    for inst, cfg, rinst in zip(run.instances, configs, insts, strict=True):
        assert inst.max_running_seen == rinst.max_running <= cfg.max_seqs
        assert inst.max_blocks_used_seen == rinst.max_blocks_used <= inst.blocks_total
        assert inst.running == 0 and inst.queue_len == 0
        assert inst.blocks_used == rinst.used_blocks()  # cached units nobody uses count as free
        assert close(inst.busy_time, rinst.busy)
        assert inst.step_log.steps == len(rinst.step_log)
        assert close(inst.step_log.max_step, max((d for d, _, _ in rinst.step_log), default=math.nan))
    for r in run.reqs:
        assert r.enqueue_time <= r.start_time <= r.first_token_time <= r.finish_time, r


def assert_tbt(run: PagedRun, ref: list[PagedRefResult]) -> None:
    """The engine's time-between-tokens distribution is the reference's, token by token."""
    gaps = [g for x in ref for g in x.gaps]
    log = StepLog.merged(inst.step_log for inst in run.instances)
    assert log.tokens == len(gaps)
    if gaps:
        qs = [0.0, 0.5, 0.9, 0.99, 1.0]
        want = np.quantile(np.array(gaps), qs, method="inverted_cdf")
        for got, exp in zip(log.quantiles(qs), want, strict=True):
            assert close(got, float(exp))


def check(configs: Sequence[PagedRefConfig], arrivals: Sequence[Arrival], modes: Sequence[str] = MODES) -> list:  # type: ignore[type-arg]
    ref, insts = simulate(configs, arrivals)
    for mode in modes:
        run = PagedRun(configs, arrivals, mode=mode, seed=len(arrivals))
        assert_matches(run, ref)
        assert_invariants(run, configs, insts)
        assert_tbt(run, ref)
    return ref


# --------------------------------------------------------------------------- random workloads


def random_profile(rng: random.Random, dyadic: bool) -> LatencyProfile:
    if dyadic:
        pick = rng.choice
        return LatencyProfile(
            prefill_base_s=pick([0.125, 0.5, 1.0]),
            prefill_per_token_s=pick([0.0, 2**-8, 2**-6]),
            prefill_per_token2_s=pick([0.0, 0.0, 2**-20]),
            decode_base_s=pick([0.125, 0.25, 1.0]),
            decode_per_seq_s=pick([0.0, 2**-5, 2**-3]),
            decode_per_ctx_token_s=pick([0.0, 0.0, 2**-12, 2**-9]),
        )

    def coef(scale: float) -> float:
        return 0.0 if rng.random() < 0.3 else rng.uniform(0.2, 1.0) * scale

    return LatencyProfile(0.01 + coef(0.05), coef(2e-4), coef(1e-7), 0.005 + coef(0.02), coef(1e-3), coef(2e-5))


def random_sched(rng: random.Random, max_seqs: int, prefix: bool = False) -> SchedulerConfig:
    return SchedulerConfig(
        block_size=rng.choice([1, 4, 16]) if not prefix else rng.choice([4, 16]),
        max_num_batched_tokens=max(max_seqs, rng.choice([max_seqs, 64, 256, 2048])),
        chunked_prefill=rng.random() < 0.8,
        prefix_cache=prefix,
        watermark=rng.choice([0.0, 0.01, 0.1]),
        prefix_block_tokens=64,
    )


def random_workload(rng: random.Random, n: int, keys: Sequence[Hashable], dyadic: bool, rate: float, prefix: bool = False) -> list[Arrival]:
    arrivals: list[Arrival] = []
    t = 0.0
    for _ in range(n):
        u = rng.random()
        if u < 0.25:
            pass
        elif dyadic:
            t += rng.choice([0.125, 0.25, 0.5, 1.0, 2.0]) * rng.randint(1, 4)
        else:
            t += rng.expovariate(rate)
        prompt = rng.randint(1, 300) if rng.random() < 0.9 else rng.randint(300, 1500)
        output = 1 if rng.random() < 0.2 else rng.randint(2, 80)
        a: tuple = (t, rng.choice(keys), prompt, output)
        if prefix:  # a few shared conversation prefixes, 64-token units
            root = rng.randrange(4)
            units = -(-prompt // 64)
            shared = rng.randint(0, units)
            a = a + (tuple([root * 1000 + k for k in range(shared)] + [rng.randrange(10**9) for _ in range(units - shared)]),)
        arrivals.append(a)
    return arrivals


def random_kv(rng: random.Random, arrivals: Sequence[Arrival], sched: SchedulerConfig) -> int:
    """From barely enough for the largest request (heavy preemption) to plenty."""
    bs = sched.block_size
    biggest = max(a[2] + a[3] for a in arrivals)
    need = -(-biggest // bs)
    blocks = math.ceil((need + 1) / (1 - sched.watermark)) + 2
    if not sched.chunked_prefill:
        pass
    return bs * rng.choice([blocks, blocks + 5, 2 * blocks, 6 * blocks, 10**6 // bs])


def make_configs(rng: random.Random, keys: Sequence[Hashable], arrivals, dyadic: bool, prefix: bool = False) -> list[PagedRefConfig]:  # type: ignore[no-untyped-def]
    configs = []
    prof = random_profile(rng, dyadic)
    for key in keys:
        max_seqs = rng.choice([1, 2, 8, 64])
        sched = random_sched(rng, max_seqs, prefix)
        if not sched.chunked_prefill:
            biggest = max(a[2] + a[3] for a in arrivals)
            sched = SchedulerConfig(
                block_size=sched.block_size, max_num_batched_tokens=max(biggest, max_seqs),
                chunked_prefill=False, prefix_cache=prefix, watermark=sched.watermark, prefix_block_tokens=64,
            )
        configs.append(PagedRefConfig(prof, max_seqs, random_kv(rng, arrivals, sched), key, sched))
    return configs


@pytest.mark.parametrize("seed", range(40))
def test_private_queue_matches_reference(seed: int) -> None:
    rng = random.Random(7000 + seed)
    arrivals = random_workload(rng, 120, [0], dyadic=False, rate=rng.choice([2.0, 20.0, 200.0]))
    check(make_configs(rng, [0], arrivals, dyadic=False), arrivals)


@pytest.mark.parametrize("seed", range(30))
def test_dyadic_ties_match_reference(seed: int) -> None:
    rng = random.Random(8000 + seed)
    arrivals = random_workload(rng, 100, ["s", "s", "p"], dyadic=True, rate=0.0)
    check(make_configs(rng, ["s", "s", "s", "p"], arrivals, dyadic=True), arrivals)


@pytest.mark.parametrize("seed", range(30))
def test_shared_queue_matches_reference(seed: int) -> None:
    rng = random.Random(9000 + seed)
    arrivals = random_workload(rng, 150, ["s"], dyadic=False, rate=rng.choice([5.0, 50.0, 500.0]))
    check(make_configs(rng, ["s", "s", "s"], arrivals, dyadic=False), arrivals)


@pytest.mark.parametrize("seed", range(30))
def test_prefix_cache_matches_reference(seed: int) -> None:
    rng = random.Random(10000 + seed)
    dyadic = seed % 2 == 0
    arrivals = random_workload(rng, 120, ["s", "p"], dyadic=dyadic, rate=30.0, prefix=True)
    check(make_configs(rng, ["s", "s", "p"], arrivals, dyadic=dyadic, prefix=True), arrivals)


@pytest.mark.parametrize("seed", range(12))
def test_arrivals_exactly_on_step_boundaries_match_reference(seed: int) -> None:
    """Dyadic times: extra arrivals placed on the reference's step ends, most of them inside decode
    runs the engine does not step through."""
    rng = random.Random(11000 + seed)
    arrivals = random_workload(rng, 80, ["s", "p"], dyadic=True, rate=0.0)
    configs = make_configs(rng, ["s", "s", "p"], arrivals, dyadic=True)
    _, insts = simulate(configs, arrivals)
    bounds = sorted({b for inst in insts for b in inst.boundaries})
    extra = [(rng.choice(bounds), rng.choice(["s", "p"]), rng.randint(1, 200), rng.randint(1, 30)) for _ in range(40)]
    arrivals = sorted(arrivals + extra, key=lambda a: a[0])
    check(configs, arrivals)


# --------------------------------------------------------------------------- hand-computed cases


def test_hand_computed_preemption() -> None:
    """Every step lasts 1 s; 4 blocks of 4 tokens; no watermark. r0, r1 at t=0: prompt 4, output 6.

    * t=0: both admitted, one block each (2 used); prefill step.       -> first tokens at 1.
    * t=1: both decode with 4 KV tokens: each needs its 2nd block (4 used).
    * t=2..4: decodes within their 2nd block; at t=5 each holds 8 KV tokens (out = 5) and needs a 3rd.
    * t=5: no block free: r0 (first admitted) preempts the most recent, r1 (frees 2 blocks, 8 KV tokens
      discarded, back to the queue with prompt 4 + 5 = 9); r0 takes a block. No admission in a step
      that preempted.
    * t=6: r0's 6th token: finishes. r1 readmitted (3 blocks for 9 tokens); recompute step.
    * t=7: r1's 6th token comes out of the recompute: finishes; its gap 5 -> 7 is 2 s.
    """
    prof = LatencyProfile(prefill_base_s=1.0, decode_base_s=1.0)
    sched = SchedulerConfig(block_size=4, max_num_batched_tokens=64, watermark=0.0)
    configs = [PagedRefConfig(prof, 4, 16, 0, sched)]
    arrivals = [(0.0, 0, 4, 6), (0.0, 0, 4, 6)]
    expected = [(0.0, 1.0, 6.0, 0, 0, 1.0), (0.0, 1.0, 7.0, 1, 8, 2.0)]
    ref, _ = simulate(configs, arrivals)
    for mode in MODES:
        run = PagedRun(configs, arrivals, mode)
        for r, x, (s, f, e, p, rec, gap) in zip(run.reqs, ref, expected, strict=True):
            got = (r.start_time, r.first_token_time, r.finish_time, r.preemptions, r.recomputed_tokens, r.max_gap)
            assert got == (s, f, e, p, rec, gap)
            assert (x.start, x.first_token, x.finish, x.preemptions, x.recomputed_tokens, x.max_gap) == got


def test_chunks_respect_the_token_budget_and_tbt_below_longest_step() -> None:
    """512-token chunks: every step (from the engine's step log) holds at most 512 tokens, long prompts
    are split, and the time between tokens never exceeds the longest step (no preemption here)."""
    rng = random.Random(5)
    prof = LatencyProfile(0.02, 2e-4, 1e-8, 0.01, 2e-4, 1e-6)
    sched = SchedulerConfig(max_num_batched_tokens=512)
    arrivals = [(i * 0.05, 0, rng.randint(100, 3000), rng.randint(2, 200)) for i in range(300)]
    steps: list[tuple[float, float, float, int, int, int]] = []
    env = simpy.Environment()
    inst = PagedInstance(env, 0, prof, 64, 10**6, sched, on_step=lambda *a: steps.append(a))
    reqs = [Request(i, p, o) for i, (_, _, p, o) in enumerate(arrivals)]
    for (t, _, _, _), r in zip(arrivals, reqs, strict=True):
        env.timeout(t).callbacks.append(lambda _ev, r=r: inst.submit(r))
    env.run()
    assert all(r.finish_time == r.finish_time for r in reqs)
    assert max(p + n for _, _, _, _, p, n in steps) <= 512
    assert sum(p for _, _, _, _, p, _ in steps) == sum(r.prompt_tokens for r in reqs)
    assert sum(1 for s in steps if s[4] and s[5]) > 100  # mixed steps happened
    assert inst.preemptions == 0
    longest = inst.step_log.max_step
    assert inst.step_log.quantiles([0.99])[0] <= longest
    assert max(r.max_gap for r in reqs if r.output_tokens > 1) <= longest


@pytest.mark.parametrize("chunked", [True, False])
def test_the_largest_request_that_fits_completes_after_preemptions(chunked: bool) -> None:
    """fits() is tight: the largest request it accepts completes (a companion forces preemptions), and
    one output token more is refused at submission.

    12 blocks of 4 tokens, watermark 1 block, budget 40 tokens. Chunked: KV of prompt + output - 1 must
    fit 12 blocks (20 + 29 - 1 = 48); a restart's first chunk is at most 40 tokens = 10 blocks <= 11.
    Not chunked: the longest restart prompt, 20 + 21 - 1 = 40 tokens, must fit the budget.
    """
    sched = SchedulerConfig(block_size=4, max_num_batched_tokens=40, chunked_prefill=chunked, watermark=0.1)
    kv = 4 * 12
    assert sched.watermark_blocks(kv) == 1
    prompt, output = 20, (29 if chunked else 21)
    assert sched.fits(kv, prompt, output) and not sched.fits(kv, prompt, output + 1)
    prof = LatencyProfile(prefill_base_s=1.0, decode_base_s=1.0)
    configs = [PagedRefConfig(prof, 4, kv, 0, sched)]
    arrivals = [(0.0, 0, 8, 30), (0.0, 0, prompt, output)]
    ref = check(configs, arrivals)
    assert ref[1].finish == ref[1].finish and sum(x.preemptions for x in ref) > 0
    env = simpy.Environment()
    inst = PagedInstance(env, 0, prof, 4, kv, sched)
    with pytest.raises(ValueError, match="can never fit"):
        inst.submit(Request(0, prompt, output + 1))
