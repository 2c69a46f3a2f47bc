"""The reserve engine's fast paths against the straightforward ones they shortcut, exactly (bit for bit):
a queue group of one member (``_QueueGroup._settle_solo``, and ``Instance.submit`` skipping the settle
during a prefill) against the general group settle, and the per-submission choices of deployments and
models against their one-line definitions."""

from __future__ import annotations

import random
from collections.abc import Generator

import pytest
import simpy

from sim.engine.cluster import DeploymentRuntime, ModelGroup
from sim.engine.instance import Instance, _QueueGroup
from sim.engine.latency import LatencyProfile
from sim.engine.request import Request
from sim.engine.scheduler import RESERVE, SchedulerConfig

from .reference import RefConfig
from .test_instance import MODES, Run, add_boundary_arrivals, random_kv_cap, random_profile, random_workload


def _general_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every queue group take the general (member-loop, cover-memo) settle, even with one member."""
    join = _QueueGroup.join

    def join_general(self: _QueueGroup, m: Instance) -> None:
        join(self, m)
        self.solo = None

    monkeypatch.setattr(_QueueGroup, "join", join_general)


def _state(run: Run) -> tuple:  # type: ignore[type-arg]
    """Everything a run produced: event log, request timestamps, instance statistics and step logs, and
    how many SimPy events it scheduled."""
    reqs = [(r.instance, r.enqueue_time, r.start_time, r.first_token_time, r.finish_time) for r in run.reqs]
    insts = [
        (i.busy_time, i.max_running_seen, i.max_kv_used_seen,
         *(list(a) for a in (i.step_log._alpha, i.step_log._slope, i.step_log._k, i.step_log._n,
                             i.step_log._gaps, i.step_log._gapn)))
        for i in run.instances
    ]
    return run.log, reqs, insts, run.env.scheduled


@pytest.mark.parametrize("seed", range(12))
def test_solo_settle_matches_group_settle(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(9000 + seed)
    dyadic = seed % 2 == 0
    keys = ["p0", "p1", "shared"] if seed % 3 == 0 else ["p0", "p1"]
    arrivals = random_workload(rng, 200, keys, dyadic=dyadic, rate=rng.choice([5.0, 50.0, 500.0]))
    configs = []
    for key in keys + (["shared"] if "shared" in keys else []):
        max_seqs = rng.choice([1, 2, 8, 64])
        prof = random_profile(rng, dyadic=dyadic, instant_prefill_ok=key != "shared")
        configs.append(RefConfig(prof, max_seqs, random_kv_cap(rng, arrivals, max_seqs), key))
    if dyadic:
        arrivals = add_boundary_arrivals(rng, configs, arrivals, 60)
    mode = MODES[seed % len(MODES)]
    fast = _state(Run(configs, arrivals, mode=mode, seed=seed))
    _general_only(monkeypatch)
    slow = _state(Run(configs, arrivals, mode=mode, seed=seed))
    assert fast == slow


# --------------------------------------------------------------------------- deployments and models


def _deployment(env: simpy.Environment, *, instances: int, max_seqs: int, kv: int, scheduler: SchedulerConfig,
                k: int = 0) -> DeploymentRuntime:
    prof = LatencyProfile(prefill_base_s=0.01, prefill_per_token_s=1e-4, decode_base_s=0.02, decode_per_seq_s=1e-3)
    return DeploymentRuntime(
        env, name=f"d{k}", model_index=0, gpu="g", tp=1, gpu_cost_per_hour=0.0, profile=prof,
        n_instances=instances, max_seqs=max_seqs, kv_capacity_tokens=kv, shared_queue=False,
        max_queue=None, first_iid=10 * k, on_finish=lambda _r: None, scheduler=scheduler,
    )


@pytest.mark.parametrize("scheduler", [RESERVE, SchedulerConfig(kind="paged")], ids=["reserve", "paged"])
def test_submission_choices_match_their_plain_definitions(scheduler: SchedulerConfig) -> None:
    """next_instance (unrolled min), fits (one comparison under reserve) and ModelGroup.submit (one
    deployment without a candidate list) against the one-line definitions they replace, at every
    submission of a busy run with uneven instances and a deployment too small for some requests."""
    rng = random.Random(3)
    env = simpy.Environment()
    deps = [_deployment(env, instances=4, max_seqs=3, kv=4000, scheduler=scheduler, k=0),
            _deployment(env, instances=0, max_seqs=3, kv=4000, scheduler=scheduler, k=1)]
    deps.append(_deployment(env, instances=1, max_seqs=3, kv=2500, scheduler=scheduler, k=2))
    groups = [ModelGroup("one", deps[:1]), ModelGroup("none", deps[1:2]), ModelGroup("two", [deps[2], deps[0]])]
    seen: set[int] = set()

    def source() -> Generator[simpy.Event, None, None]:
        for rid in range(400):
            yield env.timeout(rng.expovariate(40.0))
            req = Request(rid, rng.randint(1, 3000), rng.randint(1, 2000))
            for d in deps:
                plain = bool(d.instances) and scheduler.fits(d.kv_capacity_tokens, req.prompt_tokens, req.output_tokens)
                assert d.fits(req) == plain
            for g in groups:
                assert g.fits(req) == any(d.fits(req) for d in g.deployments)
            d = deps[0]
            if not d.fits(req):
                continue
            expect = min(d.up, key=lambda inst: (inst.running + inst.queue_len) / d.max_seqs)
            assert d.next_instance() is expect
            seen.add(expect.iid)
            groups[0].submit(req)
            assert req in expect.queue or req.instance == expect.iid

    env.process(source())
    env.run()
    assert seen == {0, 1, 2, 3}  # every instance was the least loaded at some point
