"""Per-iteration reference simulator: the executable specification of ``sim.engine.instance.Instance``.

Plain Python, no SimPy, no closed forms: every prefill step and every decode iteration is simulated one
at a time. Deliberately slow and simple.

Rules, at each instant ``t`` (arrivals and step ends, in time order):

1. arrivals at ``t`` join their queue's tail, in input order;
2. repeat until no step ends at ``t`` any more (zero-length steps):
   a. every step that ends at ``t`` is completed (prefill: first tokens, one-token requests finish, the
      others join the decode batch with context ``prompt + 1``; decode iteration: each sequence gains a
      token, those with none left finish);
   b. each queue hands out its heads in FIFO order: the head goes to the first instance (in index order)
      sharing that queue that is *at a boundary* at ``t`` -- idle, or whose current step began at ``t``
      -- and has a free slot and room for ``prompt + output`` KV tokens; stop at the first head that no
      such instance takes (head-of-line blocking). Admitting into an instance whose prefill began at
      ``t`` extends that prefill; into one whose decode iteration began at ``t`` replaces that
      iteration by a prefill (decodes pause during prefills);
   c. every instance without a step starts a decode iteration if its batch is not empty.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from sim.engine.latency import LatencyProfile


@dataclass(frozen=True)
class RefConfig:
    profile: LatencyProfile
    max_seqs: int
    kv_capacity_tokens: int
    queue: Hashable  # instances with equal keys share one queue


@dataclass
class RefResult:
    instance: int = -1
    start: float = float("nan")
    first_token: float = float("nan")
    finish: float = float("nan")
    last_token: float = float("nan")
    gaps: list[float] = field(default_factory=list)  # time between consecutive tokens


@dataclass
class _Seq:
    idx: int
    prompt: int
    output: int
    ctx: int = 0
    left: int = 0


@dataclass
class _Step:
    kind: str  # "prefill" or "decode"
    start: float
    end: float
    group: list[_Seq] = field(default_factory=list)


class _Inst:
    def __init__(self, iid: int, cfg: RefConfig, results: list[RefResult]) -> None:
        self.iid = iid
        self.cfg = cfg
        self.results = results
        self.running = 0
        self.kv = 0
        self.decoding: list[_Seq] = []
        self.step: _Step | None = None
        self.max_running = 0
        self.max_kv = 0
        self.busy = 0.0  # total duration of completed steps
        self.boundaries: list[float] = []  # end times of all completed steps
        self.steps: list[float] = []  # durations of all completed steps

    def at_boundary(self, t: float) -> bool:
        return self.step is None or self.step.start == t

    def fits(self, s: _Seq) -> bool:
        return (
            self.running < self.cfg.max_seqs and self.kv + s.prompt + s.output <= self.cfg.kv_capacity_tokens
        )

    def admit(self, s: _Seq, t: float) -> None:
        res = self.results[s.idx]
        res.instance = self.iid
        res.start = t
        self.running += 1
        self.kv += s.prompt + s.output
        self.max_running = max(self.max_running, self.running)
        self.max_kv = max(self.max_kv, self.kv)
        if self.step is not None and self.step.kind == "prefill":
            assert self.step.start == t
            self.step.group.append(s)
        else:  # idle, or a decode iteration that began at t and is replaced
            assert self.step is None or self.step.start == t
            self.step = _Step("prefill", t, t, [s])
        self.step.end = t + self.cfg.profile.prefill_time(sum(x.prompt for x in self.step.group))

    def finish(self, s: _Seq, t: float) -> None:
        self.results[s.idx].finish = t
        self.running -= 1
        self.kv -= s.prompt + s.output

    def complete_step(self, t: float) -> None:
        step = self.step
        assert step is not None and step.end == t
        self.step = None
        self.busy += step.end - step.start
        self.boundaries.append(t)
        self.steps.append(step.end - step.start)
        if step.kind == "prefill":
            for s in step.group:
                self.results[s.idx].first_token = t
                self.results[s.idx].last_token = t
                if s.output == 1:
                    self.finish(s, t)
                else:
                    s.ctx = s.prompt + 1
                    s.left = s.output - 1
                    self.decoding.append(s)
        else:
            still = []
            for s in self.decoding:
                res = self.results[s.idx]
                res.gaps.append(t - res.last_token)
                res.last_token = t
                s.ctx += 1
                s.left -= 1
                if s.left == 0:
                    self.finish(s, t)
                else:
                    still.append(s)
            self.decoding = still

    def start_decode_if_needed(self, t: float) -> None:
        if self.step is None and self.decoding:
            dt = self.cfg.profile.iteration_time(len(self.decoding), sum(s.ctx for s in self.decoding))
            self.step = _Step("decode", t, t + dt)


def simulate(
    configs: Sequence[RefConfig], arrivals: Sequence[tuple[float, Hashable, int, int]]
) -> tuple[list[RefResult], list[_Inst]]:
    """Run ``arrivals`` = [(time, queue key, prompt tokens, output tokens >= 1)] on the instances.

    Returns one result per arrival (same order) and the final instance objects (``max_running``,
    ``max_kv``, ``busy``, ``boundaries`` for checks).
    """
    results = [RefResult() for _ in arrivals]
    insts = [_Inst(i, cfg, results) for i, cfg in enumerate(configs)]
    queues: dict[Hashable, deque[_Seq]] = {}
    members: dict[Hashable, list[_Inst]] = {}
    for inst in insts:
        queues.setdefault(inst.cfg.queue, deque())
        members.setdefault(inst.cfg.queue, []).append(inst)
    order = sorted(range(len(arrivals)), key=lambda i: arrivals[i][0])  # stable: ties keep input order
    pos = 0
    while True:
        candidates = [inst.step.end for inst in insts if inst.step is not None]
        if pos < len(order):
            candidates.append(arrivals[order[pos]][0])
        if not candidates:
            break
        t = min(candidates)
        while pos < len(order) and arrivals[order[pos]][0] == t:
            i = order[pos]
            _, key, prompt, output = arrivals[i]
            queues[key].append(_Seq(i, int(prompt), max(1, int(output))))
            pos += 1
        while True:
            for inst in insts:
                if inst.step is not None and inst.step.end == t:
                    inst.complete_step(t)
            for key, q in queues.items():
                while q:
                    taker = next((m for m in members[key] if m.at_boundary(t) and m.fits(q[0])), None)
                    if taker is None:
                        break
                    taker.admit(q.popleft(), t)
            for inst in insts:
                inst.start_decode_if_needed(t)
            if not any(inst.step is not None and inst.step.end == t for inst in insts):
                break
    return results, insts
