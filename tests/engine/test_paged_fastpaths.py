"""The paged engine's shortcuts against the straightforward computations they replace.

The engine as a whole is compared with the per-step reference in test_paged.py / test_paged_fuzz.py;
these tests pin the pieces whose exactness rests on an argument (monotonicity, residue arithmetic) over
many more inputs than a simulation reaches.
"""

from __future__ import annotations

import random

import pytest
import simpy

from sim.engine.latency import LatencyProfile
from sim.engine.paged import PagedGroup, PagedInstance, fit_limit
from sim.engine.request import Request
from sim.engine.scheduler import SchedulerConfig

from .test_paged import PagedRun
from .test_paged_fuzz import fuzz_case


@pytest.mark.parametrize("seed", range(40))
def test_fit_limit_is_where_fits_turns_false(seed: int) -> None:
    """``fits(kv, p, o)`` is true exactly for ``p + o <= fit_limit`` (either kind, chunked or not)."""
    rng = random.Random(seed)
    sched = SchedulerConfig(
        kind="reserve" if seed % 7 == 0 else "paged",
        block_size=rng.choice([1, 2, 4, 16]),
        max_num_batched_tokens=rng.randint(1, 300),
        chunked_prefill=rng.random() < 0.5,
        watermark=rng.choice([0.0, 0.01, 0.1, 0.5]),
    )
    kv = rng.randint(1, 400)
    limit = fit_limit(sched, kv)
    for total in range(1, kv + 3):
        for prompt in {0, total // 2, total - 1}:
            assert sched.fits(kv, prompt, total - prompt) == (total <= limit), (total, prompt, limit)


def _instance(block_size: int) -> PagedInstance:
    sched = SchedulerConfig(block_size=block_size, max_num_batched_tokens=64)
    return PagedInstance(simpy.Environment(), 0, LatencyProfile(decode_base_s=1.0), 8, 10**5, sched)


@pytest.mark.parametrize("block_size", [1, 3, 16])
def test_crossings_sum_the_residues_of_every_iteration(block_size: int) -> None:
    """``_crossings(a, b)`` (whole cycles plus a cyclic slice of the per-residue counts) equals the sum
    of the counts of ``tau % block_size`` over every iteration ``a <= tau < b``."""
    rng = random.Random(block_size)
    inst = _instance(block_size)
    for _ in range(300):
        inst._cnt = [rng.randint(0, 5) for _ in range(block_size)]
        inst._n = sum(inst._cnt)
        a = rng.randint(0, 100)
        b = a + rng.randint(-3, 3 * block_size + 2)
        plain = sum(inst._cnt[tau % block_size] for tau in range(a, b)) if inst._n else 0
        assert inst._crossings(a, b) == plain


@pytest.mark.parametrize("block_size", [1, 3, 16])
def test_exhaustion_is_never_before_whole_cycles_of_free_blocks(block_size: int) -> None:
    """The bound ``_plan`` uses to skip ``_exhaustion``: the first iteration whose allocations exceed
    ``avail`` is at least ``tok + 1 + (avail // n) * block_size``, and it is the first ``tau`` whose
    allocations over ``tok < t <= tau`` exceed ``avail``, found by stepping one iteration at a time."""
    rng = random.Random(10 + block_size)
    inst = _instance(block_size)
    for _ in range(300):
        inst._cnt = [rng.randint(0, 4) for _ in range(block_size)]
        if not sum(inst._cnt):
            inst._cnt[rng.randrange(block_size)] = 1
        n = inst._n = sum(inst._cnt)
        inst._tok = tok = rng.randint(0, 50)
        avail = rng.randint(0, 60)
        tau = inst._exhaustion(avail)
        assert tau >= tok + 1 + (avail // n) * block_size
        used, step = 0, tok
        while used <= avail:
            step += 1
            used += inst._cnt[step % block_size]
        assert tau == step


def _outcome(run: PagedRun) -> list[object]:
    """Everything a run leaves behind, exactly (floats by their bits via repr, NaN included)."""
    fields = ("instance", "enqueue_time", "start_time", "first_token_time", "finish_time", "preemptions",
              "recomputed_tokens", "cached_tokens", "max_gap")
    out: list[object] = [repr(tuple(getattr(r, f) for f in fields)) for r in run.reqs]
    for inst in run.instances:
        log = inst.step_log
        out.append(repr((inst.busy_time, inst.max_blocks_used_seen, inst.max_running_seen, inst.preemptions,
                         inst.blocks_used, inst.step_log.steps)))
        out.append(b"".join(bytes(a) for a in (log._alpha, log._slope, log._k, log._n, log._gaps, log._gapn)))
    return out


@pytest.mark.parametrize("kind", ["private", "prefix", "bounds"])
@pytest.mark.parametrize("seed", range(12))
def test_one_member_settle_is_the_general_settle(kind: str, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A group of one settles through the inlined path of ``_settle_once``; forcing every group through
    ``_settle_many`` (the loops over members) gives the same run, bit for bit, in every arrival mode."""
    configs, arrivals = fuzz_case(kind, seed)
    mode = ("early", "late", "process")[seed % 3]
    fast = _outcome(PagedRun(configs, arrivals, mode, seed))
    monkeypatch.setattr(PagedGroup, "_settle_once", PagedGroup._settle_many)
    assert _outcome(PagedRun(configs, arrivals, mode, seed)) == fast


def _plain_first_accepting_boundary(
    self: PagedInstance, head: Request, now: float, before: float
) -> tuple[int, float] | None:
    """The cover's candidate boundaries the plain way: every cached unit of the head, the whole LRU."""
    jt = self._run_boundary_after(now)
    if jt is None or jt[1] >= before:
        return None
    j0 = jt[0]
    cands = [j0]
    if self._prefix and head.prefix and self._evictable:
        hits = set(self._hits(head, head.prompt_tokens + head._generated))
        for p, h in enumerate(self._evictable):
            if h in hits:
                j = self._exhaustion(self._free + self._unit * p) - self._tok
                if j0 < j < self._run_end_j:
                    cands.append(j)
    for j in sorted(cands):
        t = self._t0 + self._T(j)
        if t >= before:
            return None
        if self._accepts(head, ahead=j):
            return j, t
    return None


# 49, 133, 140, 164: cases where a head is covered at the eviction of one of its cached units (a cover
# taking only the first boundary differs there)
@pytest.mark.parametrize("seed", [*range(30), 49, 133, 140, 164])
def test_cover_scan_stops_where_evictions_pass_the_run_end(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cover looks at the head's evictable units only, up to the first LRU position whose eviction
    cannot come before the run's end; scanning the whole LRU for every cached unit gives the same run."""
    configs, arrivals = fuzz_case("prefix", seed)
    mode = ("early", "late", "process")[seed % 3]
    fast = _outcome(PagedRun(configs, arrivals, mode, seed))
    monkeypatch.setattr(PagedInstance, "_first_accepting_boundary", _plain_first_accepting_boundary)
    assert _outcome(PagedRun(configs, arrivals, mode, seed)) == fast
